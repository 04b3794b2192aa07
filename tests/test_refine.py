"""Geodesic refinement: resampling, gradients, and the Euclidean limit (closed forms).

The comparison with fast-marching ground truth is in test_ground_truth.py.
"""

import numpy as np
import pytest
import torch

from gendist import CallableDensity, GaussianMixtureDensity, TorchDensity
from gendist.metric import ConformalMetric
from gendist.refine import (
    _autograd_lengths,
    _finite_difference_lengths,
    refine_path,
    resample_polyline,
)


def test_resampling_a_straight_polyline_gives_even_points(rng):
    a, b = np.array([0.0, 1.0, 2.0]), np.array([3.0, -1.0, 0.5])
    t = np.sort(np.concatenate([[0.0, 1.0], rng.random(7)]))
    line = a + t[:, None] * (b - a)
    out = resample_polyline(line, 11)
    np.testing.assert_allclose(out, a + np.linspace(0, 1, 11)[:, None] * (b - a), atol=1e-12)
    # a bent polyline: equal steps along it, ends kept exactly
    bent = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    out = resample_polyline(bent, 7)
    np.testing.assert_array_equal(out[[0, -1]], bent[[0, -1]])
    steps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    np.testing.assert_allclose(steps[[0, 2, 3, 5]], 0.5, rtol=1e-12)  # segments not at the bend
    np.testing.assert_allclose(resample_polyline(np.zeros((3, 2)), 4), np.zeros((4, 2)))


def test_resample_polyline_closed_form():
    P = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    expected = [[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1]]
    np.testing.assert_allclose(resample_polyline(P, 5), expected, atol=1e-15)
    # a repeated vertex (zero-length segment) changes nothing
    Q = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(resample_polyline(Q, 5), expected, atol=1e-15)


def _metric(density, lam=0.01, n_quad=8):
    return ConformalMetric(density, np.log(lam), 1.0, 0.0, n_quad)


def _mixture():
    return GaussianMixtureDensity(
        [0.4, 0.4, 0.2],
        [[-1.5, 0.0], [1.5, 0.0], [0.0, 1.3]],
        np.array([np.diag([0.15, 0.15]), np.diag([0.15, 0.15]), np.diag([0.8, 0.04])]),
    )


def test_gradients_equal_a_central_difference_of_the_curve_length(rng):
    metric = _metric(_mixture())
    P = np.column_stack([np.linspace(-1.5, 1.5, 9), rng.uniform(0, 1.3, 9)])
    reference = np.zeros_like(P)
    step = 1e-6
    for i in range(1, len(P) - 1):
        for j in range(2):
            up, down = P.copy(), P.copy()
            up[i, j] += step
            down[i, j] -= step
            reference[i, j] = (metric.curve_length(up) - metric.curve_length(down)) / (2 * step)
    for make in (_autograd_lengths, _finite_difference_lengths):
        log_value, log_grad = make(metric)(P[None])  # log-length and its gradient
        value, grad = np.exp(log_value[0]), np.exp(log_value[0]) * log_grad[0]
        assert value == pytest.approx(metric.curve_length(P), rel=1e-12)
        np.testing.assert_allclose(grad[1:-1], reference[1:-1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["autograd", "finite-difference"])
def test_constant_density_straightens_the_path_to_the_euclidean_segment(rng, method):
    """Euclidean limit: with p constant, h is a constant c and the shortest curve is the
    segment, of length c |a - b|."""
    c_log_p = np.log(0.3)
    density = (
        TorchDensity(
            torch.distributions.Independent(
                torch.distributions.Uniform(torch.zeros(3) - 50, torch.zeros(3) + 50), 1
            )
        )
        if method == "autograd"
        else CallableDensity(lambda X: np.full(len(X), c_log_p))
    )
    metric = _metric(density, lam=0.1)
    c = float(np.exp(metric.log_factor(np.array([density.log_prob(np.zeros((1, 3)))[0]]))[0]))
    a, b = np.zeros(3), np.array([2.0, -1.0, 0.5])
    zigzag = a + np.linspace(0, 1, 7)[:, None] * (b - a) + rng.normal(scale=0.3, size=(7, 3))
    zigzag[[0, -1]] = a, b
    points, length = refine_path(metric, zigzag, n_points=12, method=method)
    assert length == pytest.approx(c * np.linalg.norm(b - a), rel=1e-8)
    assert length < metric.curve_length(zigzag)
    np.testing.assert_allclose(points, a + np.linspace(0, 1, 12)[:, None] * (b - a), atol=1e-3)


def test_refinement_never_lengthens_a_path():
    """A path that is already the straight segment under a constant metric stays as good."""
    metric = _metric(CallableDensity(lambda X: np.zeros(len(X))))
    line = np.linspace(0, 1, 5)[:, None] * np.array([[1.0, 2.0]])
    points, length = refine_path(metric, line, method="finite-difference")
    assert length <= metric.curve_length(line)
    assert length == pytest.approx(metric.curve_length(points), rel=1e-12)


def test_autograd_and_finite_differences_find_the_same_path():
    mixture = _mixture()
    start = np.array([[-1.5, 0.0], [-1.0, 0.6], [0.0, 0.9], [1.0, 0.6], [1.5, 0.0]])
    by_grad = refine_path(_metric(mixture), start, n_points=16, method="autograd")
    by_fd = refine_path(
        _metric(CallableDensity(mixture.log_prob)), start, n_points=16, method="finite-difference"
    )
    assert by_grad[1] == pytest.approx(by_fd[1], rel=1e-4)
    np.testing.assert_allclose(by_grad[0], by_fd[0], atol=2e-2)


def test_bad_arguments():
    metric = _metric(CallableDensity(lambda X: np.zeros(len(X))))
    path = np.array([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(TypeError, match="finite-difference"):
        refine_path(metric, path, method="autograd")
    with pytest.raises(ValueError, match="method"):
        refine_path(metric, path, method="newton")
    with pytest.raises(ValueError, match="at least 2"):
        refine_path(metric, path[:1])
    with pytest.raises(ValueError):
        refine_path(metric, np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError):
        refine_path(metric, path, n_points=2)
