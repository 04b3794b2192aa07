"""Accuracy of the distances against a known truth, by dimension; writes benchmarks/accuracy.md
and a figure beside it (accuracy.png).

    python benchmarks/bench_accuracy.py            # full run (about 20 minutes on 2 cores)
    python benchmarks/bench_accuracy.py --quick    # small sizes, a smoke run (< 1 minute)

Points uniform in the unit cube [0, 1]^d, d in {2, 5, 10, 50}, n in {2 000, 8 000}, the
default graph (the 10-NN graph joined into one component), two metrics whose distances are
known in closed form:

- **Euclidean limit**: a constant density (a numpy callable) with ``lam = 1e12``,
  ``n_quad = 2``: ``h = 1 - 1e-12`` and the distance is ``|x - y|``.
- **Curved (inversion)**: ``log p(x) = log(|x - c|^2 - lam)``, ``beta = 1``, ``p0 = 0``,
  ``lam = 0.125``, ``c = (-0.5, 0.5, ..., 0.5)`` (outside the cube), ``n_quad = 8``: ``h = lam /
  |x - c|^2`` is the conformal factor of the inversion ``phi(x) = c + lam (x - c) / |x - c|^2``,
  so geodesics are circular arcs and the distance is ``|phi(x) - phi(y)|``. The density is a
  torch module (``TorchDensity``), so refinement differentiates it by autograd.

Methods: graph only (``shortcuts=False``), shortcuts (``shortcuts=True``), the default
(``shortcuts="auto"``: which one it chose and the stretch it measured), batched refinement
(``geodesics(a, b, refine=True)`` from the default's paths, on 100 pairs), and, in the
Euclidean limit, scikit-learn Isomap's graph distances (its 10-NN graph and Dijkstra, the
computation behind ``Isomap(n_neighbors=10).dist_matrix_``) as the peer.

Error: ratio = reported distance / truth over the rows of 50 sources to every vertex, pairs
whose truth is at least 0.3 times the median truth: median, 95th percentile and minimum (the
minimum may fall below 1 only by quadrature error, since every distance is the length of an
actual curve). Time: ``fit`` plus the all-pairs shortest paths, estimated as n / 200 times the
time of 200 rows of ``distances`` (each row is an independent single-source run, so this is
the all-pairs time without holding the n x n matrix); refinement in milliseconds per pair.
Memory: increase of the peak RSS over fit and the 200 rows. Exponent: the slope of log time
against log n between the two sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.csgraph import shortest_path
from sklearn.manifold import Isomap
from sklearn.neighbors import kneighbors_graph

from gendist import CallableDensity, GenerativeDistance, TorchDensity

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from bench_core import _status_gib, machine, reset_peak_rss  # noqa: E402

from experiments.reference import Inversion  # noqa: E402

N_SOURCES, N_TIMED, N_REFINED = 50, 200, 100
TRUTHS = ("euclidean", "curved")


def flat(X):
    """A constant log-density."""
    return np.zeros(len(X))


def problem(truth: str, d: int):
    """Estimator keywords and the map whose Euclidean distances are the true ones."""
    if truth == "euclidean":  # numpy, as a plain callable (refinement by finite differences)
        return dict(density=CallableDensity(flat), lam=1e12, n_quad=2), lambda X: X
    model = Inversion(d).double()
    keywords = dict(density=TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0, n_quad=8)
    return keywords, model.phi


def ratios(D, Y, sources):
    """reported / truth on the rows ``sources``, pairs at least 0.3 median truth apart."""
    truth = np.linalg.norm(Y[sources][:, None] - Y[None], axis=2)
    keep = truth >= 0.3 * np.median(truth)
    return D[keep] / truth[keep]


def summary(r):
    return {"median": float(np.median(r)), "p95": float(np.quantile(r, 0.95)),
            "min": float(r.min())}


def timed(fn):
    """Wall time, result and peak-RSS increase (GiB) of ``fn()``."""
    rss0 = _status_gib("VmRSS")
    can_reset = reset_peak_rss()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = _status_gib("VmHWM") - rss0 if can_reset else float("nan")
    return seconds, out, peak


def gendist_method(X, Y, keywords, shortcuts, sources, timed_rows):
    """Fit, accuracy on ``sources``, all-pairs time estimated from ``timed_rows``."""
    n = len(X)
    est = GenerativeDistance(shortcuts=shortcuts, refine=False, verbose=False, **keywords)

    def run():
        est.fit(X)
        t = time.perf_counter()
        est.distances(timed_rows)
        return time.perf_counter() - t

    seconds, rows_time, peak = timed(run)
    fit_time = seconds - rows_time
    out = summary(ratios(est.distances(sources), Y, sources))
    out.update(fit=fit_time, time=fit_time + rows_time * n / len(timed_rows), peak_gib=peak,
               shortcuts=bool(est.shortcuts_), stretch=float(est.graph_stretch_))
    return est, out


def isomap_method(X, Y, sources, timed_rows):
    """Isomap's graph distances: its 10-NN graph (distance mode) and undirected Dijkstra."""
    n = len(X)

    def rows(idx):
        G = kneighbors_graph(X, 10, mode="distance")
        return shortest_path(G, method="D", directed=False, indices=idx)

    seconds, _, peak = timed(lambda: rows(timed_rows))
    out = summary(ratios(rows(sources), Y, sources))
    out.update(time=seconds * n / len(timed_rows), peak_gib=peak)
    return out


def refined_method(est, Y, rng, n_pairs):
    n = len(Y)
    a, b = rng.integers(0, n, 4 * n_pairs), rng.integers(0, n, 4 * n_pairs)
    truth = np.linalg.norm(Y[a] - Y[b], axis=1)
    keep = np.flatnonzero(truth >= 0.3 * np.median(truth))[:n_pairs]
    a, b, truth = a[keep], b[keep], truth[keep]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, geodesics, _ = timed(lambda: est.geodesics(a, b, refine=True))
    graph = np.array([g.length for g in est.geodesics(a, b)])
    lengths = np.array([g.length for g in geodesics])
    out = summary(lengths / truth)
    out.update(ms_per_pair=1e3 * seconds / len(a), longer_than_graph=int((lengths > graph).sum()),
               warnings=sorted({str(w.message)[:60] for w in caught}))
    return out


def cell(truth, d, n, log=print):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(n, d))
    keywords, phi = problem(truth, d)
    Y = phi(X)
    sources = rng.choice(n, N_SOURCES, replace=False)
    timed_rows = rng.choice(n, min(N_TIMED, n), replace=False)
    row = {"truth": truth, "d": d, "n": n}
    _, row["graph"] = gendist_method(X, Y, keywords, False, sources, timed_rows)
    _, row["shortcuts"] = gendist_method(X, Y, keywords, True, sources, timed_rows)
    est, row["default"] = gendist_method(X, Y, keywords, "auto", sources, timed_rows)
    row["refined"] = refined_method(est, Y, rng, N_REFINED)
    if truth == "euclidean":
        row["isomap"] = isomap_method(X, Y, sources, timed_rows)
    log(json.dumps(row))
    return row


def isomap_check(n=1000, d=5):
    """Our replication of Isomap's graph distances equals ``Isomap.dist_matrix_``."""
    X = np.random.default_rng(1).uniform(size=(n, d))
    D = shortest_path(kneighbors_graph(X, 10, mode="distance"), method="D", directed=False)
    reference = Isomap(n_neighbors=10, n_components=2).fit(X).dist_matrix_
    return float(np.max(np.abs(D - reference)))


def exponent(rows, truth, d, method):
    pts = [(r["n"], r[method]["time"]) for r in rows
           if r["truth"] == truth and r["d"] == d and method in r]
    if len(pts) < 2:
        return float("nan")
    n, t = np.array(pts, dtype=float).T
    return float(np.polyfit(np.log(n), np.log(t), 1)[0])


def vertex_limit(d, n=1000, n_sources=50):
    """How close curves through the data's vertices can come under the curved truth.

    All n^2 straight segments C between vertices are priced; from ``n_sources`` rows the
    shortcut distance D1 (one segment, then graph edges), D1 followed by one more segment
    (min over v of D1[s, v] + C[v, t]: segment, graph, segment) and the direct segment alone
    are compared with the closed form. Where they all agree, no curve made of straight
    pieces between vertices beats the chord: the data are too sparse around the curved
    geodesic, and only a continuous curve (refinement) comes closer.
    """
    from gendist.paths import seeded_shortest_paths

    keywords, phi = problem("curved", d)
    X = np.random.default_rng(1).uniform(size=(n, d))
    est = GenerativeDistance(**keywords, shortcuts=True, refine=False, verbose=False).fit(X)
    Y = phi(X)
    truth = np.linalg.norm(Y[:n_sources, None] - Y[None], axis=2)
    unit = np.exp(est.log_distance_unit_)
    C = est._start(est.graph_)(np.arange(n))  # in the graph's unit, as the start labels
    D1 = seeded_shortest_paths(est.graph_, C[:n_sources])
    D2 = np.array([np.min(row[:, None] + C, axis=0) for row in D1])
    D1, D2, C = D1 * unit, D2 * unit, C * unit
    keep = truth >= 0.3 * np.median(truth)
    out = {"d": d, "n": n}
    for name, D in (("star", D1), ("star_segment", D2), ("segment", C[:n_sources])):
        r = D[keep] / truth[keep]
        out[name] = {"median": float(np.median(r)), "p95": float(np.quantile(r, 0.95)),
                     "min": float(r.min())}
    return out


def _err(s):
    return f"{s['median']:.3f} / {s['p95']:.3f} / {s['min']:.4f}"


def markdown(rows, quick, check, machine_line, limits=()):
    lines = [
        "# Accuracy by dimension",
        "",
        f"`python benchmarks/bench_accuracy.py{' --quick' if quick else ''}`; machine: "
        f"{machine_line}; run on {time.strftime('%Y-%m-%d')}.",
        "",
        "What is measured: see the docstring of `benchmarks/bench_accuracy.py`. Ratio = reported "
        "distance / closed-form truth on 50 source rows (pairs at least 0.3 median apart), shown "
        "as median / 95th percentile / minimum. Time (s) = fit + all pairs, the all-pairs part "
        "estimated from 200 rows; refinement in ms per pair (100 pairs, from the default's "
        "paths). 'auto' = what `shortcuts=\"auto\"` chose, with the median stretch it measured "
        "(`graph_stretch_`).",
        "",
        f"Isomap check: our replication of Isomap's graph distances differs from "
        f"`Isomap(n_neighbors=10).dist_matrix_` by at most {check:.1e} (n = 1 000, 5-D).",
        "",
        "| truth | d | n | graph only | time | shortcuts | time | auto (stretch) | time | "
        "refined | ms/pair | Isomap | time | peak GiB (graph / shortcuts) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, s, a, f = r["graph"], r["shortcuts"], r["default"], r["refined"]
        iso = r.get("isomap")
        cells = [
            r["truth"], r["d"], f"{r['n']:,}", _err(g), f"{g['time']:.1f}", _err(s),
            f"{s['time']:.1f}", f"{'on' if a['shortcuts'] else 'off'} ({a['stretch']:.3f})",
            f"{a['time']:.1f}", _err(f), f"{f['ms_per_pair']:.0f}",
            _err(iso) if iso else "—", f"{iso['time']:.1f}" if iso else "—",
            f"{g['peak_gib']:.2f} / {s['peak_gib']:.2f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Time exponent in n (from the two sizes), graph only / shortcuts / Isomap:", ""]
    lines += ["| truth | d | graph only | shortcuts | Isomap | shortcuts / graph time at the "
              "largest n |", "|---|---|---|---|---|---|"]
    for truth in dict.fromkeys(r["truth"] for r in rows):
        for d in dict.fromkeys(r["d"] for r in rows if r["truth"] == truth):
            last = [r for r in rows if r["truth"] == truth and r["d"] == d][-1]
            e = [exponent(rows, truth, d, m) for m in ("graph", "shortcuts", "isomap")]
            ratio = last["shortcuts"]["time"] / last["graph"]["time"]
            lines.append(f"| {truth} | {d} | {e[0]:.2f} | {e[1]:.2f} | "
                         f"{'—' if np.isnan(e[2]) else f'{e[2]:.2f}'} | {ratio:.1f} |")
    if limits:
        lines += ["", "Curves through the vertices under the curved truth "
                  "(`--vertex-limit`, `vertex_limit`): ratio to the closed form of one "
                  "segment then graph edges (shortcuts), of that followed by one more "
                  "segment, and of the direct segment alone; median / 95th pct / minimum.",
                  "", "| d | n | shortcuts | + one segment | segment alone |",
                  "|---|---|---|---|---|"]
        lines += [f"| {v['d']} | {v['n']:,} | {_err(v['star'])} | {_err(v['star_segment'])} | "
                  f"{_err(v['segment'])} |" for v in limits]
    notes = [r for r in rows if r["refined"]["warnings"] or r["refined"]["longer_than_graph"]]
    for r in notes:
        lines.append(f"\n- {r['truth']} d={r['d']} n={r['n']}: refinement "
                     f"{r['refined']['longer_than_graph']} pairs longer than graph; warnings: "
                     f"{r['refined']['warnings']}")
    lines += ["", f"![accuracy by dimension]({'accuracy_quick' if quick else 'accuracy'}.png)"]
    return "\n".join(lines) + "\n"


def figure(rows, path):
    """Median ratio (bars: 95th percentile) against d per method, one panel per truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(r["n"] for r in rows)
    truths = list(dict.fromkeys(r["truth"] for r in rows))
    fig, axes = plt.subplots(1, len(truths), figsize=(5 * len(truths), 3.8), squeeze=False)
    styles = {"graph": ("graph only", "o-"), "isomap": ("Isomap", "x:"),
              "shortcuts": ("shortcuts", "s-"), "refined": ("refined (100 pairs)", "^-")}
    for ax, truth in zip(axes[0], truths):
        cells = [r for r in rows if r["truth"] == truth and r["n"] == n]
        d = [r["d"] for r in cells]
        for key, (label, style) in styles.items():
            if key not in cells[0]:
                continue
            med = np.array([r[key]["median"] for r in cells])
            p95 = np.array([r[key]["p95"] for r in cells])
            ax.errorbar(d, med, yerr=[0 * med, p95 - med], fmt=style, capsize=3, label=label)
        ax.axhline(1.02, color="0.6", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks(d, [str(v) for v in d])
        ax.minorticks_off()
        ax.set_xlabel("dimension d")
        ax.set_ylabel("distance / truth (median, bar to 95th pct)")
        ax.set_title(f"{truth}, n = {n:,}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, help="Markdown file written")
    parser.add_argument("--truth", choices=TRUTHS, action="append",
                        help="run only this truth (repeatable); the table also shows the "
                        "rows of the other truth saved by an earlier run")
    parser.add_argument("--vertex-limit", action="store_true",
                        help="also measure how close curves through the vertices come under "
                        "the curved truth (n = 1000, d = 5, 10, 50; a few minutes); alone, "
                        "with the saved rows of both truths")
    args = parser.parse_args()
    dims, sizes = ((2, 10), (400,)) if args.quick else ((2, 5, 10, 50), (2000, 8000))
    tag = "_quick" if args.quick else ""
    out = args.out or (ROOT / "benchmarks" / ("results/accuracy_quick.md" if args.quick
                                              else "accuracy.md"))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # the density calls are small; threads only add overhead here
    check = isomap_check(300 if args.quick else 1000)
    # --vertex-limit alone measures only that, with the saved rows of both truths
    run = args.truth if args.truth is not None else ([] if args.vertex_limit else TRUTHS)
    rows = []
    for truth in TRUTHS:
        saved = results / f"accuracy_{truth}{tag}.json"
        if truth in run:
            part = [cell(truth, d, n) for d in dims for n in sizes]
            saved.write_text(json.dumps(part, indent=1))
        elif saved.exists():
            part = json.loads(saved.read_text())
        else:
            continue
        rows += part
    limit_file = results / f"accuracy_vertex_limit{tag}.json"
    if args.vertex_limit:
        limits = [vertex_limit(d, 300 if args.quick else 1000) for d in (5, 10, 50)]
        limit_file.write_text(json.dumps(limits, indent=1))
    limits = json.loads(limit_file.read_text()) if limit_file.exists() else []
    text = markdown(rows, args.quick, check, machine(), limits)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    figure(rows, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
