"""The whole default all-pairs job against graph only, and the triangle closure inside it;
writes benchmarks/closure.md.

    python benchmarks/bench_closure.py           # about 12 minutes on 2 cores
    python benchmarks/bench_closure.py --quick   # a smoke run (< 1 minute)

**The closure.** With shortcuts or refinement, ``fit_transform`` closes the matrix under the
triangle inequality (``gendist.paths.triangle_closure``, O(n^3)). It is timed against
scipy's ``floyd_warshall`` (the library routine; its result is the reference) on a
symmetric matrix of uniform points in [0, 1]^5, their Euclidean distances each stretched
by a random factor in [1, 1.5] (so that most chains beat the direct entry), in float64 and
float32, on all cores; the kernels are compiled before the timings. scipy runs on one
thread and has no float32 path; it is not run at n = 8 000 (about 8 times its n = 4 000
time). Exponent: slope of log time against log n over the sizes run.

**The whole job.** ``GenerativeDistance(...).fit_transform(X)`` with the default settings
(``shortcuts="auto"``, ``refine="auto"``) against the same with ``shortcuts=False,
refine=False`` (graph only), points uniform in [0, 1]^d, on two metrics with closed-form
distances (those of bench_accuracy.py): the Euclidean limit (``lam=1e12, n_quad=2``) and
the curved inversion metric (a torch density). Time split into ``fit`` (graph, weights,
the automatic choices and their samples), the rest (graph only: the shortest-path rows;
with shortcuts: the segment between every two points) and the closure. Error:
reported / truth over every pair whose truth is at least 0.3 times the median truth:
median / 95th percentile / minimum.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import floyd_warshall
from scipy.spatial.distance import cdist

import gendist._engine as engine
import gendist.shortcuts as shortcuts
from gendist import GenerativeDistance
from gendist.paths import triangle_closure

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_accuracy import problem  # noqa: E402
from bench_core import machine, report_arguments, write_report  # noqa: E402


def stretched(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 5))
    D = cdist(X, X) * rng.uniform(1.0, 1.5, size=(n, n))
    D = np.minimum(D, D.T)
    np.fill_diagonal(D, 0.0)
    return D


def closure_row(n: int, scipy_too: bool) -> dict:
    D = stretched(n)
    row = {"n": n}
    if scipy_too:
        start = time.perf_counter()
        expected = floyd_warshall(D, directed=False)
        row["scipy"] = time.perf_counter() - start
    for dtype in (np.float64, np.float32):
        A = D.astype(dtype)
        start = time.perf_counter()
        triangle_closure(A)
        row[np.dtype(dtype).name] = time.perf_counter() - start
        if scipy_too and dtype == np.float64:
            row["error"] = float(np.max(np.abs(A - expected) / np.maximum(expected, 1e-300)))
            row["changed"] = float(np.mean(A < D))
    print(row, flush=True)
    return row


class _ClosureTimer:
    """Wraps the ``triangle_closure`` of the estimator and of the shortcut matrix to time it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, D, **kwargs):
        start = time.perf_counter()
        triangle_closure(D, **kwargs)
        self.seconds += time.perf_counter() - start


def job_row(truth: str, d: int, n: int) -> dict:
    keywords, phi = problem(truth, d)
    X = np.random.default_rng(d).uniform(size=(n, d))
    Y = phi(X)
    truth_matrix = cdist(Y, Y)
    keep = truth_matrix >= 0.3 * np.median(truth_matrix)
    row = {"truth": truth, "d": d, "n": n}
    for name, extra in [("graph", {"shortcuts": False, "refine": False}), ("default", {})]:
        est = GenerativeDistance(**keywords, verbose=False, **extra)
        timer = engine.triangle_closure = shortcuts.triangle_closure = _ClosureTimer()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                start = time.perf_counter()
                est.fit(X)
                fitted = time.perf_counter()
                D = est.fit_transform(X)  # fits again: timed as a whole below
                total = time.perf_counter() - fitted
        finally:
            engine.triangle_closure = shortcuts.triangle_closure = triangle_closure
        ratio = D[keep] / truth_matrix[keep]
        row[name] = {
            "fit": fitted - start,
            "total": total,
            "closure": timer.seconds,
            "median": float(np.median(ratio)),
            "p95": float(np.quantile(ratio, 0.95)),
            "min": float(ratio.min()),
            "shortcuts": bool(est.shortcuts_),
            "refine": bool(est.refine_),
            "warnings": sorted({type(w.message).__name__ for w in caught}),
        }
    print(row, flush=True)
    return row


def _fit_exponent(sizes, times) -> float:
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def markdown(closure, jobs, quick: bool) -> str:
    lines = [
        "# The triangle closure, and the whole default all-pairs job",
        "",
        f"`python benchmarks/bench_closure.py{' --quick' if quick else ''}`; machine: "
        f"{machine()}; run on {time.strftime('%Y-%m-%d')}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "## The closure",
        "",
        "| n | scipy floyd_warshall (s, 1 thread) | ours float64 (s) | ours float32 (s) "
        "| scipy / ours float64 | relaxations / s float64 | max relative difference | "
        "entries shortened |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in closure:
        scipy_s = f"{r['scipy']:.2f}" if "scipy" in r else "—"
        ratio = f"{r['scipy'] / r['float64']:.1f}" if "scipy" in r else "—"
        error = f"{r['error']:.1e}" if "error" in r else "—"
        changed = f"{100 * r['changed']:.0f} %" if "changed" in r else "—"
        lines.append(
            f"| {r['n']:,} | {scipy_s} | {r['float64']:.2f} | {r['float32']:.2f} | {ratio} | "
            f"{r['n'] ** 3 / r['float64']:.1e} | {error} | {changed} |"
        )
    sizes = [r["n"] for r in closure]
    timed_by_scipy = [(r["n"], r["scipy"]) for r in closure if "scipy" in r]
    exponents = (
        f"Exponent in n: ours float64 {_fit_exponent(sizes, [r['float64'] for r in closure]):.2f}"
        f", float32 {_fit_exponent(sizes, [r['float32'] for r in closure]):.2f}"
    )
    if len(timed_by_scipy) > 1:
        exponents += f", scipy {_fit_exponent(*zip(*timed_by_scipy)):.2f}"
    lines += [
        "",
        exponents + " (theory 3).",
        "",
        "## The whole job: the default against graph only",
        "",
        "| truth | d | n | graph only (median / p95 / min) | s | default (median / p95 / min) "
        "| s [fit / closure] | shortcuts_ | refine_ | default / graph-only time | warnings |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in jobs:
        g, f = r["graph"], r["default"]
        lines.append(
            f"| {r['truth']} | {r['d']} | {r['n']:,} | {g['median']:.3f} / {g['p95']:.3f} / "
            f"{g['min']:.4f} | {g['total']:.1f} | {f['median']:.3f} / {f['p95']:.3f} / "
            f"{f['min']:.4f} | {f['total']:.1f} [{f['fit']:.1f} / {f['closure']:.1f}] | "
            f"{f['shortcuts']} | {f['refine']} | {f['total'] / g['total']:.1f} | "
            f"{', '.join(f['warnings']) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = report_arguments(__doc__)
    for dtype in (np.float64, np.float32):  # compiled (or loaded from numba's cache) here
        triangle_closure(stretched(300).astype(dtype))
    if args.quick:
        closure = [closure_row(n, True) for n in (300, 600)]
        jobs = [job_row("euclidean", 5, 300)]
    else:
        closure = [closure_row(n, n <= 4000) for n in (1000, 2000, 4000, 8000)]
        jobs = [job_row(truth, d, n) for truth, d, n in [
            ("euclidean", 5, 2000), ("euclidean", 10, 2000),
            ("euclidean", 5, 8000), ("euclidean", 10, 8000),
            ("curved", 5, 2000), ("curved", 10, 2000),
        ]]
    write_report(markdown(closure, jobs, args.quick), "closure", args.quick, args.out)


if __name__ == "__main__":
    main()
