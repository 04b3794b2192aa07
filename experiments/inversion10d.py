"""Shortcuts where the data fill their space: t-SNE and nearest neighbours under a curved
10-D metric with closed-form distances.

The density is :class:`experiments.reference.Inversion` in 10-D: with ``lam`` its own
constant, ``beta = 1`` and ``p0 = 0`` its length factor is ``lam / |x - c|^2``, the pullback of
the Euclidean metric under the inversion ``phi`` about ``c``. Geodesics are circular arcs,
and the true distance is ``|phi(x) - phi(y)|`` for every pair. The points are drawn from that
density on the unit cube (rejection sampling), so the model is right and the data fill all
ten dimensions at the graph's scale: the regime where graph paths zig-zag.

For each seed the distances come with ``shortcuts=False`` (graph paths only), with
``"auto"`` (which turns the shortcuts on here) and with every pair refined
(``distances(refine=True)`` on the shortcut estimator), against the truth:

(a) the median ratio to the truth and the Spearman correlation over all pairs;
(b) neighbour recall: the mean fraction of each point's ``k_agree`` nearest by the distance
    that are among its ``k_agree`` nearest by the truth; also for the ``kneighbors``
    answer with the paths to the ``k_agree`` found refined (``refine=True``), on
    ``n_refined_rows`` rows;
(c) t-SNE: the neighbourhood agreement (the same fraction for the 2-D t-SNE embedding of
    the distance) and scikit-learn's trustworthiness of the embedding against the truth,
    with the embedding of the truth itself as the ceiling.

Euclidean distances are a reference row throughout.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.manifold import trustworthiness
from sklearn.metrics import pairwise_distances
from tqdm.auto import tqdm

from gendist import GenerativeDistance, TorchDensity
from gendist.embed import tsne_embedding

from ._common import finish, markdown_table, new_figure
from .curved10d import neighbour_agreement
from .reference import Inversion

DEFAULTS = {
    "n_samples": 600,
    "n_features": 10,
    "seeds": [0, 1, 2],  # one draw of the points per seed
    "n_quad": 8,
    "perplexity": 30.0,
    "k_agree": 10,  # neighbours compared by the recall and the t-SNE agreement
    "n_refined_rows": 50,  # rows whose k_agree nearest are refined (kneighbors, refine=True)
}

QUICK = {"n_samples": 300, "seeds": [0], "perplexity": 15.0, "n_refined_rows": 20}

TYPES: dict = {}

#: distances compared, each against the closed-form truth
MODES = ("graph", "shortcuts", "refined", "euclidean", "truth")


def check_requirements(config: dict) -> None:
    """Nothing beyond the experiments' own dependencies; the sizes are checked."""
    if config["n_features"] < 2 or config["n_samples"] <= config["k_agree"]:
        raise ValueError("need n_features >= 2 and n_samples > k_agree.")


def draw(model: Inversion, n: int, seed: int) -> np.ndarray:
    """``n`` points from the model's density ``|x - c|^2 - lam`` on the unit cube, by
    rejection against its largest value on the cube (at the corner farthest from c)."""
    rng = np.random.default_rng(seed)
    c = model.c.numpy()
    d = len(c)
    top = float(np.sum(np.maximum(np.abs(c), np.abs(1 - c)) ** 2)) - model.lam
    out = np.empty((0, d))
    while len(out) < n:
        X = rng.uniform(size=(4 * n, d))
        p = np.sum((X - c) ** 2, axis=1) - model.lam
        out = np.vstack([out, X[rng.uniform(size=len(X)) * top < p]])
    return out[:n]


def neighbour_recall(D: np.ndarray, T: np.ndarray, k: int) -> float:
    """Mean fraction of each row's ``k`` nearest by ``D`` among its ``k`` nearest by ``T``
    (the row's own column left out; ``D`` may hold only some rows of ``T``: pass
    ``T[rows]`` with the diagonal entries of those rows set to inf)."""
    D, T = np.array(D, dtype=np.float64), np.array(T, dtype=np.float64)
    if D.shape[0] == D.shape[1]:
        np.fill_diagonal(D, np.inf)
        np.fill_diagonal(T, np.inf)
    near_d = np.argsort(D, axis=1, kind="stable")[:, :k]
    near_t = np.argsort(T, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(near_d, near_t)]))


def _estimator(model, cfg, shortcuts):
    return GenerativeDistance(
        TorchDensity(model),
        lam=model.lam,
        beta=1.0,
        p0=0.0,
        n_quad=cfg["n_quad"],
        shortcuts=shortcuts,
        refine=False,  # the unrefined stages; "every pair refined" asks for it
        verbose=False,
    )


def _refined_recall(est, T, rows, k):
    """Recall of ``kneighbors(rows, k, refine=True)`` against the truth, and its time."""
    start = time.perf_counter()
    _, ind = est.kneighbors(rows, k, refine=True)
    seconds = time.perf_counter() - start
    T = np.array(T[rows])
    T[np.arange(len(rows)), rows] = np.inf
    near_t = np.argsort(T, axis=1, kind="stable")[:, :k]
    recall = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(ind, near_t)])
    return float(recall), seconds


def run(out: Path, config: dict | None = None) -> dict:
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    torch.set_num_threads(1)
    model = Inversion(cfg["n_features"]).double()
    rows, examples = [], {}
    k = cfg["k_agree"]
    for seed in tqdm(cfg["seeds"], desc="inversion10d", unit="draw"):
        X = draw(model, cfg["n_samples"], seed)
        Y = model.phi(X)
        T = pairwise_distances(Y)
        off = ~np.eye(len(X), dtype=bool)
        distances, extra = {}, {}
        for mode, shortcuts in (("graph", False), ("shortcuts", "auto")):
            est = _estimator(model, cfg, shortcuts)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="shortcuts are on")
                t0 = time.perf_counter()
                distances[mode] = est.fit_transform(X)
                seconds = time.perf_counter() - t0
            refined_rows = np.random.default_rng(seed).choice(
                len(X), cfg["n_refined_rows"], replace=False
            )
            recall, refine_s = _refined_recall(est, T, refined_rows, k)
            extra[mode] = {
                "seconds": seconds,
                "shortcuts_on": bool(est.shortcuts_),
                "graph_stretch": float(est.graph_stretch_),
                "refined_recall": recall,
                "refine_ms_per_row": 1e3 * refine_s / len(refined_rows),
            }
        t0 = time.perf_counter()  # est: the shortcut estimator, fitted
        distances["refined"] = est.distances(refine=True)
        extra["refined"] = {"seconds": extra["shortcuts"]["seconds"] + time.perf_counter() - t0}
        distances["euclidean"] = pairwise_distances(X)
        distances["truth"] = T
        for mode in MODES:
            D = distances[mode]
            emb = tsne_embedding(D, perplexity=cfg["perplexity"], random_state=seed)
            row = {
                "seed": seed,
                "distance": mode,
                "median_ratio": float(np.median(D[off] / T[off])),
                "spearman": float(spearmanr(D[off], T[off]).statistic),
                "recall": neighbour_recall(D, T, k),
                "tsne_agreement": neighbour_agreement(emb, T, k),
                "trustworthiness": float(
                    trustworthiness(T, emb, n_neighbors=k, metric="precomputed")
                ),
                **extra.get(mode, {}),
            }
            rows.append(row)
            if seed == cfg["seeds"][0]:
                examples[mode] = D
    examples["rows"] = rows
    return finish(
        out,
        start,
        tables={"inversion10d.csv": rows},
        summary=_summary(rows, cfg),
        figures={"inversion10d.png": _figure(examples)},
        rows=rows,
    )


def _stat(rows, mode, key) -> str:
    values = [r[key] for r in rows if r["distance"] == mode and key in r]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def _summary(rows, cfg) -> str:
    keys = (
        "median_ratio",
        "spearman",
        "recall",
        "refined_recall",
        "tsne_agreement",
        "trustworthiness",
        "seconds",
    )
    table = markdown_table(
        ["distance", *keys],
        [[mode, *[_stat(rows, mode, key) for key in keys]] for mode in MODES],
    )
    chosen = [
        f"seed {r['seed']}: stretch {r['graph_stretch']:.2f}, shortcuts {r['shortcuts_on']}"
        for r in rows
        if r["distance"] == "shortcuts"
    ]
    return "\n\n".join(
        [
            "# inversion10d",
            f"n = {cfg['n_samples']} in {cfg['n_features']}-D, seeds {cfg['seeds']}, "
            f"k = {cfg['k_agree']}; mean ± sd over seeds. `refined_recall`: kneighbors "
            f"with refine=True on {cfg['n_refined_rows']} rows.",
            table,
            'What `shortcuts="auto"` chose: ' + "; ".join(chosen) + ".",
        ]
    )


def _figure(examples):
    """Distance against the closed-form truth (graph only, shortcuts, refined) on the first
    seed's pairs, and the scores of every distance by seed."""
    fig = new_figure((17, 3.8))
    T = examples["truth"]
    i, j = np.triu_indices(len(T), 1)
    pick = np.random.default_rng(0).choice(len(i), min(20000, len(i)), replace=False)
    t = T[i[pick], j[pick]]
    titles = {"graph": "graph only", "shortcuts": 'shortcuts ("auto")',
              "refined": "every pair refined"}
    for panel, mode in enumerate(titles, start=1):
        D = examples[mode]
        ax = fig.add_subplot(1, 4, panel)
        ax.scatter(t, D[i[pick], j[pick]], s=1, alpha=0.2, color=f"C{panel - 1}", rasterized=True)
        ax.plot([0, t.max()], [0, t.max()], color="k", lw=0.8, label="truth")
        ax.set_xlabel("closed-form distance")
        ax.set_ylabel("reported distance")
        ax.set_title(titles[mode], fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
    ax = fig.add_subplot(1, 4, 4)
    keys = ("spearman", "recall", "tsne_agreement", "trustworthiness")
    width = 0.8 / len(MODES)
    for m, mode in enumerate(MODES):
        values = [np.mean([r[k] for r in examples["rows"] if r["distance"] == mode]) for k in keys]
        ax.bar(np.arange(len(keys)) + m * width, values, width, label=mode)
    ticks = [k.replace("_", "\n") for k in keys]
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, ticks, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("scores against the truth (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig
