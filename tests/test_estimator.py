import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.integrate import quad
from scipy.sparse.csgraph import dijkstra
from sklearn.manifold import Isomap
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import radius_neighbors_graph
from sklearn.utils.estimator_checks import check_estimator

from gendist import (
    GaussianMixtureDensity,
    GenerativeDistance,
    GraphTooLargeError,
    generative_distances,
)

from .conftest import mixture_log_prob_reference


# the default, and a sparse graph unrefined: on the checks' tight clusters (quadrature error
# of several percent along the edges) a refined fit_transform, closed under the triangle
# inequality through chains of refined curves, is shorter than transform's unclosed rows by
# more than check_transformer_data_not_an_array's 1e-2 (documented: with refinement or
# shortcuts, fit_transform is at most the rows)
@pytest.mark.parametrize(
    "estimator", [GenerativeDistance(), GenerativeDistance(n_neighbors=3, refine=False)]
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_sklearn_estimator_checks(estimator):
    results = check_estimator(estimator, on_fail=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    assert len(results) > 40
    # the only check not run: array-API inputs (needs SCIPY_ARRAY_API; inputs become numpy)
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}


@pytest.fixture
def blobs(rng):
    return np.vstack([rng.normal(size=(60, 2)) * 0.5 - 0.8, rng.normal(size=(60, 2)) * 0.5 + 0.8])


def constant(c):
    return lambda A: np.full(len(A), c)


def test_constant_density_scales_the_euclidean_graph_distance(blobs):
    r, lam, beta, p0, c = 0.7, 0.3, 1.5, 0.1, np.log(2.0)
    est = GenerativeDistance(constant(c), lam=lam, beta=beta, p0=p0, radius=r)
    D = est.fit_transform(blobs)
    graph = radius_neighbors_graph(blobs, r, mode="distance")
    reference = dijkstra(graph, directed=False)
    h = ((p0 + lam) / (2.0 + lam)) ** beta
    np.testing.assert_allclose(D, h * reference, rtol=1e-12)


def test_large_lambda_gives_isomap_graph_distances(blobs):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    r = 1.2
    est = GenerativeDistance(gm, lam=1e12, radius=r)
    D = est.fit_transform(blobs)
    assert est.n_components_ == 1
    iso = Isomap(n_neighbors=None, radius=r, n_components=2).fit(blobs)
    off = ~np.eye(len(D), dtype=bool)
    rel = np.abs(D[off] - iso.dist_matrix_[off]) / iso.dist_matrix_[off]
    assert rel.max() < 1e-9


def test_metric_properties_and_lambda_monotonicity(rng):
    X = rng.normal(size=(70, 3))
    gm = GaussianMixture(3, random_state=0).fit(X)
    previous = None
    for lam in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
        D = GenerativeDistance(gm, lam=lam, radius="auto").fit_transform(X)
        assert np.all(np.isfinite(D))
        np.testing.assert_allclose(D, D.T, rtol=1e-12)
        assert np.all(np.diag(D) == 0)
        # triangle inequality over all triples
        assert np.all(D[:, None, :] <= D[:, :, None] + D[None, :, :] + 1e-12)
        # the raw metric (p + lam)^-beta of the paper falls as lam grows; ours is that times
        # the constant (p0 + lam)^beta, which with p0 = 0 rises towards the Euclidean limit
        raw = D / lam
        if previous is not None:
            assert np.all(raw <= previous[0] + 1e-15)
            assert np.all(D >= previous[1] - 1e-15)
        previous = (raw, D)


def segment_length_by_quad(metric, a, b):
    def h(t):
        x = (a + t * (b - a))[None]
        return np.exp(metric.log_factor(metric.density.log_prob(x))[0])

    return np.linalg.norm(b - a) * quad(h, 0, 1, epsabs=1e-12, epsrel=1e-10)[0]


def test_geodesic_joins_endpoints_and_has_the_reported_length(blobs):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    est = GenerativeDistance(gm, n_neighbors=8, n_quad=32, refine=False)  # graph geodesics
    D = est.fit_transform(blobs)
    g = est.geodesic(3, 100)
    assert np.array_equal(g.points[0], blobs[3]) and np.array_equal(g.points[-1], blobs[100])
    assert g.indices[0] == 3 and g.indices[-1] == 100
    assert g.length == pytest.approx(D[3, 100], rel=1e-12)
    by_quad = sum(
        segment_length_by_quad(est.metric_, a, b) for a, b in zip(g.points[:-1], g.points[1:])
    )
    assert by_quad == pytest.approx(g.length, rel=1e-4)
    # endpoints given as points
    a = blobs[3] + 0.01
    g2 = est.geodesic(a, blobs[100])
    assert np.array_equal(g2.points[0], a) and g2.indices[0] == -1
    assert g2.length == pytest.approx(est.transform(a[None])[0, 100], rel=1e-12)
    assert est.geodesic(5, 5).length == 0


@pytest.mark.parametrize(
    "params", [{"n_neighbors": 6}, {"vertices": "both", "n_vertex_samples": 40}]
)
def test_single_pair_queries_equal_the_all_pairs_result(blobs, rng, params):
    """distance(a, b) and geodesic(a, b) search from both ends only; vertex pairs equal the
    all-pairs matrix exactly, and point pairs equal the best route through any vertex."""
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    est = GenerativeDistance(gm, random_state=0, **params, shortcuts=False)
    D = est.fit_transform(blobs)
    for i, j in rng.integers(len(blobs), size=(25, 2)):
        assert est.distance(int(i), int(j)) == D[i, j]
        assert est.geodesic(int(i), int(j)).length == D[i, j]
    # the admissible lower bound behind the search holds for every pair
    euclid = np.linalg.norm(blobs[:, None] - blobs[None], axis=2)
    assert np.all(D >= est.min_length_factor_ * euclid * (1 - 1e-12))
    # two new points: every path between them passes through a vertex v, so the distance is
    # min_v d(a, v) + d(v, b), with d(., v) from transform
    for _ in range(5):
        a, b = rng.normal(size=(2, 2))
        T = est.transform(np.vstack([a, b]))
        assert est.distance(a, b) == pytest.approx((T[0] + T[1]).min(), rel=1e-12)
        assert est.distance(a, 7) == pytest.approx(T[0, 7], rel=1e-12)


def test_torch_backend_gives_the_scipy_distances(blobs):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    ref = GenerativeDistance(gm, n_neighbors=6, refine=False)  # the subject: the backend
    D = ref.fit_transform(blobs)
    est = GenerativeDistance(gm, n_neighbors=6, backend="torch", n_jobs=2, refine=False)
    np.testing.assert_allclose(est.fit_transform(blobs), D, rtol=1e-12)
    Y = blobs[:5] + 0.01
    np.testing.assert_allclose(est.transform(Y), ref.transform(Y), rtol=1e-12)


def test_kneighbors_equal_brute_force_on_all_pairs(blobs, rng):
    """k nearest vertices by a bounded search equal the all-pairs brute force, also in a
    component with fewer than k other vertices (inf, -1) and across long edges."""
    X = np.vstack([blobs, rng.normal(size=(3, 2)) * 0.1 + 30])
    with pytest.warns(UserWarning, match="2 connected components"):
        est = GenerativeDistance(constant(0.0), lam=1.0, radius=1.0, shortcuts=False).fit(X)
    D = est.distances()
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")[:, :6]
    expected = np.take_along_axis(D, order, 1)
    distances, indices = est.kneighbors(n_neighbors=6)
    np.testing.assert_array_equal(distances, expected)
    np.testing.assert_array_equal(indices, np.where(np.isfinite(expected), order, -1))
    assert np.isinf(distances[-1, 2:]).all() and (indices[-1, 2:] == -1).all()
    d5, i5 = est.kneighbors([0, 119], n_neighbors=3)
    np.testing.assert_array_equal(d5, expected[[0, 119], :3])


def test_refined_geodesic_is_shorter_and_keeps_its_ends(blobs):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    est = GenerativeDistance(gm, n_neighbors=6).fit(blobs)
    g = est.geodesic(3, 100, refine=False)
    r = est.geodesic(3, 100, refine={"n_points": 20})
    assert r.points.shape == (20, 2)
    np.testing.assert_array_equal(r.points[[0, -1]], g.points[[0, -1]])
    assert list(r.indices[[0, -1]]) == [3, 100] and np.all(r.indices[1:-1] == -1)
    assert r.length < g.length
    assert r.length == pytest.approx(est.metric_.curve_length(r.points), rel=1e-12)
    # degenerate queries: a vertex to itself, a point to an equal point
    assert est.geodesic(3, 3, refine=True).length == 0
    y = np.array([0.05, -0.03])
    assert est.distance(y, y.copy()) == 0 and len(est.geodesic(y, y.copy()).points) == 1


def test_geodesic_follows_a_ring_instead_of_crossing_its_empty_middle(rng):
    def ring(A):
        r = np.linalg.norm(A, axis=1)
        return -0.5 * ((r - 1) / 0.1) ** 2 - np.log(2 * np.pi * 0.1 * np.sqrt(2 * np.pi))

    angle = rng.uniform(0, 2 * np.pi, 1500)
    X = np.column_stack([np.cos(angle), np.sin(angle)]) * (1 + 0.1 * rng.normal(size=(1500, 1)))
    X = np.vstack([X, rng.uniform(-1.5, 1.5, size=(500, 2))])  # fill the middle as well
    est = GenerativeDistance(ring, lam="quantile:0.5", radius=0.3).fit(X)
    g = est.geodesic(np.array([-1.0, 0.0]), np.array([1.0, 0.0]))
    radii = np.linalg.norm(g.points, axis=1)
    assert radii.min() > 0.8  # it never enters the empty middle
    assert g.length < est.metric_.curve_length(np.array([[-1.0, 0], [1.0, 0]]))


@pytest.mark.parametrize(
    "params",
    [
        {"radius": 0.5},
        {"n_neighbors": 6},
        {"radius": 0.2, "n_neighbors": 4},
        {"vertices": "both", "n_vertex_samples": 50, "n_neighbors": 6},
        {"vertices": "samples", "n_vertex_samples": 200, "n_neighbors": 6},
    ],
)
def test_transform_of_fitted_points_equals_fit_transform(blobs, params):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    est = GenerativeDistance(gm, random_state=0, **params, shortcuts=False)
    D = est.fit_transform(blobs)
    assert D.shape == (120, 120)
    graph_before = est.graph_.copy()
    np.testing.assert_allclose(est.transform(blobs[10:30]), D[10:30], rtol=1e-12)
    assert (est.graph_ != graph_before).nnz == 0  # transform never changes the fitted graph


def test_out_of_sample_distance_is_the_best_join_through_neighbours(blobs, rng):
    gm = GaussianMixture(2, random_state=0).fit(blobs)
    r = 0.7
    est = GenerativeDistance(gm, radius=r, n_quad=32)
    D = est.fit_transform(blobs)
    y = np.array([0.1, -0.2])
    neighbours = np.flatnonzero(np.linalg.norm(blobs - y, axis=1) <= r)
    join = np.array([segment_length_by_quad(est.metric_, y, blobs[u]) for u in neighbours])
    expected = (join[:, None] + D[neighbours]).min(0)
    np.testing.assert_allclose(est.transform(y[None])[0], expected, rtol=1e-4)


def test_duplicate_points_are_at_distance_zero(blobs):
    X = np.vstack([blobs, blobs[:5]])
    est = GenerativeDistance(GaussianMixture(2, random_state=0), random_state=0)
    D = est.fit_transform(X)
    assert est.n_components_ == 1
    np.testing.assert_array_equal(D[np.arange(5), 120 + np.arange(5)], 0.0)
    np.testing.assert_allclose(D[:5], D[120:], rtol=1e-12)


def test_disconnected_graph_warns_and_gives_inf_only_between_components(blobs):
    X = np.vstack([blobs[:60], blobs[60:] + 20])
    with pytest.warns(UserWarning, match="2 connected components"):
        est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=10).fit(X)
    D = est.distances()
    same = est.component_labels_[:, None] == est.component_labels_[None, :]
    assert np.all(np.isfinite(D[same])) and np.all(np.isinf(D[~same]))
    with pytest.raises(ValueError, match="different connected components"):
        a = int(np.flatnonzero(est.component_labels_ == 0)[0])
        b = int(np.flatnonzero(est.component_labels_ == 1)[0])
        est.geodesic(a, b)
    assert est.distance(a, b) == np.inf
    assert est.distance(a, X[b] + 0.01) == np.inf


def test_distance_rows_written_to_a_memory_map(blobs, tmp_path):
    """Rows go to a memory-mapped .npy file block by block, past the memory limit that
    refuses them in RAM, with the in-RAM values."""
    est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=5).fit(blobs)
    expected = est.distances()
    est.set_params(memory_limit=10_000)
    with pytest.raises(GraphTooLargeError):
        est.distances()
    path = tmp_path / "D.npy"
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=expected.shape)
    assert est.distances(out=store) is store
    store.flush()
    np.testing.assert_array_equal(np.load(path), expected)
    with pytest.raises(ValueError, match="out has shape"):
        est.distances([0, 1], out=store)


def test_memory_guard_on_the_distance_matrix(blobs):
    est = GenerativeDistance(constant(0.0), lam=1.0, n_neighbors=5, memory_limit=100_000)
    with pytest.raises(GraphTooLargeError, match="landmark"):
        est.fit_transform(blobs)
    assert est.distances([0, 1], dtype="float32").shape == (2, 120)  # row blocks still work


def test_parallel_float32_one_call_and_torch_density_agree(blobs, gap_mixture):
    w, m, c = gap_mixture
    mix = GaussianMixtureDensity(w, m, c)
    graph = dict(n_neighbors=6, refine=False)  # the graph stage, in every execution mode
    base = GenerativeDistance(mix, **graph).fit_transform(blobs)
    np.testing.assert_array_equal(
        GenerativeDistance(mix, **graph, n_jobs=2).fit_transform(blobs), base
    )
    f32 = GenerativeDistance(mix, **graph, dtype="float32").fit_transform(blobs)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, base, rtol=1e-6)
    np.testing.assert_array_equal(generative_distances(blobs, mix, **graph), base)
    dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.tensor(w)),
        torch.distributions.MultivariateNormal(torch.tensor(m), torch.tensor(c)),
    )
    np.testing.assert_allclose(
        GenerativeDistance(dist, **graph).fit_transform(blobs), base, rtol=1e-9
    )
    by_scipy = GenerativeDistance(lambda A: mixture_log_prob_reference(A, w, m, c), **graph)
    np.testing.assert_allclose(by_scipy.fit_transform(blobs), base, rtol=1e-9)


def test_unfitted_estimator_is_fitted_on_a_copy(blobs):
    gm = GaussianMixture(2, random_state=0)
    est = GenerativeDistance(gm).fit(blobs)
    assert not hasattr(gm, "means_")
    np.testing.assert_allclose(
        est.log_prob_, GaussianMixture(2, random_state=0).fit(blobs).score_samples(blobs)
    )


def test_bad_inputs_get_clear_errors(blobs):
    est = GenerativeDistance(constant(0.0), lam=1.0)
    bad_X = [
        (np.array([[0.0, np.nan], [1, 1]]), "NaN"),
        (np.array([[0.0, np.inf], [1, 1]]), "infinity"),
        (np.empty((0, 2)), "0 sample"),
        (np.arange(5.0), "2D array"),
        (np.array([[1, "a"], [2, "b"]], dtype=object), "could not convert"),
        (np.ones((1, 2)), "1 sample"),
    ]
    for X, msg in bad_X:
        with pytest.raises(ValueError, match=msg):
            est.fit(X)
    with pytest.raises(TypeError, match="(?i)sparse"):
        est.fit(sparse.csr_matrix(blobs))
    est.fit(blobs)
    with pytest.raises(ValueError, match="3 features"):
        est.transform(np.ones((2, 3)))
    for params, exc, msg in [
        ({"lam": 0.0}, ValueError, "lam must be > 0"),
        ({"lam": -1.0}, ValueError, "lam must be > 0"),
        ({"lam": "quantile:2"}, ValueError, "quantile"),
        ({"beta": 0}, ValueError, "beta"),
        ({"p0": -1}, ValueError, "p0"),
        ({"n_quad": 1}, ValueError, "n_quad"),
        ({"radius": -1.0}, ValueError, "radius"),
        ({"n_neighbors": 0}, ValueError, "n_neighbors"),
        ({"vertices": "all"}, ValueError, "vertices"),
        ({"vertices": "samples"}, ValueError, "n_vertex_samples"),
        ({"dtype": "int8"}, ValueError, "dtype"),
    ]:
        with pytest.raises(exc, match=msg):
            GenerativeDistance(constant(0.0), **{"lam": 1.0, "n_neighbors": 3, **params}).fit(blobs)

    def half_nan(A):
        out = np.zeros(len(A))
        out[::2] = np.nan
        return out

    with pytest.raises(ValueError, match="NaN for 60 and \\+inf for 0 of 120 points"):
        GenerativeDistance(half_nan, lam=1.0, n_neighbors=3).fit(blobs)
    with pytest.raises(ValueError, match="shape"):
        GenerativeDistance(lambda A: np.zeros((len(A), 2)), lam=1.0, n_neighbors=3).fit(blobs)
    with pytest.raises(IndexError, match="vertex indices"):
        est.geodesic(0, 1000)
    with pytest.raises(ValueError, match="b has 3 features"):
        est.geodesic(0, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="cannot draw samples"):
        GenerativeDistance(
            constant(0.0), lam=1.0, n_neighbors=3, vertices="both", n_vertex_samples=10
        ).fit(blobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = GenerativeDistance(lambda A: np.full(len(A), -np.inf), lam=1.0).fit(blobs)
    assert np.all(np.isfinite(est.distances()))  # p = 0 everywhere is the Euclidean metric
