"""Accurate all pairs under a curved metric: graph stage, closed shortcut matrix and refined
pairs against the closed form; writes benchmarks/refined_pairs.md.

    python benchmarks/bench_refined_pairs.py           # about 15 minutes on 2 cores
    python benchmarks/bench_refined_pairs.py --quick   # a smoke run (< 1 minute)

The curved truth of bench_accuracy.py: the inversion metric (``log p = log(|x - c|^2 -
lam)``, ``beta = 1``, ``p0 = 0``, ``n_quad = 8``; geodesics are circular arcs and the
distance is ``|phi(x) - phi(y)|``), points uniform in [0, 1]^d, the default graph. Methods:

- **graph only**: rows of ``distances`` with ``shortcuts=False``;
- **shortcut rows**: rows of ``distances`` with ``shortcuts=True`` (one segment from the
  row's source, then the graph);
- **closed matrix**: ``fit_transform`` with ``shortcuts=True``, the shortcut matrix closed
  under the triangle inequality (``gendist.paths.triangle_closure``), measured whole (n =
  2 000 only: the closure is O(n^3));
- **refined**: ``distances(rows, refine=True)`` with shortcuts, every pair of the rows refined
  with ``gendist.refine.ALL_PAIRS_REFINE`` (the full matrix, ``distances(refine=True)``,
  refines each pair once, from the shorter of its two rows, and then closes it).

The second table is the default estimator (``refine="auto"``): ``fit_transform`` of
``GenerativeDistance`` with nothing but the density and its metric set, against the same
with ``refine=False`` (the closed shortcut matrix) and with ``shortcuts=False,
refine=False`` (graph only), every pair measured; time = the whole ``fit_transform``.

Error: reported / truth over the pairs of the source rows (50; 20 at n = 8 000) whose truth
is at least 0.3 times the median: median / 95th percentile / minimum (below 1 only by
quadrature error). Time: graph only and shortcut rows are fit + all pairs estimated from
the source rows (n / rows times their time); the closed matrix is measured; refined is
milliseconds per refined pair, and its all-pairs estimate is the shortcut rows' all-pairs
time plus n (n - 1) / 2 refined pairs. Peak: increase of the peak RSS over the refinement.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gendist import GenerativeDistance

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_accuracy import problem, ratios, summary, timed  # noqa: E402
from bench_core import machine, report_arguments, write_report  # noqa: E402

CLOSED_UP_TO = 2000
K_NEAR = 10


def rows_method(X, Y, keywords, shortcuts, sources):
    """Fit, the rows ``sources``: accuracy and the estimated all-pairs time."""
    est = GenerativeDistance(shortcuts=shortcuts, refine=False, verbose=False, **keywords)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shortcuts' cost warning
        fit, _, _ = timed(lambda: est.fit(X))
    seconds, D, _ = timed(lambda: est.distances(sources))
    out = summary(ratios(D, Y, sources))
    out["time"] = fit + seconds * len(X) / len(sources)
    return est, D, out


def cell(d, n, n_sources):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(n, d))
    keywords, phi = problem("curved", d)
    Y = phi(X)
    sources = rng.choice(n, n_sources, replace=False)
    row = {"d": d, "n": n}
    _, _, row["graph"] = rows_method(X, Y, keywords, False, sources)
    est, rows, row["shortcuts"] = rows_method(X, Y, keywords, True, sources)
    if n <= CLOSED_UP_TO:
        closed = GenerativeDistance(shortcuts=True, refine=False, verbose=False, **keywords)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, D, _ = timed(lambda: closed.fit_transform(X))
        row["closed"] = {**summary(ratios(D[sources], Y, sources)), "time": seconds}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, R, peak = timed(lambda: est.distances(sources, refine=True))
    pairs = int((np.isfinite(rows) & (rows > 0)).sum())
    per_pair = seconds / pairs
    row["refined"] = {
        **summary(ratios(R, Y, sources)),
        "ms_per_pair": 1e3 * per_pair,
        "time": row["shortcuts"]["time"] + per_pair * n * (n - 1) / 2,
        "peak_gib": peak,
        "longer": int((R > rows * (1 + 1e-12)).sum()),
        "warnings": sorted({str(w.message)[:80] for w in caught}),
    }
    print(row, flush=True)
    return row


def neighbour_scores(D, Y, k: int = K_NEAR) -> dict:
    """reported / truth over each point's ``k`` true nearest (median / 95th percentile), and
    the mean share of a point's ``k`` nearest by ``D`` among its ``k`` true nearest."""
    n = len(Y)
    truth = np.sqrt(np.maximum(
        (Y**2).sum(1)[:, None] + (Y**2).sum(1)[None] - 2 * Y @ Y.T, 0))
    diag = np.arange(n)
    truth[diag, diag] = np.inf
    near = np.argpartition(truth, k, axis=1)[:, :k]
    r = D[diag[:, None], near] / truth[diag[:, None], near]
    D = np.array(D)
    D[diag, diag] = np.inf
    found = np.argpartition(D, k, axis=1)[:, :k]
    recall = np.mean([np.intersect1d(a, b).size / k for a, b in zip(near, found)])
    return {"near_median": float(np.median(r)), "near_p95": float(np.quantile(r, 0.95)),
            "recall": float(recall)}


def default_cell(d, n):
    """fit_transform of the default estimator (refine="auto") beside refine=False and the
    graph alone, every pair against the truth."""
    X = np.random.default_rng(1).uniform(size=(n, d))
    keywords, phi = problem("curved", d)
    Y = phi(X)
    row = {"d": d, "n": n}
    for name, extra in [("graph", {"shortcuts": False, "refine": False}),
                        ("closed", {"refine": False}), ("default", {})]:
        est = GenerativeDistance(verbose=False, **keywords, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, D, _ = timed(lambda est=est: est.fit_transform(X))
        row[name] = {**summary(ratios(D, Y, np.arange(n))), **neighbour_scores(D, Y),
                     "time": seconds, "refine": bool(est.refine_),
                     "nearest": est.refine_nearest_, "gain": est.refine_gain_,
                     "estimate": est.refine_seconds_}
        del D
    print(row, flush=True)
    return row


def default_markdown(rows):
    lines = [
        "",
        "## The default estimator",
        "",
        "Refined: what ``refine=\"auto\"`` chose: every pair, or each row's k nearest "
        f"(``refine_nearest_``). Nearest pairs: reported / truth over each point's {K_NEAR} "
        f"true nearest (median / 95th percentile), and the {K_NEAR}-NN recall (the mean share "
        f"of a point's {K_NEAR} nearest by the distance among its {K_NEAR} true nearest); "
        "refine=False / default. Estimate: ``refine_seconds_``, all pairs.",
        "",
        "| d | n | graph only | s | refine=False (closed shortcuts) | s | default | s | "
        "refined | refine_gain_ | estimate (s) | nearest pairs | recall | "
        "default / graph only time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, c, f = r["graph"], r["closed"], r["default"]
        refined = ("no" if not f["refine"] else "all pairs" if f["nearest"] is None
                   else f"{f['nearest']} nearest")
        lines.append(
            f"| {r['d']} | {r['n']:,} | {_err(g)} | {g['time']:.1f} | {_err(c)} | "
            f"{c['time']:.1f} | {_err(f)} | {f['time']:.1f} | {refined} | "
            f"{f['gain']:.3f} | {f['estimate']:.0f} | "
            f"{c['near_median']:.3f} / {c['near_p95']:.3f} → "
            f"{f['near_median']:.3f} / {f['near_p95']:.3f} | "
            f"{c['recall']:.3f} → {f['recall']:.3f} | {f['time'] / g['time']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _err(s):
    return f"{s['median']:.3f} / {s['p95']:.3f} / {s['min']:.4f}"


def markdown(rows, quick):
    lines = [
        "# Accurate all pairs under a curved metric",
        "",
        f"`python benchmarks/bench_refined_pairs.py{' --quick' if quick else ''}`; machine: "
        f"{machine()}; run on {time.strftime('%Y-%m-%d')}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| d | n | graph only | s | shortcut rows | s | closed matrix | s | refined | ms/pair "
        "| all pairs refined (est. min) | / graph only | peak GiB | longer than rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, s, f = r["graph"], r["shortcuts"], r["refined"]
        c = r.get("closed")
        closed = f"{_err(c)} | {c['time']:.1f}" if c else "— | —"
        lines.append(
            f"| {r['d']} | {r['n']:,} | {_err(g)} | {g['time']:.1f} | {_err(s)} | "
            f"{s['time']:.1f} | {closed} | {_err(f)} | {f['ms_per_pair']:.2f} | "
            f"{f['time'] / 60:.1f} | {f['time'] / g['time']:.0f} | {f['peak_gib']:.2f} | "
            f"{f['longer']} |"
        )
    notes = sorted({w for r in rows for w in r["refined"]["warnings"]})
    if notes:
        lines += ["", "Warnings during refinement: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def main():
    args = report_arguments(__doc__)
    cells = (
        [(5, 300, 10), (10, 300, 10)]
        if args.quick
        else [(2, 2000, 50), (5, 2000, 50), (10, 2000, 50), (50, 2000, 50), (5, 8000, 20),
              (10, 8000, 20)]
    )
    defaults = ([(5, 200), (10, 200)] if args.quick else
                [(3, 447), (5, 447), (10, 447), (5, 2000), (10, 2000), (10, 4000)])
    text = markdown([cell(d, n, k) for d, n, k in cells], args.quick)
    text += default_markdown([default_cell(d, n) for d, n in defaults])
    write_report(text, "refined_pairs", args.quick, args.out)


if __name__ == "__main__":
    main()
