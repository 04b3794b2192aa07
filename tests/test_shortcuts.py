"""Shortcuts (gendist.shortcuts) against independent references: the Euclidean limit, a
closed-form curved metric in d = 3..10, brute force on small graphs, and the default graph."""

import itertools
import time
import warnings

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import dijkstra, floyd_warshall
from sklearn.datasets import make_blobs, make_moons
from sklearn.neighbors import kneighbors_graph

from gendist import GenerativeDistance
from gendist.shortcuts import closed_shortcut_matrix


def flat(X):
    return np.zeros(len(X))


def euclid(A, B):
    return np.sqrt(((A[:, None] - B[None]) ** 2).sum(-1))


def euclidean_limit(**kw):
    return GenerativeDistance(flat, lam=1e12, n_quad=2, **kw)


@pytest.mark.parametrize("d", [5, 10])
def test_euclidean_limit_is_exact_where_the_graph_stretches(d):
    """In the Euclidean limit every distance is |x - y|: the graph alone is 20-80 % too long
    in 5-D and 10-D, with shortcuts (chosen by "auto") it is exact and never below."""
    X = np.random.default_rng(d).uniform(size=(600, d))
    truth = euclid(X, X)
    off = truth > 0.3
    graph = euclidean_limit(n_neighbors=10, shortcuts=False).fit_transform(X)
    est = euclidean_limit(n_neighbors=10)
    D = est.fit_transform(X)
    assert est.shortcuts_ and est.graph_stretch_ > 1.1
    assert np.median(graph[off] / truth[off]) > 1.2
    ratio = D[off] / truth[off]
    assert np.median(ratio) <= 1.02 and np.quantile(ratio, 0.95) <= 1.05
    assert ratio.min() >= 1 - 1e-9
    assert np.all(D <= graph * (1 + 1e-12))
    np.testing.assert_array_equal(D, D.T)


def test_rows_equal_a_brute_force_star_on_the_scikit_learn_graph():
    """A row is min_u |x_s - x_u| + d_graph(u, t) (a segment, then the graph), computed here
    from scipy's Dijkstra on scikit-learn's symmetrised kNN graph; the matrix is the smaller
    of the two directions (which the triangle closure leaves as it is here, where every row
    is already |x_s - x_t|)."""
    X = np.random.default_rng(1).uniform(size=(120, 6))
    G = kneighbors_graph(X, 6, mode="distance")
    graph = dijkstra(G.maximum(G.T), directed=False)
    chords = euclid(X, X)
    star = (chords[:, :, None] + graph[None, :, :]).min(axis=1)  # (s, u, t) -> (s, t)
    est = euclidean_limit(n_neighbors=6, shortcuts=True).fit(X)
    np.testing.assert_allclose(est.distances(), star, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        est.fit_transform(X), np.minimum(star, star.T), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(est.transform(X[:7] + 0.0), star[:7], rtol=1e-9, atol=1e-12)


def mobius(d):
    """log p = log(|x - c|^2 - lam) with beta = 1, p0 = 0: h = lam / |x - c|^2, the conformal
    factor of the inversion phi(x) = c + lam (x - c) / |x - c|^2, so d(x, y) = |phi(x) -
    phi(y)| exactly. c lies 0.5 outside the cube's face x_0 = 0, lam = 0.125 < |x - c|^2."""
    c = np.full(d, 0.5)
    c[0] = -0.5
    lam = 0.5 * 0.5**2

    def log_p(X):
        return np.log(((X - c) ** 2).sum(1) - lam)

    def phi(X):
        v = X - c
        return c + lam * v / (v**2).sum(1, keepdims=True)

    return log_p, lam, phi


@pytest.mark.parametrize("d", [3, 5, 10])
def test_curved_closed_form_upper_bound_and_improvement(d):
    """Under the Mobius-flat metric (curved geodesics: circular arcs), every distance is at
    least the truth up to quadrature error, shortcuts never lengthen a distance, they cut
    the graph's error, and a refined pair is within 1e-3 of the closed form."""
    log_p, lam, phi = mobius(d)
    X = np.random.default_rng(d).uniform(size=(300, d))
    truth = euclid(phi(X), phi(X))
    off = truth > 0
    kw = dict(lam=lam, beta=1.0, p0=0.0, n_neighbors=10, n_quad=8)
    graph = GenerativeDistance(log_p, shortcuts=False, refine=False, **kw).fit_transform(X)
    est = GenerativeDistance(log_p, shortcuts=True, refine=False, **kw)
    D = est.fit_transform(X)
    assert est.log_distance_unit_ == 0
    assert np.all(D <= graph * (1 + 1e-12))
    assert (D[off] / truth[off]).min() >= 1 - 2e-3  # quadrature error only
    err_graph = np.median(graph[off] / truth[off]) - 1
    err = np.median(D[off] / truth[off]) - 1
    assert err < 0.7 * err_graph
    g = est.geodesic(0, 1, refine={"n_points": 48})
    assert g.length == pytest.approx(truth[0, 1], rel=1e-3)
    assert g.length <= D[0, 1] * (1 + 1e-9)


@pytest.mark.parametrize("d", [5, 10])
def test_the_shortcut_matrix_is_closed_under_the_triangle_inequality(d):
    """Under the Mobius-flat metric a row (one segment from its own source, then the graph)
    breaks the triangle inequality; the matrix is closed: every triple holds it, each entry
    is at most both of its rows and still at least the closed form up to quadrature
    error, and the closure cuts the tail of the rows' errors."""
    log_p, lam, phi = mobius(d)
    X = np.random.default_rng(d).uniform(size=(250, d))
    truth = euclid(phi(X), phi(X))
    off = truth > 0.3 * np.median(truth)
    est = GenerativeDistance(log_p, lam=lam, beta=1.0, p0=0.0, shortcuts=True, refine=False)
    D = est.fit_transform(X)
    rows = est.distances()
    both = np.minimum(rows, rows.T)
    with np.errstate(invalid="ignore"):
        chains = (both[:, :, None] + both[None, :, :]).min(axis=1)
    assert (both > chains * (1 + 1e-3)).sum() > 100  # the rows break it
    chains = (D[:, :, None] + D[None, :, :]).min(axis=1)
    assert np.all(D <= chains * (1 + 1e-12))  # D[i, k] <= D[i, j] + D[j, k]
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.all(D <= both * (1 + 1e-12))
    assert (D[off] / truth[off]).min() >= 1 - 2e-3
    worst = [np.quantile(M[off] / truth[off], 0.95) - 1 for M in (D, both)]
    assert worst[0] < 0.9 * worst[1]  # the long tail falls most


def test_pair_queries_agree_with_the_matrix_and_follow_a_real_curve():
    log_p, lam, phi = mobius(5)
    X = np.random.default_rng(0).uniform(size=(200, 5))
    est = GenerativeDistance(log_p, lam=lam, n_neighbors=8, shortcuts=True, refine=False)
    D = est.fit_transform(X)
    rows = est.distances()
    both = np.minimum(rows, rows.T)  # a pair query: the shorter of the two rows
    fine = est.metric_.with_nodes(64)
    for i, j in [(0, 1), (7, 3), (150, 20), (5, 5)]:
        assert est.distance(i, j) == pytest.approx(both[i, j], rel=1e-12, abs=1e-15)
        assert D[i, j] <= both[i, j] * (1 + 1e-12)  # the closed matrix: at most that
        g = est.geodesic(i, j)
        assert g.length == pytest.approx(both[i, j], rel=1e-12, abs=1e-15)
        if i != j:
            assert np.array_equal(g.points[[0, -1]], X[[i, j]])
            # the reported length is the length of the returned polyline, to quadrature error
            assert fine.curve_length(g.points) == pytest.approx(g.length, rel=2e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_matrix_is_scipys_closure_of_the_shortcut_rows(dtype):
    """fit_transform prices each pair's segment once and closes the matrix of segments and
    edges. That is the closure of the shortcut rows (a segment, then the graph): scipy's
    Floyd-Warshall on the shorter of each pair's two rows (scipy's Dijkstra) gives the same
    matrix, in either dtype, with the graph's two components kept apart."""
    log_p, lam, phi = mobius(5)
    rng = np.random.default_rng(3)
    X = np.vstack([rng.uniform(size=(90, 5)), rng.uniform(size=(60, 5)) + [0, 4, 0, 0, 0]])
    kw = dict(lam=lam, beta=1.0, p0=0.0, n_neighbors=6, shortcuts=True, refine=False)
    with pytest.warns(UserWarning, match="2 connected components"):
        est = GenerativeDistance(log_p, dtype=dtype, **kw)
        D = est.fit_transform(X)
    rows = est.distances(dtype=np.float64)
    reference = floyd_warshall(np.minimum(rows, rows.T))
    assert D.dtype == dtype
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.isinf(D[:90, 90:]).all() and np.isfinite(D[:90, :90]).all()
    assert np.isfinite(D[90:, 90:]).all()
    np.testing.assert_allclose(D, reference, rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert (reference < np.minimum(rows, rows.T) * (1 - 1e-3)).sum() > 100  # chains count


def test_a_float32_matrix_leaves_out_segments_beyond_its_range():
    """A density with a deep valley (p0 > 0, a large beta) prices the segments across the
    ring's hole far beyond float32's range, while every distance along the ring fits: the
    float32 matrix leaves those segments out and is scipy's float64 closure of the rows,
    rounded; a distance that does not fit is refused."""
    t = np.linspace(0, 1.5 * np.pi, 200)
    X = np.c_[np.cos(t), np.sin(t)]

    def log_p(Y):
        return -((np.linalg.norm(Y, axis=1) - 1) ** 2) / (2 * 0.05**2)

    kw = dict(lam=1e-3, beta=20.0, p0=1.0, n_neighbors=4, shortcuts=True, refine=False)
    est = GenerativeDistance(log_p, dtype=np.float32, **kw)
    D = est.fit_transform(X)
    assert est._query_start(est.graph_)([0]).max() > np.finfo(np.float32).max
    rows = est.distances(dtype=np.float64)
    reference = floyd_warshall(np.minimum(rows, rows.T))
    assert D.dtype == np.float32 and np.isfinite(D).all()
    np.testing.assert_allclose(D, reference, rtol=1e-6)

    class Segments:  # a path a - b - c whose two edges fit float32 and whose sum does not
        points = np.zeros((3, 1))
        components = np.zeros(3, dtype=int)

        def __call__(self, sources, columns):
            return np.where(sources[:, None] == columns[None, :], 0.0, np.inf)

    path = sparse.csr_matrix(np.array([[0, 3e38, 0], [3e38, 0, 3e38], [0, 3e38, 0]]))
    np.testing.assert_array_equal(
        closed_shortcut_matrix(path / 1e30, Segments(), np.float32),
        np.array([[0, 3e8, 6e8], [3e8, 0, 3e8], [6e8, 3e8, 0]], dtype=np.float32),
    )
    with pytest.raises(OverflowError, match="exceed float32"):
        closed_shortcut_matrix(path, Segments(), np.float32)


def test_segments_on_a_lattice_match_the_pair_queries():
    """On a lattice, segment lengths are exact multiples of the quadrature spacing: the
    node count of a segment must not depend on the block that priced it, so every matrix
    entry is at most its pair query (a shorter row) and is scipy's closure of the rows."""
    d = 10
    c = np.full(d, 0.5)
    c[0] = -0.5
    lam = 0.125

    def log_p(Y):
        return np.log(((Y - c) ** 2).sum(1) - lam)

    grid = np.array(list(itertools.product([0.05, 0.5], repeat=d)))
    X = grid[np.random.default_rng(0).permutation(len(grid))[:400]]
    est = GenerativeDistance(log_p, lam=lam, beta=1.0, p0=0.0, n_quad=2, n_neighbors=20,
                             shortcuts=True, refine=False)
    D = est.fit_transform(X)
    rows = est.distances()
    both = np.minimum(rows, rows.T)
    assert np.all(D <= both * (1 + 1e-12))
    np.testing.assert_allclose(D, floyd_warshall(both), rtol=1e-12)
    for i, j in np.random.default_rng(1).integers(0, len(X), size=(50, 2)):
        assert D[i, j] <= est.distance(i, j) * (1 + 1e-12)


def test_shortcuts_keep_the_graphs_components():
    X, _ = make_blobs(200, centers=[[0, 0, 0, 0, 0], [50, 0, 0, 0, 0]], random_state=0)
    with pytest.warns(UserWarning, match="2 connected components"):
        est = euclidean_limit(n_neighbors=5, shortcuts=True)
        D = est.fit_transform(X)
    apart = est.component_labels_[:, None] != est.component_labels_[None]
    assert np.all(np.isinf(D[apart])) and np.all(np.isfinite(D[~apart]))
    same, other = int(np.flatnonzero(~apart[0])[1]), int(np.flatnonzero(apart[0])[0])
    with pytest.raises(ValueError, match="1 of 2 pairs lie in different connected components"):
        est.geodesics([0, 0], [same, other], refine=True)


def test_default_graph_is_robust_to_an_outlier():
    """Two moons plus one far point: the default graph joins it through its own neighbours
    (the user is told); the distances among the moons do not change, and the graph stays
    bounded in degree."""
    X, _ = make_moons(400, noise=0.05, random_state=0)
    base = euclidean_limit().fit_transform(X)
    with pytest.warns(UserWarning, match="far from all others"):
        est = euclidean_limit()
        D = est.fit_transform(np.vstack([X, [[30.0, 30.0]]]))
    assert est.radius_ is None and est.n_components_ == 1
    assert est.graph_.nnz <= 2 * 10 * len(X) + 2 * 11
    np.testing.assert_allclose(D[:400, :400], base, rtol=1e-12)
    assert np.all(D[400, :400] >= euclid(X, np.array([[30.0, 30.0]]))[:, 0] * (1 - 1e-9))


def test_default_graph_in_10d_blobs_is_bounded_and_joined():
    X, _ = make_blobs(3000, n_features=10, centers=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est = euclidean_limit(shortcuts=False).fit(X)
    assert est.n_components_ == 1  # the blobs are joined by their shortest links
    assert est.graph_.nnz <= 2 * 11 * len(X)


def test_radius_auto_warns_when_far_points_set_it():
    X, _ = make_moons(300, noise=0.05, random_state=0)
    with pytest.warns(UserWarning, match="far points set it"):
        euclidean_limit(radius="auto", shortcuts=False).fit(np.vstack([X, [[30.0, 30.0]]]))


def test_costly_shortcuts_are_told():
    """A model that takes 0.2 s a call makes every row's segments far dearer than a Dijkstra
    run: the choice rests on counts (on: the graph stretches in 10-D), and fit says what the
    rows cost and what to do instead."""

    def slow(X):
        time.sleep(0.2)
        return np.zeros(len(X))

    X = np.random.default_rng(0).uniform(size=(300, 10))
    with pytest.warns(UserWarning, match=r"shortcut_cost_.*shortcuts=False.*refine=True"):
        est = GenerativeDistance(slow, lam=1e12, n_quad=2).fit(X)
    assert est.shortcuts_ and est.graph_stretch_ > 1.1 and est.shortcut_cost_ > 30


def test_auto_keeps_shortcuts_off_where_the_winning_segments_leave_the_data():
    """Two uniform cubes in 10-D, 2 apart, under a constant density (which fills the gap):
    the graph stretches (zig-zag inside each cube, the detour through the one join across),
    but the straight segments across the empty gap are among those that beat it, so "auto"
    keeps the shortcuts off and says why. One cube alone: every segment runs through data,
    and "auto" turns them on."""
    rng = np.random.default_rng(0)
    cube = rng.uniform(size=(300, 10))
    other = rng.uniform(size=(300, 10)) + np.eye(10)[0] * 3.0
    with pytest.warns(UserWarning, match="leave the data"):
        est = euclidean_limit().fit(np.vstack([cube, other]))
    assert est.graph_stretch_ > 1.1 and est.shortcuts_off_data_ > 0.05
    assert not est.shortcuts_
    # forced on, the cross distances follow the empty gap straight (the model's choice),
    # and the user is told the same
    with pytest.warns(UserWarning, match="leave the data"):
        forced = euclidean_limit(shortcuts=True).fit(np.vstack([cube, other]))
    D = forced.distances(np.arange(3))[:, 300:303]
    np.testing.assert_allclose(D, euclid(cube[:3], other[:3]), rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        alone = euclidean_limit().fit(cube)
    assert alone.shortcuts_ and alone.shortcuts_off_data_ <= 0.05
