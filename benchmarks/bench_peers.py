"""Every stage against the machine's limits and the best peer library; writes benchmarks/peers.md.

    python benchmarks/bench_peers.py            # full run (under 20 minutes on 2 cores)
    python benchmarks/bench_peers.py --quick    # small sizes, a smoke run (about a minute)

First the machine's limits: matrix-product throughput (float64, float32) and memory bandwidth
(a large array copy). Then, per stage and size, gendist's time, the best peer library's time on
the very same input (timings interleaved, medians), and the fraction of the physical limit
reached (the stage's unavoidable arithmetic or memory traffic over the measured limit). Last,
each stage's exponent in n fitted over the sizes, against its theoretical one.

Stages are functions in :data:`STAGES`, each ``stage(quick) -> list[dict]`` with the keys of
:data:`COLUMNS`; another module adds rows by appending to it. Peer libraries (faiss-cpu,
igraph, networkit, rustworkx) are optional: a missing one is named in the row's note.
``--quick`` writes ``benchmarks/results/peers_quick.md`` instead of ``benchmarks/peers.md``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_core import machine  # noqa: E402
from gendist.densities import as_density, evaluate_log_density  # noqa: E402
from gendist.graph import NeighbourIndex, build_edges, search_method, symmetric_csr  # noqa: E402
from gendist.metric import ConformalMetric  # noqa: E402
from gendist.paths import (  # noqa: E402
    _pair_shortest_path,
    pair_shortest_path,
    reconstruct_path,
    shortest_paths,
)

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("stage", "d", "n", "gendist_s", "peer", "peer_s", "limit_fraction", "note")
K = 15
N_SOURCES = 64
LIMITS: dict[str, float] = {}


def optional(name: str):
    """The module, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def interleaved(functions: dict, repeat: int) -> dict:
    """Median wall time of each function, the calls interleaved ``repeat`` times."""
    times = {name: [] for name in functions}
    for _ in range(repeat):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def machine_limits(quick: bool) -> dict:
    """Matrix-product GFLOP/s (float64, float32) and copy bandwidth (GB/s, read + write)."""
    size = 1024 if quick else 2048
    for dtype in (np.float64, np.float32):
        A = np.random.default_rng(0).random((size, size)).astype(dtype)
        seconds = interleaved({"mm": lambda A=A: A @ A}, 5)["mm"]
        LIMITS[f"matmul_{np.dtype(dtype).name}"] = 2 * size**3 / seconds
    src = np.ones(2**25)  # 256 MiB
    dst = np.empty_like(src)
    seconds = interleaved({"copy": lambda: np.copyto(dst, src)}, 5)["copy"]
    LIMITS["bandwidth"] = 2 * src.nbytes / seconds
    return LIMITS


def _row(stage, d, n, ours, peers: dict, limit_s, note=""):
    """One table row: the best (fastest) of ``peers``, and our fraction of the limit."""
    peer, peer_s = min(peers.items(), key=lambda item: item[1]) if peers else ("—", np.nan)
    return {
        "stage": stage,
        "d": d,
        "n": n,
        "gendist_s": ours,
        "peer": peer,
        "peer_s": peer_s,
        "limit_fraction": limit_s / ours if limit_s is not None else np.nan,
        "note": note,
    }


def _knn_peers(X, d, n):
    """Exact kNN searches of the peer libraries on the same points (self excluded)."""
    peers = {
        "sklearn brute": lambda: (
            NearestNeighbors(algorithm="brute", n_jobs=-1).fit(X).kneighbors(None, K)
        ),
    }
    if d <= 3 or (d <= 10 and n <= 30_000):  # 10-D trees take minutes beyond (n^1.9)
        peers["scipy cKDTree"] = lambda: cKDTree(X).query(X, K + 1, workers=-1)
        peers["sklearn kd_tree"] = lambda: (
            NearestNeighbors(algorithm="kd_tree", n_jobs=-1).fit(X).kneighbors(None, K)
        )
    faiss = optional("faiss")
    if faiss is not None and n <= (20_000 if d <= 3 else 100_000):  # brute force: n^2 d

        def flat():
            index = faiss.IndexFlatL2(d)
            X32 = np.ascontiguousarray(X, dtype=np.float32)
            index.add(X32)
            return index.search(X32, K + 1)

        peers["faiss IndexFlatL2 (float32)"] = flat
    if d <= 3:  # brute force in 2-3 D is hopeless beyond 10^4 points
        peers = {k: v for k, v in peers.items() if "brute" not in k or n <= 20_000}
    return peers, ("" if faiss is not None else "faiss-cpu not installed")


def knn_stage(quick: bool) -> list[dict]:
    """Exact 15-NN of every point (gendist.graph.NeighbourIndex, its own choice of search)."""
    rng = np.random.default_rng(0)
    cases = (
        [(2, 10_000), (10, 10_000), (50, 5_000), (784, 3_000)]
        if quick
        else [
            (2, 10_000), (2, 100_000), (2, 1_000_000), (3, 10_000), (3, 100_000),
            (3, 1_000_000), (10, 10_000), (10, 30_000), (10, 100_000), (50, 10_000),
            (50, 30_000), (784, 10_000),
        ]
    )  # fmt: skip
    rows = []
    for d, n in cases:
        X = rng.normal(size=(n, d))
        method = search_method(n, d)
        peers, note = _knn_peers(X, d, n)
        repeat = 1 if n * n * d > 5e10 or n >= 10**6 else 3
        times = interleaved(
            {"ours": lambda X=X: NeighbourIndex().fit(X).kneighbors(None, K), **peers}, repeat
        )
        ours = times.pop("ours")
        if method == "blocked":  # the screen's arithmetic: one (n, d+1) x (d+1, n) product
            limit_s = 2 * n * n * (d + 1) / LIMITS["matmul_float32"]
            what = "blocked search; limit = the float32 product"
        else:  # a tree reads the points and writes the neighbours: a memory bound only
            limit_s = (n * d * 8 + n * K * 16) / LIMITS["bandwidth"]
            what = "tree; limit = reading points + writing neighbours"
        rows.append(
            _row("kNN graph", d, n, ours, times, limit_s, "; ".join(filter(None, [what, note])))
        )
        print(rows[-1], flush=True)
    return rows


def _graph(n, d=2, seed=0):
    X = np.random.default_rng(seed).random((n, d))
    rows, cols, lengths = build_edges(X, n_neighbors=K)
    return X, rows, cols, lengths


def weights_stage(quick: bool) -> list[dict]:
    """Edge weights by 8-node quadrature under a free density (gendist's own arithmetic)."""
    out = []
    n_quad = 8

    def log_p(Z):
        return np.zeros(len(Z))

    for n in (10_000, 40_000) if quick else (10_000, 40_000, 160_000, 640_000):
        X, rows, cols, _ = _graph(n)
        density = as_density(log_p)
        metric = ConformalMetric(density, log_lam=0.0, n_quad=n_quad)
        vertex = evaluate_log_density(density, X)
        args = (X, rows, cols, vertex)
        times = interleaved({"ours": lambda m=metric, a=args: m.edge_log_weights(*a)}, 3)
        # the interior nodes' coordinates, written once and read once
        limit_s = len(rows) * (n_quad - 2) * X.shape[1] * 8 * 2 / LIMITS["bandwidth"]
        out.append(
            _row("edge weights", 2, n, times["ours"], {}, limit_s,
                 f"E = {len(rows):,}; no peer library computes these; limit = node traffic")
        )  # fmt: skip
        print(out[-1], flush=True)
    return out


def _path_peers(n, rows, cols, lengths, sources):
    """Many-source Dijkstra of the peer libraries, results into a dense (B, n) numpy block."""
    peers, built, missing = {}, {}, []
    igraph = optional("igraph")
    if igraph is not None:
        start = time.perf_counter()
        g = igraph.Graph(n=n, edges=np.column_stack([rows, cols]), directed=False)
        g.es["weight"] = lengths
        built["igraph"] = time.perf_counter() - start
        peers["igraph"] = lambda: np.array(g.distances(source=sources.tolist(), weights="weight"))
    else:
        missing.append("igraph")
    nk = optional("networkit")
    if nk is not None:
        start = time.perf_counter()
        h = nk.Graph(n, weighted=True)
        h.addEdges((lengths, (rows, cols)))
        built["networkit"] = time.perf_counter() - start

        def spsp():
            run = nk.distance.SPSP(h, sources.tolist())
            run.run()
            return np.array(run.getDistances())

        peers["networkit SPSP"] = spsp
    else:
        missing.append("networkit")
    rx = optional("rustworkx")
    if rx is not None:
        start = time.perf_counter()
        r = rx.PyGraph()
        r.add_nodes_from(range(n))
        r.add_edges_from(list(zip(rows.tolist(), cols.tolist(), lengths.tolist())))
        built["rustworkx"] = time.perf_counter() - start

        def per_source():
            D = np.full((len(sources), n), np.inf)
            for i, a in enumerate(sources):
                found = rx.graph_dijkstra_shortest_path_lengths(r, int(a), edge_cost_fn=float)
                D[i, np.fromiter(found.keys(), np.int64)] = np.fromiter(found.values(), float)
                D[i, a] = 0.0
            return D

        peers["rustworkx"] = per_source
    else:
        missing.append("rustworkx")
    return peers, built, missing


def paths_stage(quick: bool) -> list[dict]:
    """64 sources of Dijkstra into a dense float64 block (gendist.paths.shortest_paths)."""
    out = []
    for n in (5_000, 20_000) if quick else (5_000, 20_000, 80_000):
        X, rows, cols, lengths = _graph(n)
        G = symmetric_csr(n, rows, cols, lengths)
        sources = np.linspace(0, n - 1, N_SOURCES).astype(np.int64)
        peers, built, missing = _path_peers(n, rows, cols, lengths, sources)
        reference = dijkstra(G, True, indices=sources)
        for fn in peers.values():  # the same answer before anything is timed
            np.testing.assert_allclose(fn(), reference, rtol=1e-12)
        np.testing.assert_array_equal(shortest_paths(G, sources, n_jobs=1), reference)
        ours = {"ours": lambda G=G, s=sources: shortest_paths(G, s, n_jobs=1)}
        times = interleaved({**ours, **peers}, 3)
        mine = times.pop("ours")
        # per source: the CSR read once (8-byte weight + 4-byte index per entry), n distances
        limit_s = N_SOURCES * (G.nnz * 12 + n * 8) / LIMITS["bandwidth"]
        note = "scipy Dijkstra, 1 process; graph conversion (not timed): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in built.items()
        )
        if missing:
            note += "; not installed: " + ", ".join(missing)
        out.append(_row("Dijkstra, 64 sources", 2, n, mine, times, limit_s, note))
        print(out[-1], flush=True)
    return out


def pair_stage(quick: bool) -> list[dict]:
    """Single-pair queries (the bidirectional search with the A* lower bound, as the
    estimators' ``distance`` and ``geodesic`` run it on their graph checked at fit) against
    one plain single-source run (scipy, with predecessors, and the path read off them). The
    public ``pair_shortest_path`` adds its O(E) check of the weights (timed in the note)."""
    out = []
    n = 20_000
    X, rows, cols, lengths = _graph(n)
    G = symmetric_csr(n, rows, cols, lengths)
    rng = np.random.default_rng(1)
    sources = rng.integers(n, size=4 if quick else 12)
    order = np.argsort(dijkstra(G, True, indices=sources), axis=1)

    def plain(a, b):
        dist, pred = dijkstra(G, True, indices=a, return_predecessors=True)
        return dist[b], reconstruct_path(pred, a, b)

    for rank in (0.001, 0.01, 0.1, 0.5, 1.0):
        ratios, ours, theirs, checked = [], [], [], []
        for row, a in enumerate(sources):
            b = int(order[row, int(rank * (n - 1))])
            bound = float(np.linalg.norm(X[a] - X[b]))  # weights are lengths: factor 1
            assert pair_shortest_path(G, a, b, bound)[0] == plain(a, b)[0]  # the same float
            assert _pair_shortest_path(G, int(a), b, bound)[0] == plain(a, b)[0]
            times = interleaved(
                {"pair": lambda a=int(a), b=b, c=bound: _pair_shortest_path(G, a, b, c),
                 "public": lambda a=a, b=b, c=bound: pair_shortest_path(G, a, b, c),
                 "plain": lambda a=a, b=b: plain(a, b)}, 3
            )  # fmt: skip
            ours.append(times["pair"])
            theirs.append(times["plain"])
            ratios.append(times["pair"] / times["plain"])
            checked.append(times["public"] / times["plain"])
        note = (
            f"target at distance rank {100 * rank:g} %; {len(sources)} pairs; median of the "
            f"per-pair ratios {np.median(ratios):.2f} (worst {max(ratios):.2f}); the public "
            f"pair_shortest_path, which checks every weight first: {np.median(checked):.2f}"
        )
        out.append(
            _row("pair query", 2, n, float(np.median(ours)),
                 {"scipy single-source run": float(np.median(theirs))}, None, note)
        )  # fmt: skip
        print(out[-1], flush=True)
    return out


def gpu_stage(quick: bool) -> list[dict]:
    """GPU rows (torch blocked kNN, batched Bellman-Ford): pending without a CUDA device."""
    torch = optional("torch")
    if torch is not None and torch.cuda.is_available():
        note = "CUDA present: run benchmarks/bench_scale.py for the torch backends"
    else:
        note = "pending (no device)"
    return [
        _row(stage, d, n, np.nan, {}, None, note)
        for stage, d, n in (("kNN graph (torch, GPU)", 10, 100_000),
                            ("Dijkstra (torch Bellman-Ford, GPU)", 2, 20_000))
    ]  # fmt: skip


def density_stage(quick: bool) -> list[dict]:
    """Rows of benchmarks/_peers_density.py (density evaluation), where that module exists."""
    try:
        from benchmarks._peers_density import density_rows
    except ImportError:
        return []
    return density_rows(quick)


STAGES = [knn_stage, weights_stage, paths_stage, pair_stage, density_stage, gpu_stage]

#: theoretical exponent in n of each stage (at fixed d, k), for the fits
THEORY = {
    ("kNN graph", "tree"): (1.0, "O(n log n)"),
    ("kNN graph", "blocked"): (2.0, "O(n^2 d) products"),
    ("edge weights", None): (1.0, "O(E)"),
    ("Dijkstra, 64 sources", None): (1.0, "O(E + n log n) per source"),
}


def exponents(rows) -> list[tuple]:
    """Least-squares slope of log(time) against log(n) per stage, d and search."""
    groups: dict = {}
    for r in rows:
        if not np.isfinite(r["gendist_s"]):
            continue
        method = search_method(r["n"], r["d"]) if r["stage"] == "kNN graph" else None
        groups.setdefault((r["stage"], r["d"], method), []).append((r["n"], r["gendist_s"]))
    fits = []
    for (stage, d, method), points in groups.items():
        if len(points) < 2 or (stage, method) not in THEORY:
            continue
        n, t = np.log(np.array(points)).T
        slope = float(np.polyfit(n, t, 1)[0])
        fits.append((stage, d, method or "", slope, *THEORY[(stage, method)]))
    return fits


def _fmt(x, spec):
    return "—" if not isinstance(x, str) and not np.isfinite(x) else format(x, spec)


def findings(rows) -> list[str]:
    """What the table decides: the worst ratio per stage, and whether a peer engine is >= 2x."""
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        timed = [r for r in rows if r["stage"] == stage and np.isfinite(r["peer_s"])]
        if not timed:
            continue
        worst = max(timed, key=lambda r: r["gendist_s"] / r["peer_s"])
        line = (
            f"- {stage}: gendist / best peer from "
            f"{min(r['gendist_s'] / r['peer_s'] for r in timed):.2f} to "
            f"{worst['gendist_s'] / worst['peer_s']:.2f} (worst: d = {worst['d']}, "
            f"n = {worst['n']:,}, against {worst['peer']})."
        )
        if stage.startswith("Dijkstra"):
            speedup = max(r["gendist_s"] / r["peer_s"] for r in timed)
            line += (
                f" The fastest peer is at most {speedup:.2f}x scipy's speed, below the 2x that "
                "would justify another engine: scipy's Dijkstra stays the CPU backend."
                if speedup < 2
                else f" A peer is {speedup:.2f}x faster: worth an optional backend."
            )
        out.append(line)
    return out


def report(rows, fits, quick: bool) -> str:
    lines = [
        "# Benchmark: every stage against the machine's limits and the best peer library",
        "",
        "Regenerate with `python benchmarks/bench_peers.py` (`--quick` for a smoke run).",
        "",
        f"Machine: {machine()}. Run on {time.strftime('%Y-%m-%d')}"
        + (" (quick run)." if quick else "."),
        "",
        "Limits measured in the same run: matrix product "
        f"{LIMITS['matmul_float64'] / 1e9:.1f} GFLOP/s (float64), "
        f"{LIMITS['matmul_float32'] / 1e9:.1f} GFLOP/s (float32), all cores; memory "
        f"bandwidth {LIMITS['bandwidth'] / 1e9:.1f} GB/s (copy of 256 MiB, read + write).",
        "",
        "Times are medians of interleaved runs (3, or 1 for the largest cases), on the same "
        "input for gendist and every peer. peer = the fastest peer library; ratio = gendist / "
        "peer (below 1: gendist is faster). limit = time the stage's unavoidable arithmetic "
        "or memory traffic takes at the measured limit, over gendist's time. kNN: exact 15 "
        "nearest neighbours of every point (self excluded), standard normal points; peers "
        "scikit-learn (brute force, KD-tree, all cores), scipy's cKDTree (all cores) and "
        "faiss's exact `IndexFlatL2` (float32, not float64-exact). Dijkstra: 64 sources on "
        "a 2-D 15-NN graph into a dense float64 block, result conversion included; every "
        "peer's block is checked equal to scipy's before timing. Pair query: one pair's distance "
        "and path against one plain single-source run (the same float, checked), by how far "
        "the target is (rank of its distance among all vertices).",
        "",
        "| stage | d | n | gendist (s) | best peer | peer (s) | ratio | limit | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["gendist_s"] / r["peer_s"]
        lines.append(
            f"| {r['stage']} | {r['d']} | {r['n']:,} | {_fmt(r['gendist_s'], '.3f')} | "
            f"{r['peer']} | {_fmt(r['peer_s'], '.3f')} | {_fmt(ratio, '.2f')} | "
            f"{_fmt(100 * r['limit_fraction'], '.1f')}"
            f"{'' if np.isnan(r['limit_fraction']) else ' %'} | {r['note']} |"
        )
    lines += ["", *findings(rows)]
    lines += [
        "",
        "Fitted exponent of gendist's time in n (slope of log time against log n over the "
        "sizes above) against the theoretical one:",
        "",
        "| stage | d | search | fitted exponent | theory | complexity |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {s} | {d} | {m} | {e:.2f} | {t:.1f} | {c} |" for s, d, m, e, t, c in fits]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, sklearn {sklearn.__version__}")
    print({k: f"{v / 1e9:.1f}" for k, v in machine_limits(args.quick).items()}, flush=True)
    rows = [row for stage in STAGES for row in stage(args.quick)]
    text = report(rows, exponents(rows), args.quick)
    out = args.out or (
        ROOT / "benchmarks" / "results" / "peers_quick.md"
        if args.quick
        else ROOT / "benchmarks" / "peers.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
