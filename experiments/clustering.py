"""Clustering with geodesic vs Euclidean affinity over a tau sweep (paper Fig. 5, 6).

For each dataset and seed: a GaussianMixture fitted on the points gives generative distances;
spectral clustering (scikit-learn) and Ising clustering (simulated annealing) run on the
affinities ``exp(-d**2 / tau)`` of the generative and of the Euclidean distances, with
``tau = c * median(d**2)`` of each metric over a log-spaced sweep of ``c``; the score is the
NMI against the true labels.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from gendist.affinity import distance_affinity, median_bandwidth
from gendist.cluster import precomputed_clusterer

from ._common import (
    DISTANCE_DEFAULTS,
    DISTANCE_TYPES,
    METRICS,
    dataset_draws,
    finish,
    markdown_table,
    new_figure,
    require,
)

DEFAULTS = {
    **DISTANCE_DEFAULTS,
    # tau / median(d^2) of each metric, log-spaced
    "relative_taus": [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0],
    "methods": ["spectral", "ising"],
    "ising_num_reads": 10,
    "ising_num_sweeps": 1000,
    "good_nmi": 0.9,  # a tau is "good" when the mean NMI reaches this
}

QUICK = {
    "n_samples": 200,
    "seeds": [0],
    "relative_taus": [0.01, 0.1, 1.0],
    "ising_num_reads": 4,
    "ising_num_sweeps": 300,
}

TYPES = DISTANCE_TYPES


def check_requirements(config: dict) -> None:
    """Ising clustering needs dwave-samplers."""
    if "ising" in config["methods"]:
        require("dwave.samplers")


def _cluster(method, A, seed, cfg):
    params = {}
    if method == "ising":
        params = {"num_reads": cfg["ising_num_reads"], "num_sweeps": cfg["ising_num_sweeps"]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not fully connected")
        warnings.filterwarnings("ignore", message=".*not assigned to exactly one")
        model = precomputed_clusterer(method, 2, random_state=seed, **params)
        labels = model.fit_predict(A)
    return labels, int(np.count_nonzero(labels < 0))


def run(out: Path, config: dict | None = None) -> dict:
    """Run the sweep; write ``clustering.csv``, ``summary.md`` and two figures to ``out``.

    Returns
    -------
    results : dict
        ``rows`` (one per dataset, seed, method, metric and tau), ``summary`` (Markdown),
        ``files`` (written paths) and ``seconds``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, examples = [], {}
    for name, seed, X, y, distances, n_comp in dataset_draws(cfg, "clustering"):
        for metric, D in distances.items():
            scale = median_bandwidth(D)
            for c in cfg["relative_taus"]:
                A = distance_affinity(D, c * scale)
                for method in cfg["methods"]:
                    labels, n_unassigned = _cluster(method, A, seed, cfg)
                    rows.append(
                        {
                            "dataset": name,
                            "seed": seed,
                            "method": method,
                            "metric": metric,
                            "relative_tau": c,
                            "nmi": normalized_mutual_info_score(y, labels),
                            "n_unassigned": n_unassigned,
                            "graph_components": n_comp,
                        }
                    )
                    if seed == cfg["seeds"][0]:
                        examples[name, method, metric, c] = (X, labels)
    return finish(
        out,
        start,
        tables={"clustering.csv": rows},
        summary=_summary(rows, cfg),
        figures=_figures(rows, examples, cfg),
        rows=rows,
    )


def mean_nmi(rows, cfg):
    """Mean and standard deviation over seeds: {(dataset, method, metric): (taus, mean, std)}."""
    taus = np.asarray(cfg["relative_taus"])
    table = {}
    for name in cfg["datasets"]:
        for method in cfg["methods"]:
            for metric in METRICS:
                scores = np.array(
                    [
                        [
                            r["nmi"]
                            for r in rows
                            if (r["dataset"], r["method"], r["metric"], r["seed"])
                            == (name, method, metric, seed)
                        ]
                        for seed in cfg["seeds"]
                    ]
                )
                table[name, method, metric] = (taus, scores.mean(0), scores.std(0))
    return table


def _summary(rows, cfg) -> str:
    table = mean_nmi(rows, cfg)
    taus = cfg["relative_taus"]
    good = cfg["good_nmi"]
    header = [
        "dataset",
        "method",
        "metric",
        *[f"{c:.3g}" for c in taus],
        "best",
        f"# tau >= {good}",
    ]
    body = []
    for (name, method, metric), (_, mean, _) in table.items():
        body.append(
            [name, method, metric, *map(float, mean), float(mean.max()), int((mean >= good).sum())]
        )
    wins = []
    for name in cfg["datasets"]:
        for method in cfg["methods"]:
            geo = table[name, method, "geodesic"][1]
            euc = table[name, method, "euclidean"][1]
            wins.append(
                [
                    name,
                    method,
                    float(geo.max()),
                    float(euc.max()),
                    float(geo[len(geo) // 2 :].min()),
                    float(euc[len(euc) // 2 :].min()),
                    int((geo >= good).sum()),
                    int((euc >= good).sum()),
                ]
            )
    unassigned = sum(r["n_unassigned"] for r in rows if r["method"] == "ising")
    return (
        "\n\n".join(
            [
                "# Clustering: geodesic vs Euclidean affinity",
                f"{cfg['n_samples']} points per dataset, seeds {cfg['seeds']}, GaussianMixture("
                f"{cfg['n_components']}, full) density, radius={cfg['radius']!r}, "
                f"lam={cfg['lam']!r}, beta={cfg['beta']}, n_quad={cfg['n_quad']}. "
                "Mean NMI over seeds for tau = c * median(d^2) of each metric; columns are c.",
                markdown_table(header, body),
                "Best NMI over tau, worst NMI over the larger half of the sweep "
                f"(c >= {taus[len(taus) // 2]:.3g}), and how many tau values reach NMI >= {good}:",
                markdown_table(
                    [
                        "dataset",
                        "method",
                        "best geodesic",
                        "best Euclidean",
                        "worst large-tau geodesic",
                        "worst large-tau Euclidean",
                        "# good tau geodesic",
                        "# good tau Euclidean",
                    ],
                    wins,
                ),
                f"Ising points left unassigned (not one-hot), all runs: {unassigned}.",
            ]
        )
        + "\n"
    )


def _figures(rows, examples, cfg):
    table = mean_nmi(rows, cfg)
    names, methods = cfg["datasets"], cfg["methods"]
    nmi = new_figure((3.2 * len(names), 2.8 * len(methods)))
    axes = nmi.subplots(len(methods), len(names), squeeze=False)
    for i, method in enumerate(methods):
        for j, name in enumerate(names):
            ax = axes[i, j]
            for metric, colour in zip(METRICS, ("C0", "C1")):
                taus, mean, std = table[name, method, metric]
                ax.semilogx(taus, mean, "o-", color=colour, label=metric)
                ax.fill_between(
                    taus,
                    np.clip(mean - std, 0, 1),
                    np.clip(mean + std, 0, 1),
                    color=colour,
                    alpha=0.2,
                )
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(f"{name}, {method}")
            ax.set_xlabel("tau / median d^2")
            if j == 0:
                ax.set_ylabel("NMI")
    axes[0, 0].legend(loc="lower left")
    nmi.tight_layout()

    # labelled points at the middle tau of the sweep, first seed
    c = cfg["relative_taus"][len(cfg["relative_taus"]) // 2]
    points = new_figure((3 * len(names), 3 * 2 * len(methods)), dpi=80)
    axes = points.subplots(2 * len(methods), len(names), squeeze=False)
    for i, (method, metric) in enumerate((m, k) for m in methods for k in METRICS):
        for j, name in enumerate(names):
            X, labels = examples[name, method, metric, c]
            ax = axes[i, j]
            colours = np.array(["black", "tab:blue", "tab:red"])[np.clip(labels, -1, 1) + 1]
            ax.scatter(X[:, 0], X[:, 1], c=colours, s=6)
            ax.set_title(f"{name}: {method}, {metric}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    points.suptitle(
        f"labels at tau = {c:.3g} median d^2 (seed {cfg['seeds'][0]}; unassigned -1 in black)"
    )
    points.tight_layout()
    return {"nmi_vs_tau.png": nmi, "labels.png": points}
