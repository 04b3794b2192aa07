"""The edges of the numeric range and of the inputs: a correct answer or a clear error, never a
silent 0, inf or truncation. References: closed forms (constant densities, where the metric is
a constant times the Euclidean one), scipy's Dijkstra, scipy.spatial.distance."""

import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.distance import cdist, squareform
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import kneighbors_graph

from gendist import CallableDensity, GenerativeDistance, GraphTooLargeError, IsingClustering
from gendist.landmarks import choose_landmarks, landmark_bounds, landmark_mds
from gendist.metric import ConformalMetric
from gendist.paths import pair_shortest_path, shortest_path_tree, shortest_paths
from gendist.refine import refine_path


def constant(c):
    return lambda A: np.full(len(A), float(c))


def euclidean_knn_distances(X, k):
    """Reference: scipy's Dijkstra on scikit-learn's symmetrised kNN graph of X."""
    G = kneighbors_graph(X, k, mode="distance")
    return dijkstra(G.maximum(G.T), directed=False)


@pytest.fixture
def cube(rng):
    return rng.uniform(size=(80, 4))


# ---------------------------------------------------------------- weights out of float64
def test_weights_that_underflow_are_reported_in_a_common_unit(cube):
    """log p = 1e4 with an absolute lambda: h = e^-1e4, so every weight underflows to 0. The
    distances come in a reported unit e^c instead, equal to e^-1e4 x the Euclidean ones."""
    with pytest.warns(UserWarning, match="log_distance_unit_"):
        est = GenerativeDistance(constant(1e4), lam=1.0, n_neighbors=6, n_quad=3, shortcuts=False)
        D = est.fit_transform(cube)
    assert est.log_distance_unit_ < -9000
    expected = euclidean_knn_distances(cube, 6)
    # D * e^c = e^-1e4 * Euclidean, in log space: log D + c = -1e4 + log E
    off = ~np.eye(len(cube), dtype=bool)
    np.testing.assert_allclose(
        np.log(D[off]) + est.log_distance_unit_, np.log(expected[off]) - 1e4, rtol=1e-12
    )


def test_weights_that_overflow_are_reported_in_a_common_unit(cube):
    """beta = 1000 with p0 = 10 lam: h = 5.5^1000 = e^1705 would make every weight inf."""
    with pytest.warns(UserWarning, match="log_distance_unit_"):
        est = GenerativeDistance(
            constant(0.0), lam=1.0, p0=10.0, beta=1000.0, n_neighbors=6, shortcuts=False
        )
        D = est.fit_transform(cube)
    assert np.isfinite(D).all() and (D[~np.eye(len(cube), dtype=bool)] > 0).all()
    log_h = 1000 * (np.log(11.0) - np.log(2.0))
    expected = euclidean_knn_distances(cube, 6)
    off = ~np.eye(len(cube), dtype=bool)
    np.testing.assert_allclose(
        np.log(D[off]) + est.log_distance_unit_, np.log(expected[off]) + log_h, rtol=1e-12
    )


def test_weights_beyond_float64_are_refused(cube):
    """beta = 1e6 on a Gaussian: weights from e^0 down to e^-1e6, no unit holds them."""
    with pytest.raises(ValueError, match="float64 cannot hold"):
        GenerativeDistance(
            lambda A: -0.5 * (A**2).sum(1), lam=np.exp(-500), beta=1e6, n_neighbors=6
        ).fit(cube * 20)


# ---------------------------------------------------------------- tiny and huge coordinates
@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e155, 1e200])
def test_coordinates_at_any_scale(cube, scale):
    """Scaled points: the same graph, distances scaled exactly, never below |x - y|."""
    est = GenerativeDistance(constant(0.0), lam=1e12, n_quad=2, n_neighbors=6, shortcuts=False)
    D = est.fit_transform(cube * scale)
    expected = euclidean_knn_distances(cube, 6) * scale * (1e12 / (1 + 1e12))
    np.testing.assert_allclose(D, expected, rtol=1e-9)
    chord = cdist(cube, cube) * scale
    assert (D >= chord * (1 - 1e-9)).all()
    assert est.min_length_factor_ * chord.max() <= D.max()


def test_coordinates_that_cannot_be_differenced_are_refused(cube):
    with pytest.raises(ValueError, match="cannot be differenced"):
        GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=6).fit(cube * 1e305)


# ---------------------------------------------------------------- float32 results
def test_float32_distances_that_would_become_inf_or_zero_are_refused(cube):
    big = GenerativeDistance(
        constant(0.0), lam=1.0, n_neighbors=6, dtype="float32", shortcuts=False
    )
    with pytest.raises(OverflowError, match="float32"):
        big.fit_transform(cube * 1e40)
    small = GenerativeDistance(
        constant(0.0), lam=1.0, n_neighbors=6, dtype="float32", shortcuts=False
    )
    with pytest.raises(OverflowError, match="float32"):
        small.fit_transform(cube * 1e-40)
    ok = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=6, dtype="float32", shortcuts=False)
    np.testing.assert_allclose(
        ok.fit_transform(cube), euclidean_knn_distances(cube, 6) * 0.5, rtol=1e-6
    )


# ---------------------------------------------------------------- query arguments
@pytest.fixture
def fitted(cube):
    return GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=6).fit(cube)


def test_out_must_be_a_float_array(fitted):
    for dtype in (np.int64, np.float16):
        with pytest.raises(TypeError, match="float32 or float64"):
            fitted.distances([0, 1], out=np.zeros((2, 80), dtype=dtype))
    with pytest.raises(TypeError, match="out must be an array"):
        fitted.distances([0], out=[[0.0] * 80])
    out = np.zeros((2, 80), dtype=np.float32)
    assert fitted.distances([0, 1], out=out) is out
    np.testing.assert_allclose(out, fitted.distances([0, 1]), rtol=1e-6)


def test_limit_must_be_a_distance(fitted):
    with pytest.raises(ValueError, match="limit"):
        fitted.distances([0], limit=np.nan)
    with pytest.raises(ValueError, match="limit"):
        fitted.distances([0], limit=-1.0)
    with pytest.raises(TypeError, match="limit"):
        fitted.distances([0], limit="x")


def test_zero_d_integers_are_indices_and_bools_are_refused(rng):
    X = rng.uniform(size=(40, 1))
    est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=4).fit(X)
    assert est.distance(np.array(3), 10) == est.distance(3, 10) == est.distances([3])[0, 10]
    assert est.distance(np.int32(3), np.uint8(10)) == est.distance(3, 10)
    for bad in (True, np.bool_(False), np.array(True)):
        with pytest.raises(TypeError):
            est.distance(bad, 1)
    with pytest.raises(TypeError, match="vertex index"):
        est.distance(3.0, 10)
    with pytest.raises(TypeError, match="vertex index or a point"):
        est.distance(None, 0)
    with pytest.raises(ValueError, match="one point"):
        est.distance(X[:2], 0)


def test_empty_sources_give_an_empty_result(fitted):
    assert fitted.distances([]).shape == (0, 80)
    with pytest.raises(TypeError, match="integers"):
        fitted.distances([0.5])


# ---------------------------------------------------------------- the caller's arrays
def test_the_fitted_vertices_are_a_copy_and_a_density_cannot_edit_them(cube):
    X = cube.copy()
    est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=6).fit(X)
    X += 100.0
    np.testing.assert_array_equal(est.vertices_, cube)

    def editing(A):
        A += 1.0  # a density that writes into its input
        return np.zeros(len(A))

    X = cube.copy()
    try:
        est = GenerativeDistance(editing, lam=1.0, n_neighbors=6).fit(X)
    except ValueError as exc:  # refused as read-only: also no silent change
        assert "read-only" in str(exc)
    else:
        np.testing.assert_array_equal(est.vertices_, cube)
    np.testing.assert_array_equal(X, cube)


# ---------------------------------------------------------------- the functional core
def test_low_level_functions_check_indices_and_weights(rng):
    G = sparse.random(30, 30, density=0.2, random_state=0, format="csr")
    G = (G + G.T).tocsr()
    with pytest.raises(TypeError, match="integers"):
        shortest_paths(G, [1.7])
    with pytest.raises(IndexError, match="out of range"):
        shortest_paths(G, [-1])
    with pytest.raises(TypeError, match="vertex index"):
        shortest_path_tree(G, 2.5)
    with pytest.raises(TypeError, match="vertex index"):
        pair_shortest_path(G, 0, 3.0)
    with pytest.raises(IndexError, match="vertex index"):
        pair_shortest_path(G, -1, 3)
    bad = G.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        shortest_paths(bad, [0])
    bad.data[0] = -1.0  # scipy's Dijkstra aborts the process on this
    with pytest.raises(ValueError, match="negative"):
        shortest_paths(bad, [0])
    with pytest.raises(TypeError, match="sparse"):
        shortest_paths(G.toarray(), [0])
    # csr_array is as good as csr_matrix
    np.testing.assert_array_equal(
        shortest_paths(sparse.csr_array(G), [0, 1]), dijkstra(G, True, indices=[0, 1])
    )
    D = shortest_paths(G, np.arange(30))
    with pytest.raises(ValueError, match="pair up"):
        landmark_bounds(D[:3], [0, 1, 2], [3, 4])
    with pytest.raises(TypeError, match="integers"):
        landmark_bounds(D[:3], [0.5], [1])
    with pytest.raises(ValueError, match="one per landmark"):
        landmark_mds(D[:4], [0, 1, 2])
    with pytest.raises(TypeError, match="sparse"):
        choose_landmarks(None, 2)


# ---------------------------------------------------------------- symmetry
def test_fit_transform_is_exactly_symmetric(rng):
    X = np.vstack([rng.normal(size=(120, 2)) - 1, rng.normal(size=(120, 2)) + 1])
    for refine in (False, True):  # refined: each pair once, written to both entries
        est = GenerativeDistance(lambda A: -0.5 * (A**2).sum(1), n_neighbors=8, refine=refine)
        D = est.fit_transform(X[::3] if refine else X)
        assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)
        squareform(D)  # scipy's own check of a distance matrix
    est.set_params(refine=False).fit(X)  # distance(i, j) refines with finer settings
    D = est.fit_transform(X)
    for i, j in rng.integers(len(X), size=(10, 2)):
        assert est.distance(int(i), int(j)) == D[i, j]


# ---------------------------------------------------------------- refinement
@pytest.mark.parametrize("d, scale", [(2, 4e-6), (5, 4e-6), (5, 1e-100), (3, 1e80)])
def test_refinement_is_scale_invariant(rng, d, scale):
    """A constant metric: the refined zigzag is the segment, of length c |b - a|, whatever the
    scale of the coordinates."""
    metric = ConformalMetric(CallableDensity(constant(0.0)), np.log(0.1), 1.0, 0.0, 8)
    a, b = np.zeros(d), rng.normal(size=d)
    zigzag = a + np.linspace(0, 1, 9)[:, None] * (b - a) + rng.normal(scale=0.3, size=(9, d))
    zigzag[[0, -1]] = a, b
    _, length = refine_path(
        metric, zigzag * scale, method="finite-difference", straight_start=False
    )
    c = 0.1 / 1.1
    assert length == pytest.approx(c * np.linalg.norm(b - a) * scale, rel=1e-5)


def test_refinement_budget_grows_with_the_points_and_reports_convergence(rng):
    d = 10
    metric = ConformalMetric(CallableDensity(constant(0.0)), np.log(0.1), 1.0, 0.0, 8)
    a, b = np.zeros(d), rng.normal(size=d)
    zigzag = a + np.linspace(0, 1, 9)[:, None] * (b - a) + rng.normal(scale=0.3, size=(9, d))
    zigzag[[0, -1]] = a, b
    _, length, info = refine_path(
        metric, zigzag, n_points=96, method="finite-difference", return_info=True,
        straight_start=False,
    )
    assert info["converged"]
    assert length == pytest.approx(0.1 / 1.1 * np.linalg.norm(b - a), rel=1e-4)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        _, _, info = refine_path(
            metric,
            zigzag,
            n_points=96,
            n_rounds=1,
            method="finite-difference",
            return_info=True,
            straight_start=False,
        )
    assert not info["converged"] and info["n_rounds"] == 1


# ---------------------------------------------------------------- quadrature
def test_coarse_quadrature_on_a_sharp_density_is_reported(rng):
    """A narrow ridge: with 2 nodes an edge across the ridge is measured only at its ends,
    which lie in the dense part; the spot check at 3 nodes sees the difference."""
    X = rng.uniform(-1, 1, size=(300, 2))

    def ridges(A):  # dense stripes of width about 0.03, nearly empty between them
        return -0.5 * (np.sin(4 * np.pi * A[:, 0]) / 0.2) ** 2

    with pytest.warns(UserWarning, match="quadrature"):
        coarse = GenerativeDistance(ridges, lam="quantile:0.5", n_neighbors=8, n_quad=2).fit(X)
    assert coarse.quadrature_error_ > 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fine = GenerativeDistance(ridges, lam="quantile:0.5", n_neighbors=8, n_quad=64).fit(X)
    assert fine.quadrature_error_ < 0.05


# ---------------------------------------------------------------- pairs of new points
def test_two_new_points_that_are_neighbours_are_joined_directly(rng):
    """10-D, constant metric: two new points next to each other are at c |p - q| (the
    segment), not at the length of a path through the vertices."""
    X = rng.uniform(size=(400, 10))
    est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=10, shortcuts=False).fit(X)
    p = rng.uniform(size=10)
    q = p + 0.05 * rng.normal(size=10)
    assert est.distance(p, q) == pytest.approx(0.5 * np.linalg.norm(p - q), rel=1e-12)
    g = est.geodesic(p, q)
    assert len(g.points) == 2 and (g.indices == -1).all()
    far = p + 0.8 * np.ones(10)  # not neighbours: joined only through the graph
    assert est.distance(p, far) > 0.5 * np.linalg.norm(p - far)


# ---------------------------------------------------------------- guards
def test_radius_guard_fires_on_an_estimate_before_building_edges(rng):
    X = rng.normal(size=(20_000, 2))
    est = GenerativeDistance(constant(0.0), lam=1.0, radius=100.0, memory_limit=2**26)
    with pytest.raises(GraphTooLargeError, match="would have about"):
        est.fit(X)


def test_kneighbors_works_where_all_pairs_do_not_fit(rng):
    X = rng.uniform(size=(3000, 2))
    est = GenerativeDistance(
        constant(0.0), lam=1.0, n_neighbors=6, memory_limit=2**24, shortcuts=False
    ).fit(X)
    with pytest.raises(GraphTooLargeError):
        est.distances()
    d, i = est.kneighbors(n_neighbors=4)  # every vertex: 72 MB of rows if done at once
    full = dijkstra(est.graph_, True)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(d, np.sort(full, axis=1)[:, :4])


def test_vertex_samples_are_checked_before_work(cube):
    mixture = "quantile:0.1"
    for n, exc, match in [(1, ValueError, "n_vertex_samples"), (10**9, GraphTooLargeError, "GiB")]:
        est = GenerativeDistance(
            None,
            lam=mixture,
            n_neighbors=4,
            vertices="samples",
            n_vertex_samples=n,
            memory_limit=2**30,
        )
        with pytest.raises(exc, match=match):
            est.fit(cube)


def test_messages_name_the_argument(cube, fitted):
    for params, match in [
        ({"dtype": "foo"}, "dtype"),
        ({"n_jobs": "x"}, "n_jobs"),
        ({"backend": "gpu"}, "backend"),
        ({"lam": "quantil:0.1"}, "lam"),
    ]:
        with pytest.raises(ValueError, match=match):
            GenerativeDistance(constant(0.0), n_neighbors=4, **params).fit(cube)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            GenerativeDistance(constant(0.0), n_neighbors=4, device="cuda").fit(cube)
    with pytest.raises(ValueError, match="constant"):
        IsingClustering(2).fit(np.ones((6, 6)))


def test_lambda_typo_is_found_before_the_density_is_fitted(cube):
    calls = []

    class Recording:
        def fit(self, X):
            calls.append(len(X))
            return self

        def score_samples(self, X):
            return np.zeros(len(X))

    with pytest.raises(ValueError, match="lam"):
        GenerativeDistance(Recording(), lam="quantil:0.1", n_neighbors=4).fit(cube)
    assert calls == []


def test_memory_refusal_is_specific(cube):
    from gendist.paths import check_memory

    with pytest.raises(GraphTooLargeError) as info:
        check_memory(1000, 1000, np.float32, memory_limit=1000)
    message = str(info.value)
    assert "out=" in message and "float32'" not in message and "0.0 GiB" not in message
    assert "3.8 MiB" in message and "1000 bytes" in message


def test_a_torch_distribution_of_the_wrong_event_shape_is_named(cube):
    batch = torch.distributions.Normal(torch.zeros(4), torch.ones(4))  # events are scalars
    with pytest.raises(ValueError, match="Independent"):
        GenerativeDistance(batch, lam=1.0, n_neighbors=4).fit(cube)
    independent = torch.distributions.Independent(batch, 1)
    est = GenerativeDistance(independent, lam=1.0, n_neighbors=4).fit(cube)
    np.testing.assert_allclose(
        est.log_prob_, -0.5 * (cube**2).sum(1) - 2 * np.log(2 * np.pi), rtol=1e-6
    )
