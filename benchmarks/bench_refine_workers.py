"""All-pairs refinement shared among joblib workers (``n_jobs``); writes
benchmarks/refine_workers.md.

    python benchmarks/bench_refine_workers.py           # about 8 minutes on 2 cores
    python benchmarks/bench_refine_workers.py --quick   # a smoke run

Two jobs, each run with ``n_jobs=1`` and with every core (``n_jobs=-1``), alternately, after
one untimed call has started the workers:

- the default model (``GenerativeDistance(random_state=0)``: an 8-component
  ``GaussianMixture`` fitted to a ``make_blobs`` cloud, closed-form gradients) in 10-D:
  ``fit_transform``, every pair refined (``refine=True``);
- the inversion metric of ``bench_accuracy.py`` (a torch density, autograd) in 10-D on
  uniform points: ``distances(rows, refine=True)`` on the first rows.

Reported: wall time of each, their ratio, and the largest relative difference between the
two results (the paths are independent, so only the order of floating-point sums differs).
Then, for the default model, what ``refine="auto"`` chooses (``refine_``,
``refine_seconds_``) at a larger n with and without the workers.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from gendist import GenerativeDistance, TorchDensity

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_core import machine, write_report  # noqa: E402

from experiments.reference import Inversion  # noqa: E402


def default_model(n: int, n_jobs: int, refine=True):
    X = make_blobs(n, n_features=10, centers=1, random_state=0)[0]
    est = GenerativeDistance(random_state=0, verbose=False, refine=refine, n_jobs=n_jobs)
    start = time.perf_counter()
    D = est.fit_transform(X)
    return time.perf_counter() - start, D, est


def inversion(n: int, rows: int, n_jobs: int):
    X = np.random.default_rng(0).random((n, 10))
    model = Inversion(10).double()
    est = GenerativeDistance(TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0, n_quad=8,
                             refine=False, verbose=False, n_jobs=n_jobs).fit(X)
    start = time.perf_counter()
    D = est.distances(np.arange(rows), refine=True)
    return time.perf_counter() - start, D, est


def difference(D1, D2):
    keep = D1 > 0
    return float(np.max(np.abs(D2[keep] / D1[keep] - 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    jobs = {
        "default model, 10-D, fit_transform(refine=True)": (
            lambda nj: default_model(120 if args.quick else 300, nj), 120 if args.quick else 300),
        "inversion metric, 10-D, distances(rows, refine=True)": (
            lambda nj: inversion(500 if args.quick else 2000, 4 if args.quick else 20, nj),
            500 if args.quick else 2000),
    }
    warnings.simplefilter("ignore")
    inversion(300, 8, -1)  # start the workers (and their imports) untimed
    lines = [
        "# All-pairs refinement in workers",
        "",
        f"`python benchmarks/bench_refine_workers.py`; machine: {machine()}; "
        f"run on {time.strftime('%Y-%m-%d')}.",
        "",
        (__doc__.split("\n\n", 2)[2]).strip(),
        "",
        "| job | n | pairs | n_jobs=1 (s) | n_jobs=-1 (s) | ratio | largest relative difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (run, n) in jobs.items():
        times, result = {1: [], -1: []}, {}
        for _ in range(args.repeats):
            for nj in (1, -1):
                seconds, result[nj], _ = run(nj)
                times[nj].append(seconds)
        diff = difference(result[1], result[-1])
        pairs = int(np.sum(np.isfinite(result[1]) & (result[1] > 0)))
        pairs //= 2 if result[1].shape[0] == result[1].shape[1] else 1  # square: both ways
        t1, t2 = np.median(times[1]), np.median(times[-1])
        lines.append(f"| {name} | {n:,} | {pairs:,} | {t1:.1f} | {t2:.1f} | {t2 / t1:.2f} | "
                     f"{diff:.1e} |")
        print(lines[-1], flush=True)
    n = 200 if args.quick else 560
    lines += [
        "",
        f"`refine=\"auto\"` on the default model in 10-D at n = {n}:",
        "",
        "| n_jobs | refine_ | refine_seconds_ (s) | fit_transform (s) |",
        "|---|---|---|---|",
    ]
    for nj in (1, -1):
        seconds, _, est = default_model(n, nj, refine="auto")
        lines.append(f"| {nj} | {bool(est.refine_)} | {est.refine_seconds_:.0f} | "
                     f"{seconds:.1f} |")
        print(lines[-1], flush=True)
    write_report("\n".join(lines) + "\n", "refine_workers", args.quick)


if __name__ == "__main__":
    main()
