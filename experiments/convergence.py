"""Convergence of graph distances to the true generative distance (paper Fig. 4, Thm. 2.5).

A two-component Gaussian mixture in 2-D with a low-density gap between the modes; the true
generative distance between the two means is computed independently by fast marching
(:func:`experiments.reference.fast_marching`). For n vertices sampled uniformly on a
box or from p itself, the ε-graph with radius ``eps_n = radius_constant * log(n) / sqrt(n)``
(the Davis-Sethuraman regime in d = 2: ``eps_n -> 0`` while ``n eps_n**2 / log n -> inf``)
gives a graph distance; its relative error is averaged over trials. A second sweep varies
the number of quadrature nodes per edge on the same vertex sets.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from gendist import GaussianMixtureDensity, GenerativeDistance

from ._common import finish, markdown_table, new_figure, require
from .reference import fast_marching

DEFAULTS = {
    "n_vertices": [250, 1000, 4000, 16000, 64000],
    "n_trials": 20,
    "samplings": ["uniform", "density"],
    "radius_constant": 2.0,  # eps_n = radius_constant * log(n) / sqrt(n)
    "lam": 0.01,  # absolute
    "n_quad": 8,
    "n_quad_values": [2, 3, 5, 9, 17],
    "n_quad_vertices": [1000, 4000],  # n of the n_quad sweep (vertices from p)
    "box": [3.0, 2.5],  # uniform vertices on [-3, 3] x [-2.5, 2.5]
    "fmm_grid": 1601,  # fast-marching grid nodes per axis on [-4.5, 4.5]^2
    "seed": 0,
}

QUICK = {
    "n_vertices": [250, 1000],
    "n_trials": 3,
    "n_quad_values": [2, 8],
    "n_quad_vertices": [1000],
    "fmm_grid": 801,
}

TYPES = {}

A, B = np.array([-1.5, 0.0]), np.array([1.5, 0.0])


def check_requirements(config: dict) -> None:
    """The fast-marching reference needs scikit-fmm."""
    require("skfmm")


def gap_mixture() -> GaussianMixtureDensity:
    """Means (+-1.5, 0), covariances diag(0.3, 0.6), equal weights: a gap around x = 0."""
    return GaussianMixtureDensity([0.5, 0.5], [A, B], np.array([np.diag([0.3, 0.6])] * 2))


def radius_for(n: int, constant: float) -> float:
    """ε-graph radius ``constant * log(n) / sqrt(n)``."""
    return float(constant * np.log(n) / np.sqrt(n))


def sample_vertices(density, n, sampling, cfg, rng) -> np.ndarray:
    """n vertices uniform on the box ``[-box, box]`` or drawn from the density."""
    if sampling == "uniform":
        box = np.asarray(cfg["box"], dtype=np.float64)
        return rng.uniform(-box, box, size=(n, 2))
    if sampling == "density":
        return density.sample(n, random_state=rng)
    raise ValueError(f'sampling must be "uniform" or "density", got {sampling!r}.')


def graph_distance(density, X, cfg, n_quad=None) -> float:
    """Graph distance A -> B on vertices X (A and B join through their neighbours); inf when
    they fall in different components."""
    est = GenerativeDistance(
        density,
        lam=cfg["lam"],
        radius=radius_for(len(X), cfg["radius_constant"]),
        n_quad=n_quad or cfg["n_quad"],
        refine=False,  # the graph's own convergence
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the graph has")
        est.fit(X)
        try:
            return float(est.geodesic(A, B).length)
        except ValueError as exc:
            if "different connected components" not in str(exc):
                raise
            return float("inf")


def run(out: Path, config: dict | None = None) -> dict:
    """Run both sweeps; write ``convergence.csv``, ``n_quad.csv``, ``summary.md`` and
    ``convergence.png`` to ``out``.

    Returns
    -------
    results : dict
        ``reference`` (fast-marching distance), ``rows``, ``quad_rows``, ``slopes``,
        ``summary``, ``files`` and ``seconds``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    density = gap_mixture()

    def h(P):
        return cfg["lam"] / (np.exp(density.log_prob(P)) + cfg["lam"])

    reference = fast_marching(h, A, B, n_grid=cfg["fmm_grid"])
    rng = check_random_state(cfg["seed"])
    rows = []
    trials = range(cfg["n_trials"])
    jobs = [(s, n, t) for s in cfg["samplings"] for n in cfg["n_vertices"] for t in trials]
    for sampling, n, trial in tqdm(jobs, desc="convergence", unit="graph"):
        d = graph_distance(density, sample_vertices(density, n, sampling, cfg, rng), cfg)
        rows.append(_row(sampling, n, cfg["n_quad"], trial, d, reference, cfg))
    quad_rows = []
    # the same vertex sets for every n_quad (paired), so the sweep isolates the quadrature
    jobs = [(n, t) for n in cfg["n_quad_vertices"] for t in trials]
    for n, trial in tqdm(jobs, desc="n_quad", unit="graph"):
        X = sample_vertices(density, n, "density", cfg, rng)
        for q in cfg["n_quad_values"]:
            d = graph_distance(density, X, cfg, n_quad=q)
            quad_rows.append(_row("density", n, q, trial, d, reference, cfg))
    stats, slopes = error_statistics(rows, cfg)
    return finish(
        out,
        start,
        tables={"convergence.csv": rows, "n_quad.csv": quad_rows},
        summary=_summary(reference, stats, slopes, quad_rows, cfg),
        figures={"convergence.png": _figure(stats, slopes, quad_rows, cfg)},
        reference=reference,
        rows=rows,
        quad_rows=quad_rows,
        slopes=slopes,
    )


def _row(sampling, n, n_quad, trial, d, reference, cfg):
    return {
        "sampling": sampling,
        "n": n,
        "radius": radius_for(n, cfg["radius_constant"]),
        "n_quad": n_quad,
        "trial": trial,
        "distance": d,
        "relative_error": abs(d - reference) / reference,
    }


def error_statistics(rows, cfg):
    """Mean / std of the relative error per (sampling, n) over connected trials, and the
    slope of log(mean error) against log(n) per sampling."""
    stats, slopes = {}, {}
    for sampling in cfg["samplings"]:
        for n in cfg["n_vertices"]:
            err = np.array(
                [r["relative_error"] for r in rows if (r["sampling"], r["n"]) == (sampling, n)]
            )
            finite = err[np.isfinite(err)]
            stats[sampling, n] = (
                float(finite.mean()) if finite.size else np.inf,
                float(finite.std()) if finite.size else np.inf,
                int(err.size - finite.size),
            )
        ns = np.array(cfg["n_vertices"], dtype=float)
        means = np.array([stats[sampling, n][0] for n in cfg["n_vertices"]])
        ok = np.isfinite(means) & (means > 0)
        slopes[sampling] = (
            float(np.polyfit(np.log(ns[ok]), np.log(means[ok]), 1)[0]) if ok.sum() >= 2 else np.nan
        )
    return stats, slopes


def _summary(reference, stats, slopes, quad_rows, cfg) -> str:
    body = []
    for n in cfg["n_vertices"]:
        line = [n, radius_for(n, cfg["radius_constant"])]
        for sampling in cfg["samplings"]:
            mean, std, disconnected = stats[sampling, n]
            line += [mean, std, disconnected]
        body.append(line)
    header = ["n", "radius"]
    for sampling in cfg["samplings"]:
        header += [f"{sampling}: mean rel. error", "std", "disconnected"]
    quad = []
    for n in cfg["n_quad_vertices"]:
        line = [n]
        for q in cfg["n_quad_values"]:
            err = np.array(
                [r["relative_error"] for r in quad_rows if (r["n"], r["n_quad"]) == (n, q)]
            )
            line.append(float(err[np.isfinite(err)].mean()))
        quad.append(line)
    return (
        "\n\n".join(
            [
                "# Convergence of graph distances to the generative distance",
                f"Gap mixture (means (+-1.5, 0), covariances diag(0.3, 0.6)), lam = {cfg['lam']} "
                f"(absolute), beta = 1, n_quad = {cfg['n_quad']}; distance between the two means. "
                f"Fast-marching reference ({cfg['fmm_grid']}^2 grid on [-4.5, 4.5]^2): "
                f"**{reference:.6f}**. Radius eps_n = {cfg['radius_constant']} log(n) / sqrt(n); "
                f"{cfg['n_trials']} trials per n; 'disconnected' counts trials where A and B fell "
                "in different components (left out of the mean).",
                markdown_table(header, body),
                "Fitted slopes of log(mean relative error) vs log(n): "
                + ", ".join(f"{s}: **{v:.2f}**" for s, v in slopes.items())
                + ".",
                "Mean relative error against the number of quadrature nodes per edge "
                "(vertices from p, the same vertex sets for every n_quad):",
                markdown_table(["n", *[f"n_quad={q}" for q in cfg["n_quad_values"]]], quad),
            ]
        )
        + "\n"
    )


def _figure(stats, slopes, quad_rows, cfg):
    fig = new_figure((10, 4))
    ax, bx = fig.subplots(1, 2)
    ns = np.array(cfg["n_vertices"])
    for sampling, colour in zip(cfg["samplings"], ("C0", "C1")):
        mean = np.array([stats[sampling, n][0] for n in ns])
        std = np.array([stats[sampling, n][1] for n in ns])
        ok = np.isfinite(mean)  # n where every trial was disconnected has no error
        ax.errorbar(
            ns[ok],
            mean[ok],
            yerr=std[ok],
            fmt="o-",
            color=colour,
            capsize=3,
            label=f"{sampling} (slope {slopes[sampling]:.2f})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of vertices n")
    ax.set_ylabel("relative error vs fast marching")
    ax.set_title("graph distance -> generative distance")
    ax.legend()
    for n, colour in zip(cfg["n_quad_vertices"], ("C2", "C3", "C4")):
        means = []
        for q in cfg["n_quad_values"]:
            err = np.array(
                [r["relative_error"] for r in quad_rows if (r["n"], r["n_quad"]) == (n, q)]
            )
            means.append(err[np.isfinite(err)].mean())
        bx.plot(cfg["n_quad_values"], means, "o-", color=colour, label=f"n = {n}, from p")
    bx.set_xscale("log")
    bx.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    # one labelled tick per n_quad used, as plain integers (log-axis minor labels overlap)
    bx.set_xticks(cfg["n_quad_values"], [str(q) for q in cfg["n_quad_values"]])
    bx.xaxis.set_minor_formatter(NullFormatter())
    bx.set_xlabel("quadrature nodes per edge (n_quad)")
    bx.set_ylabel("mean relative error")
    bx.set_title("effect of n_quad")
    bx.legend()
    fig.tight_layout()
    return fig
