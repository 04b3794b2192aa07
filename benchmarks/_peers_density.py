"""Density evaluation and edge weights against their peers and against the matmul limit.

    python -m benchmarks._peers_density            # full sizes (a few minutes on 2 cores)
    python -m benchmarks._peers_density --quick    # small sizes, a smoke run

Everything runs with one BLAS thread (``threadpoolctl``), the peak included, so the
fractions are per core. Times are medians of interleaved repeats.

Stages
------
density
    ``GaussianMixtureDensity.log_prob`` of a 10-component full-covariance mixture in d = 2,
    10, 50 (n points from N(0, 4 I)) and of a 784-D isotropic mixture (one component per
    point, as in the MNIST setting), against scikit-learn's ``GaussianMixture.score_samples``
    on the same mixture. The note gives the float32 evaluation (full and tied mixtures in at
    most 12 dimensions are evaluated by the compiled float64 kernels whatever ``dtype``: there
    it repeats float64, error 0) and the *baseline*: a plain
    reference implementation of the evaluation before the component-major kernel
    (:func:`baseline_log_prob`: one (rows, K * d) whitening product per block of
    ``working_memory``, squared norms along the trailing axis, a logsumexp over components).
edge weights
    ``evaluate_log_density`` at the vertices plus ``ConformalMetric.edge_log_weights`` on a
    symmetrised 15-NN graph (n_quad = 8) against the raw ``log_prob`` of exactly the points
    its quadrature needs (vertices + 6 interior nodes per edge). From 4-D on a mixture gives
    the nodes' log-densities from the segments' ends
    (``GaussianMixtureDensity.log_prob_on_segments``), so the stage evaluates fewer points
    than the raw call. The note gives the stage with every node evaluated (the same mixture
    behind a ``CallableDensity``, which takes the generic path) and the *baseline*
    quadrature (:func:`baseline_edge_log_weights`: edge-major (E, n_quad, d) nodes,
    ``numpy.logaddexp`` and a logsumexp over the trailing node axis, as before).

Flop model (``limit_fraction`` = model flops / time / measured float64 matmul peak)
--------------------------------------------------------------------------------
* full covariance, per point and component: the whitening ``(x - mu_k)^T P_k``, d^2
  multiply-adds (2 d^2 flops), the squares and sums (2 d), and 5 for the logsumexp (log-norm,
  max, subtraction, exp, sum; exp and log count one flop each): ``n K (2 d^2 + 2 d + 5)``.
* spherical: the product with the means, ``n K (2 d + 5)`` (the squared norms of the points,
  n d, are left out).
* edge weights: the model flops of the points the stage evaluates (:func:`stage_flops`; the
  quadrature itself is not counted, so the fraction is what the whole stage reaches).
The peak is the best of three 1500 x 1500 float64 matmuls, one thread.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import replace

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from gendist import CallableDensity, GaussianMixtureDensity, GenerativeDistance
from gendist._compute import chunk_rows, logsumexp
from gendist.densities import evaluate_log_density
from gendist.densities._mixture import _SEGMENT_IDENTITY_MIN_FEATURES
from gendist.graph import build_edges
from gendist.metric import trapezoid_log_weights

K_FULL = 10


def matmul_peak() -> float:
    """float64 matmul rate in flop/s (best of three 1500 x 1500 products)."""
    a = np.random.default_rng(0).random((1500, 1500))
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 1500**3 / best


def full_mixture(d: int, seed: int = 0) -> GaussianMixtureDensity:
    """10 components, random full covariances, means of scale 2."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(K_FULL, d, d))
    covs = A @ A.transpose(0, 2, 1) / d + 0.5 * np.eye(d)
    return GaussianMixtureDensity(
        rng.uniform(0.5, 1.5, K_FULL), 2.0 * rng.normal(size=(K_FULL, d)), covs, "full"
    )


def as_sklearn(density: GaussianMixtureDensity) -> GaussianMixture:
    """A scikit-learn GaussianMixture holding the same parameters (no fitting)."""
    gm = GaussianMixture(density.n_components, covariance_type=density.covariance_type)
    gm.weights_, gm.means_ = density.weights, density.means
    gm.covariances_ = density.covariances
    cov = density.covariances
    if density.covariance_type == "full":
        gm.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    else:  # spherical
        gm.precisions_cholesky_ = 1.0 / np.sqrt(cov)
    return gm


def baseline_log_prob(density: GaussianMixtureDensity, X: np.ndarray) -> np.ndarray:
    """Reference (baseline) evaluation, full covariances: rows-major whitening, blocks of
    ``working_memory``, squared norms along the trailing axis, logsumexp over components."""
    K, d = density.n_components, density.n_features
    prec = np.linalg.inv(np.linalg.cholesky(density.covariances)).transpose(0, 2, 1)
    proj = np.concatenate(list(prec), axis=1)  # (d, K d)
    shift = np.einsum("kd,kde->ke", density.means, prec).reshape(1, -1)
    log_norm = (
        np.log(density.weights)
        + np.log(np.diagonal(prec, axis1=1, axis2=2)).sum(1)
        - 0.5 * d * math.log(2 * math.pi)
    )
    step = chunk_rows(8 * (d + 3 * K * d + 10 * K))
    out = []
    for s in range(0, len(X), step):
        y = X[s : s + step] @ proj - shift
        maha = (y * y).reshape(len(y), K, d).sum(2)
        out.append(logsumexp(log_norm[None] - 0.5 * maha, axis=1))
    return np.concatenate(out)


def baseline_edge_log_weights(metric, X, rows, cols, log_p, step: int = 10922) -> np.ndarray:
    """Reference (baseline) quadrature: edge-major (E, n_quad - 2, d) nodes, ``np.logaddexp``,
    a logsumexp over the trailing node axis, rows gathered by fancy indexing."""
    T = metric.n_quad
    log_w = trapezoid_log_weights(T)
    t = np.linspace(0.0, 1.0, T)[1:-1]
    offset = np.logaddexp(np.log(metric.p0) if metric.p0 > 0 else -np.inf, metric.log_lam)
    out = np.empty(len(rows))
    for s in range(0, len(rows), step):
        r, c = rows[s : s + step], cols[s : s + step]
        A, B = X[r], X[c]
        nodes = A[:, None, :] + t[None, :, None] * (B - A)[:, None, :]
        inner = evaluate_log_density(metric.density, nodes.reshape(-1, X.shape[1]))
        lp = np.column_stack([log_p[r], inner.reshape(len(r), T - 2), log_p[c]])
        log_h = metric.beta * (offset - np.logaddexp(lp, metric.log_lam))
        out[s : s + len(r)] = np.log(np.linalg.norm(B - A, axis=1)) + logsumexp(
            log_h + log_w, axis=1
        )
    return out


def median_times(funcs: dict, repeat: int) -> dict:
    """Median seconds of each function, the repeats interleaved."""
    times = {k: [] for k in funcs}
    for _ in range(repeat):
        for k, f in funcs.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def full_flops(n: int, d: int, K: int = K_FULL) -> float:
    return n * K * (2 * d * d + 2 * d + 5)


def density_row(d, n, repeat, peak):
    density = full_mixture(d)
    fast32 = GaussianMixtureDensity(
        density.weights, density.means, density.covariances, "full", dtype="float32"
    )
    X = np.random.default_rng(1).normal(size=(n, d)) * 2.0
    gm = as_sklearn(density)
    err = np.max(np.abs(density.log_prob(X) - gm.score_samples(X)) / np.abs(gm.score_samples(X)))
    err32 = np.max(np.abs(fast32.log_prob(X) - density.log_prob(X)) / np.abs(density.log_prob(X)))
    t = median_times(
        {
            "ours": lambda: density.log_prob(X),
            "float32": lambda: fast32.log_prob(X),
            "sklearn": lambda: gm.score_samples(X),
            "baseline": lambda: baseline_log_prob(density, X),
        },
        repeat,
    )
    flops = full_flops(n, d)
    return {
        "stage": "density",
        "d": d,
        "n": n,
        "gendist_s": t["ours"],
        "peer": "sklearn score_samples",
        "peer_s": t["sklearn"],
        "limit_fraction": flops / t["ours"] / peak,
        "note": (
            f"full, K={K_FULL}; baseline {t['baseline']:.3g} s "
            f"({flops / t['baseline'] / peak:.1%} of peak, {t['baseline'] / t['ours']:.1f}x "
            f"slower); float32 {t['float32']:.3g} s ({flops / t['float32'] / peak:.1%}), "
            f"max rel. error {err32:.1e}; vs sklearn {err:.1e}"
        ),
    }


def isotropic_row(n, K, repeat, peak):
    d = 784
    rng = np.random.default_rng(0)
    means = rng.uniform(0, 1, size=(K, d))
    density = GaussianMixtureDensity.isotropic(means, 0.05)
    X = means[rng.integers(0, K, n)] + rng.normal(scale=0.2, size=(n, d))
    gm = as_sklearn(density)
    t = median_times(
        {"ours": lambda: density.log_prob(X), "sklearn": lambda: gm.score_samples(X)}, repeat
    )
    flops = n * K * (2 * d + 5)
    return {
        "stage": "density",
        "d": d,
        "n": n,
        "gendist_s": t["ours"],
        "peer": "sklearn score_samples",
        "peer_s": t["sklearn"],
        "limit_fraction": flops / t["ours"] / peak,
        "note": f"isotropic, K={K}",
    }


def stage_flops(d: int, n: int, E: int, n_inner: int = 6) -> float:
    """Model flops of the edge-weight stage: the vertices and every interior node; from
    :data:`_SEGMENT_IDENTITY_MIN_FEATURES` on, the vertices, both ends and the difference of
    every segment, and per node and component the identity's three multiply-adds and the
    logsumexp's 5 flops."""
    if d < _SEGMENT_IDENTITY_MIN_FEATURES:
        return full_flops(n + n_inner * E, d)
    return full_flops(n + 3 * E, d) + n_inner * E * K_FULL * 11


def edge_row(d, n, repeat, peak):
    density = full_mixture(d)
    X = np.random.default_rng(1).normal(size=(n, d)) * 2.0
    rows, cols, _ = build_edges(X, None, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = (
            GenerativeDistance(density, lam=1e-3, n_neighbors=15, n_quad=8, shortcuts=False)
            .fit(X[:200])
            .metric_
        )
    t_nodes = np.linspace(0.0, 1.0, 8)[1:-1]
    A, B = X[rows], X[cols]
    nodes = (A[:, None, :] + t_nodes[None, :, None] * (B - A)[:, None, :]).reshape(-1, d)
    P = np.vstack([X, nodes])
    del A, B, nodes

    def weights(metric=metric):
        return metric.edge_log_weights(X, rows, cols, evaluate_log_density(density, X))

    nodes_metric = replace(metric, density=CallableDensity(density.log_prob))

    def baseline():
        log_p = evaluate_log_density(density, X)
        return baseline_edge_log_weights(metric, X, rows, cols, log_p)

    new, old = weights(), baseline()
    finite = np.isfinite(old)
    change = np.max(np.abs(new[finite] - old[finite]))
    t = median_times(
        {
            "ours": weights,
            "raw": lambda: density.log_prob(P),
            "nodes": lambda: weights(nodes_metric),
            "baseline": baseline,
        },
        repeat,
    )
    return {
        "stage": "edge weights",
        "d": d,
        "n": n,
        "gendist_s": t["ours"],
        "peer": "raw density",
        "peer_s": t["raw"],
        "limit_fraction": stage_flops(d, n, len(rows)) / t["ours"] / peak,
        "note": (
            f"E={len(rows)}, {len(P)} points; overhead {t['ours'] / t['raw']:.2f} "
            f"(every node evaluated {t['nodes'] / t['raw']:.2f}, "
            f"baseline quadrature {t['baseline'] / t['raw']:.2f}); "
            f"max |log w - baseline| {change:.1e}"
        ),
    }


def density_rows(quick: bool) -> list[dict]:
    """Rows of the density and edge-weight comparison (see the module docstring).

    Parameters
    ----------
    quick : bool
        Small sizes and fewer repeats, a smoke run.

    Returns
    -------
    rows : list of dict
        Keys ``stage``, ``d``, ``n``, ``gendist_s``, ``peer``, ``peer_s`` (seconds),
        ``limit_fraction`` (of the measured one-thread float64 matmul peak) and ``note``.
    """
    repeat = 3 if quick else 5
    n_density = 20_000 if quick else 400_000
    n_edges = 2_000 if quick else 20_000
    with threadpool_limits(1):
        peak = matmul_peak()
        rows = [density_row(d, n_density, repeat, peak) for d in (2, 10, 50)]
        rows.append(isotropic_row(200 if quick else 2000, 600 if quick else 6000, repeat, peak))
        rows += [edge_row(d, n_edges, repeat, peak) for d in (2, 5, 10, 50)]
    for row in rows:
        row["note"] += f"; peak {peak / 1e9:.1f} GFLOP/s"
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    rows = density_rows(parser.parse_args().quick)
    print("| stage | d | n | gendist (s) | peer | peer (s) | of matmul peak | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['d']} | {r['n']:,} | {r['gendist_s']:.4g} | {r['peer']} | "
            f"{r['peer_s']:.4g} | {r['limit_fraction']:.1%} | {r['note']} |"
        )


if __name__ == "__main__":
    main()
