"""A Gaussian KernelDensity as the exact mixture of its training points; writes
benchmarks/kernel_density.md.

    python benchmarks/bench_kernel_density.py           # about 6 minutes on 2 cores
    python benchmarks/bench_kernel_density.py --quick   # a smoke run (about a minute)

Evaluation: ``KernelDensity(bandwidth="scott")`` fitted on standard normal points (20 000 in
2-D, 2 000 in 10-D and 50-D), 5 000 standard normal queries; scikit-learn's
``score_samples`` (its tree traversal, default zero tolerances) against gendist's adapter
(``as_density``: the exact mixture, :meth:`gendist.GaussianMixtureDensity.from_sklearn`).
Error = largest absolute difference in log p from the kernel sum computed directly (scipy's
``logsumexp`` over scipy's pairwise squared distances) on 300 of the queries.

Refinement: a Gaussian ``KernelDensity`` of 300 points (``make_blobs``, 3 centres) in 5-D
and 10-D under ``GenerativeDistance(kde, refine=False)``; 12 random pairs refined by
``geodesics(a, b, refine=...)`` with finite differences of ``log p`` (what any density
without a score gets) and in closed form (the mixture's score); their lengths are checked
equal. Then ``GenerativeDistance(kde)`` with everything else at its default: the whole
``fit_transform``, what ``refine="auto"`` chose (``refine_``, estimate
``refine_seconds_``), and its distances over a reference on 100 random pairs (the
shorter of a heavy refinement, 32 points and up to 20 rounds of 30 iterations, and the
default's own value; each is the length of an actual curve): median / 95th percentile /
maximum.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.datasets import make_blobs
from sklearn.neighbors import KernelDensity

from gendist import GenerativeDistance
from gendist.densities import as_density

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_core import machine, report_arguments, write_report  # noqa: E402

REFERENCE = {"n_points": 32, "n_rounds": 20, "max_iter": 30}


def kernel_sum(kde: KernelDensity, X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The Gaussian kernel density at ``Q``, summed directly (equal weights)."""
    h, d = kde.bandwidth_, X.shape[1]
    squares = cdist(Q, X, "sqeuclidean") / (2 * h * h)
    return logsumexp(-squares, axis=1) - np.log(len(X)) - 0.5 * d * np.log(2 * np.pi * h * h)


def evaluation_row(d: int, n_train: int, n_query: int) -> dict:
    rng = np.random.default_rng(0)
    X, Q = rng.normal(size=(n_train, d)), rng.normal(size=(n_query, d))
    kde = KernelDensity(bandwidth="scott").fit(X)
    density = as_density(kde)
    density.log_prob(Q[:10])  # compiled kernels loaded
    start = time.perf_counter()
    theirs = kde.score_samples(Q)
    middle = time.perf_counter()
    ours = density.log_prob(Q)
    end = time.perf_counter()
    truth = kernel_sum(kde, X, Q[:300])
    row = {"d": d, "n_train": n_train, "n_query": n_query, "sklearn_s": middle - start,
           "ours_s": end - middle, "sklearn_err": np.abs(theirs[:300] - truth).max(),
           "ours_err": np.abs(ours[:300] - truth).max()}
    print(row, flush=True)
    return row


def refinement_row(d: int, n: int, n_pairs: int) -> dict:
    X = make_blobs(n, n_features=d, centers=3, random_state=0)[0]
    rng = np.random.default_rng(1)
    a = rng.integers(0, n, 12)
    b = (a + rng.integers(1, n, 12)) % n
    row = {"d": d, "n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GenerativeDistance(KernelDensity(bandwidth="scott"), refine=False,
                                 random_state=0, verbose=False).fit(X)
        lengths = {}
        for method in ("finite-difference", "closed-form"):
            est.geodesics(a[:1], b[:1], refine={"method": method})  # compiled kernels loaded
            start = time.perf_counter()
            paths = est.geodesics(a, b, refine={"method": method})
            row[method] = time.perf_counter() - start
            lengths[method] = np.array([g.length for g in paths])
        row["length_change"] = np.max(np.abs(lengths["closed-form"] / lengths["finite-difference"]
                                             - 1))
        default = GenerativeDistance(KernelDensity(bandwidth="scott"), random_state=0,
                                     verbose=False)
        start = time.perf_counter()
        D = default.fit_transform(X)
        row["time"] = time.perf_counter() - start
        a = rng.integers(0, n, n_pairs)
        b = (a + rng.integers(1, n, n_pairs)) % n
        paths = default.geodesics(a, b, refine=REFERENCE)
    reference = np.minimum([g.length for g in paths], D[a, b])
    ratio = D[a, b] / reference
    row.update(refine=bool(default.refine_), estimate=default.refine_seconds_,
               gain=default.refine_gain_, median=np.median(ratio),
               p95=np.quantile(ratio, 0.95), max=ratio.max())
    print(row, flush=True)
    return row


def markdown(evaluation, refinement, quick: bool) -> str:
    lines = [
        "# A Gaussian KernelDensity as the exact mixture of its training points",
        "",
        f"`python benchmarks/bench_kernel_density.py{' --quick' if quick else ''}`; machine: "
        f"{machine()}; run on {time.strftime('%Y-%m-%d')}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| d | training points | queries | score_samples (s) | gendist (s) | speed-up "
        "| score_samples error | gendist error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in evaluation:
        lines.append(
            f"| {r['d']} | {r['n_train']:,} | {r['n_query']:,} | {r['sklearn_s']:.3f} | "
            f"{r['ours_s']:.3f} | {r['sklearn_s'] / r['ours_s']:.0f}x | "
            f"{r['sklearn_err']:.1e} | {r['ours_err']:.1e} |"
        )
    lines += [
        "",
        "| d | n | 12 pairs by finite differences (s) | in closed form (s) | largest length "
        "change | default fit_transform (s) | refine_ | refine_seconds_ | refine_gain_ "
        "| default / reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in refinement:
        lines.append(
            f"| {r['d']} | {r['n']:,} | {r['finite-difference']:.1f} | {r['closed-form']:.1f} | "
            f"{r['length_change']:.1e} | {r['time']:.1f} | {r['refine']} | "
            f"{r['estimate']:.0f} | {r['gain']:.3f} | "
            f"{r['median']:.3f} / {r['p95']:.3f} / {r['max']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = report_arguments(__doc__)
    if args.quick:
        evaluation = [evaluation_row(d, 500, 500) for d in (2, 10)]
        refinement = [refinement_row(5, 100, 30)]
    else:
        evaluation = [evaluation_row(2, 20_000, 5_000), evaluation_row(10, 2_000, 5_000),
                      evaluation_row(50, 2_000, 5_000)]
        refinement = [refinement_row(d, 300, 100) for d in (5, 10)]
    write_report(markdown(evaluation, refinement, args.quick), "kernel_density", args.quick,
                 args.out)


if __name__ == "__main__":
    main()
