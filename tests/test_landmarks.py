"""Landmark distances, bounds and landmark MDS against exact references."""

import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.spatial.distance import cdist
from sklearn.mixture import GaussianMixture

from gendist import GenerativeDistance
from gendist.landmarks import choose_landmarks, landmark_bounds, landmark_mds


@pytest.fixture
def fitted(rng):
    X = np.vstack([rng.normal(size=(150, 2)) - 1.2, rng.normal(size=(150, 2)) + 1.2])
    # landmark rows are graph rows: the exact reference is the unrefined matrix
    est = GenerativeDistance(GaussianMixture(4, random_state=0), n_neighbors=8, refine=False)
    est.fit(X)
    return est, est.distances()


@pytest.mark.parametrize("method, n_jobs", [("farthest", None), ("random", None), ("random", 2)])
def test_landmark_rows_and_bounds_bracket_the_exact_distances(fitted, method, n_jobs):
    est, D = fitted
    landmarks, DL = choose_landmarks(est.graph_, 12, method=method, random_state=0, n_jobs=n_jobs)
    assert len(set(landmarks)) == 12
    np.testing.assert_array_equal(DL, D[landmarks])
    rows, cols = np.triu_indices(len(D), 1)
    lower, upper = landmark_bounds(DL, rows, cols)
    exact = D[rows, cols]
    assert np.all(lower <= exact * (1 + 1e-12)) and np.all(exact <= upper * (1 + 1e-12))
    # exact for pairs that contain a landmark
    is_landmark = np.isin(rows, landmarks)
    np.testing.assert_allclose(upper[is_landmark], exact[is_landmark], rtol=1e-12)
    np.testing.assert_allclose(lower[is_landmark], exact[is_landmark], rtol=1e-12)


def test_farthest_point_sampling_matches_brute_force(fitted):
    est, D = fitted
    landmarks, _ = choose_landmarks(est.graph_, 6, random_state=3)
    chosen = [landmarks[0]]
    for _ in range(5):
        nearest = D[chosen].min(axis=0)
        nearest[chosen] = -1
        chosen.append(int(np.argmax(nearest)))
    np.testing.assert_array_equal(landmarks, chosen)


def test_bounds_across_components(rng):
    X = np.vstack([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 30])
    with pytest.warns(UserWarning, match="2 connected components"):
        est = GenerativeDistance(lambda A: np.zeros(len(A)), lam=1.0, n_neighbors=5).fit(X)
    landmarks, DL = choose_landmarks(est.graph_, 2, random_state=0)
    labels = est.component_labels_
    assert labels[landmarks[0]] != labels[landmarks[1]]  # one landmark per component
    lower, upper = landmark_bounds(DL, [0, 0], [1, 100])
    D = est.distances([0])[0]
    assert lower[0] <= D[1] <= upper[0]
    assert lower[1] == upper[1] == D[100] == np.inf


def test_landmark_mds_recovers_euclidean_points(rng):
    """With Euclidean distances, landmark MDS recovers the points up to a rigid motion."""
    X = rng.normal(size=(400, 3))
    landmarks = rng.choice(400, 20, replace=False)
    Y = landmark_mds(cdist(X[landmarks], X), landmarks, n_components=3)
    _, _, disparity = procrustes(X, Y)
    assert disparity < 1e-20


def test_landmark_errors(fitted):
    est, _ = fitted
    with pytest.raises(ValueError, match="exceeds"):
        choose_landmarks(est.graph_, 10_000)
    with pytest.raises(ValueError, match="method"):
        choose_landmarks(est.graph_, 3, method="kmeans")
    with pytest.raises(ValueError, match="inf"):
        landmark_mds(np.array([[0.0, np.inf, 1.0], [np.inf, 0.0, 1.0]]), [0, 1], 1)
