"""Geodesic refinement against fast-marching ground truth on a 2-D density.

Two Gaussian modes at (+-1.5, 0) joined by a curved high-density bridge above the straight
line: the true geodesic between the two means leaves the line for the bridge. The true
distance and path come from fast marching (:func:`experiments.reference.fast_marching`, the
path traced from both ends). For n vertices drawn from the density (kNN graph,
k = 4 log n), the graph geodesic between the means and its refinement
(``geodesic(a, b, refine=True)``) are compared with the truth: relative error of the length,
and Hausdorff distance between the paths (both resampled densely). The refined length is
also measured with a fine quadrature (3000 points), independently of the rule the
refinement minimised.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import directed_hausdorff
from tqdm.auto import tqdm

from gendist import GaussianMixtureDensity, GenerativeDistance
from gendist.refine import resample_polyline

from ._common import finish, markdown_table, new_figure, require
from .reference import fast_marching

DEFAULTS = {
    "n_vertices": [250, 1000, 4000],
    "seeds": [0, 1, 2, 3, 4],
    "knn_constant": 4.0,  # k = round(knn_constant * log n)
    "lam": 0.01,  # absolute: h ~ 0.05 in the modes, ~1 in the gaps
    "n_quad": 8,
    "refine_points": [16, 32, 64],  # points of the refined geodesic: error ~ 1 / points^2
    "fmm_grid": 1201,  # fast-marching grid nodes per axis on [-3.5, 3.5]^2
}

QUICK = {"n_vertices": [250, 1000], "seeds": [0], "refine_points": [32], "fmm_grid": 801}

TYPES = {}

A, B = np.array([-1.5, 0.0]), np.array([1.5, 0.0])


def check_requirements(config: dict) -> None:
    """The fast-marching reference needs scikit-fmm."""
    require("skfmm")


def bridge_mixture() -> GaussianMixtureDensity:
    """Modes at (+-1.5, 0) and a thin elongated component at (0, 1.3) bridging them."""
    return GaussianMixtureDensity(
        [0.4, 0.4, 0.2],
        [A, B, [0.0, 1.3]],
        np.array([np.diag([0.15, 0.15]), np.diag([0.15, 0.15]), np.diag([0.8, 0.04])]),
    )


def hausdorff(P: np.ndarray, Q: np.ndarray, n: int = 3000) -> float:
    """Hausdorff distance between two polylines, each resampled to ``n`` even points."""
    P, Q = resample_polyline(P, n), resample_polyline(Q, n)
    return float(max(directed_hausdorff(P, Q)[0], directed_hausdorff(Q, P)[0]))


def run(out: Path, config: dict | None = None) -> dict:
    """Graph and refined geodesics against the truth; write ``refinement.csv``,
    ``summary.md`` and ``refinement.png`` to ``out``.

    Returns
    -------
    results : dict
        ``rows``, ``summary`` (Markdown), ``files``, ``seconds`` and ``reference`` (the
        fast-marching distance).
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    density = bridge_mixture()
    lam = cfg["lam"]

    def h(P):
        return lam / (np.exp(density.log_prob(P)) + lam)

    reference, true_path = fast_marching(
        h, A, B, n_grid=cfg["fmm_grid"], half_width=3.5, trace=True
    )
    rows, example = [], None
    jobs = [(n, s) for n in cfg["n_vertices"] for s in cfg["seeds"]]
    for n, seed in tqdm(jobs, desc="refinement", unit="graph"):
        X = density.sample(n, random_state=seed)
        k = int(round(cfg["knn_constant"] * np.log(n)))
        est = GenerativeDistance(density, lam=lam, n_neighbors=k, n_quad=cfg["n_quad"]).fit(X)
        graph = est.geodesic(A, B)
        graph_hausdorff = hausdorff(graph.points, true_path)
        for m in cfg["refine_points"]:
            t0 = time.perf_counter()
            refined = est.geodesic(A, B, refine={"n_points": m})
            seconds = time.perf_counter() - t0
            dense = est.metric_.curve_length(resample_polyline(refined.points, 3000))
            rows.append(
                {
                    "n": n,
                    "seed": seed,
                    "refine_points": m,
                    "graph_error": graph.length / reference - 1,
                    "refined_error": refined.length / reference - 1,
                    "refined_error_dense": dense / reference - 1,
                    "graph_hausdorff": graph_hausdorff,
                    "refined_hausdorff": hausdorff(refined.points, true_path),
                    "refine_seconds": seconds,
                }
            )
            if example is None:
                example = (X, graph.points, refined.points)
    return finish(
        out,
        start,
        tables={"refinement.csv": rows},
        summary=_summary(rows, reference, cfg),
        figures={"refinement.png": _figure(h, example, true_path)},
        rows=rows,
        reference=reference,
    )


def _summary(rows, reference, cfg) -> str:
    table = []
    for n in cfg["n_vertices"]:
        for m in cfg["refine_points"]:
            sel = [r for r in rows if (r["n"], r["refine_points"]) == (n, m)]
            mean = {
                key: float(np.mean([abs(r[key]) for r in sel]))
                for key in (
                    "graph_error",
                    "refined_error",
                    "refined_error_dense",
                    "graph_hausdorff",
                    "refined_hausdorff",
                    "refine_seconds",
                )
            }
            table.append([n, m, len(sel), *mean.values()])
    header = [
        "n",
        "refined points",
        "graphs",
        "rel. error graph",
        "rel. error refined",
        "rel. error refined, fine quadrature",
        "Hausdorff graph",
        "Hausdorff refined",
        "refine s",
    ]
    return (
        "# Geodesic refinement vs fast-marching ground truth\n\n"
        f"Bridge mixture, lam = {cfg['lam']}, n_quad = {cfg['n_quad']}, kNN graph with "
        f"k = round({cfg['knn_constant']} log n) on vertices drawn from p. Fast-marching "
        f"distance between the modes: {reference:.6f}. Means over seeds {cfg['seeds']} of the "
        "relative length error and of the Hausdorff distance to the traced true geodesic "
        "(absolute values), for refined paths of each number of points:\n\n"
        + markdown_table(header, table)
        + "\n"
    )


def _figure(h, example, true_path):
    X, graph, refined = example
    xs, ys = np.linspace(-3, 3, 300), np.linspace(-1.5, 2.5, 200)
    gx, gy = np.meshgrid(xs, ys)
    log_h = np.log(h(np.column_stack([gx.ravel(), gy.ravel()]))).reshape(gx.shape)
    fig = new_figure((7, 4.6), dpi=110)
    ax = fig.subplots()
    im = ax.contourf(gx, gy, log_h, levels=30, cmap="viridis")
    fig.colorbar(im, ax=ax, label="log h (length factor)")
    ax.scatter(*X.T, s=2, c="white", alpha=0.4)
    ax.plot(*true_path.T, "-", color="red", lw=3, label="true geodesic (fast marching)")
    ax.plot(*graph.T, "o--", color="black", ms=3, lw=1, label="graph geodesic")
    ax.plot(*refined.T, ".-", color="orange", lw=1.5, label="refined")
    ax.legend(loc="lower center", fontsize=8)
    ax.set_title(f"n = {len(X)} vertices drawn from p", fontsize=10)
    ax.set_aspect("equal")
    fig.tight_layout()
    return fig
