"""The default model refined by default: scikit-learn's GaussianMixture, all pairs; writes
benchmarks/default_model.md.

    python benchmarks/bench_default_model.py           # about 12 minutes on 2 cores
    python benchmarks/bench_default_model.py --quick   # a smoke run (< 1 minute)

``GenerativeDistance(random_state=0)`` with nothing else set (density: an 8-component
full-covariance ``GaussianMixture`` fitted to the points) on a Gaussian cloud
(``make_blobs``, one centre) in d = 3, 5, 10. The mixture's geodesics bend between its
components; no closed form exists, so the reference is, for 300 random pairs, the
shorter of ``geodesics(a, b, refine=...)`` with 32 points and up to 20 rounds of 30
iterations and the default's own value (each is the length of an actual curve, so the
shorter is the better upper bound on the distance). Ratio = reported / reference on those
pairs: median / 95th percentile / maximum. Time: the whole ``fit_transform``;
``refine_seconds_`` is fit's estimate of refining every pair, ``refine_`` what
``refine="auto"`` chose (at most two minutes estimated): every pair, or where all pairs are
over that budget each row's k nearest (``refine_nearest_``), which the closure under the
triangle inequality then chains; ``refine_gain_`` the sampled pairs' unrefined over refined
length.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from gendist import GenerativeDistance

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_core import machine, report_arguments, write_report  # noqa: E402

REFERENCE = {"n_points": 32, "n_rounds": 20, "max_iter": 30}


def cell(d: int, n: int, n_pairs: int) -> dict:
    X = make_blobs(n, n_features=d, centers=1, random_state=0)[0]
    rng = np.random.default_rng(1)
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n
    row = {"d": d, "n": n}
    for name, extra in [("graph", {"refine": False}), ("default", {})]:
        est = GenerativeDistance(random_state=0, verbose=False, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            D = est.fit_transform(X)
            row[name] = {"D": D, "time": time.perf_counter() - start}
        if name == "default":
            row.update(refine=bool(est.refine_), gain=est.refine_gain_,
                       estimate=est.refine_seconds_, stretch=est.graph_stretch_,
                       nearest=est.refine_nearest_)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                paths = est.geodesics(a, b, refine=REFERENCE)
            reference = np.minimum([g.length for g in paths], D[a, b])
    for name in ("graph", "default"):
        ratio = row[name].pop("D")[a, b] / reference
        row[name].update(median=np.median(ratio), p95=np.quantile(ratio, 0.95), max=ratio.max())
    print({k: v for k, v in row.items()}, flush=True)
    return row


def _err(s):
    return f"{s['median']:.3f} / {s['p95']:.3f} / {s['max']:.3f}"


def markdown(rows, quick: bool) -> str:
    lines = [
        "# The default model, refined by default",
        "",
        f"`python benchmarks/bench_default_model.py{' --quick' if quick else ''}`; machine: "
        f"{machine()}; run on {time.strftime('%Y-%m-%d')}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| d | n | graph_stretch_ | refine=False / reference | s | default / reference | s "
        "| refined | refine_gain_ | refine_seconds_ (estimate) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, f = r["graph"], r["default"]
        refined = ("no" if not r["refine"] else "all pairs" if r["nearest"] is None
                   else f"{r['nearest']} nearest")
        lines.append(
            f"| {r['d']} | {r['n']:,} | {r['stretch']:.3f} | {_err(g)} | {g['time']:.1f} | "
            f"{_err(f)} | {f['time']:.1f} | {refined} | {r['gain']:.3f} | "
            f"{r['estimate']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = report_arguments(__doc__)
    cells = ([(3, 100), (5, 100)] if args.quick
             else [(3, 200), (5, 200), (10, 200), (10, 400), (10, 2000)])
    rows = [cell(d, n, 100 if args.quick else 300) for d, n in cells]
    write_report(markdown(rows, args.quick), "default_model", args.quick, args.out)


if __name__ == "__main__":
    main()
