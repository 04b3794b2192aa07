"""What the shortcuts cost with a real model; writes benchmarks/shortcut_cost.md.

    python benchmarks/bench_shortcut_cost.py           # about 10 minutes on 2 cores
    python benchmarks/bench_shortcut_cost.py --quick   # a smoke run

The shortcuts price n segments per source row, so their cost grows with the model's: a
closed-form density costs little beside Dijkstra, a mixture of full-covariance Gaussians
more. Here: points from 8 Gaussian clusters in d dimensions, the density a 10-component
full-covariance ``GaussianMixture`` fitted to them (``GaussianMixtureDensity.from_sklearn``),
``lam`` the 10 % quantile of the data's densities, the default 10-NN graph. For graph only
(``shortcuts=False``) and shortcuts (``shortcuts=True``): fit time, the all-pairs time
estimated from 100 rows of ``distances`` (n / 100 times their time, as in
bench_accuracy.py), their ratio, and what ``shortcuts="auto"`` measured on the same fit
(``graph_stretch_``; ``shortcut_cost_``, a shortcut row over a graph-only row on its sample;
``shortcuts_off_data_``, the share of winning segments that leave the data: above 0.05 auto
stays off).
The same ratio under the constant density (Euclidean limit) is the cheap-model reference.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture

from gendist import CallableDensity, GaussianMixtureDensity, GenerativeDistance

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]
from bench_core import machine, report_arguments, write_report  # noqa: E402

N_ROWS = 100


def all_pairs_time(X, shortcuts, keywords):
    """Fit seconds and estimated all-pairs seconds; the fitted estimator."""
    est = GenerativeDistance(shortcuts=shortcuts, refine=False, verbose=False, **keywords)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # auto's cost warning is what this measures
        est.fit(X)
    fit = time.perf_counter() - t
    rows = np.random.default_rng(1).choice(len(X), N_ROWS, replace=False)
    t = time.perf_counter()
    est.distances(rows)
    return fit, fit + (time.perf_counter() - t) * len(X) / N_ROWS, est


def cell(d, n):
    X, _ = make_blobs(n, n_features=d, centers=8, cluster_std=1.0, center_box=(-6, 6),
                      random_state=0)
    gmm = GaussianMixture(10, covariance_type="full", random_state=0).fit(X)
    density = GaussianMixtureDensity.from_sklearn(gmm)
    lam = float(np.quantile(np.exp(gmm.score_samples(X)), 0.1))
    models = {"mixture": dict(density=density, lam=lam),
              "constant": dict(density=CallableDensity(lambda Z: np.zeros(len(Z))), lam=1e12,
                               n_quad=2)}  # fmt: skip
    row = {"d": d, "n": n}
    for name, keywords in models.items():
        _, graph, _ = all_pairs_time(X, False, keywords)
        _, short, _ = all_pairs_time(X, True, keywords)
        row[name] = (graph, short)
    auto = GenerativeDistance(verbose=False, **models["mixture"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto.fit(X)
    row["auto"] = (bool(auto.shortcuts_), float(auto.graph_stretch_), float(auto.shortcut_cost_),
                   float(auto.shortcuts_off_data_),
                   any("graph-only row" in str(w.message) for w in caught))
    print(row, flush=True)
    return row


def markdown(rows, quick):
    lines = [
        "# What the shortcuts cost with a mixture model",
        "",
        f"`python benchmarks/bench_shortcut_cost.py{' --quick' if quick else ''}`; machine: "
        f"{machine()}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| d | n | mixture: graph only (s) | shortcuts (s) | ratio | constant density: ratio "
        "| auto: on? | stretch | shortcut_cost_ | off data | cost warning |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        (g, s), (cg, cs) = r["mixture"], r["constant"]
        on, stretch, cost, off_data, warned = r["auto"]
        lines.append(
            f"| {r['d']} | {r['n']:,} | {g:.1f} | {s:.1f} | {s / g:.1f} | {cs / cg:.1f} | "
            f"{'on' if on else 'off'} | {stretch:.3f} | {cost:.1f} | {off_data:.3f} | "
            f"{'yes' if warned else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = report_arguments(__doc__)
    cells = [(5, 500), (10, 500)] if args.quick else [(5, 2000), (10, 2000), (10, 8000)]
    text = markdown([cell(d, n) for d, n in cells], args.quick)
    write_report(text, "shortcut_cost", args.quick, args.out)


if __name__ == "__main__":
    main()
