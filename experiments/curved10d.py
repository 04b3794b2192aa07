"""Shortcuts on two curved 1-D manifolds in 10-D: clustering, t-SNE and distance accuracy.

Two interleaved half circles (the two-moons layout) in a plane are lifted into 10-D by a smooth
nonlinear map of the plane (sines and cosines of the coordinates in five further axes, three
axes left flat), turned by a random rotation, and blurred by isotropic Gaussian noise in all 10
axes. A GaussianMixture (full covariances) is the density. For each seed the generative
distances are computed with ``shortcuts=False`` (graph paths only) and with
``shortcuts="auto"`` (and ``True`` where auto leaves them off), and compared with the
intrinsic truth, the arc length along each noise-free curve (cumulative length of a
20001-vertex polyline; pairs on different curves are infinitely far):

(a) NMI against the curve labels of spectral clustering on ``exp(-d^2 / tau)``,
    ``tau = c * median(d^2)``;
(b) t-SNE neighbourhood agreement: mean fraction of each point's ``k_agree`` nearest
    neighbours in the embedding that are among its ``k_agree`` nearest by arc length;
(c) Spearman correlation of the distances with the arc length over same-curve pairs, and the
    median ratio distance / Euclidean chord.

Euclidean distances are a reference row throughout.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import ortho_group, spearmanr
from sklearn.metrics import normalized_mutual_info_score, pairwise_distances
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from gendist import GenerativeDistance
from gendist.affinity import distance_affinity, median_bandwidth
from gendist.cluster import precomputed_clusterer
from gendist.densities import GaussianMixtureDensity
from gendist.embed import tsne_embedding

from ._common import finish, markdown_table, new_figure

DEFAULTS = {
    "n_samples": 600,  # points in all, half on each curve
    "seeds": [0, 1, 2],  # one draw (noise, rotation, parameters) and density fit per seed
    "noise": 0.05,  # standard deviation of the isotropic noise, every axis
    "gap": 0.3,  # vertical offset of the lower half circle (0.5: scikit-learn's moons)
    "lift": 0.3,  # amplitude of the five nonlinear lift coordinates
    "n_components": 24,  # GaussianMixture components (full covariances)
    "n_neighbors": 10,
    "radius": None,
    "lam": "quantile:0.1",
    "beta": 1.0,
    "n_quad": 8,
    "relative_taus": [0.01, 0.1, 1.0],  # tau / median(d^2) of spectral clustering
    "perplexity": 30.0,
    "k_agree": 10,
}

QUICK = {"n_samples": 160, "seeds": [0], "n_components": 8, "perplexity": 15.0}

TYPES = {"radius": str | float | None, "n_neighbors": int | None, "lam": str | float}

#: the distances compared, in table order
METHODS = ("graph", "shortcuts", "euclidean")


def check_requirements(config: dict) -> None:
    """Nothing beyond the experiments' own dependencies."""


def lift(x: np.ndarray, y: np.ndarray, amplitude: float) -> np.ndarray:
    """The smooth map of the plane into 10-D: (x, y), five sines and cosines, three zeros."""
    a = amplitude
    extra = [
        a * np.sin(2 * x),
        a * np.cos(2 * y),
        a * np.sin(x + y),
        a * np.cos(1.5 * (x - y)),
        a * np.sin(x * y),
    ]
    return np.column_stack([x, y, *extra, np.zeros((len(x), 3))])


def curve_points(t: np.ndarray, label: int, cfg: dict) -> np.ndarray:
    """Noise-free, unrotated points at parameters ``t`` in [0, pi] of curve ``label``."""
    if label == 0:
        x, y = np.cos(t), np.sin(t)
    else:
        x, y = 1 - np.cos(t), cfg["gap"] - np.sin(t)
    return lift(x, y, cfg["lift"])


def arc_length(t: np.ndarray, label: int, cfg: dict, n_fine: int = 20001) -> np.ndarray:
    """Arc length from t = 0 along curve ``label`` (a rotation keeps it), on a fine polyline."""
    fine = np.linspace(0, np.pi, n_fine)
    steps = np.linalg.norm(np.diff(curve_points(fine, label, cfg), axis=0), axis=1)
    return np.interp(t, fine, np.concatenate([[0.0], np.cumsum(steps)]))


def make_curves(cfg: dict, seed: int):
    """One draw: points X (n, 10), curve labels y, parameters t and the arc-length truth T
    (n, n; inf across curves)."""
    rng = np.random.RandomState(seed)
    n = cfg["n_samples"]
    y = np.arange(n) % 2
    t = rng.uniform(0, np.pi, n)
    X, arc = np.empty((n, 10)), np.empty(n)
    for k in (0, 1):
        X[y == k] = curve_points(t[y == k], k, cfg)
        arc[y == k] = arc_length(t[y == k], k, cfg)
    X = X @ ortho_group.rvs(10, random_state=rng) + cfg["noise"] * rng.randn(n, 10)
    T = np.abs(arc[:, None] - arc[None, :])
    T[y[:, None] != y[None, :]] = np.inf
    return X, y, t, T


def neighbour_agreement(Y: np.ndarray, T: np.ndarray, k: int) -> float:
    """Mean fraction of each point's k nearest in the embedding Y among its k nearest by T."""
    E = pairwise_distances(Y)
    np.fill_diagonal(E, np.inf)
    T = T.copy()
    np.fill_diagonal(T, np.inf)
    near_e = np.argsort(E, axis=1)[:, :k]
    near_t = np.argsort(T, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(near_e, near_t)]))


def timed_distances(X, density, cfg, shortcuts):
    """``fit_transform`` of a GenerativeDistance with the config's graph and metric: the
    distances, the estimator and the seconds (the graph's join warnings are silenced)."""
    est = GenerativeDistance(
        density,
        shortcuts=shortcuts,
        refine=False,  # the graph and shortcut stages themselves
        lam=cfg["lam"],
        beta=cfg["beta"],
        radius=cfg["radius"],
        n_neighbors=cfg["n_neighbors"],
        n_quad=cfg["n_quad"],
        verbose=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the .*graph (has|fell apart)")
        start = time.perf_counter()
        D = est.fit_transform(X)
    return D, est, time.perf_counter() - start


def spectral_nmi(D, y, c, seed):
    """NMI against ``y`` of 2-cluster spectral clustering on ``exp(-d^2 / tau)``, ``tau = c
    median(d^2)``."""
    A = distance_affinity(D, c * median_bandwidth(D))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not fully connected")
        labels = precomputed_clusterer("spectral", 2, random_state=seed).fit_predict(A)
    return normalized_mutual_info_score(y, labels)


def run(out: Path, config: dict | None = None) -> dict:
    """Every seed, every method; write ``curved10d.csv``, ``summary.md`` and
    ``curved10d.png`` to ``out``.

    Returns
    -------
    results : dict
        ``rows`` (one per seed and method), ``summary``, ``files`` and ``seconds``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, examples = [], {}
    for seed in tqdm(cfg["seeds"], desc="curved10d", unit="draw"):
        X, y, t, T = make_curves(cfg, seed)
        gm = GaussianMixture(
            cfg["n_components"], covariance_type="full", reg_covar=1e-4, random_state=seed
        ).fit(X)
        density = GaussianMixtureDensity(gm.weights_, gm.means_, gm.covariances_)
        D_graph, est_graph, s_graph = timed_distances(X, density, cfg, False)
        D_auto, est_auto, s_auto = timed_distances(X, density, cfg, "auto")
        auto_on, stretch = bool(est_auto.shortcuts_), float(est_auto.graph_stretch_)
        if auto_on:
            D_short, s_short = D_auto, s_auto
        else:
            D_short, _, s_short = timed_distances(X, density, cfg, True)
        E = pairwise_distances(X)
        distances = {"graph": D_graph, "shortcuts": D_short, "euclidean": E}
        seconds = {"graph": s_graph, "shortcuts": s_short, "euclidean": 0.0}
        same = np.isfinite(T) & ~np.eye(len(X), dtype=bool)
        for method, D in distances.items():
            nmi = [spectral_nmi(D, y, c, seed) for c in cfg["relative_taus"]]
            Y = tsne_embedding(D, perplexity=cfg["perplexity"], random_state=seed)
            row = {"seed": seed, "method": method}
            row.update({f"nmi_tau{c:g}": v for c, v in zip(cfg["relative_taus"], nmi)})
            row.update(
                {
                    "nmi_mean": float(np.mean(nmi)),
                    "tsne_agreement": neighbour_agreement(Y, T, cfg["k_agree"]),
                    "spearman": float(spearmanr(D[same], T[same])[0]),
                    "median_ratio_to_chord": float(np.median(D[same] / E[same])),
                    "seconds": seconds[method],
                    "auto_shortcuts": auto_on,
                    "graph_stretch": stretch,
                    "graph_components": int(est_graph.n_components_),
                }
            )
            rows.append(row)
            if seed == cfg["seeds"][0]:
                examples[method] = (Y, y, t, row["tsne_agreement"])
    return finish(
        out,
        start,
        tables={"curved10d.csv": rows},
        summary=_summary(rows, cfg),
        figures={"curved10d.png": _figure(examples)},
        rows=rows,
    )


def aggregate(rows, key: str) -> dict:
    """{method: (mean, sd over seeds)} of column ``key``."""
    out = {}
    for method in METHODS:
        v = np.array([r[key] for r in rows if r["method"] == method], dtype=float)
        out[method] = (float(v.mean()), float(v.std()))
    return out


def _summary(rows, cfg) -> str:
    keys = ["nmi_mean", "tsne_agreement", "spearman", "median_ratio_to_chord", "seconds"]
    stats = {key: aggregate(rows, key) for key in keys}
    body = [
        [method, *[f"{stats[k][method][0]:.3f} ± {stats[k][method][1]:.3f}" for k in keys]]
        for method in METHODS
    ]
    per_tau = [
        [
            method,
            *[f"{aggregate(rows, f'nmi_tau{c:g}')[method][0]:.3f}" for c in cfg["relative_taus"]],
        ]
        for method in METHODS
    ]
    graph_rows = [r for r in rows if r["method"] == "graph"]
    auto = [
        [r["seed"], r["auto_shortcuts"], r["graph_stretch"], r["graph_components"]]
        for r in graph_rows
    ]
    return (
        "\n\n".join(
            [
                "# Shortcuts on two curved 1-D manifolds in 10-D",
                f"{cfg['n_samples']} points (two interleaved half circles, gap {cfg['gap']}, "
                f"lifted into 10-D with amplitude {cfg['lift']}, randomly rotated, noise "
                f"{cfg['noise']} in every axis), seeds {cfg['seeds']}; GaussianMixture("
                f"{cfg['n_components']}, full) density, n_neighbors={cfg['n_neighbors']}, "
                f"radius={cfg['radius']!r}, lam={cfg['lam']!r}, beta={cfg['beta']}, "
                f"n_quad={cfg['n_quad']}. Truth: arc length along each noise-free curve. "
                "Mean ± sd over seeds; NMI of spectral clustering averaged over tau = c * "
                f"median(d^2), c in {cfg['relative_taus']}; t-SNE agreement = fraction of the "
                f"{cfg['k_agree']} nearest in the embedding among the {cfg['k_agree']} nearest "
                "by arc length; Spearman over same-curve pairs; seconds = fit_transform.",
                markdown_table(
                    ["distance", "NMI", "t-SNE agreement", "Spearman", "median d / chord", "s"],
                    body,
                ),
                "NMI per c (mean over seeds):",
                markdown_table(["distance", *[f"c={c:g}" for c in cfg["relative_taus"]]], per_tau),
                'What `shortcuts="auto"` chose (`shortcuts_`, `graph_stretch_`) and the '
                "graph's connected components:",
                markdown_table(["seed", "auto on", "graph stretch", "components"], auto),
            ]
        )
        + "\n"
    )


def _figure(examples):
    fig = new_figure((3.2 * len(METHODS), 6.2))
    axes = fig.subplots(2, len(METHODS), squeeze=False)
    for j, method in enumerate(METHODS):
        Y, y, t, agreement = examples[method]
        for i, (colour, cmap, what) in enumerate(
            ((y, "coolwarm", "manifold"), (t, "viridis", "position along it"))
        ):
            ax = axes[i, j]
            ax.scatter(Y[:, 0], Y[:, 1], c=colour, s=4, cmap=cmap)
            ax.set_title(f"{method}: by {what}\nt-SNE agreement {agreement:.2f}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
