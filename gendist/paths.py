"""Shortest paths on the weighted graph: many sources at once, in row blocks, over processes.

The functional core, in the manner of :mod:`scipy.sparse.csgraph`: every function takes a
sparse graph (``csr_matrix`` or ``csr_array``; symmetric, non-negative weights, explicit zeros
are zero-weight edges) that :func:`validate_graph` checks, vertex indices that
:func:`check_vertex_indices` checks, and answers ``inf`` for unreachable vertices and
:data:`NO_PREDECESSOR` (scipy's -9999) where a vertex has no predecessor.

A backend is a function ``(graph, sources, limit, return_predecessors) -> dist[, pred]`` with
``dist`` of shape (len(sources), n) in float64; :data:`BACKEND_NAMES` lists them:

* ``"scipy"`` runs :func:`scipy.sparse.csgraph.dijkstra` on the symmetric CSR with
  ``directed=True``, which gives the undirected distances 1.2-1.7x faster than
  ``directed=False``. scipy's Dijkstra holds the GIL, so source blocks are spread over
  processes with joblib (whose backends also bring dask.distributed and Ray).
* ``"torch"`` is a batched many-source Bellman-Ford in torch (:func:`_torch_bellman_ford`),
  on the ``device`` given (the CPU when None): it needs as many sweeps as a shortest path has
  hops, so on a CPU it is slower than scipy and is meant for GPUs. Its blocks run in this
  process, one device.
* ``"cugraph"`` calls RAPIDS ``pylibcugraph.sssp`` once per source on a graph built once on
  the GPU from CuPy CSR arrays (:func:`_cugraph_sssp`); extra ``gpu``.
* ``"auto"`` picks one of them by the device, the installed libraries and the graph; see
  :func:`choose_backend`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import partial

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy import sparse
from scipy.sparse.csgraph import (
    connected_components,
    dijkstra,
    shortest_path,
)
from sklearn import get_config

from ._compute import chunk_rows, default_memory_limit, progress_bar, to_numpy
from ._optional import import_optional
from .graph import GraphTooLargeError

__all__ = [
    "BACKEND_NAMES",
    "NO_PREDECESSOR",
    "Geodesic",
    "validate_graph",
    "check_vertex_indices",
    "shortest_paths",
    "shortest_path_tree",
    "shortest_path_trees",
    "seeded_shortest_paths",
    "pair_shortest_path",
    "astar_shortest_path",
    "nearest_vertices",
    "reconstruct_path",
    "reconstruct_seeded_path",
    "mirror_upper_triangle",
    "minimum_with_transpose",
    "triangle_closure",
    "choose_backend",
    "check_memory",
]

#: The predecessor of a vertex that has none (the source, unreachable vertices): scipy's value.
NO_PREDECESSOR = -9999

#: Shortest-path backends, ``"auto"`` first (see :func:`choose_backend`).
BACKEND_NAMES = ("auto", "scipy", "torch", "cugraph")


def validate_graph(graph, name: str = "graph") -> sparse.csr_matrix:
    """Check a weighted graph and return it as a float64 CSR matrix (no copy when it is one).

    Parameters
    ----------
    graph : scipy sparse matrix or array of shape (n, n)
        Non-negative finite weights; explicit zeros are zero-weight edges. Dense arrays are
        refused: scipy reads their zeros as missing edges.
    name : str
        Argument name used in error messages.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n, n), float64

    Raises
    ------
    TypeError
        If the graph is not a scipy sparse matrix or array.
    ValueError
        If it is not square or holds a negative, NaN or infinite weight (scipy's Dijkstra
        aborts the process on negative weights).
    """
    if not sparse.issparse(graph):
        raise TypeError(
            f"{name} must be a scipy sparse matrix or array (CSR), got {type(graph).__name__}; "
            "a dense matrix loses its zero-weight edges."
        )
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) adjacency matrix, got {graph.shape}.")
    if graph.format != "csr" or not isinstance(graph, sparse.csr_matrix):
        graph = sparse.csr_matrix(graph)
    if graph.dtype != np.float64:
        graph = graph.astype(np.float64)
    data = graph.data
    # two reductions instead of a mask: NaN propagates through min, so one test sees all
    if data.size and not (data.min() >= 0 and data.max() < np.inf):
        raise ValueError(
            f"{name} has {int(np.isnan(data).sum())} NaN, {int(np.isinf(data).sum())} infinite "
            f"and {int((data < 0).sum())} negative of {len(data)} edge weights; weights must "
            "be finite and >= 0 (leave out an edge instead of weighting it inf)."
        )
    return graph


def check_vertex_indices(indices, n: int, name: str = "indices") -> np.ndarray:
    """Check vertex indices as scipy's ``indices`` and return them as a 1-D int64 array.

    Parameters
    ----------
    indices : int or array-like of int
        Integers in ``[0, n)``. Floats, booleans, negative indices (no wrapping) and indices
        out of range are refused.
    n : int
        Number of vertices.
    name : str
        Argument name used in error messages.

    Returns
    -------
    indices : ndarray of shape (k,), int64
    """
    array = np.asarray(indices)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype == object:
        try:
            array = np.asarray(indices, dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be vertex indices (integers), got {indices!r}.") from exc
    if array.dtype.kind == "b" or array.dtype.kind not in "iu":
        kind = "booleans" if array.dtype.kind == "b" else f"dtype {array.dtype}"
        raise TypeError(f"{name} must be vertex indices (integers), got {kind}.")
    array = array.reshape(-1).astype(np.int64)
    if np.any((array < 0) | (array >= n)):
        raise IndexError(f"{name} must be vertex indices in [0, {n}): indices out of range.")
    return array


def _scipy_dijkstra(graph, sources, limit=np.inf, return_predecessors=False):
    return dijkstra(
        graph,
        directed=True,
        indices=sources,
        limit=limit,
        return_predecessors=return_predecessors,
    )


def _neighbour_table(graph, torch, device, dtype):
    """The in-neighbours of every vertex (edge u -> v stored at ``graph[u, v]``) as a padded
    (n, K) table and its (n, K) weights; padding points at the dummy node n (distance inf)
    with weight inf. Directed graphs (new points with out-edges only) are handled too."""
    graph = sparse.csr_matrix(graph.T)
    n = graph.shape[0]
    degree = np.diff(graph.indptr)
    K = max(int(degree.max()) if n else 0, 1)
    rows = np.repeat(np.arange(n), degree)
    slots = np.arange(graph.nnz) - np.repeat(graph.indptr[:-1], degree)
    neighbours = np.full((n, K), n, dtype=np.int64)
    weights = np.full((n, K), np.inf)
    neighbours[rows, slots] = graph.indices
    weights[rows, slots] = graph.data
    return (
        torch.as_tensor(neighbours, device=device),
        torch.as_tensor(weights, dtype=dtype, device=device),
    )


def _torch_bellman_ford(
    graph,
    sources,
    limit=np.inf,
    return_predecessors=False,
    device=None,
    chunk_bytes=None,
    initial=None,
):
    """Many-source shortest paths by synchronous Bellman-Ford relaxation in torch.

    Written here because no library offers it: cuGraph runs one source per call, and a GPU
    needs many sources at once to be busy. Distances are node-major, (n + 1, B) for B sources
    (row n is a dummy node at inf that padding points to); every sweep relaxes every vertex
    from all its neighbours at once, ``D[v] = min(D[v], min_k D[nbr[v, k]] + w[v, k])``, until
    nothing changes: the exact fixed point, so the distances are the shortest-path distances
    up to the order of float additions. Sweeps are as many as the most hops on a shortest
    path (about sqrt(n) on 2-D graphs), each costs n * K * B, so scipy's Dijkstra is faster on
    a CPU; on a GPU the sweeps run in parallel. Runs on ``device`` (the CPU when None).
    Sources are processed in chunks of (n, K, B) working memory sized by
    :func:`gendist._compute.chunk_rows` (or at most ``chunk_bytes``). With ``initial``
    (B, n), source b starts at distance ``initial[b, v]`` from every vertex v instead of 0
    at ``sources[b]`` (see :func:`seeded_shortest_paths`); vertices never improved keep
    :data:`NO_PREDECESSOR`.

    Returns
    -------
    dist : ndarray of shape (B, n), float64
    predecessors : ndarray of shape (B, n), int (-9999 where none), with
        ``return_predecessors``
    """
    torch = import_optional("torch")
    device = torch.device("cpu" if device is None else device)
    dtype = torch.float64
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    n = graph.shape[0]
    neighbours, weights = _neighbour_table(graph, torch, device, dtype)
    K = neighbours.shape[1]
    step = chunk_rows(8 * (n + 1) * K, device=device, budget=chunk_bytes)
    dist_out = np.empty((len(sources), n))
    pred_out = None
    if return_predecessors:
        pred_out = np.full((len(sources), n), NO_PREDECESSOR, dtype=np.int64)
    for start in range(0, len(sources), step):
        block = sources[start : start + step]
        B = len(block)
        D = torch.full((n + 1, B), float("inf"), dtype=dtype, device=device)
        if initial is None:
            D[torch.as_tensor(block, device=device), torch.arange(B, device=device)] = 0.0
        else:
            seeds = np.ascontiguousarray(initial[start : start + B].T)
            D[:n] = torch.as_tensor(seeds, dtype=dtype, device=device)
        # predecessor = the neighbour of the last strict improvement: acyclic even with
        # zero-weight edges (a tie never moves it)
        pred = torch.full((n, B), NO_PREDECESSOR, dtype=torch.int64, device=device)
        while True:
            best, arg = (D[neighbours] + weights[:, :, None]).min(dim=1)  # over (n, K, B)
            improved = best < D[:n]
            if not bool(improved.any()):
                break
            D[:n] = torch.where(improved, best, D[:n])
            if return_predecessors:
                pred = torch.where(improved, torch.gather(neighbours, 1, arg), pred)
        dist = D[:n].T
        beyond = dist > limit
        dist_out[start : start + B] = to_numpy(torch.where(beyond, float("inf"), dist))
        if return_predecessors:
            pred_out[start : start + B] = to_numpy(torch.where(beyond, NO_PREDECESSOR, pred.T))
    return (dist_out, pred_out) if return_predecessors else dist_out


def _cugraph_sssp(graph, sources, limit=np.inf, return_predecessors=False):
    """Shortest paths from each source with RAPIDS cuGraph (``pylibcugraph.sssp``).

    The graph is built on the GPU once per call (per row block of
    :func:`shortest_paths`, thousands of sources) from CuPy CSR arrays (``SGGraph`` with
    ``input_array_format="CSR"``, no renumbering, stored directed so that one-way edges of
    new points keep their direction); then one ``sssp`` call per source, as cuGraph offers
    no many-source variant. Its results come as (vertices, distances, predecessors) in
    cuGraph's vertex order; they are scattered to vertex order here, the dtype-max sentinel
    of unreachable vertices becomes inf and its predecessor -1 becomes scipy's -9999.

    Returns
    -------
    dist : ndarray of shape (B, n), float64
    predecessors : ndarray of shape (B, n), int (-9999 where none), with
        ``return_predecessors``
    """
    plc = import_optional("pylibcugraph")
    cp = import_optional("cupy")
    graph = sparse.csr_matrix(graph)
    n = graph.shape[0]
    index_dtype = np.int32 if max(n, graph.nnz) < np.iinfo(np.int32).max else np.int64
    handle = plc.ResourceHandle()
    gpu_graph = plc.SGGraph(
        handle,
        plc.GraphProperties(is_symmetric=False, is_multigraph=False),
        cp.asarray(graph.indptr.astype(index_dtype)),
        cp.asarray(graph.indices.astype(index_dtype)),
        cp.asarray(graph.data.astype(np.float64)),
        store_transposed=False,
        renumber=False,
        do_expensive_check=False,
        input_array_format="CSR",
    )
    cutoff = float(limit) if np.isfinite(limit) else float(np.finfo(np.float64).max)
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    dist_out = np.full((len(sources), n), np.inf)
    pred_out = np.full((len(sources), n), NO_PREDECESSOR, dtype=np.int64)
    for i, source in enumerate(sources):
        vertices, dist, pred = (
            cp.asnumpy(a)
            for a in plc.sssp(
                handle,
                gpu_graph,
                source=int(source),
                cutoff=cutoff,
                compute_predecessors=True,  # the only mode pylibcugraph supports
                do_expensive_check=False,
            )
        )
        dist = dist.astype(np.float64)
        unreached = (dist >= np.finfo(dist.dtype).max) | (dist > limit)
        dist_out[i, vertices] = np.where(unreached, np.inf, dist)
        pred_out[i, vertices] = np.where(unreached | (pred < 0), NO_PREDECESSOR, pred)
    return (dist_out, pred_out) if return_predecessors else dist_out


_BACKENDS = {"scipy": _scipy_dijkstra, "torch": _torch_bellman_ford, "cugraph": _cugraph_sssp}

#: "auto" runs the torch Bellman-Ford on CUDA only when a shortest path is estimated to have
#: at most this many hops (sweeps), and when at least ``_TORCH_MIN_SOURCES`` sources share them
_TORCH_MAX_HOPS = 1000
_TORCH_MIN_SOURCES = 32


def hop_depth(graph) -> int:
    """An estimate of the most edges on a shortest path: twice the largest hop eccentricity
    found by a double-sweep breadth-first search in each component.

    The double sweep (a BFS from any vertex, then one from the farthest vertex it found)
    gives a lower bound on the hop diameter that is exact on trees and close on geometric
    graphs; shortest *weighted* paths can take more hops than the fewest-hop path, hence the
    factor 2. Cost: a few BFS, O(n + E).
    """
    graph = sparse.csr_matrix(graph)
    n = graph.shape[0]
    if graph.nnz == 0:
        return 0
    _, labels = connected_components(graph, directed=False)
    structure = sparse.csr_matrix((np.ones(graph.nnz), graph.indices, graph.indptr), (n, n))

    def hops_from(starts):
        """Hops from the nearest of ``starts`` (one per component): one BFS from a super-vertex
        n joined to all of them, so the cost is O(n + E) whatever the number of components."""
        join = sparse.csr_matrix(
            (np.ones(len(starts)), (np.full(len(starts), n), starts)), (n + 1, n + 1)
        )
        augmented = sparse.bmat([[structure, None], [None, sparse.csr_matrix((1, 1))]]) + join
        hops = shortest_path(augmented, directed=False, unweighted=True, indices=n)
        return hops[:n] - 1

    starts = np.unique(labels, return_index=True)[1]
    first = hops_from(starts)
    order = np.lexsort((first, labels))  # by component, farthest last
    farthest = order[np.searchsorted(labels[order], np.unique(labels), side="right") - 1]
    depth = int(np.max(hops_from(farthest)))
    return 2 * depth


def _installed(module: str) -> bool:
    try:
        import_optional(module)
    except ImportError:
        return False
    return True


def _cuda_available() -> bool:
    """Whether torch sees a CUDA device. On Linux without a GPU driver (no NVIDIA, WSL2 or
    ROCm device files) torch is not imported just to find out: importing it costs seconds and
    about 200 MiB."""
    if "torch" not in sys.modules and sys.platform.startswith("linux"):
        markers = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")
        if not any(os.path.exists(m) for m in markers):
            return False
    if not _installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(graph, n_sources: int = 1, device=None) -> str:
    """The backend ``backend="auto"`` runs for ``n_sources`` sources on ``graph`` and ``device``.

    * No CUDA ``device`` (None, the CPU; or CUDA that torch does not see): ``"scipy"``. On a
      CPU, scipy's Dijkstra was 11-92x faster than the torch Bellman-Ford at n = 1,000-10,000
      (benchmarks/scale.md).
    * A CUDA device, at least 32 sources and a shortest path estimated to have at most 1,000
      hops (:func:`hop_depth`): ``"torch"``. Bellman-Ford pays one sweep over every edge
      per hop, and hops grow like sqrt(n) on 2-D graphs (the estimate is 210 at n = 20,000
      and 674 at n = 200,000 for uniform points and 12 neighbours; 16 at n = 20,000 in 10-D);
      Dijkstra pays about one edge per edge. With a sweep of n K
      gathers at GPU memory bandwidth against one core's Dijkstra, that is a win while the
      hop depth stays below roughly 1,000.
    * Otherwise on CUDA, ``"cugraph"`` when pylibcugraph is installed (its SSSP does not
      pay for the hop depth the same way), else ``"scipy"``.

    The thresholds come from this cost model and the CPU measurements; they are to be
    recalibrated against GPU measurements.
    """
    on_cuda = device is not None and str(device).startswith("cuda")
    if not on_cuda or not _cuda_available():
        return "scipy"
    if n_sources >= _TORCH_MIN_SOURCES and hop_depth(graph) <= _TORCH_MAX_HOPS:
        return "torch"
    if _installed("pylibcugraph") and _installed("cupy"):
        return "cugraph"
    return "scipy"


def _backend_function(name: str, graph, n_sources: int = 1, device=None):
    """The backend function for ``name`` (``"auto"`` resolved), bound to ``device``."""
    if name == "auto":
        name = choose_backend(graph, n_sources, device)
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}.")
    function = _BACKENDS[name]
    if name == "torch" and device is not None:
        function = partial(function, device=device)
    return name, function


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_memory(n_rows: int, n_cols: int, dtype, memory_limit: int | None = None) -> None:
    """Refuse a (n_rows, n_cols) result that would exceed ``memory_limit`` bytes.

    Raises
    ------
    GraphTooLargeError
        With the alternatives: fewer rows at a time, rows written to disk (``out=``),
        landmarks, ``limit``, float32 (when the result is float64).
    """
    limit = default_memory_limit() if memory_limit is None else memory_limit
    dtype = np.dtype(dtype)
    need = n_rows * n_cols * dtype.itemsize
    if need > limit:
        float32 = "; use dtype='float32' (half the memory)" if dtype == np.float64 else ""
        raise GraphTooLargeError(
            f"a {n_rows:,} x {n_cols:,} {dtype.name} distance matrix needs {_bytes(need)}, "
            f"over the memory limit of {_bytes(limit)}. Compute the rows in blocks (fewer "
            "sources or points per call); write the rows to disk with distances(out=...) "
            "(a numpy.lib.format.open_memmap or zarr array); use a few landmarks instead of "
            "all pairs (gendist.landmarks: distances to L landmarks, bounds on every pair, an "
            f"embedding); bound the search with limit=...{float32}; or raise memory_limit."
        )


def _check_vertex(vertex, n: int, name: str) -> int:
    """One vertex index (an integer, not a bool or a float) in ``[0, n)``."""
    if np.ndim(vertex) != 0 or isinstance(vertex, (bool, np.bool_)):
        raise TypeError(f"{name} must be a vertex index (an integer), got {vertex!r}.")
    if np.asarray(vertex).dtype.kind not in "iu":
        raise TypeError(f"{name} must be a vertex index (an integer), got {vertex!r}.")
    if not 0 <= vertex < n:
        raise IndexError(f"{name} must be a vertex index in [0, {n}), got {vertex}.")
    return int(vertex)


def _check_limit(limit) -> float:
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)):
        raise TypeError(f"limit must be a number (a distance, inf for none), got {limit!r}.")
    limit = float(limit)
    if np.isnan(limit) or limit < 0:
        raise ValueError(f"limit must be a distance >= 0 (inf for no limit), got {limit}.")
    return limit


def _check_out(out, shape: tuple) -> None:
    if not (hasattr(out, "shape") and hasattr(out, "dtype") and hasattr(out, "__setitem__")):
        raise TypeError(
            "out must be an array that takes slice assignment (a numpy array or memmap, a "
            f"zarr array), got {type(out).__name__}."
        )
    if np.dtype(out.dtype) not in (np.float32, np.float64):
        raise TypeError(
            f"out has dtype {np.dtype(out.dtype)}; distances need float32 or float64 "
            "(inf marks unreachable vertices)."
        )
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}; expected {shape}.")


def seeded_shortest_paths(graph, initial, limit=np.inf, return_predecessors=False, backend="scipy"):
    """Shortest paths from labelled starts: ``dist[b, v] = min_u initial[b, u] + d(u, v)``.

    Row b is the shortest-path run of a source that reaches every vertex u at cost
    ``initial[b, u]`` before it follows the graph (``initial[b, u] = 0`` at one vertex and
    inf elsewhere is a plain run from that vertex). :class:`gendist.shortcuts.Shortcuts`
    gives such starts: straight segments from a point to every vertex.

    scipy's Dijkstra (and cuGraph's SSSP) take one start vertex per run, so each row gets a
    virtual vertex ``n + b`` with an edge of weight ``initial[b, u]`` to every u of finite
    label and none coming in, and the run starts there; the torch backend starts its sweeps
    from the labels directly.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        Non-negative weights (a validated graph; see :func:`validate_graph`).
    initial : ndarray of shape (B, n)
        Starting labels, >= 0 or inf.
    limit : float
        Do not search beyond this distance; farther vertices get inf.
    return_predecessors : bool
        Also return the predecessors: :data:`NO_PREDECESSOR` marks the vertices reached
        straight from the start (and the unreachable ones).
    backend : str
        A name in :data:`BACKEND_NAMES` other than ``"auto"``, or a backend function with its
        name as ``(name, function)``.

    Returns
    -------
    dist : ndarray of shape (B, n)
    predecessors : ndarray of shape (B, n), with ``return_predecessors``
    """
    name, function = backend if isinstance(backend, tuple) else _backend_function(backend, graph)
    initial = np.asarray(initial, dtype=np.float64)
    n = graph.shape[0]
    if initial.ndim != 2 or initial.shape[1] != n:
        raise ValueError(f"initial must have shape (B, {n}), got {initial.shape}.")
    if np.any(np.isnan(initial) | (initial < 0)):
        raise ValueError("initial labels must be >= 0 or inf (no NaN).")
    B = initial.shape[0]
    if name == "torch":
        return function(graph, np.zeros(B, dtype=np.int64), limit, return_predecessors,
                        initial=initial)
    finite = np.isfinite(initial)
    indptr = np.concatenate([graph.indptr, graph.indptr[-1] + np.cumsum(finite.sum(axis=1))])
    augmented = sparse.csr_matrix(
        (
            np.concatenate([graph.data, initial[finite]]),
            np.concatenate([graph.indices, np.nonzero(finite)[1]]),
            indptr,
        ),
        shape=(n + B, n + B),
    )
    result = function(augmented, np.arange(n, n + B), limit, return_predecessors)
    if not return_predecessors:
        return result[:, :n]
    dist, pred = result
    pred = pred[:, :n]
    return dist[:, :n], np.where(pred >= n, NO_PREDECESSOR, pred)


def _block(graph, sources, limit, dtype, backend, columns, start=None):
    if start is None:
        dist = backend[1](graph, sources, limit)
    else:
        dist = seeded_shortest_paths(graph, start(sources), limit, backend=backend)
    if columns is not None:
        dist = dist[:, columns]
    if dtype == np.float32:
        _check_float32(dist)
    return dist.astype(dtype, copy=False)


def _check_float32(dist: np.ndarray) -> None:
    """Refuse a cast to float32 that would turn finite distances into inf or positive ones
    into 0 (inf reads as disconnected, 0 as the same point)."""
    finite = dist[np.isfinite(dist)]
    info = np.finfo(np.float32)
    if finite.size and finite.max() > info.max:
        raise OverflowError(
            f"distances up to {finite.max():.3g} exceed float32 (largest {info.max:.3g}); "
            "they would read as disconnected (inf). Use dtype='float64'."
        )
    small = finite[(finite > 0) & (finite < info.tiny)]
    if small.size:
        raise OverflowError(
            f"distances as small as {small.min():.3g} are below float32's range (smallest "
            f"{info.tiny:.3g}); they would read as 0. Use dtype='float64'."
        )


def _symmetrize(D, combine) -> None:
    """``D[i, j] = D[j, i] = combine(D[i, j], D[j, i])`` for i < j, in place, block by block
    (so ``D`` can be a memory map or a zarr array)."""
    n = D.shape[0]
    step = max(1, int(np.sqrt(chunk_rows(8 * 4))))
    for i in range(0, n, step):
        for j in range(i, n, step):
            upper = np.array(D[i : i + step, j : j + step])
            if i == j:  # the diagonal block: its own two triangles
                rows, cols = np.triu_indices(len(upper), 1)
                value = combine(upper[rows, cols], upper[cols, rows])
                upper[rows, cols] = upper[cols, rows] = value
                D[i : i + step, j : j + step] = upper
            else:
                lower = np.array(D[j : j + step, i : i + step])
                value = combine(upper, lower.T)
                D[i : i + step, j : j + step] = value
                D[j : j + step, i : i + step] = value.T


def mirror_upper_triangle(D) -> None:
    """Make a square distance matrix exactly symmetric, in place: ``D[j, i] = D[i, j]``, i < j.

    Shortest paths from i to j and from j to i have the same length up to the order of
    float additions; the lower-index source's is kept (the path it measures, reversed, is a
    path from j to i), which is also what single-pair queries between two vertices search
    from. Works block by block, so ``D`` can be a memory map or a zarr array.

    Parameters
    ----------
    D : array of shape (n, n), modified in place
    """
    _symmetrize(D, lambda upper, lower: upper)


def minimum_with_transpose(D) -> None:
    """``D = minimum(D, D.T)``, in place and block by block (memory maps, zarr arrays).

    For rows that measure different curves in the two directions (shortcut rows: a segment
    from the row's source, then the graph), each pair keeps the shorter curve.

    Parameters
    ----------
    D : array of shape (n, n), modified in place
    """
    _symmetrize(D, np.minimum)


def _closure_bytes(n: int, itemsize: int = 8) -> int:
    """Memory :func:`triangle_closure` needs for an (n, n) matrix of ``itemsize``-byte
    floats: the matrix in memory (closed in place there; a memory map or another array type
    is copied in) and the two panels of a round."""
    from ._minplus import CLOSURE_BLOCK  # numba is imported where it is used

    return itemsize * n * (n + 4 * CLOSURE_BLOCK)


def triangle_closure(D, n_jobs: int | None = None, progress: bool | None = False) -> None:
    """Close a square distance matrix under the triangle inequality, in place: each entry
    becomes the shortest chain of entries, ``D[i, j] = min sum_l D[v_l, v_l+1]`` over chains
    ``i = v_0, ..., v_k = j``.

    A blocked Floyd-Warshall, compiled (:mod:`gendist._minplus`), O(n^3) time: on 2 cores,
    about 0.7-1.2 s at n = 2 000 in float64 and 0.5-0.6 s in float32, 9.9-12.6 times faster
    than scipy's ``floyd_warshall``; 42-54 s and 24 s at n = 8 000
    (``benchmarks/bench_closure.py``).

    Rows that are not runs of one graph break the triangle inequality: a shortcut row
    (:mod:`gendist.shortcuts`: a straight segment from its own source, then the graph)
    cannot start with another source's segment, and a refined pair cannot use another
    pair's refined curve; under a curved metric in 5-10 dimensions such entries exceed
    ``D[i, j] + D[j, k]`` by up to 15-25 %. Each closed entry is the length of the chain's
    curves joined end to end, so it is still the length of an actual curve and only falls;
    afterwards ``D[i, k] <= D[i, j] + D[j, k]`` up to rounding. Entries that are inf
    (different components) stay inf, as does a chain whose sum overflows the dtype; zeros
    between coincident points stay zero; a symmetric matrix stays exactly symmetric.

    Parameters
    ----------
    D : array of shape (n, n), modified in place
        Non-negative, no NaN, zero on the diagonal (checked first: ValueError). A writable
        C-contiguous float32 or float64 ndarray is closed where it lies, in its own dtype;
        anything else (a memory map, another dtype or order) is read into memory whole, as
        float32 or float64, and written back.
    n_jobs : int, optional
        Threads; None means all cores (as BLAS and the neighbour search).
    progress : bool or None
        A progress bar over the rounds: always (True), never (False), or once the closure
        has run a few seconds (None, the estimators' default).
    """
    shape = np.shape(D)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"triangle_closure needs a square matrix, got shape {shape}.")
    if not getattr(getattr(D, "flags", None), "writeable", True):
        raise ValueError("triangle_closure works in place: D is read-only.")
    in_place = (
        type(D) is np.ndarray
        and D.dtype in (np.float32, np.float64)
        and D.flags.c_contiguous
    )
    dtype = np.float32 if np.dtype(D.dtype) == np.float32 else np.float64
    A = D if in_place else np.array(D, dtype=dtype, order="C")
    if A.size:
        smallest = A.min()  # NaN if any entry is NaN
        if not smallest >= 0:
            raise ValueError(
                "triangle_closure needs non-negative lengths without NaN, got a "
                f"{'NaN' if np.isnan(smallest) else f'negative entry ({smallest:g})'}."
            )
        if np.any(np.diagonal(A) != 0):
            raise ValueError("triangle_closure needs a zero diagonal.")
    from ._minplus import min_plus_closure  # numba is imported where it is used

    min_plus_closure(A, effective_n_jobs(-1 if n_jobs is None else n_jobs), progress)
    if not in_place:
        D[...] = A


def shortest_paths(
    graph,
    sources,
    *,
    columns=None,
    limit: float = np.inf,
    dtype=np.float64,
    backend: str = "auto",
    n_jobs: int | None = None,
    memory_limit: int | None = None,
    progress: bool = False,
    out=None,
    device=None,
    start=None,
) -> np.ndarray:
    """Graph distances from ``sources`` to every vertex (or to ``columns``).

    Parameters
    ----------
    graph : scipy.sparse.csr_matrix of shape (n, n)
        Symmetric, non-negative edge weights; explicit zeros are zero-weight edges.
    sources : array-like of int, shape (B,)
    columns : array-like of int, optional
        Keep only these target vertices (saves memory when only data columns are wanted).
    limit : float
        Do not search beyond this distance; farther vertices get inf.
    dtype : {float64, float32}
        Dtype of the result; float32 halves its memory.
    backend : str
        One of :data:`BACKEND_NAMES` (``"auto"``: :func:`choose_backend`).
    n_jobs : int, optional
        Processes for source blocks (joblib semantics: -1 = all cores).
    memory_limit : int, optional
        Bytes allowed for the result (default: half the physical memory).
    progress : bool
        Show a progress bar over blocks.
    out : array-like of shape (B, n) or (B, len(columns)), optional
        Where to write the rows block by block instead of a new array in RAM: a
        ``numpy.memmap`` (``numpy.lib.format.open_memmap``), a zarr array, or anything that
        takes slice assignment, of dtype float32 or float64. The memory limit does not apply.
    device : None, str or torch.device
        Where the ``"torch"`` backend runs (the CPU when None), and what ``"auto"`` decides by.
    start : callable, optional
        ``start(block) -> initial`` of shape (len(block), n): each source's starting labels
        (:func:`seeded_shortest_paths`), computed block by block, e.g. a
        :class:`gendist.shortcuts.Shortcuts`. It must pickle for ``n_jobs`` > 1.

    Returns
    -------
    dist : ndarray of shape (B, n) or (B, len(columns)), or ``out``
        inf for unreachable vertices (and beyond ``limit``).
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
    graph = validate_graph(graph)
    n = graph.shape[0]
    sources = check_vertex_indices(sources, n, "sources")
    columns = None if columns is None else check_vertex_indices(columns, n, "columns")
    limit = _check_limit(limit)
    backend = _backend_function(backend, graph, len(sources), device)
    name = backend[0]
    n_cols = n if columns is None else len(columns)
    if out is None:
        check_memory(len(sources), n_cols, dtype, memory_limit)
        out = np.empty((len(sources), n_cols), dtype=dtype)
    else:
        _check_out(out, (len(sources), n_cols))
    working_memory = int(get_config()["working_memory"] * 2**20)
    if name == "scipy":
        # a few blocks per worker, each with rows of 1/32 of the working memory (32 MiB by
        # default), so that the blocks in flight add little to the result's own memory
        workers = effective_n_jobs(n_jobs)
        rows_per_block = min(
            chunk_rows(8 * max(n, 1), budget=working_memory // 32),
            max(1, -(-len(sources) // (4 * workers))),
        )
    else:
        # GPU backends: one device, and batches of a quarter of the working memory (256 MiB
        # by default) of float64 rows (the backend chunks its own device memory further)
        workers = 1
        rows_per_block = chunk_rows(8 * max(n, 1), budget=working_memory // 4)
    blocks = [sources[s : s + rows_per_block] for s in range(0, len(sources), rows_per_block)]
    bar = progress_bar(total=len(sources), desc="shortest paths", progress=progress)
    if workers == 1 or len(blocks) == 1:
        results = (_block(graph, b, limit, dtype, backend, columns, start) for b in blocks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_block)(graph, b, limit, dtype, backend, columns, start) for b in blocks
        )
    row = 0
    for res in results:
        out[row : row + len(res)] = res
        row += len(res)
        bar.update(len(res))
    bar.close()
    return out


def shortest_path_tree(
    graph, source: int, limit: float = np.inf, backend: str = "auto", device=None, start=None
):
    """Distances and predecessors from one source.

    With ``start`` (a callable as in :func:`shortest_paths`), the source starts at its labels
    (:func:`seeded_shortest_paths`): vertices reached straight from it have no predecessor.

    Returns
    -------
    dist : ndarray of shape (n,)
    predecessors : ndarray of shape (n,), :data:`NO_PREDECESSOR` where there is none
    """
    graph = validate_graph(graph)
    source = _check_vertex(source, graph.shape[0], "source")
    dist, pred = shortest_path_trees(graph, [source], limit, backend, device, start)
    return dist[0], pred[0]


def shortest_path_trees(
    graph, sources, limit: float = np.inf, backend: str = "auto", device=None, start=None
):
    """Distances and predecessors from each of ``sources``, in one run of the backend.

    One call for many sources, so that ``start`` (a callable as in :func:`shortest_paths`)
    prices the segments of all of them together: called source by source, its fixed cost
    per call is most of the time at a few hundred vertices. The caller bounds the memory by
    the number of sources (two (B, n) arrays).

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
    sources : array-like of int, shape (B,)
    limit, backend, device, start
        As in :func:`shortest_paths`.

    Returns
    -------
    dist : ndarray of shape (B, n)
    predecessors : ndarray of shape (B, n), :data:`NO_PREDECESSOR` where there is none
    """
    graph = validate_graph(graph)
    sources = check_vertex_indices(sources, graph.shape[0], "sources")
    backend = _backend_function(backend, graph, len(sources), device)
    limit = _check_limit(limit)
    if start is None:
        return backend[1](graph, sources, limit, True)
    return seeded_shortest_paths(graph, start(sources), limit, True, backend=backend)


def _row_edges(graph, rows: np.ndarray):
    """(tail, head, weight) of every stored edge out of ``rows`` of a CSR matrix."""
    starts, stops = graph.indptr[rows], graph.indptr[rows + 1]
    counts = stops - starts
    tails = np.repeat(rows, counts)
    # positions starts[i] .. stops[i]-1 for every row, without a Python loop
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(starts, counts) + offsets
    return tails, graph.indices[positions], graph.data[positions]


def _closed(graph, ball: np.ndarray, dist: np.ndarray) -> bool:
    """True when no edge leaves ``ball`` (the vertices with finite ``dist``)."""
    return bool(np.isfinite(dist[_row_edges(graph, ball)[1]]).all())


def _lightest_edge(graph, vertices) -> float:
    """The smallest positive weight next to ``vertices`` (or anywhere; 1.0 when none)."""
    for rows in (np.asarray(vertices), np.arange(graph.shape[0])):
        weights = _row_edges(graph, rows)[2]
        weights = weights[weights > 0]
        if weights.size:
            return float(weights.min())
    return 1.0


def nearest_vertices(
    graph,
    sources,
    n_neighbors: int,
    *,
    backend: str = "auto",
    n_jobs: int | None = None,
    device=None,
    progress: bool = False,
    start=None,
):
    """The ``n_neighbors`` nearest vertices of each source, without all-pairs distances.

    Each source's search is bounded (``limit``) by a radius that doubles, from the largest
    weight of its own edges, until it reaches k other vertices (or its whole component), so
    the work is local. Sources go in blocks whose (block, n) distance rows take a quarter of
    the working memory (:func:`gendist._compute.chunk_rows`), so the memory does not grow
    with the number of sources.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
    sources : array-like of int, shape (B,)
    n_neighbors : int
        k; at most n - 1 are returned.
    backend, n_jobs, device, progress, start
        As in :func:`shortest_paths`. With ``start`` every source reaches every vertex
        straight away, so the rows are searched whole (unbounded), block by block.

    Returns
    -------
    distances : ndarray of shape (B, k)
        Increasing; inf where a component has fewer than k other vertices.
    indices : ndarray of shape (B, k)
        Vertex indices (-1 where the distance is inf). A vertex is not its own neighbour.
    """
    G = validate_graph(graph)
    N = G.shape[0]
    sources = check_vertex_indices(sources, N, "sources")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)):
        raise TypeError(f"n_neighbors must be an integer, got {n_neighbors!r}.")
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}.")
    k = min(int(n_neighbors), N - 1)
    out_d = np.full((len(sources), k), np.inf)
    out_i = np.full((len(sources), k), -1, dtype=np.int64)
    largest = np.maximum.reduceat(np.append(G.data, 0.0), G.indptr[:-1])
    largest[np.diff(G.indptr) == 0] = 0.0
    lightest = _lightest_edge(G, np.empty(0, dtype=np.int64))
    block = chunk_rows(8 * 3 * max(N, 1), budget=int(get_config()["working_memory"] * 2**20) // 4)
    bar = progress_bar(total=len(sources), desc="nearest vertices", progress=progress)
    for first in range(0, len(sources), block):
        rows = np.arange(first, min(first + block, len(sources)))
        src = sources[rows]
        # sources whose every edge weighs 0 (duplicates) start at the lightest positive weight
        radius = np.where(largest[src] > 0, largest[src], lightest)
        todo = np.arange(len(src))
        reached_before = np.full(len(src), -1)
        while todo.size:
            limit = np.inf if start is not None else float(radius[todo].max())
            D = shortest_paths(
                G, src[todo], limit=limit, backend=backend, n_jobs=n_jobs, device=device,
                start=start,
            )
            D[np.arange(len(todo)), src[todo]] = np.inf  # not itself
            reached = np.isfinite(D).sum(axis=1)
            done = (reached >= k) | (start is not None)
            for row in np.flatnonzero(~done & (reached == reached_before[todo])):
                # no growth although the radius doubled: done if the component is exhausted
                ball = np.append(np.flatnonzero(np.isfinite(D[row])), src[todo[row]])
                dist_row = D[row].copy()
                dist_row[src[todo[row]]] = 0.0
                done[row] = _closed(G, ball, dist_row)
            nearest = np.argsort(D, axis=1, kind="stable")[:, :k]
            dist = np.take_along_axis(D, nearest, 1)
            finished = rows[todo[done]]
            out_d[finished] = dist[done]
            out_i[finished] = np.where(np.isfinite(dist[done]), nearest[done], -1)
            reached_before[todo] = reached
            radius[todo] = 2 * limit
            todo = todo[~done]
        bar.update(len(rows))
    bar.close()
    return out_d, out_i


#: the rounds of a pair query may settle this share of the graph before one plain
#: single-source run is cheaper (the last run after the rounds settles up to all of it)
_PAIR_BUDGET = 1 / 16

#: the fixed cost of one bounded run (scipy sets up arrays over all n vertices), as a share of
#: the vertices a full run settles
_RUN_COST = 1 / 128


def _heaviest_edge(graph, vertices) -> float:
    """The largest weight next to ``vertices`` (0.0 when they have no edge)."""
    return float(np.max(_row_edges(graph, np.asarray(vertices))[2], initial=0.0))


def _pair_rounds(graph, source, target, radius, goal, previous, budget, run_cost):
    """The rounds of :func:`pair_shortest_path`, from ``radius`` on: the best connection
    found (inf when none, None when the two ends are proven disconnected), once proven or
    once the next round would pass ``budget`` vertices settled. ``previous`` is the
    ``(radius, size)`` of the balls before."""
    work = 0.0
    while True:
        dist_s = dijkstra(graph, True, indices=source, limit=radius)
        dist_t = dijkstra(graph, True, indices=target, limit=radius)
        ball_s, ball_t = np.flatnonzero(np.isfinite(dist_s)), np.flatnonzero(np.isfinite(dist_t))
        # connections u -> v (u settled from the source, v from the target), scanned from the
        # smaller ball: the graph is symmetric, so its edges are the same either way round
        near, dist_near, dist_far = (
            (ball_t, dist_t, dist_s) if len(ball_t) < len(ball_s) else (ball_s, dist_s, dist_t)
        )
        tails, heads, weights = _row_edges(graph, near)
        best = min(
            np.min(dist_near[tails] + weights + dist_far[heads], initial=np.inf),
            np.min(dist_near[near] + dist_far[near]),
        )
        size = len(ball_s) + len(ball_t)
        work += size + 2 * run_cost
        if best < 2 * radius:
            return best  # proven: d = best up to rounding
        if not np.isfinite(best) and size == previous[1]:
            # neither ball grew although the radius doubled: one may hold its end's whole
            # component, without the other end
            if _closed(graph, ball_s, dist_s) or _closed(graph, ball_t, dist_t):
                return None
        # a connection of length `best` bounds the distance: radius best / 2 proves it (or a
        # shorter one) next round; without one, the distance is at least 2 * radius
        grown = best / 2 * (1 + 1e-12) if np.isfinite(best) else max(2 * radius, goal)
        # the next round's balls, grown like the last ones did (at least as a disc's area)
        exponent = 2.0
        if size > previous[1] and radius > previous[0]:
            exponent = max(exponent, np.log(size / previous[1]) / np.log(radius / previous[0]))
        if work + size * (grown / radius) ** exponent + 2 * run_cost > budget:
            return best  # cheaper to answer with the last run now
        previous, radius = (radius, size), grown


def pair_shortest_path(graph, source: int, target: int, lower_bound: float = 0.0):
    """Shortest path between two vertices, at most about one single-source run's work.

    A bidirectional Dijkstra: scipy's Dijkstra grows a ball of radius ``r`` around each
    end (``limit=r``, so only the vertices inside are settled) and the two balls are joined
    over their connecting edges; ``r`` grows until the best connection is shorter than
    ``2 r``, which proves it shortest (on the true shortest path, the last vertex within
    ``r`` of the source and its successor, within ``r`` of the target, are such a
    connection). Once a connection of length ``c`` is known, radius ``c / 2`` finishes in one
    more round. An admissible lower bound on the distance (the A* heuristic: the Euclidean
    distance times the smallest length factor of any edge) lets the second round jump to
    ``r = lower_bound / 2``, or shows at once that such balls are too large. A last run from
    the source, bounded by the distance now known, settles the target exactly as a full
    Dijkstra run does: the same float (even where several shortest paths tie and their sums
    differ in the last bit) and the same path.

    The rounds may settle 1/16 of the graph in all (each run counted with its fixed set-up
    cost of n/128 vertices). Before each round its balls are foreseen, grown from the last
    ones by the radius' ratio to the power the balls grew at so far (at least 2, a disc's
    area); the forecast starts, without running anything, from the balls at the heaviest
    edge at either end, which hold about the ends and their neighbours. A round that would
    pass the budget is not run: the last run answers at once, bounded by the best
    connection known (never more work than a full run). Near pairs thus cost balls of
    radius about ``d(source, target) / 2``; far pairs, whose balls the lower bound already
    shows too large, cost one plain run.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        Symmetric, non-negative weights; explicit zeros are zero-weight edges.
    source, target : int
    lower_bound : float, default=0.0
        A number not above the distance (0 when nothing is known).

    Returns
    -------
    length : float
        ``inf`` when the two vertices are not connected.
    path : ndarray of int, shape (k,), or None
        Vertex indices from ``source`` to ``target``; None when not connected.
    """
    graph = validate_graph(graph)
    n = graph.shape[0]
    source, target = _check_vertex(source, n, "source"), _check_vertex(target, n, "target")
    return _pair_shortest_path(graph, source, target, float(lower_bound))


def _pair_shortest_path(graph, source: int, target: int, lower_bound: float):
    """:func:`pair_shortest_path` on a validated graph and vertices (the estimators check
    their graph once, at fit: a check of every weight costs about a tenth of a run)."""
    if source == target:
        return 0.0, np.array([source], dtype=np.int64)
    n = graph.shape[0]
    goal = 0.5 * float(lower_bound)  # no ball below this radius can prove a connection
    ends = np.array([source, target])
    budget, run_cost = _PAIR_BUDGET * n, _RUN_COST * n
    # the balls at the heaviest edge at either end hold about the two ends and their
    # neighbours: the start of the forecast, without running anything
    radius = _heaviest_edge(graph, ends) or _lightest_edge(graph, ends)
    size = 2 + int((graph.indptr[ends + 1] - graph.indptr[ends]).sum())
    best, grown = np.inf, max(radius, goal)
    if size * (grown / radius) ** 2 + 2 * run_cost <= budget:
        best = _pair_rounds(graph, source, target, grown, goal, (radius, size), budget, run_cost)
    if best is None:
        return np.inf, None
    # the last run, bounded by the best connection (a full run when none is known): the
    # target's float and path as a full run gives them
    limit = best * (1 + 1e-9) if np.isfinite(best) else np.inf
    dist_s, pred_s = dijkstra(graph, True, indices=source, limit=limit, return_predecessors=True)
    if not np.isfinite(dist_s[target]):
        return np.inf, None
    return float(dist_s[target]), reconstruct_path(pred_s, source, target)


def astar_shortest_path(graph, source: int, target: int, heuristic):
    """Shortest path between two vertices by A* with a consistent heuristic.

    A* with a consistent heuristic ``h`` (``h(u) <= w(u, v) + h(v)`` on every edge,
    ``h(target) = 0``) settles vertices in the order of Dijkstra on the reduced weights
    ``w(u, v) - h(u) + h(v) >= 0``, on which the target's distance is ``d(source, target) -
    h(source)``. So A* here is scipy's Dijkstra on the reduced graph, bounded by ``limit``:
    the search settles exactly the vertices A* would expand below that bound (an ellipse
    around the segment for a Euclidean-type heuristic, instead of a ball), and the bound
    doubles until the target is settled. The path's length is then summed from the original
    weights.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        Non-negative weights.
    source, target : int
    heuristic : ndarray of shape (n,)
        Lower bounds on the distance of every vertex to ``target``, consistent (see above),
        e.g. ``c * |z_v - z_target|`` with ``c`` the smallest weight per unit length of any edge.

    Returns
    -------
    length : float
        ``inf`` when not connected.
    path : ndarray of int or None

    Raises
    ------
    ValueError
        If the heuristic is not consistent (a reduced weight is negative beyond rounding).
    """
    graph = validate_graph(graph)
    n = graph.shape[0]
    source, target = _check_vertex(source, n, "source"), _check_vertex(target, n, "target")
    h = np.asarray(heuristic, dtype=np.float64).reshape(-1)
    if h.shape != (n,) or not np.all(np.isfinite(h)) or np.any(h < 0):
        raise ValueError(f"heuristic must hold {n} finite non-negative values.")
    if source == target:
        return 0.0, np.array([source], dtype=np.int64)
    tails = np.repeat(np.arange(n), np.diff(graph.indptr))
    reduced_data = graph.data - h[tails] + h[graph.indices]
    slack = 1e-9 * np.maximum(graph.data, np.abs(h[tails]))
    if np.any(reduced_data < -slack):
        raise ValueError("the heuristic is not consistent: h(u) > w(u, v) + h(v) on some edge.")
    reduced = sparse.csr_matrix(
        (np.maximum(reduced_data, 0.0), graph.indices, graph.indptr), shape=graph.shape
    )
    limit = max(0.125 * h[source], _lightest_edge(graph, [source]))
    previous = -1
    while True:
        dist, pred = dijkstra(reduced, True, indices=source, limit=limit, return_predecessors=True)
        if np.isfinite(dist[target]):
            path = reconstruct_path(pred, source, target)
            length = float(np.asarray(graph[path[:-1], path[1:]]).sum())
            return length, path
        settled = np.flatnonzero(np.isfinite(dist))
        if len(settled) == previous and _closed(graph, settled, dist):
            return np.inf, None  # the source's whole component, without the target
        previous = len(settled)
        limit *= 2


def reconstruct_seeded_path(predecessors: np.ndarray, source: int, target: int) -> np.ndarray:
    """The path ``source -> target`` of a seeded run (:func:`seeded_shortest_paths`): the
    straight step from ``source`` to the first vertex without a predecessor, then the graph
    path from there (``source`` appears once when the graph path starts at it).

    Raises
    ------
    ValueError
        If the predecessors form a cycle.
    """
    path = [int(target)]
    while predecessors[path[-1]] >= 0:
        path.append(int(predecessors[path[-1]]))
        if len(path) > len(predecessors):
            raise ValueError("the predecessors form a cycle; they are not a shortest-path tree.")
    if path[-1] != source:
        path.append(int(source))
    return np.array(path[::-1], dtype=np.int64)


def reconstruct_path(predecessors: np.ndarray, source: int, target: int) -> np.ndarray:
    """Vertex indices of the path ``source -> target`` from a predecessor array.

    Raises
    ------
    ValueError
        If ``target`` is not reachable from ``source``.
    """
    path = [int(target)]
    while path[-1] != source:
        prev = int(predecessors[path[-1]])
        if prev < 0:
            raise ValueError(f"vertex {target} is not reachable from vertex {source}.")
        path.append(prev)
        if len(path) > len(predecessors):
            raise ValueError("the predecessors form a cycle; they are not a shortest-path tree.")
    return np.array(path[::-1], dtype=np.int64)


@dataclass(frozen=True)
class Geodesic:
    """A graph geodesic.

    Attributes
    ----------
    points : ndarray of shape (k, d)
        The polyline, from the first endpoint to the second.
    indices : ndarray of shape (k,)
        Vertex index of each point; -1 for an endpoint that is not a vertex.
    length : float
        Its length under the metric (the generative distance between the endpoints).
    """

    points: np.ndarray
    indices: np.ndarray
    length: float
