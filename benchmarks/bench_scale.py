"""Benchmark of each pipeline stage as n grows; prints a Markdown report to benchmarks/scale.md.

    python benchmarks/bench_scale.py            # full run (about 15 minutes on 2 cores)
    python benchmarks/bench_scale.py --quick    # small sizes, a smoke run (about 1 minute)

Stages, timed and measured (peak RSS increment) one by one on the same points:

* **graph**: the symmetrised 12-NN graph, :func:`gendist.graph.build_edges` (scikit-learn's
  tree search).
* **weights**: the density at every vertex, the trapezoid quadrature of every edge (n_quad = 8)
  and the symmetric CSR (:meth:`ConformalMetric.edge_log_weights`, :func:`symmetric_csr`).
* **paths**: shortest paths from S sources to every vertex, per backend: ``scipy``
  (Dijkstra, one process) and ``torch`` (batched Bellman-Ford, on this CPU; it is meant for
  GPUs, so it runs only up to n = 10,000). Reported per source.

The density is a 10-component full-covariance Gaussian mixture (:class:`GaussianMixtureDensity`)
and the points are drawn from N(0, 4 I) in 2-D and 10-D, for n = 10^3 ... 10^5, and 10^6 in 2-D
(graph, weights and one source). Each stage's scaling exponent is the least-squares slope of
log(time) against log(n) over n >= 3,000.

Against a straightforward implementation on small n: a per-edge Python loop over the
quadrature (the density called once per edge, the metric in linear space) and networkx's
``single_source_dijkstra_path_length``; the graph by a per-point numpy loop. Both results are
compared with ours.

Targets, each in a fresh process: all-pairs distances at n = 20,000 in 2-D in float32 with
2 processes (wall time, the main process's peak RSS and the sampled peak of the RSS summed
over it and its workers); graph + weights + 1,000 random landmark sources at n = 200,000 in
2-D with 2 processes.

Raw results also go to ``benchmarks/results/bench_scale*.json`` (not tracked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

from gendist.densities import evaluate_log_density
from gendist.graph import build_edges, symmetric_csr
from gendist.metric import ConformalMetric, resolve_lambda
from gendist.paths import shortest_paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _status_gib, machine, mixture, reset_peak_rss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_NEIGHBORS = 12
N_QUAD = 8
N_SOURCES = 64
TORCH_MAX_N = 10_000
REFERENCE_N = (1_000, 3_000)
FIT_FROM_N = 3_000


def points(n, d, seed=0):
    return 2.0 * np.random.default_rng(seed).normal(size=(n, d))


def measure(fn):
    """Wall time (s), peak RSS increment (GiB) and result of one call."""
    rss0 = _status_gib("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    return seconds, max(0.0, _status_gib("VmHWM") - rss0), out


def best(fn, repeat):
    runs = [measure(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1], runs[-1][2]


def make_metric(density, log_p):
    return ConformalMetric(density, resolve_lambda("quantile:0.1", log_p), n_quad=N_QUAD)


def weight_stage(X, rows, cols, density):
    log_p = evaluate_log_density(density, X)
    metric = make_metric(density, log_p)
    log_w = metric.edge_log_weights(X, rows, cols, log_p)
    return symmetric_csr(len(X), rows, cols, np.exp(log_w)), metric, log_p


def stages(n, d, n_sources, backends, log=print):
    repeat = 3 if n <= 3_000 else 1
    X, density = points(n, d), mixture(d)
    row = {"n": n, "d": d}
    row["graph_s"], row["graph_gib"], (rows, cols, _) = best(
        lambda: build_edges(X, None, N_NEIGHBORS), repeat
    )
    row["edges"] = len(rows)
    row["weights_s"], row["weights_gib"], (G, _, _) = best(
        lambda: weight_stage(X, rows, cols, density), repeat
    )
    sources = np.random.default_rng(1).choice(n, min(n, n_sources), replace=False)
    row["sources"] = len(sources)
    reference = None
    for backend in backends:
        seconds, gib, D = best(
            lambda b=backend: shortest_paths(G, sources, backend=b, n_jobs=1), repeat
        )
        row[f"paths_{backend}_s"] = seconds / len(sources)
        row[f"paths_{backend}_gib"] = gib
        if reference is None:
            reference = D
        else:  # every backend gives the same distances
            np.testing.assert_allclose(D, reference, rtol=1e-10)
    log(
        f"  n={n:>9,} d={d:>2}: graph {row['graph_s']:.2f}s weights {row['weights_s']:.2f}s "
        + " ".join(f"{b} {1e3 * row[f'paths_{b}_s']:.1f}ms/src" for b in backends)
    )
    return row


# --------------------------------------------------------------------------- reference
def reference_graph(X, k):
    """Symmetrised kNN pairs by a per-point numpy loop."""
    pairs = set()
    for i in range(len(X)):
        dist = np.sum((X - X[i]) ** 2, axis=1)
        dist[i] = np.inf
        for j in np.argpartition(dist, k)[:k]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    rows, cols = np.array(sorted(pairs)).T
    return rows, cols


def reference_weights(X, rows, cols, density, metric):
    """One density call per edge; the metric in linear space, trapezoid rule by np.trapezoid."""
    lam, t = np.exp(metric.log_lam), np.linspace(0.0, 1.0, N_QUAD)
    weights = np.empty(len(rows))
    for e, (i, j) in enumerate(zip(rows, cols)):
        nodes = X[i] + t[:, None] * (X[j] - X[i])
        h = lam / (np.exp(density.log_prob(nodes)) + lam)  # beta = 1, p0 = 0
        weights[e] = np.linalg.norm(X[j] - X[i]) * np.trapezoid(h, t)
    return weights


def reference_paths(rows, cols, weights, sources, n):
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), weights.tolist()))
    D = np.full((len(sources), n), np.inf)
    for r, s in enumerate(sources):
        for v, length in nx.single_source_dijkstra_path_length(graph, int(s)).items():
            D[r, v] = length
    return D


def against_reference(n, d=2, log=print):
    X, density = points(n, d), mixture(d)
    sources = np.random.default_rng(1).choice(n, N_SOURCES, replace=False)
    row = {"n": n, "d": d, "sources": N_SOURCES}
    row["ours_graph_s"], _, (rows, cols, _) = best(lambda: build_edges(X, None, N_NEIGHBORS), 3)
    row["edges"] = len(rows)
    row["ref_graph_s"], _, (ref_rows, ref_cols) = best(lambda: reference_graph(X, N_NEIGHBORS), 1)
    row["same_graph"] = bool(np.array_equal(rows, ref_rows) and np.array_equal(cols, ref_cols))
    row["ours_weights_s"], _, (G, metric, _) = best(lambda: weight_stage(X, rows, cols, density), 3)
    row["ref_weights_s"], _, ref_w = best(
        lambda: reference_weights(X, rows, cols, density, metric), 1
    )
    ours_w = np.asarray(G[rows, cols]).ravel()
    row["weights_err"] = float(np.max(np.abs(ours_w - ref_w) / ref_w))
    row["ours_paths_s"], _, D = best(lambda: shortest_paths(G, sources, n_jobs=1), 3)
    row["ref_paths_s"], _, ref_D = best(lambda: reference_paths(rows, cols, ours_w, sources, n), 1)
    finite = np.isfinite(ref_D)
    assert np.array_equal(finite, np.isfinite(D)), "different reachable sets"
    row["paths_err"] = float(
        np.max(np.abs(D[finite] - ref_D[finite]) / np.maximum(ref_D[finite], 1e-300))
    )
    log(
        f"  reference n={n}: graph x{row['ref_graph_s'] / row['ours_graph_s']:.0f} "
        f"weights x{row['ref_weights_s'] / row['ours_weights_s']:.0f} "
        f"paths x{row['ref_paths_s'] / row['ours_paths_s']:.0f}"
    )
    return row


# --------------------------------------------------------------------------- targets
_TARGET_CODE = r"""
import json, sys, threading, time
import numpy as np, psutil
sys.path.insert(0, {bench!r})
from bench_core import _status_gib
from bench_scale import mixture, points
from gendist import GenerativeDistance
from gendist.landmarks import choose_landmarks

peak_tree = 0.0
def sample():
    global peak_tree
    me = psutil.Process()
    while True:
        total = 0
        for proc in [me] + me.children(recursive=True):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        peak_tree = max(peak_tree, total / 2**30)
        time.sleep(0.2)

X = points({n}, 2)
est = GenerativeDistance(mixture(2), n_neighbors={k}, dtype="float32", n_jobs=2)
before = _status_gib("VmHWM")
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
est.fit(X)
fit_s = time.perf_counter() - start
if {landmarks}:
    landmarks, D = choose_landmarks(est.graph_, {landmarks}, method="random", random_state=0,
                                    n_jobs=2)
else:
    D = est.distances()
seconds = time.perf_counter() - start
peak = _status_gib("VmHWM")
assert all(np.isfinite(D[s : s + 1000]).all() for s in range(0, len(D), 1000)), "disconnected"
print(json.dumps({{"seconds": seconds, "fit_s": fit_s, "before_gib": before,
                  "peak_gib": peak, "peak_tree_gib": peak_tree,
                  "edges": int(est.graph_.nnz // 2), "shape": list(D.shape),
                  "dtype": str(D.dtype)}}))
"""


def target(n, landmarks=0, log=print):
    code = _TARGET_CODE.format(
        bench=str(ROOT / "benchmarks"), n=n, k=N_NEIGHBORS, landmarks=landmarks
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"target subprocess failed:\n{proc.stderr}")
    row = {"n": n, "landmarks": landmarks, **json.loads(proc.stdout.strip().splitlines()[-1])}
    log(f"  target n={n:,} landmarks={landmarks}: {row['seconds']:.1f}s, {row['peak_gib']:.2f} GiB")
    return row


# --------------------------------------------------------------------------- report
def exponent(rows, key):
    pts = [(r["n"], r[key]) for r in rows if key in r and r["n"] >= FIT_FROM_N]
    if len(pts) < 2:
        return float("nan")
    n, t = np.array(pts, dtype=float).T
    return float(np.polyfit(np.log(n), np.log(t), 1)[0])


def _f(value, fmt):
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def markdown(results, quick):
    cmd = "python benchmarks/bench_scale.py" + (" --quick" if quick else "")
    out = [
        "# Scaling of the pipeline's stages",
        "",
        f"Regenerate with `{cmd}`. Machine: {results['machine']}. Run on {results['date']}.",
        "",
        "Points from N(0, 4 I); density a 10-component full-covariance Gaussian mixture; "
        f"symmetrised {N_NEIGHBORS}-NN graph; n_quad = {N_QUAD}; lambda = the 0.1-quantile of p. "
        "Stages: **graph** (`build_edges`, scikit-learn's tree search), **weights** (density "
        "at the vertices + quadrature of every edge + symmetric CSR), **paths** (distances from "
        f"{N_SOURCES} random sources to all vertices (one at n = 10^6), one process, reported "
        "*per source*; all pairs cost n times that; torch uses its default CPU threads). "
        "Peak = increase of the process's peak RSS over its RSS before the stage (memory "
        "freed by an earlier stage and reused is not counted). Best of 3 runs for n <= 3,000, "
        "one run above. GPU columns: no GPU was available to this run, so they are "
        "**pending**; the torch code they would run is the one timed here on the CPU and "
        "tested in CI.",
        "",
        "| n | d | edges | graph (s) | peak (MiB) | weights (s) | peak (MiB) | sources "
        "| scipy paths (ms/source) | peak (MiB) | torch-CPU paths (ms/source) | torch / scipy "
        "| torch-CUDA | cuGraph |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["stages"]:
        scipy_ms = 1e3 * r["paths_scipy_s"]
        torch_ms = 1e3 * r.get("paths_torch_s", np.nan)
        out.append(
            f"| {r['n']:,} | {r['d']} | {r['edges']:,} | {r['graph_s']:.2f} "
            f"| {1024 * r['graph_gib']:.0f} | {r['weights_s']:.2f} | {1024 * r['weights_gib']:.0f} "
            f"| {r['sources']} | {scipy_ms:.2f} | {1024 * r['paths_scipy_gib']:.0f} "
            f"| {_f(torch_ms, '.1f')} | {_f(torch_ms / scipy_ms, '.0f')} "
            "| pending | pending |"
        )
    out += [
        "",
        f"Scaling exponents (slope of log time against log n over every n >= {FIT_FROM_N:,} "
        "in the table; paths per source, so all pairs grow with one more power of n):",
        "",
        "| d | graph | weights | scipy paths per source | torch-CPU paths per source |",
        "|---|---|---|---|---|",
    ]
    for d in sorted({r["d"] for r in results["stages"]}):
        rows = [r for r in results["stages"] if r["d"] == d]
        out.append(
            f"| {d} | {_f(exponent(rows, 'graph_s'), '.2f')} "
            f"| {_f(exponent(rows, 'weights_s'), '.2f')} "
            f"| {_f(exponent(rows, 'paths_scipy_s'), '.2f')} "
            f"| {_f(exponent(rows, 'paths_torch_s'), '.2f')} |"
        )
    out += [
        "",
        "## Against a straightforward implementation (2-D)",
        "",
        "Reference: the kNN graph by a per-point numpy loop; the weights by a per-edge Python "
        "loop (one density call per edge, metric in linear space, `np.trapezoid`); the paths by "
        f"networkx `single_source_dijkstra_path_length` from the same {N_SOURCES} sources. "
        "speed-up = reference time / ours; the results are compared (graph: the same pairs; "
        "max relative difference of weights and distances).",
        "",
        "| n | edges | graph speed-up | same graph | weights speed-up | weights max rel. diff. "
        "| paths speed-up | distances max rel. diff. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["reference"]:
        out.append(
            f"| {r['n']:,} | {r['edges']:,} | {r['ref_graph_s'] / r['ours_graph_s']:.0f} "
            f"| {r['same_graph']} "
            f"| {r['ref_weights_s'] / r['ours_weights_s']:.0f} | {r['weights_err']:.1e} "
            f"| {r['ref_paths_s'] / r['ours_paths_s']:.0f} | {r['paths_err']:.1e} |"
        )
    out += [
        "",
        "Against scikit-learn Isomap on the Euclidean limit (all pairs, n = 2,000-20,000, 2-D "
        "and 10-D): see section (a) of [BENCHMARKS.md](../BENCHMARKS.md).",
        "",
        "## Targets",
        "",
        "Each in a fresh process; `GenerativeDistance(mixture, n_neighbors="
        f"{N_NEIGHBORS}, dtype='float32', n_jobs=2)`. Peak (main) = the process's peak RSS "
        "(VmHWM); peak (all) = the largest sampled (every 0.2 s) RSS summed over the process "
        "and its joblib workers, shared pages counted once per process.",
        "",
        "| task | n | edges | wall (s) | of which fit (s) | peak main (GiB) | peak all (GiB) "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["targets"]:
        if r["landmarks"]:
            task = f"graph + weights + {r['landmarks']:,} landmark sources"
            goal = f"< 600 s: {'yes' if r['seconds'] < 600 else '**no**'}"
        else:
            task = "all pairs, float32"
            ok_t = "yes" if r["seconds"] < 180 else "**no**"
            ok_m = "yes" if r["peak_gib"] * 2**30 < 2e9 else "**no**"
            goal = f"< 180 s: {ok_t}; < 2 GB: {ok_m}"
        out.append(
            f"| {task} | {r['n']:,} | {r['edges']:,} | {r['seconds']:.1f} | {r['fit_s']:.1f} "
            f"| {r['peak_gib']:.2f} | {r['peak_tree_gib']:.2f} | {goal} |"
        )
    return "\n".join(out) + "\n"


def targets(quick):
    print("targets")
    return [
        target(2_000 if quick else 20_000),
        target(20_000 if quick else 200_000, landmarks=100 if quick else 1_000),
    ]


def figure(results, path):
    """Log-log plot of each stage's time against n (paths per source), one panel per d."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted({r["d"] for r in results["stages"]})
    fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4.2), squeeze=False)
    series = [
        ("graph_s", "graph", "o-"),
        ("weights_s", "weights", "s-"),
        ("paths_scipy_s", "paths, scipy (per source)", "^-"),
        ("paths_torch_s", "paths, torch on CPU (per source)", "v--"),
    ]
    for ax, d in zip(axes[0], dims):
        rows = sorted((r for r in results["stages"] if r["d"] == d), key=lambda r: r["n"])
        for key, label, style in series:
            pts = [(r["n"], r[key]) for r in rows if key in r]
            if pts:
                n, t = np.array(pts).T
                ax.loglog(n, t, style, label=f"{label}: n^{exponent(rows, key):.2f}")
        ax.set(title=f"{d}-D", xlabel="n (vertices)", ylabel="seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, help="where to write the Markdown report")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the raw results"
    )
    parser.add_argument(
        "--targets-only", action="store_true", help="rerun the targets, keep the stage results"
    )
    args = parser.parse_args()
    quick = args.quick
    raw = ROOT / "benchmarks" / "results" / f"bench_scale{'_quick' if quick else ''}.json"
    out = args.out or (ROOT / "benchmarks" / ("results/scale_quick.md" if quick else "scale.md"))
    if args.report_only:
        return report(json.loads(raw.read_text()), quick, out)
    if args.targets_only:  # rerun the targets, keep the stage results
        results = json.loads(raw.read_text())
        results["targets"] = targets(quick)
        raw.write_text(json.dumps(results, indent=1))
        return report(results, quick, out)
    sizes = (1_000, 3_000, 10_000) if quick else (1_000, 3_000, 10_000, 30_000, 100_000)
    big = 30_000 if quick else 1_000_000
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "stages": []}
    print("stages")
    for d in (2, 10):
        for n in sizes:
            backends = ("scipy", "torch") if n <= TORCH_MAX_N else ("scipy",)
            results["stages"].append(stages(n, d, N_SOURCES, backends))
    results["stages"].append(stages(big, 2, 1, ("scipy",)))
    print("reference")
    results["reference"] = [against_reference(n) for n in REFERENCE_N[: 1 if quick else 2]]
    results["targets"] = targets(quick)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    report(results, quick, out)


def report(results, quick, out):
    """Write the Markdown report and, with matplotlib, its figure next to it."""
    text = markdown(results, quick)
    try:
        figure(results, out.with_suffix(".png"))
        text = text.replace(
            "\nScaling exponents",
            f"\n![stage times against n]({out.with_suffix('.png').name})\n\nScaling exponents",
            1,
        )
    except ImportError:
        pass
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
