"""Benchmark of the core pipeline; prints a Markdown report and writes it to BENCHMARKS.md.

    python benchmarks/bench_core.py            # full run (about 25 minutes on 2 cores)
    python benchmarks/bench_core.py --quick    # small sizes only, a smoke run (< 1 minute)

(a) Euclidean limit vs scikit-learn Isomap. All-pairs graph distances on the same points with
    the same radius. Isomap's graph + shortest-path stage is replicated from
    ``Isomap._fit_transform`` (scikit-learn 1.x): ``NearestNeighbors(radius=r).fit(X)``,
    ``radius_neighbors_graph(nbrs, r, mode="distance")``, ``connected_components``,
    ``_ensure_sparse_index_int32`` and ``shortest_path(method="D", directed=False)``; its
    KernelPCA eigendecomposition is left out. Ours is the whole
    ``GenerativeDistance(constant density, lam=1e12, radius=r).fit_transform(X)``: neighbour
    search, density, quadrature, CSR, shortest paths.
(b) Edge-weight throughput. Quadrature points per second of the weight stage (every vertex
    once + the n_quad - 2 interior nodes of every edge) for a 10-component full-covariance
    Gaussian mixture, against ``density.log_prob`` alone on exactly those points.
(c) Peak memory. Peak RSS (VmHWM, which a fresh process starts at zero) of an all-pairs
    float32 run in a fresh subprocess, with the numpy-allocation peak from tracemalloc.

Raw results also go to ``benchmarks/results/bench_core.json`` (not tracked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import scipy
import sklearn
from scipy.sparse import SparseEfficiencyWarning
from scipy.sparse.csgraph import connected_components, shortest_path
from sklearn.neighbors import NearestNeighbors, radius_neighbors_graph
from sklearn.utils.fixes import _ensure_sparse_index_int32
from sklearn.utils.graph import _fix_connected_components

import gendist
from gendist import GaussianMixtureDensity, GenerativeDistance
from gendist.densities import evaluate_log_density
from gendist.graph import build_edges

ROOT = Path(__file__).resolve().parents[1]
MEAN_DEGREE = 15
RATIO_TARGET = 1.2
OVERHEAD_TARGET = 1.2


# --------------------------------------------------------------------------- helpers
def points(n, d, seed=0):
    """Uniform points in the unit cube [0, 1]^d."""
    return np.random.default_rng(seed).uniform(size=(n, d))


def radius_for(X, mean_degree=MEAN_DEGREE, sample=2000, seed=1):
    """Radius whose epsilon-graph has ``mean_degree`` neighbours per point on average.

    Estimated on a random subsample of the points (their neighbours among all points), so it
    accounts for the boundary of the cube, which matters a lot in 10-D.
    """
    rng = np.random.default_rng(seed)
    sub = X[rng.choice(len(X), min(len(X), sample), replace=False)]
    k = min(len(X) - 1, 4 * mean_degree)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(sub)
    dist = np.sort(dist[:, 1:].ravel())  # all neighbour distances of the subsample (self dropped)
    # mean degree at radius r = (number of these distances <= r) / len(sub)
    return float(dist[int(mean_degree * len(sub)) - 1])


def zero_log_density(A):
    """A constant density (log p = 0); with lam = 1e12 the metric is Euclidean."""
    return np.zeros(len(A))


def _status_gib(field):
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 2**20


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def best_of(fn, repeat):
    """Best wall time of ``repeat`` calls, the last result, and the peak-RSS increment (GiB)."""
    times, out, peak = [], None, float("nan")
    for i in range(repeat):
        out = None
        rss0 = _status_gib("VmRSS")
        can_reset = reset_peak_rss()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if can_reset and i == 0:
            peak = _status_gib("VmHWM") - rss0
    return min(times), out, peak


def compare(D, ref, block=1000):
    """Agreement of ``D`` with ``ref``, in row blocks (no n x n temporaries).

    Returns
    -------
    max relative error over the pairs finite in both (and positive in ``ref``),
    pairs infinite in ``D`` only (across components, which Isomap bridges),
    pairs infinite in ``ref`` only (should be none)
    """
    worst, inf_ours, inf_ref = 0.0, 0, 0
    for s in range(0, len(ref), block):
        a, b = np.asarray(D[s : s + block], dtype=np.float64), ref[s : s + block]
        fa, fb = np.isfinite(a), np.isfinite(b)
        inf_ours += int(np.count_nonzero(fb & ~fa))
        inf_ref += int(np.count_nonzero(fa & ~fb))
        ok = fa & fb & (b > 0)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / b[ok])))
    return worst, inf_ours, inf_ref


# --------------------------------------------------------------------------- (a)
def isomap_graph_and_paths(X, r):
    """Isomap's graph + shortest-path stage, as ``Isomap(radius=r, n_neighbors=None,
    path_method="D")._fit_transform`` runs it, without the KernelPCA.

    Returns
    -------
    dist_matrix, seconds of (neighbours + graph), seconds of (components + paths),
    n_components, the radius graph before Isomap bridged its components (None if connected)
    """
    t0 = time.perf_counter()
    nbrs = NearestNeighbors(n_neighbors=None, radius=r).fit(X)
    nbg = radius_neighbors_graph(nbrs, radius=r, mode="distance")
    t1 = time.perf_counter()
    n_comp, labels = connected_components(nbg)
    unbridged = None
    if n_comp > 1:  # Isomap bridges the components (and warns); ours leaves them at inf
        tc = time.perf_counter()
        unbridged = nbg.copy()  # for the agreement check; not counted in the time
        t1 += time.perf_counter() - tc
        with warnings.catch_warnings():  # it sets CSR entries one by one
            warnings.simplefilter("ignore", SparseEfficiencyWarning)
            nbg = _fix_connected_components(
                X=nbrs._fit_X,
                graph=nbg,
                n_connected_components=n_comp,
                component_labels=labels,
                mode="distance",
                metric=nbrs.effective_metric_,
                **nbrs.effective_metric_params_,
            )
    _ensure_sparse_index_int32(nbg)
    dist = shortest_path(nbg, method="D", directed=False)
    t2 = time.perf_counter()
    return dist, t1 - t0, t2 - t1, n_comp, unbridged


OUR_CONFIGS = ((2, 1), (8, 1), (8, 2))  # (n_quad, n_jobs)
SAMPLE_ROWS = 200


def euclidean_limit(n, d, repeat, log=print):
    X = points(n, d)
    r = radius_for(X)
    row = {"n": n, "d": d, "radius": r, "repeat": repeat}

    times, parts = [], []
    for i in range(repeat):
        rss0 = _status_gib("VmRSS")
        can_reset = reset_peak_rss()
        t = time.perf_counter()
        D_iso, t_graph, t_paths, n_comp, unbridged = isomap_graph_and_paths(X, r)
        times.append(time.perf_counter() - t)
        parts.append((t_graph, t_paths))
        if i == 0:
            row["isomap_peak_gib"] = _status_gib("VmHWM") - rss0 if can_reset else float("nan")
        if i < repeat - 1:
            del D_iso
    best = int(np.argmin(times))
    row.update(
        isomap_s=times[best],
        isomap_graph_s=parts[best][0],
        isomap_paths_s=parts[best][1],
        n_components=n_comp,
    )
    log(f"  isomap n={n} d={d}: {times[best]:.2f} s")

    # Isomap joins every pair of components by its shortest edge; in 10-D these bridges
    # (between isolated corner points, mostly) are shortcuts for some pairs *inside* the
    # large component too. Reference without them: the same Dijkstra on the radius graph
    # before bridging, from SAMPLE_ROWS evenly spaced sources.
    sample, ref = None, None
    if unbridged is not None:
        sample = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_ROWS)).astype(np.int64))
        ref = shortest_path(unbridged, method="D", directed=False, indices=sample)
        both = np.isfinite(ref) & (ref > 0)
        shorter = D_iso[sample][both] < ref[both] * (1 - 1e-9)
        row["bridge_shortcut_fraction"] = float(shorter.mean())
        row["bridge_max_shortening"] = (
            float(np.max(1 - D_iso[sample][both] / ref[both])) if both.any() else 0.0
        )
        row["sample_rows"] = len(sample)
        del unbridged

    for n_quad, n_jobs in OUR_CONFIGS:
        key = f"T{n_quad}_j{n_jobs}"
        est = GenerativeDistance(zero_log_density, lam=1e12, radius=r, n_quad=n_quad, n_jobs=n_jobs)
        with warnings.catch_warnings():  # "the graph has k connected components" (10-D)
            warnings.filterwarnings("ignore", "the graph has", UserWarning)
            t, D, peak = best_of(lambda est=est: est.fit_transform(X), repeat)
            err, inf_ours, inf_iso = compare(D, D_iso)
            err_unbridged = compare(D[sample], ref)[0] if sample is not None else err
            del D
            t_fit, _, _ = best_of(lambda est=est: est.fit(X), 1)
        row[key] = {
            "s": t,
            "fit_s": t_fit,
            "peak_gib": peak,
            "max_rel_err": err,
            "max_rel_err_unbridged": err_unbridged,
            "inf_ours_only": inf_ours,
            "inf_isomap_only": inf_iso,
        }
        row["edges"] = est.graph_.nnz // 2
        row["components_ours"] = int(est.n_components_)
        sizes = np.bincount(est.component_labels_)
        row["largest_component"] = int(sizes.max())
        row["component_pairs"] = int((sizes.astype(np.int64) ** 2).sum())
        log(
            f"  ours {key} n={n} d={d}: {t:.2f} s (fit {t_fit:.2f} s), "
            f"ratio {t / row['isomap_s']:.2f}, max rel err {err:.1e} "
            f"(unbridged {err_unbridged:.1e})"
        )
    del D_iso
    return row


# --------------------------------------------------------------------------- (b)
def mixture(d, K=10, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(K, d, d))
    covs = A @ A.transpose(0, 2, 1) / d + 0.5 * np.eye(d)
    return GaussianMixtureDensity(
        rng.uniform(0.5, 1.5, K), 2.0 * rng.normal(size=(K, d)), covs, "full"
    )


def throughput(n, d, n_quad=8, repeat=5, log=print):
    density = mixture(d)
    X = np.random.default_rng(1).normal(size=(n, d)) * 2.0
    rows, cols, _ = build_edges(X, None, MEAN_DEGREE)  # symmetrised kNN graph
    E = len(rows)
    metric = (
        GenerativeDistance(density, lam=1e-3, n_neighbors=MEAN_DEGREE, n_quad=n_quad)
        .fit(X[:200])
        .metric_
    )
    n_points = n + E * (n_quad - 2)

    def weights():
        log_p = evaluate_log_density(metric.density, X)  # the vertices, once
        return metric.edge_log_weights(X, rows, cols, log_p)

    # the very points the weight stage evaluates: vertices + interior nodes of every edge
    t_nodes = np.linspace(0.0, 1.0, n_quad)[1:-1]
    A, B = X[rows], X[cols]
    nodes = (A[:, None, :] + t_nodes[None, :, None] * (B - A)[:, None, :]).reshape(-1, d)
    P = np.vstack([X, nodes])
    del A, B, nodes
    assert len(P) == n_points
    batch = 65536  # evaluate_log_density's batch

    def batched():
        return [density.log_prob(P[s : s + batch]) for s in range(0, len(P), batch)]

    # interleaved, so that a slow spell of the machine hits all three alike
    t_w, t_one, t_batched = np.inf, np.inf, np.inf
    for _ in range(repeat):
        t_w = min(t_w, best_of(weights, 1)[0])
        t_one = min(t_one, best_of(lambda: density.log_prob(P), 1)[0])
        t_batched = min(t_batched, best_of(batched, 1)[0])
    t_raw = min(t_one, t_batched)
    row = {
        "n": n,
        "d": d,
        "n_quad": n_quad,
        "edges": E,
        "points": n_points,
        "weights_s": t_w,
        "raw_one_call_s": t_one,
        "raw_batched_s": t_batched,
        "weights_pts_per_s": n_points / t_w,
        "raw_pts_per_s": n_points / t_raw,
        "overhead": t_w / t_raw,
    }
    log(
        f"  throughput d={d}: {row['weights_pts_per_s']:.3g} vs {row['raw_pts_per_s']:.3g} "
        f"points/s, overhead {row['overhead']:.2f}"
    )
    return row


# --------------------------------------------------------------------------- (c)
_MEMORY_CODE = """
import json, re, sys, time, tracemalloc
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np
from gendist import GenerativeDistance
from benchmarks.bench_core import points, radius_for, zero_log_density, _status_gib
X = points({n}, {d}); r = radius_for(X)
est = GenerativeDistance(zero_log_density, lam=1e12, radius=r, dtype="float32", n_jobs=1)
before = _status_gib("VmHWM")
tracemalloc.start()
t = time.perf_counter()
D = est.fit_transform(X)
seconds = time.perf_counter() - t
_, traced_peak = tracemalloc.get_traced_memory()
assert D.dtype == np.float32 and D.shape == ({n}, {n})
print(json.dumps({{"before_gib": before, "peak_gib": _status_gib("VmHWM"),
                  "traced_peak_gib": traced_peak / 2**30, "seconds": seconds,
                  "edges": int(est.graph_.nnz // 2)}}))
"""


def peak_memory(n, d=2, log=print):
    code = _MEMORY_CODE.format(root=str(ROOT), n=n, d=d)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{proc.stderr}")
    row = {
        "n": n,
        "d": d,
        **json.loads(proc.stdout.strip().splitlines()[-1]),
        "matrix_gib": n * n * 4 / 2**30,
    }
    log(f"  memory n={n}: peak {row['peak_gib']:.2f} GiB")
    return row


# --------------------------------------------------------------------------- report
def _cmd(*args):
    try:
        return subprocess.run(
            args, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def report_arguments(doc: str):
    """The command line of a report benchmark: ``--quick`` (a smoke run) and ``--out``
    (the Markdown file written), described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, help="Markdown file written")
    return parser.parse_args()


def write_report(text: str, name: str, quick: bool, out=None) -> Path:
    """Write a benchmark's Markdown report and print it: to ``out``, else to
    ``benchmarks/{name}.md`` (``benchmarks/results/{name}_quick.md`` for a quick run, so that
    a smoke run does not overwrite the published numbers)."""
    here = Path(__file__).resolve().parent
    out = out or (here / "results" / f"{name}_quick.md" if quick else here / f"{name}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return out


def machine():
    cores = _cmd("nproc") or str(os.cpu_count())
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _cmd("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "unknown CPU",
    )
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        mem = "unknown RAM"
    commit = _cmd("git", "describe", "--always", "--dirty") or "unknown"
    return (
        f"{cores} cores ({model}), {mem}, {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
        f"gendist {gendist.__version__} (commit {commit})"
    )


def _within_pairs(row):
    return row["component_pairs"]


def _mark(value, target):
    return "yes" if value <= target else "**no**"


def markdown(results, quick):
    cmd = "python benchmarks/bench_core.py" + (" --quick" if quick else "")
    lines = [
        "# Benchmarks of the core pipeline",
        "",
        f"Regenerate with `{cmd}`"
        + (
            " (a smoke run on small sizes; the full run is `python benchmarks/bench_core.py`)."
            if quick
            else " (about 25 minutes on 2 cores; `--quick` for a smoke run)."
        ),
        "",
        "Accuracy of the distances against closed forms in d = 2, 5, 10, 50 (graph only, "
        "shortcuts, the default, batched refinement, Isomap as the peer): "
        "[benchmarks/accuracy.md](benchmarks/accuracy.md) "
        "(`python benchmarks/bench_accuracy.py`). What the shortcuts cost with a mixture "
        "model: [benchmarks/shortcut_cost.md](benchmarks/shortcut_cost.md) "
        "(`python benchmarks/bench_shortcut_cost.py`). Accurate all pairs under a curved "
        "metric (graph stage, the closed shortcut matrix, every pair refined; d = 2, 5, 10, "
        "50, n = 2 000 and 8 000): [benchmarks/refined_pairs.md](benchmarks/refined_pairs.md) "
        "(`python benchmarks/bench_refined_pairs.py`).",
        "",
        "The whole default all-pairs job (`fit_transform` with shortcuts and the triangle "
        "closure) against graph only in the Euclidean limit and under a curved metric, and the "
        "compiled closure against scipy's Floyd-Warshall: "
        "[benchmarks/closure.md](benchmarks/closure.md) (`python benchmarks/bench_closure.py`).",
        "",
        "The default model (scikit-learn's `GaussianMixture`) refined by default, all pairs "
        "against a heavier refinement, with what `refine=\"auto\"` chose and its time "
        "estimate: [benchmarks/default_model.md](benchmarks/default_model.md) "
        "(`python benchmarks/bench_default_model.py`). A Gaussian `KernelDensity` evaluated "
        "as the exact mixture of its training points (against `score_samples` and the kernel "
        "sum) and refined in closed form (against finite differences), with the same "
        "default: [benchmarks/kernel_density.md](benchmarks/kernel_density.md) "
        "(`python benchmarks/bench_kernel_density.py`).",
        "",
        "All-pairs refinement shared among `n_jobs` workers: "
        "[benchmarks/refine_workers.md](benchmarks/refine_workers.md) "
        "(`python benchmarks/bench_refine_workers.py`).",
        "",
        "Single-pair queries (`distance(a, b)`, `geodesic(a, b)`) have their own benchmark: "
        "[benchmarks/queries.md](benchmarks/queries.md) (`python benchmarks/bench_queries.py`).",
        "",
        "Every stage against the machine's limits (matrix product, memory bandwidth) and the "
        "best peer library on the same input (faiss, scikit-learn, scipy, igraph, networkit, "
        "rustworkx), with fitted exponents in n: [benchmarks/peers.md](benchmarks/peers.md) "
        "(`python benchmarks/bench_peers.py`, `--quick` for a smoke run). Mixture density and "
        "edge weights, before and after, against scikit-learn's `score_samples` and the raw "
        "density: [benchmarks/peers_density.md](benchmarks/peers_density.md) "
        "(`python -m benchmarks._peers_density`).",
        "",
        "How each stage (graph, weights, shortest paths per backend) scales from n = 10^3 to "
        "10^6, against a straightforward per-edge Python + networkx implementation, and the "
        "large-n targets: [benchmarks/scale.md](benchmarks/scale.md) "
        "(`python benchmarks/bench_scale.py`).",
        "",
        f"Machine: {results['machine']}.",
        "",
        f"Wall times (`time.perf_counter`), best of 3 runs for n <= 2,000, of 2 for n = 10,000, "
        f"a single run for n = 20,000. Run on {results['date']}.",
        "",
        "## (a) Euclidean limit vs scikit-learn Isomap (all pairs, same points, same radius)",
        "",
        f"Uniform points in the unit cube [0, 1]^d; radius r chosen so that the radius graph "
        f"has {MEAN_DEGREE} neighbours per point on average (estimated on 2,000 points), the same "
        "r for both.",
        "",
        "- **Isomap** = the graph + shortest-path stage of `Isomap(radius=r, n_neighbors=None, "
        "path_method='D')`, replicated line by line from `Isomap._fit_transform`: "
        "`NearestNeighbors(radius=r).fit(X)`, `radius_neighbors_graph(nbrs, r, "
        "mode='distance')`, `connected_components`, `_ensure_sparse_index_int32`, "
        "`scipy.sparse.csgraph.shortest_path(method='D', directed=False)`. Its KernelPCA "
        "eigendecomposition is not timed. (`graph` / `paths` split in brackets.)",
        "- **ours** = `GenerativeDistance(lambda X: zeros, lam=1e12, radius=r, n_quad=T, "
        "n_jobs=j).fit_transform(X)`: the whole pipeline (validation, neighbour search, "
        "density at vertices and T - 2 interior nodes per edge, symmetric CSR, all-pairs "
        "Dijkstra, float64 result). `fit` = its fit alone (graph + weights); the rest is the "
        "shortest paths.",
        f"- ratio = ours / Isomap (target <= {RATIO_TARGET}); the target applies to j = 1 "
        "(Isomap's stage runs on one core). j = 2 spreads Dijkstra source blocks over 2 "
        "joblib (loky) processes.",
        "- components = connected components of the radius graph (size of the largest). In 10-D "
        "a few corner points of the cube have no neighbour within r. Isomap then joins *every "
        "pair* of components by its shortest edge (`_fix_connected_components`, included in its "
        "time; k components give k(k-1)/2 extra edges); ours leaves the distances across "
        "components at inf.",
        "- err vs Isomap = max over the pairs finite in both of |ours - Isomap| / Isomap, worst "
        "of the three configurations, on every pair. With log p = 0 (p = 1) and lam = 1e12 the "
        "length factor is h = 1e12 / (1 + 1e12) = 1 - 1e-12, so 1.0e-12 is the exact expected "
        "value, not round-off.",
        f"- err vs unbridged = the same against Isomap's Dijkstra on its radius graph *before* "
        f"the bridges (every pair when the graph is connected, where it is the column before; "
        f"{SAMPLE_ROWS} evenly spaced source rows otherwise). Where the graph is disconnected "
        "the bridges are long straight edges between far-apart isolated points, and a few "
        "paths inside the large component get shorter through them: that, not an error of "
        "either side, is the large 'err vs Isomap' in 10-D (see below the table).",
        "",
        "| n | d | edges (mean degree) | components (largest) | Isomap (s) [graph / paths] "
        "| ours T=2 j=1 (s) [fit] | ratio | ours T=8 j=1 (s) [fit] | ratio | ours T=8 j=2 (s) "
        "| ratio | err vs Isomap | err vs unbridged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["isomap"]:
        iso = r["isomap_s"]
        a, b, c = (r[f"T{t}_j{j}"] for t, j in OUR_CONFIGS)
        err = max(r[f"T{t}_j{j}"]["max_rel_err"] for t, j in OUR_CONFIGS)
        err_u = max(r[f"T{t}_j{j}"]["max_rel_err_unbridged"] for t, j in OUR_CONFIGS)
        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['edges']:,} ({2 * r['edges'] / r['n']:.1f}) "
            f"| {r['components_ours']} ({r['largest_component']:,}) "
            f"| {iso:.2f} [{r['isomap_graph_s']:.2f} / {r['isomap_paths_s']:.2f}] "
            f"| {a['s']:.2f} [{a['fit_s']:.2f}] | {a['s'] / iso:.2f} "
            f"| {b['s']:.2f} [{b['fit_s']:.2f}] | {b['s'] / iso:.2f} "
            f"| {c['s']:.2f} | {c['s'] / iso:.2f} | {err:.1e} | {err_u:.1e} |"
        )
    worst = max(r[f"T{t}_j1"]["s"] / r["isomap_s"] for r in results["isomap"] for t in (2, 8))
    inf_iso = sum(
        r[f"T{t}_j{j}"]["inf_isomap_only"] for r in results["isomap"] for t, j in OUR_CONFIGS
    )
    same_comp = all(r["components_ours"] == r["n_components"] for r in results["isomap"])
    expected = all(
        r[f"T{t}_j{j}"]["inf_ours_only"] == r["n"] ** 2 - _within_pairs(r)
        for r in results["isomap"]
        for t, j in OUR_CONFIGS
    )
    lines += [
        "",
        f"Worst j = 1 ratio: **{worst:.2f}** (target <= {RATIO_TARGET}: "
        f"{_mark(worst, RATIO_TARGET)}). Same components in both graphs: {same_comp}. Pairs "
        f"infinite in Isomap's result only: {inf_iso}; pairs infinite in ours only are "
        f"{'exactly' if expected else '**not** exactly'} the pairs across components.",
        "",
    ]
    for r in results["isomap"]:
        if "bridge_shortcut_fraction" in r:
            frac = r["bridge_shortcut_fraction"]
            lines.append(
                f"- n = {r['n']:,}, d = {r['d']}: {r['n_components']} components, "
                f"{r['n_components'] * (r['n_components'] - 1) // 2:,} bridge edges; in the "
                f"{r['sample_rows']} sampled rows, "
                + (
                    f"{100 * frac:.2g} % of the pairs inside a component are shorter in "
                    "Isomap's result than on the radius graph, by up to "
                    f"{100 * r['bridge_max_shortening']:.0f} %."
                    if frac > 0
                    else "no pair inside a component is shortened by the bridges."
                )
            )
    lines += [
        "",
        "Peak memory of the float64 all-pairs runs in this process (increase of peak RSS over "
        "the RSS before the call, first repetition; for j = 2 the worker processes are not "
        "counted):",
        "",
        "| n | d | n x n float64 (GiB) | Isomap stage (GiB) | ours T=2 j=1 (GiB) |",
        "|---|---|---|---|---|",
    ]
    for r in results["isomap"]:
        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['n'] ** 2 * 8 / 2**30:.2f} "
            f"| {r['isomap_peak_gib']:.2f} | {r['T2_j1']['peak_gib']:.2f} |"
        )
    lines += [
        "",
        "## (b) Edge-weight throughput, 10-component full-covariance Gaussian mixture",
        "",
        f"`GaussianMixtureDensity` (10 components, random full covariances), n vertices from "
        f"N(0, 4 I), symmetrised {MEAN_DEGREE}-NN graph (`gendist.graph.build_edges`), "
        "n_quad = 8. Weight stage = `evaluate_log_density(density, X)` for the vertices + "
        "`metric_.edge_log_weights(X, rows, cols, log_p)`; its quadrature needs points = "
        "n + 6 E (each vertex once, 6 interior nodes per edge; from 4-D on the mixture gives "
        "the nodes' log-densities from the segments' ends, "
        "`GaussianMixtureDensity.log_prob_on_segments`). Raw density = `density.log_prob` on "
        "exactly those points (vertices + interior nodes, precomputed), the faster of one call "
        "and 65,536-row batches. Overhead = weight-stage time / raw time "
        f"(target <= {OVERHEAD_TARGET}). Best of 5, the three timings interleaved.",
        "",
        "| n | d | edges E | points | weight stage (points/s) | raw log_prob (points/s) "
        "| overhead | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["throughput"]:
        lines.append(
            f"| {r['n']:,} | {r['d']} | {r['edges']:,} | {r['points']:,} "
            f"| {r['weights_pts_per_s']:.3g} | {r['raw_pts_per_s']:.3g} | {r['overhead']:.2f} "
            f"| {_mark(r['overhead'], OVERHEAD_TARGET)} |"
        )
    m = results["memory"]
    lines += [
        "",
        "## (c) Peak memory of an all-pairs float32 run",
        "",
        f"Fresh subprocess: n = {m['n']:,} uniform points in {m['d']}-D, radius for "
        f"{MEAN_DEGREE} neighbours on average ({m['edges']:,} edges), "
        "`GenerativeDistance(constant density, lam=1e12, radius=r, dtype='float32', "
        "n_jobs=1).fit_transform(X)` "
        f"({m['seconds']:.1f} s). Peak RSS = VmHWM of the process (Linux; it starts at zero in "
        "a new process, unlike `ru_maxrss`, which Linux carries over from the parent through "
        "fork + exec).",
        "",
        "| quantity | GiB |",
        "|---|---|",
        f"| peak RSS of the whole process | **{m['peak_gib']:.2f}** |",
        f"| peak RSS before the call (interpreter, libraries, X) | {m['before_gib']:.2f} |",
        f"| peak RSS increase during the call | {m['peak_gib'] - m['before_gib']:.2f} |",
        f"| peak of traced numpy/Python allocations during the call (tracemalloc) "
        f"| {m['traced_peak_gib']:.2f} |",
        f"| the {m['n']:,} x {m['n']:,} float32 result alone | {m['matrix_gib']:.2f} |",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report path (default: BENCHMARKS.md; with --quick, "
        "benchmarks/results/BENCHMARKS_quick.md, so that a smoke run does not "
        "overwrite the full results)",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = (
            ROOT / "benchmarks" / "results" / "BENCHMARKS_quick.md"
            if args.quick
            else ROOT / "BENCHMARKS.md"
        )

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    sizes = (1000, 2000) if args.quick else (2000, 10000, 20000)
    results = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "isomap": [],
        "throughput": [],
    }
    log(results["machine"])
    log("(a) Euclidean limit vs Isomap")
    for d in (2, 10):
        for n in sizes:
            repeat = 3 if n <= 2000 else 2 if n <= 10000 else 1
            results["isomap"].append(euclidean_limit(n, d, repeat, log=log))
    log("(b) edge-weight throughput")
    for d in (2, 5, 10):
        results["throughput"].append(throughput(5000 if args.quick else 20000, d, log=log))
    log("(c) peak memory")
    results["memory"] = peak_memory(2000 if args.quick else 20000, log=log)

    text = markdown(results, args.quick)
    raw = ROOT / "benchmarks" / "results"
    raw.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (raw / ("bench_core_quick.json" if args.quick else "bench_core.json")).write_text(
        json.dumps(results, indent=1)
    )
    print(text)


if __name__ == "__main__":
    main()
