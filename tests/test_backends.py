"""The cuGraph backend's glue, the hop-depth estimate and the rule behind backend="auto"."""

import importlib.util
import sys
import types

import networkx as nx
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from gendist import paths
from gendist.graph import symmetric_csr
from gendist.paths import choose_backend, hop_depth, reconstruct_path, shortest_paths


def random_graph(rng, n, p, components=1):
    rows, cols = [], []
    for block in np.array_split(np.arange(n), components):
        for i in block:
            for j in block:
                if i < j and rng.random() < p:
                    rows.append(i)
                    cols.append(j)
    rows, cols = np.array(rows), np.array(cols)
    w = np.where(rng.random(len(rows)) < 0.1, 0.0, rng.uniform(0, 2, len(rows)))
    return symmetric_csr(n, rows, cols, w)


def fake_rapids(monkeypatch):
    """Install stand-ins for ``pylibcugraph`` and ``cupy`` that follow pylibcugraph's documented
    contract of ``SGGraph(..., input_array_format="CSR")`` and ``sssp``: results as
    (vertices, distances, predecessors) in an order of cuGraph's choosing (shuffled here),
    the dtype's max for unreachable vertices, -1 as the predecessor of the source and of
    unreachable vertices, nothing beyond ``cutoff``. The distances themselves come from
    scipy, so what is checked is our side: building the CSR, the sentinel, the scatter back
    to vertex order and the predecessor convention. Records every graph build."""
    built = []
    plc = types.ModuleType("pylibcugraph")
    plc.ResourceHandle = lambda: object()
    plc.GraphProperties = lambda is_symmetric, is_multigraph: (is_symmetric, is_multigraph)

    def sg_graph(handle, props, offsets, indices, weights, **kwargs):
        assert kwargs["input_array_format"] == "CSR" and not kwargs["renumber"]
        n = len(offsets) - 1
        built.append(kwargs)
        return sparse.csr_matrix((weights, indices, offsets), shape=(n, n))

    def sssp(handle, graph, source, cutoff, compute_predecessors, do_expensive_check):
        dist, pred = dijkstra(graph, True, indices=source, return_predecessors=True)
        unreached = ~(dist <= cutoff)
        dist[unreached] = np.finfo(np.float64).max
        pred[unreached | (pred < 0)] = -1
        order = np.random.default_rng(source).permutation(len(dist))
        return order.astype(np.int32), dist[order], pred[order].astype(np.int32)

    plc.SGGraph, plc.sssp = sg_graph, sssp
    cupy = types.ModuleType("cupy")
    cupy.asarray, cupy.asnumpy = np.asarray, np.asarray
    monkeypatch.setitem(sys.modules, "pylibcugraph", plc)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return built


@pytest.mark.parametrize("components", [1, 3])
def test_cugraph_glue_gives_scipy_distances_and_paths(rng, monkeypatch, components):
    built = fake_rapids(monkeypatch)
    G = random_graph(rng, 120, 0.05, components)
    sources = rng.choice(120, 10, replace=False)
    expected = dijkstra(G, True, indices=sources)
    dist, pred = paths._cugraph_sssp(G, sources, return_predecessors=True)
    np.testing.assert_array_equal(dist, expected)
    assert len(built) == 1  # the graph goes to the GPU once for all sources
    for row, a in enumerate(sources):
        assert pred[row, a] == -9999
        assert np.all(pred[row, ~np.isfinite(expected[row])] == -9999)
        for b in np.flatnonzero(np.isfinite(expected[row]))[:20]:
            path = reconstruct_path(pred[row], a, b)
            length = sum(G[u, v] for u, v in zip(path[:-1], path[1:]))
            np.testing.assert_allclose(length, expected[row, b], rtol=1e-12, atol=1e-15)
    limit = np.median(expected[np.isfinite(expected)])
    np.testing.assert_array_equal(
        paths._cugraph_sssp(G, sources, limit), dijkstra(G, True, indices=sources, limit=limit)
    )
    # through the public interface, in row blocks, one device (no process pool)
    np.testing.assert_array_equal(shortest_paths(G, sources, backend="cugraph", n_jobs=2), expected)


def test_cugraph_without_rapids_names_the_extra(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "pylibcugraph", None)  # import fails
    G = random_graph(rng, 20, 0.3)
    with pytest.raises(ImportError, match=r"gendist\[gpu\]"):
        shortest_paths(G, [0], backend="cugraph")


if importlib.util.find_spec("pylibcugraph") is not None:
    # defined only where RAPIDS is installed (it cannot be on the CI machines), like the CUDA
    # cases of the torch tests

    def test_cugraph_on_a_gpu_equals_scipy(rng):
        """The real library against scipy."""
        _real_cugraph_equals_scipy(rng)


def _real_cugraph_equals_scipy(rng):
    G = random_graph(rng, 300, 0.02, components=2)
    sources = rng.choice(300, 12, replace=False)
    np.testing.assert_allclose(
        shortest_paths(G, sources, backend="cugraph"),
        dijkstra(G, True, indices=sources),
        rtol=1e-12,
    )


def test_hop_depth_is_exact_on_trees_and_brackets_the_diameter(rng):
    for seed in range(5):
        tree = nx.random_labeled_tree(60, seed=seed)
        forest = nx.disjoint_union(tree, nx.path_graph(7))
        A = nx.to_scipy_sparse_array(forest, format="csr", dtype=float)
        # exact on a tree: twice its diameter (the path graph is shorter here)
        assert hop_depth(A) == 2 * max(nx.diameter(tree), 6)
    X = rng.uniform(size=(400, 2))
    geometric = nx.random_geometric_graph(400, 0.12, pos=dict(enumerate(X)), seed=0)
    biggest = geometric.subgraph(max(nx.connected_components(geometric), key=len))
    A = nx.to_scipy_sparse_array(geometric, nodelist=range(400), format="csr", dtype=float)
    diameter = nx.diameter(biggest)
    assert diameter <= hop_depth(A) <= 2 * diameter
    assert hop_depth(sparse.csr_matrix((5, 5))) == 0  # no edges


def test_auto_backend_rule(rng, monkeypatch):
    shallow = random_graph(rng, 200, 0.1)
    n = 3000
    chain = symmetric_csr(n, np.arange(n - 1), np.arange(1, n), np.ones(n - 1))
    monkeypatch.setattr(paths, "_cuda_available", lambda: False)
    assert choose_backend(shallow, 1000, "cuda") == "scipy"
    monkeypatch.setattr(paths, "_cuda_available", lambda: True)
    assert hop_depth(chain) == 2 * (n - 1) > paths._TORCH_MAX_HOPS
    # the device rule: no device (numpy on the CPU) or a CPU device never picks a GPU backend
    assert choose_backend(shallow, 1000) == choose_backend(shallow, 1000, "cpu") == "scipy"
    assert choose_backend(shallow, 1000, "cuda") == "torch"
    # few sources: no batch to share
    assert choose_backend(shallow, 1, "cuda") in ("scipy", "cugraph")
    monkeypatch.setitem(sys.modules, "pylibcugraph", None)
    assert choose_backend(chain, 1000, "cuda") == "scipy"
    fake_rapids(monkeypatch)
    assert choose_backend(chain, 1000, "cuda") == "cugraph"
    assert choose_backend(shallow, 1, "cuda") == "cugraph"


def test_gpu_backends_get_large_batches(rng, monkeypatch):
    """A GPU backend receives the sources in batches bounded by memory, not split per worker."""
    calls = []

    def recording(graph, sources, limit=np.inf, return_predecessors=False):
        calls.append(len(sources))
        return dijkstra(graph, True, indices=sources, limit=limit)

    monkeypatch.setitem(paths._BACKENDS, "torch", recording)
    G = random_graph(rng, 200, 0.05)
    D = shortest_paths(G, np.arange(200), backend="torch", n_jobs=2)
    assert calls == [200]
    np.testing.assert_array_equal(D, dijkstra(G, True))


def test_hop_depth_with_many_components():
    """Thousands of small components: the double sweep runs once over all of them."""
    stars = nx.disjoint_union_all([nx.star_graph(4) for _ in range(2000)] + [nx.path_graph(30)])
    A = nx.to_scipy_sparse_array(stars, format="csr", dtype=float)
    assert hop_depth(A) == 2 * 29
