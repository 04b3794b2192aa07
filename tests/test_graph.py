import numpy as np
import pytest
import sklearn
import torch
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist, pdist, squareform

import gendist.graph
from gendist.graph import (
    BLOCKED_MIN_FEATURES,
    BLOCKED_MIN_SAMPLES,
    GraphTooLargeError,
    NeighbourIndex,
    auto_radius,
    build_edges,
    component_report,
    join_edges,
    knn_edges,
    radius_edges,
    search_method,
    symmetric_csr,
    torch_edges,
)

from .conftest import TORCH_DEVICES


def _pairs(rows, cols):
    return set(zip(rows.tolist(), cols.tolist()))


def test_radius_graph_matches_brute_force(rng):
    X = rng.normal(size=(300, 3))
    r = 0.6
    rows, cols, lengths = radius_edges(X, r)
    D = squareform(pdist(X))
    i, j = np.nonzero(np.triu(D <= r, k=1))
    assert _pairs(rows, cols) == _pairs(i, j)
    np.testing.assert_allclose(lengths, D[rows, cols], rtol=1e-12)


def test_knn_graph_is_the_symmetrised_brute_force_knn(rng):
    X = rng.normal(size=(200, 2))
    k = 5
    D = squareform(pdist(X))
    np.fill_diagonal(D, np.inf)
    nearest = np.argsort(D, axis=1)[:, :k]
    expected = {(min(i, j), max(i, j)) for i in range(200) for j in nearest[i]}
    rows, cols, lengths = knn_edges(X, k)
    assert _pairs(rows, cols) == expected
    assert np.all(rows < cols)
    np.testing.assert_allclose(lengths, D[rows, cols])


def test_adaptive_graph_is_the_union_and_keeps_k_neighbours(rng):
    X = np.vstack([rng.normal(size=(150, 2)) * 0.2, rng.normal(size=(30, 2)) * 3])
    rows, cols, _ = build_edges(X, radius=0.1, n_neighbors=4)
    union = _pairs(*radius_edges(X, 0.1)[:2]) | _pairs(*knn_edges(X, 4)[:2])
    assert _pairs(rows, cols) == union
    degree = np.bincount(np.concatenate([rows, cols]), minlength=len(X))
    assert degree.min() >= 4


def test_auto_radius_connects_and_is_near_the_mst_bottleneck(rng):
    X = rng.uniform(size=(400, 2))
    bottleneck = minimum_spanning_tree(squareform(pdist(X))).data.max()
    r = auto_radius(X)
    assert bottleneck <= r <= bottleneck * (1 + 1e-6)
    rows, cols, _ = radius_edges(X, r)
    G = symmetric_csr(len(X), rows, cols, np.ones(len(rows)))
    assert connected_components(G)[0] == 1


def test_auto_radius_connects_far_apart_clusters(rng):
    X = np.vstack([rng.normal(size=(50, 2)) * 0.1, rng.normal(size=(50, 2)) * 0.1 + 10])
    r = auto_radius(X, n_neighbors=5)  # the kNN graph alone is disconnected
    bottleneck = minimum_spanning_tree(squareform(pdist(X))).data.max()
    assert bottleneck <= r <= bottleneck * (1 + 1e-6)


def test_duplicates_are_zero_length_edges_kept_explicitly(rng):
    X = rng.normal(size=(20, 2))
    X = np.vstack([X, X[:3]])  # three duplicates
    rows, cols, lengths = radius_edges(X, 0.5)
    zero = _pairs(rows[lengths == 0], cols[lengths == 0])
    assert zero == {(0, 20), (1, 21), (2, 22)}
    G = symmetric_csr(len(X), rows, cols, lengths)
    assert G.nnz == 2 * len(rows)  # explicit zeros stored
    assert G[0, 20] == 0 and G.has_canonical_format


def test_symmetric_csr_does_not_double_weights(rng):
    rows, cols = np.array([0, 0, 1]), np.array([1, 2, 2])
    G = symmetric_csr(3, rows, cols, np.array([1.0, 2.0, 3.0])).toarray()
    np.testing.assert_array_equal(G, [[0, 1, 2], [1, 0, 3], [2, 3, 0]])


def test_component_report_warns_with_the_count(rng):
    G = symmetric_csr(5, np.array([0, 3]), np.array([1, 4]), np.ones(2))
    with pytest.warns(UserWarning, match="3 connected components"):
        n, labels = component_report(G)
    assert n == 3 and labels[0] == labels[1] != labels[2]


def test_radius_graph_memory_guard(rng):
    X = rng.normal(size=(500, 2))
    with pytest.raises(GraphTooLargeError, match="n_neighbors"):
        radius_edges(X, 10.0, max_edges=1000)


def test_join_edges_by_radius_with_fallback(rng):
    from sklearn.neighbors import NearestNeighbors

    V = rng.uniform(size=(100, 2))
    Y = np.array([[0.5, 0.5], [5.0, 5.0]])
    nn = NearestNeighbors().fit(V)
    with pytest.warns(UserWarning, match="1 of 2 new points"):
        rows, cols, lengths = join_edges(nn, V, Y, radius=0.2)
    d = np.linalg.norm(V - Y[0], axis=1)
    assert set(cols[rows == 0].tolist()) == set(np.flatnonzero(d <= 0.2).tolist())
    assert cols[rows == 1].tolist() == [int(np.argmin(np.linalg.norm(V - Y[1], axis=1)))]
    np.testing.assert_allclose(lengths, np.linalg.norm(Y[rows] - V[cols], axis=1))


@pytest.mark.parametrize("device", TORCH_DEVICES)
@pytest.mark.parametrize("d", [3, 20])
def test_torch_edges_equal_scikit_learn_neighbours(rng, device, d):
    """The blocked torch search finds the same radius, kNN and adaptive graphs as
    scikit-learn, with exact lengths, in float64 and in float32 (exact recomputation)."""
    X = rng.normal(size=(900, d))
    radius = np.quantile(np.linalg.norm(X[:100, None] - X[None, :100], axis=2), 0.02)
    for params in ({"radius": radius}, {"n_neighbors": 7}, {"radius": radius, "n_neighbors": 4}):
        rows, cols, lengths = build_edges(X, **params)
        expected = dict(zip(zip(rows.tolist(), cols.tolist()), lengths))
        for dtype in (torch.float64, torch.float32):
            r, c, ell = torch_edges(X, device=device, dtype=dtype, **params)
            got = dict(zip(zip(r.tolist(), c.tolist()), ell))
            assert got.keys() == expected.keys()
            np.testing.assert_array_equal([got[p] for p in expected], list(expected.values()))


def test_torch_edges_keep_near_duplicates_exactly(rng):
    X = rng.normal(size=(300, 4))
    X[5] = X[6]
    X[7] = X[8] + 1e-9
    rows, cols, lengths = torch_edges(X, radius=0.5, device="cpu", dtype=torch.float32)
    pairs = dict(zip(zip(rows.tolist(), cols.tolist()), lengths))
    assert pairs[5, 6] == 0.0
    assert pairs[7, 8] == pytest.approx(np.linalg.norm(X[7] - X[8]), rel=1e-12)
    # the estimator builds its graph and weights on the device, with the same result
    from gendist import GaussianMixtureDensity, GenerativeDistance

    mixture = GaussianMixtureDensity.isotropic(X[:20], 0.5)
    ref = GenerativeDistance(mixture, n_neighbors=6).fit(X)
    est = GenerativeDistance(mixture, n_neighbors=6, device="cpu").fit(X)
    np.testing.assert_allclose(est.graph_.toarray(), ref.graph_.toarray(), rtol=1e-10)


# --- the blocked matrix-product search -------------------------------------------------------


def _blocked_data(rng, n, d):
    """Random points with exact duplicates, a near-duplicate pair and a shared offset."""
    X = rng.normal(size=(n, d)) + 3.0
    X[n - 20 : n - 10] = X[:10]  # exact duplicates
    X[n - 1] = X[11] + 1e-9
    return X


def test_search_method_rule_and_the_index_follow_the_shape():
    assert search_method(10**5, BLOCKED_MIN_FEATURES - 1) == "tree"
    assert search_method(BLOCKED_MIN_SAMPLES - 1, 784) == "tree"
    assert search_method(BLOCKED_MIN_SAMPLES, BLOCKED_MIN_FEATURES) == "blocked"
    X = np.random.default_rng(0).normal(size=(BLOCKED_MIN_SAMPLES, BLOCKED_MIN_FEATURES))
    assert NeighbourIndex().fit(X).method_ == "blocked"
    assert NeighbourIndex().fit(X[:, :-1]).method_ == "tree"
    assert NeighbourIndex(algorithm="kd_tree").fit(X).method_ == "sklearn"
    assert NeighbourIndex(metric="manhattan").fit(X).method_ == "sklearn"


# the screen's tiles (gendist.graph._SCREEN_TILE, below 64 features): the default, and small
# ragged ones so that a block spans many tiles of rows and of columns
TILES = pytest.mark.parametrize("tile", [None, (48, 100)], ids=["tile=default", "tile=48x100"])


@TILES
@pytest.mark.parametrize("d", [8, 10, 50, 784])
def test_blocked_knn_is_the_exact_brute_force_knn(rng, d, tile, monkeypatch):
    if tile is not None:
        monkeypatch.setattr(gendist.graph, "_SCREEN_TILE", tile)
    n, k = 1037, 7  # blocks of 64 rows: n is not a multiple of the block
    X = _blocked_data(rng, n, d)
    with sklearn.config_context(working_memory=1):
        nn = NeighbourIndex(n_jobs=2).fit(X)
        dist, ind = nn.kneighbors(None, k)
    assert nn.method_ == "blocked"
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    expected = np.sort(D, axis=1)[:, :k]
    # exact lengths, up to the order of the d squares' sum (scipy's differs from numpy's)
    rtol = d * np.finfo(float).eps
    np.testing.assert_allclose(dist, expected, rtol=rtol, atol=0)
    np.testing.assert_allclose(D[np.arange(n)[:, None], ind], dist, rtol=rtol, atol=0)
    # the same sets wherever no other point ties with the k-th
    untied = (D == expected[:, -1:]).sum(axis=1) == 1
    ref = np.argsort(D, axis=1, kind="stable")[:, :k]
    assert untied.sum() > n - 40
    for i in np.flatnonzero(untied):
        assert set(ind[i]) == set(ref[i])
    # the near-duplicate pair is found at its exact, tiny length
    assert ind[n - 1, 0] == 11
    np.testing.assert_allclose(dist[n - 1, 0], np.linalg.norm(X[n - 1] - X[11]), rtol=rtol)


@TILES
@pytest.mark.parametrize("d", [8, 10, 50])
def test_blocked_radius_search_is_the_kd_tree_s(rng, d, tile, monkeypatch):
    if tile is not None:
        monkeypatch.setattr(gendist.graph, "_SCREEN_TILE", tile)
    n = 1029
    X = _blocked_data(rng, n, d)
    r0 = float(np.median(cKDTree(X).query(X, 8)[0][:, -1]))
    D = cdist(X, X)
    radius = 0.5 * (D[D <= r0].max() + D[D > r0].min())  # no pair at the boundary
    with sklearn.config_context(working_memory=1):
        nn = NeighbourIndex(n_jobs=2).fit(X)
        ind = nn.radius_neighbors(None, radius, return_distance=False)
        Y = X[:100] + 0.01
        dist_new, ind_new = nn.radius_neighbors(Y, radius, sort_results=True)
    tree = cKDTree(X)
    for i, got in enumerate(ind):
        assert set(got) == set(tree.query_ball_point(X[i], radius)) - {i}
    for i, (got_d, got_i) in enumerate(zip(dist_new, ind_new)):
        assert set(got_i) == set(tree.query_ball_point(Y[i], radius))
        np.testing.assert_allclose(got_d, cdist(Y[i : i + 1], X[got_i])[0], rtol=d * 2e-16)
        assert np.all(np.diff(got_d) >= 0)
    rows, cols, lengths = radius_edges(X, radius, nn=nn)
    i, j = np.nonzero(np.triu(D <= radius, k=1))
    assert _pairs(rows, cols) == _pairs(i, j)


def test_blocked_knn_of_new_points_and_far_from_the_origin(rng):
    X = rng.uniform(size=(1500, 8)) * 1e3 + 1e8  # norms of 1e8: the expanded form fails
    Y = X[:50] + rng.normal(size=(50, 8)) * 1e-6
    nn = NeighbourIndex().fit(X)
    dist, ind = nn.kneighbors(Y, 3)
    D = cdist(Y, X)
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :3], rtol=4e-16, atol=0)
    np.testing.assert_array_equal(ind[:, 0], np.arange(50))


def test_blocked_search_refuses_bad_queries(rng):
    X = rng.normal(size=(BLOCKED_MIN_SAMPLES, BLOCKED_MIN_FEATURES))
    nn = NeighbourIndex().fit(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        nn.kneighbors(None, BLOCKED_MIN_SAMPLES)
    with pytest.raises(ValueError, match="features"):
        nn.kneighbors(X[:, :3], 2)
    with pytest.raises(ValueError, match="radius"):
        nn.radius_neighbors(X[:3], -1.0)


@pytest.mark.parametrize("d", [2, 3, 7])
def test_tree_knn_is_the_brute_force_knn_with_duplicates_and_new_points(rng, d):
    """Low dimension: scipy's KD-tree answers kNN queries (method_ "tree"). Against cdist:
    exact lengths, the same sets where the k-th is untied, a point never its own neighbour
    even among exact copies of it (a copy is), and queries of new points."""
    X = rng.normal(size=(1500, d))
    X[100:104] = X[7]  # five copies of one point: the tree may return the point last
    with sklearn.config_context(working_memory=1):  # several query blocks
        nn = NeighbourIndex(n_jobs=2).fit(X)
        dist, ind = nn.kneighbors(None, 6)
        Y = rng.normal(size=(40, d))
        dist_new, ind_new = nn.kneighbors(Y, 1)
    assert nn.method_ == "tree"
    assert not np.any(ind == np.arange(len(X))[:, None])
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    expected = np.sort(D, axis=1)[:, :6]
    np.testing.assert_allclose(dist, expected, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(D[np.arange(len(X))[:, None], ind], dist)
    assert set(ind[7, :4]) == {100, 101, 102, 103} and np.all(dist[7, :4] == 0)
    assert set(ind[100, :4]) == {7, 101, 102, 103}
    untied = (D == expected[:, -1:]).sum(axis=1) == 1
    ref = np.argsort(D, axis=1, kind="stable")[:, :6]
    for i in np.flatnonzero(untied):
        assert set(ind[i]) == set(ref[i])
    E = cdist(Y, X)
    np.testing.assert_array_equal(E[np.arange(len(Y)), ind_new[:, 0]], E.min(axis=1))  # copies tie
    np.testing.assert_allclose(dist_new[:, 0], E.min(axis=1), rtol=1e-14)
    # far from the usual range: the points are rescaled by a power of two, lengths back
    big = NeighbourIndex().fit(X * 1e250)
    np.testing.assert_allclose(big.kneighbors(None, 6)[0], dist * 1e250, rtol=1e-13)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        nn.kneighbors(None, 1500)
    with pytest.raises(ValueError, match="features"):
        nn.kneighbors(np.zeros((2, d + 1)), 3)


def test_searches_keep_points_exactly_on_the_radius_and_survive_float32_range(rng):
    """A point whose exact length is the radius is within it (``<=``), in the tree search as
    in the blocked one; and the blocked search stays exact where float32 squares would
    underflow or overflow (the screen then runs in float64)."""
    X = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]])
    r = float(np.linalg.norm(X[1] - X[0]))
    assert list(NeighbourIndex().fit(X).radius_neighbors(X[:1], r, return_distance=False)[0]) \
        == [0, 1]
    grid = np.array(np.meshgrid(*[np.arange(6.0)] * 3)).reshape(3, -1).T
    tree = NeighbourIndex().fit(grid)
    for i, got in enumerate(tree.radius_neighbors(None, np.sqrt(2.0), return_distance=False)):
        expected = np.flatnonzero(np.linalg.norm(grid - grid[i], axis=1) <= np.sqrt(2.0))
        assert set(got) == set(expected) - {i}
    Z = rng.normal(size=(1500, 10))
    D = cdist(Z, Z)
    np.fill_diagonal(D, np.inf)
    for scale in (1e-22, 1e20, 1e25):
        nn = NeighbourIndex().fit(Z * scale)
        assert nn.method_ == "blocked"
        dist, _ = nn.kneighbors(None, 5)
        np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :5] * scale, rtol=1e-12)


def test_a_fitted_blocked_index_pickles(rng):
    import pickle

    X = rng.normal(size=(1200, 10))
    nn = NeighbourIndex().fit(X)
    assert nn.method_ == "blocked"
    again = pickle.loads(pickle.dumps(nn))
    np.testing.assert_array_equal(again.kneighbors(None, 4)[1], nn.kneighbors(None, 4)[1])
