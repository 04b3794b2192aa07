"""Benchmark of single-pair queries; prints a Markdown report and writes benchmarks/queries.md.

    python benchmarks/bench_queries.py            # full run (about 3 minutes on 2 cores)
    python benchmarks/bench_queries.py --quick    # small sizes, a smoke run

``GenerativeDistance.distance(a, b)`` and ``geodesic(a, b)`` search from both ends
(bidirectional Dijkstra on scipy's ``limit``-bounded Dijkstra, started from the A* lower
bound). The baseline is what a pair query costs without that: one full single-source
Dijkstra run from ``a`` with predecessors (scipy), then the path read off the predecessors.
Pairs are grouped by how far the target is from the source, as the rank of its distance
among all vertices (0.1 % = among the nearest thousandth of the graph; 100 % = the farthest
vertex), because the search's work grows with the distance. Both answers are checked to be
equal (the same float) before anything is timed.

Raw results also go to ``benchmarks/results/bench_queries.json`` (not tracked).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.paths import reconstruct_path, shortest_path_tree

ROOT = Path(__file__).resolve().parents[1]
RANKS = (0.001, 0.01, 0.1, 0.5, 1.0)


def dataset(n, d, seed=0):
    """A curved 2-D band (noisy circle arc) embedded in d dimensions, with small noise."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 1.5 * np.pi, n)
    X = np.zeros((n, d))
    X[:, 0], X[:, 1] = np.cos(angle), np.sin(angle)
    return X + 0.08 * rng.normal(size=(n, d))


def median_ms(fn, pairs):
    times = []
    for a, b in pairs:
        start = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bench(n, d, n_sources, log=print):
    X = dataset(n, d)
    start = time.perf_counter()
    est = GenerativeDistance(
        GaussianMixture(16, random_state=0), n_neighbors=15, refine=False, random_state=0
    ).fit(X)
    fit_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    groups = {q: [] for q in RANKS}
    for a in rng.choice(n, n_sources, replace=False):
        dist, _ = shortest_path_tree(est.graph_, a)
        order = np.argsort(dist)
        for q in RANKS:
            groups[q].append((int(a), int(order[min(n - 1, int(q * (n - 1)))])))

    def baseline(a, b):
        dist, pred = shortest_path_tree(est.graph_, a)
        return dist[b], reconstruct_path(pred, a, b)

    rows = []
    for q, pairs in groups.items():
        for a, b in pairs:  # the same answers, to the bit
            g = est.geodesic(a, b)
            full, path = baseline(a, b)
            assert est.distance(a, b) == full == g.length
            assert np.array_equal(g.indices, path)
        base = median_ms(baseline, pairs)
        dist_ms = median_ms(est.distance, pairs)
        geo_ms = median_ms(est.geodesic, pairs)
        row = {
            "n": n,
            "d": d,
            "rank": q,
            "pairs": len(pairs),
            "baseline_ms": base,
            "distance_ms": dist_ms,
            "geodesic_ms": geo_ms,
            "speedup": base / dist_ms,
        }
        rows.append(row)
        log(
            f"n={n} d={d} rank={q:.1%}: single-source {base:.2f} ms, distance {dist_ms:.2f} ms,"
            f" geodesic {geo_ms:.2f} ms, speed-up {base / dist_ms:.1f}x"
        )
    return {"n": n, "d": d, "fit_s": fit_s, "edges": est.graph_.nnz // 2, "rows": rows}


def markdown(results, quick):
    lines = [
        "# Benchmark: single-pair queries",
        "",
        f"Regenerate with `python benchmarks/bench_queries.py{' --quick' if quick else ''}`.",
        "",
        " ".join(__doc__.split("\n\n")[2].split()),
        "",
        f"Run on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores.",
        "",
        "Data: a noisy 3/4 circle arc (noise 0.08) in d dimensions; density "
        "`GaussianMixture(16)` fitted on it; kNN graph, k = 15; `lam = 'quantile:0.1'`. "
        "Times are medians over the pairs of each group, in milliseconds.",
        "",
        "| n | d | edges | target's distance rank | pairs | single-source run + path (ms) "
        "| `distance(a, b)` (ms) | `geodesic(a, b)` (ms) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["rows"]:
            lines.append(
                f"| {r['n']:,} | {r['d']} | {res['edges']:,} | {r['rank']:.1%} | {r['pairs']} "
                f"| {r['baseline_ms']:.2f} | {r['distance_ms']:.2f} | {r['geodesic_ms']:.2f} "
                f"| {r['speedup']:.1f}x |"
            )
    lines += [
        "",
        "speed-up = single-source / `distance`. The two searches settle the vertices within "
        "about d(a, b) / 2 of either end, so near pairs gain the most; once the balls hold "
        "a quarter of the graph the query finishes with one full run, so far pairs cost the "
        "baseline plus the rounds before (up to about 1.7x the baseline).",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [(2000, 2)] if args.quick else [(20_000, 2), (200_000, 2), (20_000, 10)]
    n_sources = 5 if args.quick else 30
    results = [bench(n, d, n_sources) for n, d in sizes]
    report = markdown(results, args.quick)
    print(report)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_queries.json").write_text(json.dumps(results, indent=1))
    if not args.quick:
        (ROOT / "benchmarks" / "queries.md").write_text(report)


if __name__ == "__main__":
    main()
