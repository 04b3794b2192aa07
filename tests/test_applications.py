"""Affinity, clustering, embedding and datasets, against scikit-learn and brute force."""

import itertools

import numpy as np
import pytest
from sklearn.cluster import SpectralClustering
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from gendist import GenerativeDistance, GeodesicAffinity, IsingClustering, distance_affinity
from gendist.affinity import median_bandwidth
from gendist.cluster import decode_assignment, double_centre, ising_qubo
from gendist.datasets import DATASETS, make_dataset
from gendist.embed import finite_distances, tsne_embedding


# ------------------------------------------------------------------ affinity
def test_affinity_matches_rbf_kernel_and_zero_at_inf():
    X = np.random.default_rng(0).normal(size=(30, 3))
    D = euclidean_distances(X)
    np.testing.assert_allclose(distance_affinity(D, tau=2.0), rbf_kernel(X, gamma=0.5), rtol=1e-12)
    D[0, 1] = D[1, 0] = np.inf
    A = distance_affinity(D, tau=2.0, power=1.0)
    assert A[0, 1] == 0.0 and A[1, 0] == 0.0
    np.testing.assert_allclose(A[2, 3], np.exp(-D[2, 3] / 2.0))


def test_median_bandwidth_ignores_diagonal_and_inf():
    D = np.array([[0.0, 1.0, np.inf], [1.0, 0.0, 3.0], [np.inf, 3.0, 0.0]])
    assert median_bandwidth(D) == pytest.approx(np.median([1, 1, 9, 9]))


@pytest.mark.parametrize("bad", [{"tau": 0.0}, {"tau": -1.0}, {"tau": "mean"}, {"power": 0}])
def test_affinity_rejects_bad_parameters(bad):
    D = euclidean_distances(np.eye(3))
    with pytest.raises((ValueError, TypeError), match="tau|power"):
        GeodesicAffinity(**bad).fit(D)


def test_affinity_transformer_median_and_shape_check():
    D = euclidean_distances(np.random.default_rng(1).normal(size=(20, 2)))
    aff = GeodesicAffinity(tau_scale=0.5).fit(D)
    assert aff.tau_ == pytest.approx(0.5 * np.median(D[~np.eye(20, dtype=bool)] ** 2))
    np.testing.assert_allclose(aff.transform(D), np.exp(-(D**2) / aff.tau_))
    with pytest.raises(ValueError, match="features"):
        aff.transform(D[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        aff.transform(np.full((20, 20), np.nan))


def test_pipeline_distance_affinity_spectral_separates_circles():
    X, y = make_dataset("circles", 300, random_state=0)
    pipe = Pipeline(
        [
            ("distance", GenerativeDistance(GaussianMixture(16, random_state=0), radius="auto")),
            ("affinity", GeodesicAffinity(tau_scale=0.1)),
            ("cluster", SpectralClustering(2, affinity="precomputed", random_state=0)),
        ]
    )
    labels = pipe.fit_predict(X)
    assert pipe.named_steps["distance"].n_components_ == 1  # the density separates, not the graph
    assert normalized_mutual_info_score(y, labels) > 0.95
    # Euclidean affinity with the same relative bandwidth does not separate them
    D = euclidean_distances(X)
    A = distance_affinity(D, 0.1 * median_bandwidth(D))
    euclid = SpectralClustering(2, affinity="precomputed", random_state=0).fit_predict(A)
    assert normalized_mutual_info_score(y, euclid) < 0.5


def test_affinity_passes_sklearn_estimator_checks():
    """Every check but one: inf is a valid distance (disconnected pairs, affinity 0)."""
    results = check_estimator(GeodesicAffinity(), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed == {"check_estimators_nan_inf"}
    assert len(results) > 40
    D = np.array([[0.0, np.inf], [np.inf, 0.0]])
    np.testing.assert_array_equal(GeodesicAffinity(tau=1.0).fit_transform(D), np.eye(2))


def test_ising_clustering_passes_sklearn_estimator_checks():
    results = check_estimator(IsingClustering(affinity="rbf", random_state=0), on_fail=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    assert len(results) > 40


# ------------------------------------------------------------------ Ising clustering
def _energy(G, q, penalty):
    """E(q) from its definition, summed term by term."""
    n, K = q.shape
    fit = -sum(G[i, j] * q[i, a] * q[j, a] for a in range(K) for i in range(n) for j in range(n))
    return fit + penalty * sum((q[i].sum() - 1) ** 2 for i in range(n))


@pytest.mark.parametrize("n, K", [(4, 2), (3, 3), (6, 2)])
def test_ising_qubo_energy_equals_definition(n, K):
    rng = np.random.default_rng(n * K)
    G = double_centre(rbf_kernel(rng.normal(size=(n, 2))))
    penalty = -2 * G.min()
    Q, offset = ising_qubo(G, K, penalty)
    for bits in itertools.product([0, 1], repeat=n * K):
        q = np.array(bits)
        assert q @ Q @ q + offset == pytest.approx(_energy(G, q.reshape(n, K), penalty), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ising_clustering_finds_brute_force_minimum(seed):
    """Exhaustive search over all 2**(n K) states of a tiny instance."""
    n, K = 6, 2
    rng = np.random.default_rng(seed)
    K_mat = rbf_kernel(rng.normal(size=(n, 2)), gamma=0.5)
    G = double_centre(K_mat)
    penalty = -2 * G.min()
    energies = [
        _energy(G, np.array(bits).reshape(n, K), penalty)
        for bits in itertools.product([0, 1], repeat=n * K)
    ]
    model = IsingClustering(K, num_reads=50, num_sweeps=500, random_state=seed).fit(K_mat)
    assert model.energy_ == pytest.approx(min(energies), abs=1e-9)
    best = np.array(list(itertools.product([0, 1], repeat=n * K))[int(np.argmin(energies))])
    expected = decode_assignment(best, K)
    assert normalized_mutual_info_score(expected, model.labels_) == pytest.approx(1.0)


def test_ising_clustering_recovers_two_blobs():
    X, y = make_blobs(200, centers=[[-5, 0], [5, 0]], cluster_std=0.7, random_state=0)
    model = IsingClustering(2, affinity="rbf", gamma=0.05, random_state=0).fit(X)
    assert model.n_unassigned_ == 0
    assert normalized_mutual_info_score(y, model.labels_) == 1.0


def test_decode_assignment_marks_non_one_hot():
    q = np.array([1, 0, 1, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(decode_assignment(q, 2), [0, -1, -1, 1])


def test_ising_clustering_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        IsingClustering().fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="symmetric"):
        IsingClustering().fit(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="n_clusters"):
        IsingClustering(5).fit(np.eye(3))
    with pytest.raises(ValueError, match="affinity"):
        IsingClustering(affinity="cosine").fit(np.eye(3))


# ------------------------------------------------------------------ embedding
def test_finite_distances_replaces_inf_with_warning():
    D = np.array([[0.0, 1.0, np.inf], [1.0, 0.0, np.inf], [np.inf, np.inf, 0.0]])
    with pytest.warns(UserWarning, match="2 pairs"):
        F = finite_distances(D)
    assert F[0, 2] == 2.0 and F[2, 1] == 2.0 and F[0, 1] == 1.0
    with pytest.raises(ValueError, match="square"):
        finite_distances(np.ones((2, 3)))


def test_finite_distances_all_pairs_disconnected_keeps_points_apart():
    D = np.full((3, 3), np.inf)
    np.fill_diagonal(D, 0.0)
    with pytest.warns(UserWarning, match="3 pairs"):
        F = finite_distances(D, inf_factor=2.0)
    np.testing.assert_array_equal(F, 2.0 * (1 - np.eye(3)))


def test_median_bandwidth_refuses_overflow():
    with pytest.raises(ValueError, match="overflows"):
        median_bandwidth(np.array([[0.0, 1e200], [1e200, 0.0]]))


def test_tsne_embedding_equals_sklearn_on_same_distances():
    from sklearn.manifold import TSNE

    X, y = make_blobs(60, centers=3, random_state=0)
    D = euclidean_distances(X)
    Y = tsne_embedding(D, perplexity=10, random_state=0)
    ref = TSNE(2, perplexity=10, metric="precomputed", init="random", random_state=0)
    np.testing.assert_allclose(Y, ref.fit_transform(D), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["sklearn", "opentsne"])
def test_tsne_embedding_preserves_neighbourhoods(backend):
    """Trustworthiness (scikit-learn) of the embedding of three separated blobs."""
    from sklearn.manifold import trustworthiness

    X, y = make_blobs(150, centers=3, cluster_std=0.5, random_state=1)
    Y = tsne_embedding(euclidean_distances(X), perplexity=20, method=backend, random_state=0)
    assert Y.shape == (150, 2)
    assert trustworthiness(X, Y, n_neighbors=10) > 0.9
    centroids = np.array([Y[y == k].mean(0) for k in range(3)])
    nearest = np.argmin(euclidean_distances(Y, centroids), axis=1)
    assert (nearest == y).all()


def test_tsne_embedding_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        tsne_embedding(np.ones((5, 5)) - np.eye(5), method="umap")


# ------------------------------------------------------------------ datasets
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_shapes_labels_and_seed(name):
    X, y = make_dataset(name, 101, random_state=3)
    assert X.shape == (101, 2) and np.isfinite(X).all()
    assert sorted(np.bincount(y)) == [50, 51]
    X2, _ = make_dataset(name, 101, random_state=3)
    np.testing.assert_array_equal(X, X2)
    with pytest.raises(ValueError, match="n_samples"):
        make_dataset(name, 1)


def test_narrow_mog_moments():
    X, y = make_dataset("narrow_mog", 20000, random_state=0)
    for label, sign in [(0, -1), (1, 1)]:
        np.testing.assert_allclose(X[y == label].mean(0), [0, sign * 0.25], atol=0.03)
        np.testing.assert_allclose(X[y == label].std(0), [1.0, 0.05], rtol=0.03)


def test_unknown_dataset_named():
    with pytest.raises(ValueError, match="spirals"):
        make_dataset("swissroll")
