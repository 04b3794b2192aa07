import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import floyd_warshall

from gendist.graph import GraphTooLargeError, symmetric_csr
from gendist.paths import (
    check_memory,
    pair_shortest_path,
    reconstruct_path,
    reconstruct_seeded_path,
    shortest_path_tree,
    shortest_path_trees,
    shortest_paths,
    triangle_closure,
)

from .conftest import TORCH_DEVICES


def floyd_warshall_brute(W):
    """Plain numpy Floyd-Warshall on a dense weight matrix (inf = no edge)."""
    D = W.copy()
    np.fill_diagonal(D, 0)
    for k in range(len(D)):
        D = np.minimum(D, D[:, [k]] + D[[k], :])
    return D


def random_graph(rng, n=40, p=0.08, components=1):
    W = np.full((n, n), np.inf)
    rows, cols, w = [], [], []
    block = np.array_split(np.arange(n), components)
    for b in block:
        for i in b:
            for j in b:
                if i < j and rng.random() < p:
                    rows.append(i)
                    cols.append(j)
                    w.append(rng.uniform(0, 2) if rng.random() > 0.1 else 0.0)
    rows, cols, w = map(np.array, (rows, cols, w))
    W[rows, cols] = w
    W[cols, rows] = w
    return symmetric_csr(n, rows, cols, w), W


@pytest.mark.parametrize("components", [1, 3])
def test_shortest_paths_equal_brute_force(rng, components):
    G, W = random_graph(rng, components=components)
    expected = floyd_warshall_brute(W)
    got = shortest_paths(G, np.arange(40))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isinf(got).any() == (components > 1 or np.isinf(expected).any())


def test_parallel_blocks_columns_and_float32(rng):
    G, W = random_graph(rng, n=60, p=0.1)
    expected = floyd_warshall_brute(W)
    sources, columns = np.array([5, 1, 7, 30]), np.array([0, 3, 59])
    got = shortest_paths(G, sources, columns=columns, n_jobs=2)
    np.testing.assert_allclose(got, expected[np.ix_(sources, columns)], rtol=1e-12)
    par = shortest_paths(G, np.arange(60), n_jobs=2)
    np.testing.assert_array_equal(par, shortest_paths(G, np.arange(60), n_jobs=1))
    f32 = shortest_paths(G, np.arange(60), dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, expected, rtol=1e-6)


def test_limit_cuts_off_far_vertices(rng):
    G, W = random_graph(rng, n=50, p=0.1)
    expected = floyd_warshall_brute(W)
    got = shortest_paths(G, np.arange(50), limit=1.0)
    near = expected <= 1.0
    np.testing.assert_allclose(got[near], expected[near])
    assert np.all(np.isinf(got[~near]))


def test_predecessors_give_paths_of_the_right_length(rng):
    G, W = random_graph(rng, n=50, p=0.12)
    expected = floyd_warshall_brute(W)
    dist, pred = shortest_path_tree(G, 3)
    for target in np.flatnonzero(np.isfinite(expected[3])):
        path = reconstruct_path(pred, 3, target)
        assert path[0] == 3 and path[-1] == target
        length = sum(W[a, b] for a, b in zip(path[:-1], path[1:]))
        assert length == pytest.approx(expected[3, target], rel=1e-12, abs=1e-12)
    unreachable = np.flatnonzero(np.isinf(expected[3]))
    if len(unreachable):
        with pytest.raises(ValueError, match="not reachable"):
            reconstruct_path(pred, 3, unreachable[0])


@pytest.mark.parametrize("seeded", [False, True])
def test_trees_of_many_sources_give_paths_of_the_brute_force_length(rng, seeded):
    """Several sources in one run, plain or from labelled starts (each source reaches some
    vertices straight at a random cost): every reconstructed path has the brute-force
    (Floyd-Warshall) length, min_u start[b, u] + d(u, v) when seeded."""
    G, W = random_graph(rng, n=45, p=0.1, components=2)
    expected = floyd_warshall_brute(W)
    sources = np.array([0, 7, 7, 30, 44])
    labels = np.full((len(sources), 45), np.inf)
    labels[np.arange(len(sources)), sources] = 0.0
    if seeded:
        straight = rng.random((len(sources), 45)) < 0.2
        labels[straight] = np.minimum(labels[straight], rng.uniform(0.1, 2.0, straight.sum()))
    truth = (labels[:, :, None] + expected[None]).min(axis=1)
    dist, pred = shortest_path_trees(
        G, sources, start=(lambda block: labels[: len(block)]) if seeded else None
    )
    np.testing.assert_allclose(dist, truth, rtol=1e-12, atol=1e-12)
    reconstruct = reconstruct_seeded_path if seeded else reconstruct_path
    for row, s in enumerate(sources):
        for v in np.flatnonzero(np.isfinite(truth[row])):
            path = reconstruct(pred[row], s, v)
            assert path[0] == s and path[-1] == v
            # the graph part starts at the path's last vertex without a predecessor, reached
            # at its label (the source itself: label 0)
            k = max(i for i, p in enumerate(path) if pred[row, p] < 0)
            length = labels[row, path[k]] + sum(
                W[p, q] for p, q in zip(path[k:-1], path[k + 1 :])
            )
            assert length == pytest.approx(truth[row, v], rel=1e-12, abs=1e-12)


def test_memory_guard_names_the_alternatives():
    with pytest.raises(GraphTooLargeError) as info:
        check_memory(100_000, 100_000, np.float64, memory_limit=2**30)
    msg = str(info.value)
    for word in ("74.5 GiB", "blocks", "landmark", "limit=", "float32"):
        assert word in msg
    check_memory(1000, 1000, np.float32, memory_limit=2**30)  # fits: no error
    G = sparse.csr_matrix((3, 3))
    with pytest.raises(GraphTooLargeError):
        shortest_paths(G, [0, 1, 2], memory_limit=10)


def test_bad_arguments(rng):
    G, _ = random_graph(rng, n=10)
    with pytest.raises(ValueError, match="backend"):
        shortest_paths(G, [0], backend="nope")
    with pytest.raises(IndexError, match="sources"):
        shortest_paths(G, [10])
    with pytest.raises(ValueError, match="dtype"):
        shortest_paths(G, [0], dtype=np.int32)


@pytest.mark.parametrize("components", [1, 3])
def test_pair_query_equals_full_dijkstra_exactly(rng, components):
    """Bidirectional search: the same length (bit for bit) and path as scipy's full run,
    with zero-weight edges, disconnected pairs, and with or without a lower bound."""
    from scipy.sparse.csgraph import dijkstra

    for n, p in ((40, 0.08), (300, 0.015)):
        G, W = random_graph(rng, n=n, p=p, components=components)
        D = dijkstra(G, directed=True)
        expected = floyd_warshall_brute(W) if n <= 40 else D
        for a, b in rng.integers(n, size=(60, 2)):
            for bound in (0.0, 0.5 * D[a, b] if np.isfinite(D[a, b]) else 1.0):
                length, path = pair_shortest_path(G, a, b, lower_bound=bound)
                if not np.isfinite(expected[a, b]):
                    assert length == np.inf and path is None
                    continue
                assert length == D[a, b]
                np.testing.assert_allclose(length, expected[a, b], rtol=1e-12)
                assert path[0] == a and path[-1] == b
                # a path of the graph, whose edge weights add up to the length
                # (zero-weight edges make ties, so the path itself may differ from scipy's)
                np.testing.assert_allclose(
                    sum(W[u, v] for u, v in zip(path[:-1], path[1:])), length, rtol=1e-12
                )


def test_pair_query_on_a_geometric_graph_matches_scipy(rng):
    """Near and far pairs of a 2-D kNN graph (the balls grow, or the search falls back to a
    full run once they hold half the graph)."""
    from scipy.sparse.csgraph import dijkstra

    from gendist.graph import build_edges

    X = rng.random((3000, 2))
    rows, cols, lengths = build_edges(X, n_neighbors=8)
    G = symmetric_csr(len(X), rows, cols, lengths * rng.uniform(0.5, 2.0, len(lengths)))
    sources = rng.integers(len(X), size=8)
    D, pred = dijkstra(G, directed=True, indices=sources, return_predecessors=True)
    for row, a in enumerate(sources):
        order = np.argsort(D[row])
        for b in order[[1, 30, 300, 1500, 2999]]:
            length, path = pair_shortest_path(G, a, b, 0.5 * np.linalg.norm(X[a] - X[b]))
            assert length == D[row, b]
            np.testing.assert_array_equal(path, reconstruct_path(pred[row], a, b))


def test_pair_query_with_ties_and_zero_weights_is_the_full_runs_answer(rng):
    """On a lattice many shortest paths tie and their float sums differ in the last bit; with
    zero-weight edges (duplicate points) a meeting point can close a loop. The answer is still
    scipy's full-run float and path, and no path repeats a vertex."""
    from scipy.sparse.csgraph import dijkstra

    side = 15
    index = np.arange(side * side).reshape(side, side)
    rows = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel(), index[:-1, :-1].ravel()])
    cols = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel(), index[1:, 1:].ravel()])
    weights = np.where(np.arange(len(rows)) < 2 * side * (side - 1), 0.1, 0.1 * np.sqrt(2))
    weights[rng.random(len(weights)) < 0.05] = 0.0
    G = symmetric_csr(side * side, rows, cols, weights)
    D, pred = dijkstra(G, directed=True, return_predecessors=True)
    for a, b in rng.integers(side * side, size=(300, 2)):
        length, path = pair_shortest_path(G, a, b)
        assert length == D[a, b]
        np.testing.assert_array_equal(path, reconstruct_path(pred[a], a, b))
        assert len(np.unique(path)) == len(path)


def test_pair_query_bad_vertices(rng):
    G, _ = random_graph(rng)
    for a, b in ((-1, 2), (0, 40), (40, 40)):
        with pytest.raises(IndexError, match="vertex index"):
            pair_shortest_path(G, a, b)


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("components", [1, 3])
def test_torch_bellman_ford_equals_scipy(rng, device, components):
    """The batched torch backend reaches the same distances as scipy's Dijkstra (zero-weight
    edges and disconnected components included), in chunks of sources, with a limit, and its
    predecessors are a shortest-path tree."""
    from scipy.sparse.csgraph import dijkstra

    from gendist.paths import _torch_bellman_ford

    for n, p in ((40, 0.08), (400, 0.012)):
        G, W = random_graph(rng, n=n, p=p, components=components)
        sources = rng.choice(n, 25, replace=False)
        expected, _ = dijkstra(G, directed=True, indices=sources, return_predecessors=True)
        got, pred = _torch_bellman_ford(
            G, sources, return_predecessors=True, device=device, chunk_bytes=50_000
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        for row, a in enumerate(sources):
            for b in np.flatnonzero(np.isfinite(expected[row]))[:15]:
                path = reconstruct_path(pred[row], a, b)
                length = sum(W[u, v] for u, v in zip(path[:-1], path[1:]))
                np.testing.assert_allclose(length, expected[row, b], rtol=1e-12, atol=1e-15)
        limit = np.nanmedian(np.where(np.isfinite(expected), expected, np.nan))
        np.testing.assert_allclose(
            _torch_bellman_ford(G, sources, limit, device=device),
            dijkstra(G, directed=True, indices=sources, limit=limit),
            rtol=1e-12,
        )
        # through the public interface, in row blocks
        np.testing.assert_allclose(
            shortest_paths(G, sources, backend="torch"), expected, rtol=1e-12
        )


def test_pair_query_decides_from_the_bound(rng, monkeypatch):
    """A lower bound whose balls would hold much of the graph sends the query straight to
    one single-source run (no rounds); a near pair runs rounds. Both answers are scipy's."""
    from scipy.sparse.csgraph import dijkstra

    import gendist.paths as paths
    from gendist.graph import build_edges

    X = rng.random((4000, 2))
    rows, cols, lengths = build_edges(X, n_neighbors=8)
    G = symmetric_csr(len(X), rows, cols, lengths)
    D = dijkstra(G, directed=True, indices=0)
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("limit", np.inf))
        return dijkstra(*args, **kwargs)

    monkeypatch.setattr(paths, "dijkstra", counting)
    far, near = int(np.argmax(D)), int(np.argsort(D)[5])
    for b, far_pair in ((far, True), (near, False)):
        calls.clear()
        length, _ = pair_shortest_path(G, 0, b, np.linalg.norm(X[0] - X[b]))
        assert length == D[b]
        # far: the one unbounded run; near: a round from each end, then the bounded last run
        assert calls == [np.inf] if far_pair else len(calls) >= 3 and np.isfinite(calls[-1])


def _min_plus_closure(D):
    """Brute force: relax D[i, j] by every D[i, k] + D[k, j] until nothing changes."""
    D = D.copy()
    while True:
        relaxed = np.minimum(D, (D[:, :, None] + D[None, :, :]).min(axis=1))
        if np.array_equal(relaxed, D):
            return D
        D = relaxed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_triangle_closure_is_the_brute_force_min_plus_closure(rng, dtype, tmp_path):
    """Two components (inf between them), two coincident points (a zero off the diagonal), a
    tiny link, entries that break the triangle inequality: the closure equals the brute-force fixed
    point of min-plus relaxation, in place, also on a memory map, and then holds the
    triangle inequality."""
    n = 14
    X = rng.normal(size=(n, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=2) * rng.uniform(1.0, 3.0, size=(n, n))
    D = np.minimum(D, D.T)
    D[:, 4], D[4, :] = D[:, 3], D[3, :]  # vertex 4 coincides with vertex 3
    D[3, 4] = D[4, 3] = 0.0
    D[6, 7] = D[7, 6] = 1e-12  # a link scipy drops from a plain dense matrix (within 1e-8 of 0)
    np.fill_diagonal(D, 0.0)
    D[:9, 9:] = D[9:, :9] = np.inf  # components {0..8} and {9..13}
    D = D.astype(dtype)
    expected = _min_plus_closure(D.astype(np.float64))
    assert (expected < D).sum() > 10  # the input breaks the triangle inequality
    A = D.copy()
    triangle_closure(A)
    assert A.dtype == dtype
    np.testing.assert_allclose(A, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert np.array_equal(A[:9, 9:], np.full((9, 5), np.inf))
    assert A[3, 4] == 0 and np.array_equal(A[3], A[4])
    with np.errstate(invalid="ignore"):
        through = A[:, :, None].astype(np.float64) + A[None, :, :]
    assert np.all(A <= through.min(axis=1) * (1 + 1e-6))  # A[i, k] <= A[i, j] + A[j, k]
    M = np.lib.format.open_memmap(tmp_path / "D.npy", mode="w+", dtype=dtype, shape=D.shape)
    M[:] = D
    triangle_closure(M)
    np.testing.assert_array_equal(np.asarray(M), A)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("block", "tile", "n_jobs"), [(128, 256, 1), (7, 33, 2), (16, 5, 2)])
def test_blocked_closure_is_scipys_floyd_warshall(rng, dtype, block, tile, n_jobs, monkeypatch):
    """A directed (not symmetric) matrix of 301 vertices, with missing links (inf), links
    of length zero and tiny links, entries far above their chains: scipy's Floyd-Warshall
    gives the same closure, with the default blocks, with many small ragged blocks and
    tiles (every round's panels, a last partial block), on one or two threads; a symmetric
    matrix stays exactly symmetric."""
    import gendist._minplus as minplus

    monkeypatch.setattr(minplus, "CLOSURE_BLOCK", block)
    monkeypatch.setattr(minplus, "CLOSURE_TILE", tile)
    n = 301
    W = rng.uniform(0.5, 40.0, size=(n, n)) ** 2
    W[rng.random((n, n)) < 0.05] = np.inf
    W[rng.random((n, n)) < 0.002] = 0.0
    W[rng.random((n, n)) < 0.002] = 1e-12
    np.fill_diagonal(W, 0.0)
    W = W.astype(dtype)
    # scipy drops zero entries even from a masked array: they go in as the smallest float
    tiny = float(np.nextafter(0.0, 1.0))
    R = np.where(W == 0, tiny, W.astype(np.float64))
    np.fill_diagonal(R, 0.0)
    expected = floyd_warshall(np.ma.masked_array(R, mask=np.isinf(R)))
    expected[expected <= n * tiny] = 0.0
    assert (expected[W > 0] == 0).any()  # chains of zero links
    assert (expected < W).mean() > 0.5
    A = W.copy()
    triangle_closure(A, n_jobs=n_jobs)
    assert A.dtype == dtype
    np.testing.assert_array_equal(np.isinf(A), np.isinf(expected))
    np.testing.assert_allclose(A, expected, rtol=1e-6 if dtype == np.float32 else 1e-13,
                               atol=0)
    F = np.asfortranarray(W)  # not C-contiguous: closed in a copy, written back
    triangle_closure(F, n_jobs=n_jobs)
    np.testing.assert_allclose(F, A, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0)
    S = np.minimum(W, W.T)  # a symmetric matrix stays exactly symmetric
    triangle_closure(S, n_jobs=n_jobs)
    np.testing.assert_array_equal(S, S.T)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 4)), "square"),
        (np.zeros(4), "square"),
        (np.array([[0.0, -1.0, 3.0], [-1.0, 0.0, 1.0], [3.0, 1.0, 0.0]]), "negative"),
        (np.array([[0.0, 1.0, np.nan], [1.0, 0.0, 1.0], [np.nan, 1.0, 0.0]]), "NaN"),
        (np.array([[5.0, 1.0], [1.0, 0.0]]), "diagonal"),
    ],
)
def test_triangle_closure_refuses_what_it_cannot_close(bad, message):
    """A matrix that is not square (the kernels index without bounds checks), a negative
    entry (a negative cycle has no closure), a NaN (no order), a nonzero diagonal: a clear
    error before any work, the matrix untouched."""
    before = bad.copy()
    with pytest.raises(ValueError, match=message):
        triangle_closure(bad)
    np.testing.assert_array_equal(bad, before)


def test_triangle_closure_refuses_a_read_only_matrix_before_the_work():
    D = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    D.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        triangle_closure(D)
