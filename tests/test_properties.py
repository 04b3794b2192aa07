"""Property-based tests (hypothesis): the invariants of a distance, the Euclidean limit against
scipy on scikit-learn's graphs, the agreement of every query, and the numeric range
(coordinates scaled 1e-150..1e150, log p offsets of +-1e4, beta up to 1e3): a correct answer
or a clear error, never a silent 0 or inf. Examples are few and small so that CI stays fast."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.distance import cdist
from sklearn.neighbors import kneighbors_graph

from gendist import GaussianMixtureDensity, GenerativeDistance

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def point_sets(draw, max_n=30, max_d=4):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(8, max_n))
    d = draw(st.integers(1, max_d))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng


def gaussian(d, scale=1.0):
    return GaussianMixtureDensity.isotropic(np.zeros((1, d)), scale**2)


def fit(X, density, **params):
    """The graph stage (refine=False unless asked): its invariants are exact."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # components, quadrature, units
        est = GenerativeDistance(
            density, **{"n_neighbors": 5, "shortcuts": False, "refine": False, **params}
        )
        return est, est.fit_transform(X)


@SETTINGS
@given(point_sets(), st.booleans())
def test_distance_axioms_and_the_lower_bound(data, refine):
    """Symmetry, zero diagonal, the triangle inequality and inf only between components, of
    the graph's matrix and of the refined one (every pair refined, then closed); refined
    curves may pass where no edge does, so the edges' smallest factor bounds only the
    graph's."""
    X, _ = data
    est, D = fit(X, gaussian(X.shape[1]), lam="quantile:0.3", refine=refine)
    assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)
    finite = np.isfinite(D)
    assert np.all(D[finite] >= 0)
    # triangle inequality over every triple (inf where disconnected is consistent)
    with np.errstate(invalid="ignore"):
        through = D[:, :, None] + D[None, :, :]  # D[i, j] + D[j, k]
    assert np.all(D[:, None, :] <= through * (1 + 1e-12) + 1e-300)
    chord = cdist(X, X)
    if not refine:
        assert np.all(D[finite] >= est.min_length_factor_ * chord[finite] * (1 - 1e-12))
    else:
        assert np.all(D <= fit(X, gaussian(X.shape[1]), lam="quantile:0.3")[1] * (1 + 1e-12))
    # +inf only between components
    labels = est.component_labels_
    assert np.array_equal(~finite, labels[:, None] != labels[None, :])


@SETTINGS
@given(point_sets(), st.integers(1, 8))
def test_euclidean_limit_equals_scipy_on_scikit_learn_graphs(data, k):
    X, _ = data
    k = min(k, len(X) - 1)
    _, D = fit(X, lambda A: np.zeros(len(A)), lam=1e12, n_quad=2, n_neighbors=k)
    G = kneighbors_graph(X, k, mode="distance").tocoo()
    # scikit-learn's brute-force lengths come from the expanded form |x|^2 - 2 x.y + |y|^2,
    # off by ~1e-15 absolute: the reference takes its neighbours, with exact lengths
    G.data = np.linalg.norm(X[G.row] - X[G.col], axis=1)
    G = G.tocsr()
    expected = dijkstra(G.maximum(G.T), directed=False) * (1e12 / (1 + 1e12))
    np.testing.assert_allclose(D, expected, rtol=1e-12)


@SETTINGS
@given(point_sets(max_n=25))
def test_every_query_agrees(data):
    X, rng = data
    est, D = fit(X, gaussian(X.shape[1], 2.0), lam="quantile:0.5")
    np.testing.assert_allclose(est.distances(), D, rtol=1e-12)
    i, j = (int(v) for v in rng.integers(len(X), size=2))
    assert est.distance(i, j) == D[i, j]
    T = est.transform(X[[i]])
    np.testing.assert_allclose(T[0][np.isfinite(T[0])], D[i][np.isfinite(T[0])], rtol=1e-9)
    torch_D = GenerativeDistance(
        est.density_, lam=est.lam_, n_neighbors=5, backend="torch", shortcuts=False,
        refine=False,
    ).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(torch_D.distances(), est.distances(), rtol=1e-12)
    if np.isfinite(D[i, j]):
        g = est.geodesic(i, j)
        assert g.length == D[i, j]
        assert g.indices[0] == i and g.indices[-1] == j
        pairs = list(zip(g.indices[:-1], g.indices[1:]))
        # a contiguous path: every step is a stored edge, and their weights sum to the length
        assert all(v in est.graph_.indices[est.graph_.indptr[u] : est.graph_.indptr[u + 1]]
                   for u, v in pairs)
        steps = np.array([est.graph_[u, v] for u, v in pairs])
        assert np.isclose(steps.sum(), D[i, j], rtol=1e-12)


@SETTINGS
@given(point_sets(max_n=20), st.integers(-150, 150))
def test_coordinates_scaled_over_the_float64_range(data, exponent):
    X, _ = data
    scale = 10.0**exponent
    _, D1 = fit(X, lambda A: np.zeros(len(A)), lam=1e12, n_quad=2)
    _, Ds = fit(X * scale, lambda A: np.zeros(len(A)), lam=1e12, n_quad=2)
    finite = np.isfinite(D1)
    assert np.array_equal(np.isfinite(Ds), finite)
    np.testing.assert_allclose(Ds[finite], D1[finite] * scale, rtol=1e-9)


@SETTINGS
@given(point_sets(max_n=20), st.floats(-1e4, 1e4))
def test_log_density_offsets_are_exact_in_the_reported_unit(data, offset):
    """A constant density log p = offset with lam = 1: h = 1 / (e^offset + 1), so every
    distance is that constant times the Euclidean graph distance."""
    X, _ = data
    est, D = fit(X, lambda A: np.full(len(A), offset), lam=1.0, n_quad=2)
    _, E = fit(X, lambda A: np.zeros(len(A)), lam=1e300, n_quad=2)
    log_h = -np.logaddexp(offset, 0.0)
    off = np.isfinite(E) & (E > 0)
    np.testing.assert_allclose(
        np.log(D[off]) + est.log_distance_unit_, np.log(E[off]) + log_h, rtol=1e-9, atol=1e-9
    )


@SETTINGS
@given(point_sets(max_n=20), st.floats(1.0, 1e3))
def test_large_beta_gives_finite_distances_or_a_clear_error(data, beta):
    X, _ = data
    try:
        est, D = fit(X, gaussian(X.shape[1]), lam="quantile:0.2", beta=beta)
    except ValueError as exc:
        assert "float64" in str(exc)
        return
    same = est.component_labels_[:, None] == est.component_labels_[None, :]
    distinct = same & (cdist(X, X) > 0)
    assert np.all(np.isfinite(D[same])) and np.all(D[distinct] > 0)


@pytest.mark.parametrize("beta", [300.0, 1000.0])
def test_sharp_metrics_at_fixed_seeds(beta):
    """The same as above at two fixed seeds, so the large-beta case always runs."""
    rng = np.random.default_rng(int(beta))
    X = rng.normal(size=(25, 3))
    try:
        est, D = fit(X, gaussian(3), lam="quantile:0.2", beta=beta)
    except ValueError as exc:
        assert "float64" in str(exc)
        return
    assert np.all(np.isfinite(D)) and np.all(D[cdist(X, X) > 0] > 0)
