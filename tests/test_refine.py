"""Geodesic refinement: resampling, gradients, and the Euclidean limit (closed forms).

The comparison with fast-marching ground truth is in test_ground_truth.py.
"""

import warnings
from dataclasses import fields
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from experiments.reference import Inversion
from gendist import CallableDensity, GaussianMixtureDensity, GenerativeDistance, TorchDensity
from gendist.metric import ConformalMetric
from gendist.refine import (
    ALL_PAIRS_REFINE,
    REFINE_LATE_FALLBACK_COST,
    _autograd_lengths,
    _batched_lbfgs,
    _curve_preconditioner,
    _finite_difference_lengths,
    _gradient_method,
    _late_round_metric,
    _two_loop,
    refine_path,
    refine_paths,
    resample_polyline,
)

from .conftest import TORCH_DEVICES


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
    closed_form = ConformalMetric.log_polyline_lengths_and_gradients
    for make in (_autograd_lengths, _finite_difference_lengths, lambda m: partial(closed_form, m)):
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
    # the optimiser itself, not the straight line as a starting curve, must find the segment
    points, length = refine_path(metric, zigzag, n_points=12, method=method, straight_start=False)
    assert length == pytest.approx(c * np.linalg.norm(b - a), rel=1e-8)
    assert length < metric.curve_length(zigzag)
    np.testing.assert_allclose(points, a + np.linspace(0, 1, 12)[:, None] * (b - a), atol=1e-3)


def test_refinement_is_never_longer_than_the_straight_line_even_from_another_basin():
    """A ring of high density with a dense bar along one diameter: the half ring between
    the bar's ends is a local minimum of the length (leaving the ring costs), while the
    bar, the straight line, is shorter by about pi / 2. Started from the half ring, the
    optimiser alone stays on it; with ``straight_start`` the result is the bar's length,
    checked against an independent 2 000-node trapezoid rule of h along the segment."""
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    bar = np.column_stack([np.linspace(-1, 1, 21)[1:-1], np.zeros(19)])
    means = np.vstack([ring, bar])
    density = GaussianMixtureDensity(
        np.full(len(means), 1 / len(means)), means, np.array([np.eye(2) * 0.003] * len(means))
    )
    lam = 1e-3
    metric = _metric(density, lam=lam)
    a, b, half_ring = ring[0], ring[32], ring[:33]
    t = np.linspace(0, 1, 2000)[:, None]
    line = a + t * (b - a)
    p = np.exp(density.log_prob(line))
    h = lam / (p + lam)  # beta = 1, p0 = 0
    straight = np.linalg.norm(b - a) * np.sum((h[1:] + h[:-1]) / 2) / (len(line) - 1)
    _, stuck = refine_path(metric, half_ring, straight_start=False)
    assert stuck > 1.4 * straight  # the construction holds: the half ring is its own basin
    points, length = refine_path(metric, half_ring)
    assert length <= straight * (1 + 1e-4)
    assert length >= straight * (1 - 1e-3)  # a real curve: not below the truth
    assert length == pytest.approx(metric.curve_length(points), rel=1e-12)
    np.testing.assert_array_equal(points[[0, -1]], [a, b])


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
    by_grad = refine_path(_metric(mixture), start, n_points=32, method="autograd")
    by_fd = refine_path(
        _metric(CallableDensity(mixture.log_prob)), start, n_points=32, method="finite-difference"
    )
    assert by_grad[1] == pytest.approx(by_fd[1], rel=1e-4)
    np.testing.assert_allclose(by_grad[0], by_fd[0], atol=2e-2)


def test_bad_arguments():
    metric = _metric(CallableDensity(lambda X: np.zeros(len(X))))
    path = np.array([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(TypeError, match="finite-difference"):
        refine_path(metric, path, method="autograd")
    with pytest.raises(TypeError, match="no closed-form score"):
        refine_path(metric, path, method="closed-form")
    with pytest.raises(ValueError, match="method"):
        refine_path(metric, path, method="newton")
    with pytest.raises(ValueError, match="at least 2"):
        refine_path(metric, path[:1])
    with pytest.raises(ValueError):
        refine_path(metric, np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError):
        refine_path(metric, path, n_points=2)


def test_a_batch_of_paths_straightens_each_to_its_segment(rng):
    """Euclidean limit, a batch of paths of different point counts and scales 1e-3 ... 1e3:
    each reaches its segment's length c |a - b| (closed form), as it would alone."""
    density = TorchDensity(
        torch.distributions.Independent(
            torch.distributions.Uniform(torch.zeros(4) - 1e4, torch.zeros(4) + 1e4), 1
        )
    )
    metric = _metric(density, lam=1e-10)
    c = float(np.exp(metric.log_factor(np.array([np.log(0.5e-4) * 4]))[0]))
    paths, truth = [], []
    for k, scale in [(2, 1e-3), (5, 1.0), (9, 1e3), (4, 0.2)]:
        a, b = rng.normal(size=4) * scale, rng.normal(size=4) * scale
        zigzag = a + np.linspace(0, 1, k)[:, None] * (b - a)
        zigzag[1:-1] += rng.normal(scale=0.3 * scale, size=(k - 2, 4))
        paths.append(zigzag)
        truth.append(c * np.linalg.norm(b - a))
    refined, lengths, info = refine_paths(metric, paths, return_info=True)
    np.testing.assert_allclose(lengths, truth, rtol=1e-7)
    assert info["refined"][1:].all()  # the two-point path is its segment already
    assert info["converged"].all()
    for p, q, length in zip(paths, refined, lengths):
        np.testing.assert_array_equal(q[[0, -1]], p[[0, -1]])
        assert metric.curve_length(q) == pytest.approx(length, rel=1e-12)
        assert length <= metric.curve_length(p) * (1 + 1e-12)


def test_the_curve_preconditioner_solves_the_second_difference_system(rng):
    """Against scipy's banded solver on tridiag(-1, 2, -1), each coordinate on its own."""
    from scipy.linalg import solve_banded

    for n_inner, d in [(1, 3), (6, 10), (30, 2)]:
        v = rng.normal(size=(4, n_inner * d))
        bands = np.vstack([np.full(n_inner, -1.0), np.full(n_inner, 2.0), np.full(n_inner, -1.0)])
        expected = np.stack(
            [solve_banded((1, 1), bands, row.reshape(n_inner, d)) for row in v]
        ).reshape(v.shape)
        np.testing.assert_allclose(_curve_preconditioner(n_inner, d)(v), expected, rtol=1e-12)


def test_two_loop_is_the_dense_bfgs_inverse_hessian_of_each_rows_own_pairs(rng):
    """_two_loop against the dense BFGS update H <- (I - rho s y') H (I - rho y s') + rho s s'
    from H0 = gamma M (M the curve preconditioner, gamma = s.y / y.M y of the newest pair, or
    ``initial`` without pairs): rows of a ring of 5 slots holding 0, 2, 5 pairs with the newest
    at different slots, queried in a shuffled order."""
    n_inner, d, H, B = 4, 3, 5, 4
    n = n_inner * d
    M = np.linalg.inv(np.kron(2 * np.eye(n_inner) - np.eye(n_inner, k=1)
                              - np.eye(n_inner, k=-1), np.eye(d)))
    precondition = _curve_preconditioner(n_inner, d)
    S, Y = rng.normal(size=(B, H, n)), rng.normal(size=(B, H, n))
    Y += 3.0 * S  # s.y > 0
    rho = 1.0 / np.einsum("bhn,bhn->bh", S, Y)
    count, head = np.array([0, 2, 5, 5]), np.array([3, 0, 4, 1])
    rows = np.array([2, 0, 3, 1])
    g = rng.normal(size=(len(rows), n))
    initial = np.full(len(rows), 0.7)
    got = _two_loop(g, S, Y, rho, head, count, rows, precondition, initial)
    for a, r in enumerate(rows):
        slots = [(head[r] - i) % H for i in range(count[r])][::-1]  # oldest first
        if slots:
            s, y = S[r, slots[-1]], Y[r, slots[-1]]
            Hk = (s @ y) / (y @ M @ y) * M
        else:
            Hk = initial[a] * M
        for k in slots:
            s, y, p = S[r, k], Y[r, k], rho[r, k]
            V = np.eye(n) - p * np.outer(y, s)
            Hk = V.T @ Hk @ V + p * np.outer(s, s)
        np.testing.assert_allclose(got[a], Hk @ g[a], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("preconditioned", [False, True])
def test_batched_lbfgs_reaches_each_rows_own_minimum(rng, preconditioned):
    """B independent ill-conditioned quadratics 0.5 x'A_b x - c_b'x (A_b = s_b T + a random
    SPD part, T the second-difference matrix of 12 points in 3-D): every row reaches its own
    minimiser A_b^-1 c_b (numpy's solve), preconditioned or not."""
    n_inner, d, B = 12, 3, 6
    T = np.kron(2 * np.eye(n_inner) - np.eye(n_inner, k=1) - np.eye(n_inner, k=-1), np.eye(d))
    A, c = [], []
    for b in range(B):
        R = rng.normal(size=(n_inner * d, n_inner * d)) / (n_inner * d)
        A.append(10.0 ** (b - 2) * (T + 0.01 * R @ R.T))
        c.append(rng.normal(size=n_inner * d))
    A, c = np.array(A), np.array(c)

    def fun(x, rows):
        Ax = np.einsum("bij,bj->bi", A[rows], x)
        return 0.5 * np.einsum("bi,bi->b", x, Ax) - np.einsum("bi,bi->b", c[rows], x), Ax - c[rows]

    options = {"precondition": _curve_preconditioner(n_inner, d), "initial": 1.0}
    x, g = _batched_lbfgs(fun, np.zeros((B, n_inner * d)), max_iter=500, gtol=1e-10, ftol=0,
                          **(options if preconditioned else {}))
    np.testing.assert_allclose(x, np.linalg.solve(A, c[..., None])[..., 0], rtol=1e-6, atol=1e-8)


def test_batched_finite_differences_equal_autograd_on_every_path(rng):
    metric = _metric(_mixture())
    P = np.stack(
        [np.column_stack([np.linspace(-1.5, 1.5, 7), rng.uniform(0, 1.3, 7)]) for _ in range(5)]
    )
    log_a, grad_a = _autograd_lengths(metric)(P)
    log_f, grad_f = _finite_difference_lengths(_metric(CallableDensity(_mixture().log_prob)))(P)
    np.testing.assert_allclose(log_a, log_f, rtol=1e-12)
    np.testing.assert_allclose(grad_a[:, 1:-1], grad_f[:, 1:-1], rtol=1e-5, atol=1e-8)
    for b in range(len(P)):  # each path's own value, as a batch of one
        assert np.exp(log_a[b]) == pytest.approx(metric.curve_length(P[b]), rel=1e-12)


@pytest.mark.parametrize(
    "covariance_type, beta, log_lam",
    [("full", 1.3, -12.0), ("diag", 1.3, -12.0), ("full", 1.0, -12.0), ("full", 1.0, -730.0)],
)
def test_closed_form_gradients_equal_autograd_on_every_path(covariance_type, beta, log_lam,
                                                            rng):
    """10-D, a 4-component mixture, 40 paths of 9 points, one with a zero-length segment and
    one of zero length: the closed form gives autograd's log-lengths and gradients. With
    beta = 1 the rule is summed in linear space unless lambda is so small that the factors'
    ratios underflow (log lambda = -730: exp(log p - log lambda) overflows near the data,
    and only the sum in log space is right)."""
    d = 10
    cov = np.stack([np.diag(rng.uniform(0.3, 2.0, d)) for _ in range(4)])
    if covariance_type == "full":
        cov += 0.2 * np.ones((d, d))
    else:
        cov = np.stack([np.diagonal(c) for c in cov])
    mixture = GaussianMixtureDensity(np.ones(4), rng.normal(size=(4, d)) * 2, cov, covariance_type)
    metric = ConformalMetric(mixture, log_lam=log_lam, beta=beta, p0=1e-4, n_quad=6)
    P = rng.normal(size=(40, 9, d)) * 1.5
    P[3, 4] = P[3, 5]
    P[7] = P[7, :1]
    assert metric.has_gradients
    log_c, grad_c = metric.log_polyline_lengths_and_gradients(P)
    log_a, grad_a = _autograd_lengths(metric)(P)
    np.testing.assert_array_equal(log_c[7:8], metric.log_polyline_lengths(P[7:8]))  # -inf
    assert not grad_c[7].any()
    moving = np.ones(len(P), bool)
    moving[7] = False  # autograd floors |B - A| at 1e-300: a finite log-length there
    np.testing.assert_allclose(log_c[moving], log_a[moving], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad_c[moving], grad_a[moving], rtol=1e-9, atol=1e-12)


def test_closed_form_gradients_refuse_a_non_finite_score_and_count_its_points(rng):
    """NaN or +-inf in the score where log p is finite is an error that counts the points (a
    line search steps back from it); finite scores whose sum overflows are no error."""

    class Edited(GaussianMixtureDensity):
        def log_prob_and_score(self, X):
            log_p, score = super().log_prob_and_score(X)
            score[: len(self.rows), 1] = self.rows
            return log_p, score

    mixture = Edited([1.0], np.zeros((1, 3)), np.eye(3)[None])
    metric = ConformalMetric(mixture, log_lam=0.0)
    P = rng.normal(size=(2, 5, 3))
    mixture.rows = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match="non-finite score for 3 points"):
        metric.log_polyline_lengths_and_gradients(P)
    mixture.rows = [1e308, 1e308]
    log_c, grad_c = metric.log_polyline_lengths_and_gradients(P)
    np.testing.assert_allclose(log_c, metric.log_polyline_lengths(P), rtol=1e-13)


@pytest.mark.parametrize("scale", [1e155, 1e-150])
def test_closed_form_gradients_at_extreme_scales_are_finite_and_right(scale, rng):
    """Polylines whose squared lengths over- or underflow float64: the closed form's
    log-lengths are log_polyline_lengths' (scale-safe norms) and its gradients finite; at
    1e155 every point is far from the mixture (log p = -inf: h = h_max), so the length is
    Euclidean and the gradient that of log |P| alone, which central differences give."""
    mixture = GaussianMixtureDensity([1.0], np.zeros((1, 3)), np.eye(3)[None])
    metric = ConformalMetric(mixture, log_lam=0.0)
    P = rng.normal(size=(4, 5, 3)) * scale
    log_c, grad_c = metric.log_polyline_lengths_and_gradients(P)
    np.testing.assert_allclose(log_c, metric.log_polyline_lengths(P), rtol=1e-13)
    assert np.isfinite(grad_c).all()
    step = 1e-6 * scale
    for b, i, j in [(0, 2, 1), (3, 1, 0)]:
        up, down = P[b : b + 1].copy(), P[b : b + 1].copy()
        up[0, i, j] += step
        down[0, i, j] -= step
        slope = (metric.log_polyline_lengths(up) - metric.log_polyline_lengths(down)) / (2 * step)
        assert grad_c[b, i, j] * scale == pytest.approx(slope[0] * scale, rel=1e-5, abs=1e-7)


def test_refine_paths_bad_arguments():
    metric = _metric(CallableDensity(lambda X: np.zeros(len(X))))
    path = np.array([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="empty"):
        refine_paths(metric, [])
    with pytest.raises(ValueError, match="features"):
        refine_paths(metric, [path, np.zeros((3, 3))])
    with pytest.raises(ValueError, match=r"paths\[1\]"):
        refine_paths(metric, [path, path[:1]])
    with pytest.raises(ValueError, match="paths"):
        refine_paths(metric, [path, np.array([[0.0, np.inf], [1.0, 1.0]])])


@pytest.fixture(scope="module")
def curved_10d():
    from gendist import GenerativeDistance

    model = Inversion(10).double()
    X = np.random.default_rng(3).uniform(size=(600, 10))
    est = GenerativeDistance(TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0, refine=False)
    return est.fit(X), model.phi(X)


def test_batched_geodesics_reach_the_closed_form_in_10d(curved_10d):
    """Curved closed form in 10-D: the refined batch is within 1e-2 of the truth (median
    about 1e-3), never below it beyond quadrature error, never longer than the graph path,
    and each reported length is that of the returned polyline."""
    est, Y = curved_10d
    assert est.shortcuts_  # auto: the graph stretches in 10-D
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 600, 60), rng.integers(0, 600, 60)
    a, b = a[a != b], b[a != b]
    truth = np.linalg.norm(Y[a] - Y[b], axis=1)
    graph = est.geodesics(a, b)
    refined = est.geodesics(a, b, refine=True)
    g, r = np.array([p.length for p in graph]), np.array([p.length for p in refined])
    np.testing.assert_allclose(g, est.distances(a)[np.arange(len(a)), b], rtol=1e-12)
    assert np.median(g / truth) > 1.05  # the graph stage alone is off
    assert np.median(r / truth) < 1.005 and (r / truth).max() < 1.01
    assert (r / truth).min() >= 1 - 1e-3  # an upper bound up to quadrature error
    assert np.all(r <= g * (1 + 1e-12))
    fine = est.metric_.with_nodes(64)
    for p in refined[:10]:
        assert fine.curve_length(p.points) == pytest.approx(p.length, rel=1e-3)
        assert p.indices[0] in a and p.indices[-1] in b and np.all(p.indices[1:-1] == -1)


def test_refined_kneighbors_are_shorter_and_closer_to_the_truth(curved_10d):
    est, Y = curved_10d
    sources = np.arange(0, 600, 40)
    d0, i0 = est.kneighbors(sources, 5)
    d1, i1 = est.kneighbors(sources, 5, refine={"n_points": 12})
    assert np.all(np.diff(d1, axis=1) >= 0)
    for row in range(len(sources)):  # the same candidates, each refined length <= graph's
        before = dict(zip(i0[row], d0[row]))
        assert set(i1[row]) == set(before)
        assert all(d <= before[j] * (1 + 1e-12) for j, d in zip(i1[row], d1[row]))
    truth0 = np.linalg.norm(Y[sources, None] - Y[i0], axis=2)
    truth1 = np.linalg.norm(Y[sources, None] - Y[i1], axis=2)
    assert np.abs(d1 / truth1 - 1).max() < 0.5 * np.abs(d0 / truth0 - 1).max()
    assert (d1 / truth1).min() >= 1 - 1e-3


def test_geodesics_bad_arguments(curved_10d):
    est, _ = curved_10d
    with pytest.raises(ValueError, match="same length"):
        est.geodesics([0, 1], [2])
    with pytest.raises(TypeError, match="refine"):
        est.geodesics([0], [1], refine="yes")
    with pytest.raises(IndexError):
        est.geodesics([0], [600])
    with pytest.raises(TypeError, match="n_pints"):
        est.geodesics([0], [1], refine={"n_pints": 8})


def test_refined_kneighbors_graph_is_closer_to_the_closed_form():
    from gendist import GenerativeDistance

    model = Inversion(8).double()
    X = np.random.default_rng(5).uniform(size=(100, 8))
    Y = model.phi(X)
    est = GenerativeDistance(TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0).fit(X)
    assert est.refine_  # the default refines: refine=False is the graph's
    G0 = est.kneighbors_graph(2, refine=False)
    G1 = est.kneighbors_graph(2, refine={"n_points": 8})
    errors = []
    for G in (G0, G1):
        assert np.all(G.getnnz(axis=1) == 3)  # itself (an explicit zero) and 2 neighbours
        rows = np.repeat(np.arange(100), 3)
        truth = np.linalg.norm(Y[rows] - Y[G.indices], axis=1)
        errors.append(np.abs(G.data[truth > 0] / truth[truth > 0] - 1))
    assert np.median(errors[1]) < 0.5 * np.median(errors[0])
    assert errors[1].max() < 5e-3


def test_refinement_steps_back_where_the_density_is_undefined():
    """log p = log(|x - c|^2 - lam) is NaN inside the ball |x - c|^2 < lam. A path past the
    ball is pulled towards it (h = lam / |x - c|^2 grows away from c); trial points inside
    must be refused, not crash the batch, and the result is the inversion's closed form."""
    model = Inversion(2, lam=0.125).double()
    metric = ConformalMetric(TorchDensity(model), np.log(0.125), 1.0, 0.0, 8)
    c = model.c.numpy()
    a, b = c + [0.36, 0.02], c + [-0.02, 0.36]  # just outside the ball of radius 0.354
    far = np.array([a, c + [0.9, 0.9], b])  # a detour far from c
    paths, lengths = refine_paths(metric, [far, far[::-1]], n_points=16)
    truth = np.linalg.norm(model.phi(a[None]) - model.phi(b[None]))
    np.testing.assert_allclose(lengths, truth, rtol=2e-3)
    assert lengths.min() >= truth * (1 - 1e-3)
    inside = np.array([((p - c) ** 2).sum(1) < 0.125 for p in paths])
    assert not inside.any()


@pytest.fixture(scope="module", params=[5, 10])
def curved_pairs(request):
    """An estimator under the inversion metric (closed-form distances) and its truth."""
    from gendist import GenerativeDistance

    d = request.param
    model = Inversion(d).double()
    X = np.random.default_rng(d).uniform(size=(110, d))
    est = GenerativeDistance(
        TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0, refine=False
    ).fit(X)
    Y = model.phi(X)
    return est, np.linalg.norm(Y[:, None] - Y[None], axis=2)


def test_all_pairs_refinement_reaches_the_closed_form(curved_pairs, tmp_path):
    """distances(refine=True) under the inversion metric in 5-D and 10-D: median within 1 %
    and 95th percentile within 2 % of the closed form where the graph stage is 5-20 % long,
    never below the truth beyond quadrature error, never longer than the graph stage (the
    closed shortcut matrix), and a distance matrix: symmetric, zero diagonal, triangle
    inequality. Written to a memory map, the same floats."""
    est, truth = curved_pairs
    graph = est.fit_transform(est.vertices_)
    D = est.distances(refine=True)
    off = truth > 0.3 * np.median(truth)
    assert np.median(graph[off] / truth[off]) > 1.05
    ratio = D[off] / truth[off]
    assert np.median(ratio) <= 1.01 and np.quantile(ratio, 0.95) <= 1.02
    assert ratio.min() >= 1 - 1e-3
    assert np.all(D <= graph * (1 + 1e-12))
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.all(D <= (D[:, :, None] + D[None, :, :]).min(axis=1) * (1 + 1e-12))
    M = np.lib.format.open_memmap(tmp_path / "D.npy", mode="w+", dtype=np.float64,
                                  shape=D.shape)
    est.distances(refine=True, out=M)
    np.testing.assert_array_equal(np.asarray(M), D)


def test_refined_rows_are_each_rows_own_pairs(curved_pairs):
    """Some rows only: each entry is its row's refined pair, at most the row's graph value,
    at least the truth up to quadrature error, and close to the full matrix's."""
    est, truth = curved_pairs
    rows = np.array([3, 50, 7])
    R0, R = est.distances(rows), est.distances(rows, refine={"n_points": 10})
    assert np.all(R <= R0 * (1 + 1e-12)) and np.all(R[np.arange(3), rows] == 0)
    off = truth[rows] > 0
    assert (R[off] / truth[rows][off]).min() >= 1 - 1e-3
    assert np.median(R[off] / truth[rows][off]) < np.median(R0[off] / truth[rows][off]) - 0.03


def _nearest_pairs(R0: np.ndarray, k: int) -> set:
    """The unordered pairs {i, j} whose shorter entry of the one-sided rows ``R0`` is among
    row i's or row j's ``k`` smallest positive entries (ties included), by sorting."""
    positive = np.where(R0 > 0, R0, np.inf)
    kth = np.sort(positive, axis=1)[:, k - 1]
    value = np.minimum(R0, R0.T)
    i, j = np.nonzero((value <= np.maximum(kth[:, None], kth[None, :])) & (value > 0))
    return {(a, b) for a, b in zip(i, j) if a < b}


def test_refining_each_rows_nearest_pairs_only(curved_pairs, monkeypatch):
    """refine={"nearest": k}: all pairs refines only the pairs among either row's k shortest
    entries, each once, from its shorter row (a spy records the searches: each block
    searches from its own rows only). Those come within 0.5 % of the closed form (median),
    where the rows are 2-20 % long; the matrix is closed under the triangle inequality,
    never below the truth, never longer than unrefined, and never shorter than with every
    pair refined (up to the stopping tolerance). Rows of other sources refine their own k
    shortest and keep the rest; kneighbors refines its first k candidates only."""
    import gendist._engine as engine

    est, truth = curved_pairs
    k = 6
    R0 = est.distances()  # one-sided rows, unrefined
    expected = _nearest_pairs(R0, k)
    refined_pairs, searched = [], []
    base = engine.GraphDistanceBase
    refine, search = base._refined_geodesics, base._graph_geodesics

    def spy_refine(self, a, b, *args, **kwargs):
        refined_pairs.extend(zip(np.minimum(a, b), np.maximum(a, b)))
        return refine(self, a, b, *args, **kwargs)

    def spy_search(self, a, b, *args, **kwargs):
        searched.append(np.unique(a))
        return search(self, a, b, *args, **kwargs)

    monkeypatch.setattr(engine, "PAIRS_PER_BATCH", 9 * len(R0))  # blocks of 9 rows
    monkeypatch.setattr(engine.GraphDistanceBase, "_refined_geodesics", spy_refine)
    monkeypatch.setattr(engine.GraphDistanceBase, "_graph_geodesics", spy_search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        D = est.distances(refine={"nearest": k})
    assert len(refined_pairs) == len(set(refined_pairs))  # each pair once
    assert set(map(tuple, np.array(refined_pairs).tolist())) == expected
    assert all(s.max() - s.min() < 9 for s in searched)  # a block's own rows
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = est.distances(refine=True)
    graph = est.fit_transform(est.vertices_)
    i, j = np.array(sorted(expected)).T
    before, after = np.median(R0[i, j] / truth[i, j]), np.median(D[i, j] / truth[i, j])
    assert before > 1.015 and after <= 1.005
    off = truth > 0
    assert (D[off] / truth[off]).min() >= 1 - 1e-3
    assert np.all(D <= graph * (1 + 1e-12)) and np.all(D >= full * (1 - 1e-4))
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.all(D <= (D[:, :, None] + D[None, :, :]).min(axis=1) * (1 + 1e-12))
    # rows of some sources: each its own k shortest entries
    rows = np.array([3, 50, 7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        R = est.distances(rows, refine={"nearest": k})
    near = R0[rows] <= np.sort(np.where(R0[rows] > 0, R0[rows], np.inf), axis=1)[:, [k - 1]]
    near &= R0[rows] > 0
    np.testing.assert_array_equal(R[~near], R0[rows][~near])
    assert np.all(R[near] < R0[rows][near]) and (R[near] / truth[rows][near]).min() >= 1 - 1e-3
    # pairs asked for by name are refined whatever "nearest" says; no rows, no matrix
    far = int(np.argmax(R0[3]))
    plain = GenerativeDistance(**{**est.get_params(), "refine": True}).fit(est.vertices_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert est.distance(3, far) > est.geodesic(3, far, refine={"nearest": 1}).length
        assert est.geodesic(3, far, refine={"nearest": 1}).length == pytest.approx(
            plain.geodesic(3, far).length, rel=1e-12)
    assert est.distances([], refine={"nearest": k}).shape == (0, len(R0))
    # kneighbors: its first k candidates refined, the rest as searched
    d0, i0 = est.kneighbors(rows, 2 * k, refine=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        d1, i1 = est.kneighbors(rows, 2 * k, refine={"nearest": k})
    for r in range(len(rows)):
        assert set(i1[r]) == set(i0[r])
        before = dict(zip(i0[r], d0[r]))
        after = dict(zip(i1[r], d1[r]))
        assert all(after[v] < before[v] for v in i0[r][:k])
        assert all(after[v] == before[v] for v in i0[r][k:])
        # the all-pairs settings: the rows' own refined values (up to the stopping tolerance)
        np.testing.assert_allclose([after[v] for v in i0[r][:k]], R[r, i0[r][:k]], rtol=1e-4)


def test_all_pairs_refinement_in_many_blocks_is_the_one_block_answer(curved_pairs,
                                                                     monkeypatch):
    """Blocks of 7 rows (the strip writes, the diagonal blocks beyond the first, a last
    partial block) give the lengths of one block (up to rounding: the model calls hold other
    points); under ``limit`` no entry is finite beyond
    it, and the refined pairs within it are those of the full matrix, capped."""
    import gendist._engine as engine

    est, _ = curved_pairs
    one = est.distances(refine=True)
    monkeypatch.setattr(engine, "PAIRS_PER_BATCH", 7 * len(one))
    np.testing.assert_allclose(est.distances(refine=True), one, rtol=1e-12)
    limit = float(np.median(one))
    capped = est.distances(limit=limit, refine=True)
    finite = np.isfinite(capped)
    assert np.all(capped[finite] <= limit)
    assert np.all(capped[finite] >= one[finite] * (1 - 1e-12))  # fewer chains to close
    assert np.all(finite[one <= 0.5 * limit])  # near pairs stay found


def test_refinement_in_workers_is_the_one_process_answer(curved_pairs, monkeypatch):
    """n_jobs=2, each worker a process with its own copy of the metric, shares of at least
    64 paths (``PATHS_PER_WORKER`` lowered so that 110 vertices split): the all-pairs matrix
    of one process (checked against the closed form above), again within 1 % of the closed
    form; the paths and their info of ``refine_paths`` too (up to the stopping tolerance:
    rounding may stop a path a round apart). With a device, one process."""
    from sklearn.base import clone

    import gendist.refine as refine

    est, truth = curved_pairs
    one = est.distances(refine=True)
    calls = []
    in_workers = refine._refine_in_workers

    def spy(metric, paths, workers, *args):
        calls.append((len(paths), workers))
        return in_workers(metric, paths, workers, *args)

    monkeypatch.setattr(refine, "PATHS_PER_WORKER", 64)
    monkeypatch.setattr(refine, "_refine_in_workers", spy)
    two = clone(est).set_params(n_jobs=2).fit(est.vertices_).distances(refine=True)
    assert calls and all(workers == 2 for _, workers in calls)
    assert sum(n for n, _ in calls) >= len(one) * (len(one) - 1) // 2 - len(one)
    # a path stops once a round gains less than tol: rounding may stop it a round apart
    np.testing.assert_allclose(two, one, rtol=ALL_PAIRS_REFINE["tol"])
    off = truth > 0.3 * np.median(truth)
    assert np.median(two[off] / truth[off]) <= 1.01

    a, b = np.repeat([0, 1], 100), np.tile(np.arange(2, 102), 2)
    paths = [g.points for g in est.geodesics(a, b)]
    serial = refine_paths(est.metric_, paths, n_points=8, tol=1e-6, return_info=True)
    calls.clear()
    shared = refine_paths(est.metric_, paths, n_points=8, tol=1e-6, return_info=True, n_jobs=2)
    assert calls == [(200, 2)]
    for p, q in zip(serial[0], shared[0]):  # points: flat directions at the minimum
        np.testing.assert_allclose(q, p, atol=1e-4)
    np.testing.assert_allclose(shared[1], serial[1], rtol=1e-6)
    np.testing.assert_array_equal(shared[2]["refined"], serial[2]["refined"])
    assert np.mean(shared[2]["n_rounds"] == serial[2]["n_rounds"]) > 0.9
    calls.clear()
    refine_paths(est.metric_, paths[:130], n_points=8, n_jobs=2, device="cpu")
    assert not calls


def test_all_pairs_refinement_checks_its_options_first_and_warns_once(curved_pairs,
                                                                    monkeypatch):
    from sklearn.exceptions import ConvergenceWarning

    import gendist._engine as engine

    est, _ = curved_pairs
    searched = []
    original = type(est)._shortest_paths

    def spy(self, *args, **kwargs):
        searched.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(est), "_shortest_paths", spy)
    bad = [
        (ValueError, "neural", {"curve": "neural"}),
        (TypeError, "n_pints", {"n_pints": 8}),
        (ValueError, "n_points", {"n_points": 2}),
        (ValueError, "tol", {"tol": -1.0}),
        (ValueError, "method", {"method": "newton"}),
        (TypeError, "refine", "all"),
    ]
    for error, message, refine in bad:
        with pytest.raises(error, match=message):
            est.distances(refine=refine)
    assert not searched  # every refusal came before any path search
    monkeypatch.setattr(engine, "PAIRS_PER_BATCH", 3 * est.graph_.shape[0])  # 3 rows a batch
    with pytest.warns(ConvergenceWarning, match=r"distances\(refine=...\): \d+ of \d+ paths") as w:
        est.distances([0, 1, 2, 3, 4, 5, 6], refine={"n_rounds": 1, "tol": 1e-12})
    assert len([x for x in w if issubclass(x.category, ConvergenceWarning)]) == 1
    assert "in 1 rounds" in str(w[0].message)


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_all_pairs_refinement_on_a_torch_device_is_the_numpy_answer(device):
    """An estimator on a torch device (graph search, quadrature, refinement there) refines
    all pairs to the same lengths as the numpy estimator, up to rounding (amplified to about
    1e-6 by the optimiser's line-search decisions over a few rounds)."""
    from gendist import GenerativeDistance

    model = Inversion(5).double()
    X = np.random.default_rng(2).uniform(size=(60, 5))
    kw = dict(lam=model.lam, beta=1.0, p0=0.0, shortcuts=True)
    cpu = GenerativeDistance(TorchDensity(model), **kw).fit(X).distances(refine=True)
    on = GenerativeDistance(TorchDensity(model.to(device)), device=device, **kw).fit(X)
    np.testing.assert_allclose(on.distances(refine=True), cpu, rtol=1e-5)
    Y = model.cpu().phi(X)
    truth = np.linalg.norm(Y[:, None] - Y[None], axis=2)
    off = truth > 0
    assert np.median(cpu[off] / truth[off]) < 1.01


@pytest.mark.parametrize("d", [5, 10])
def test_fit_measures_what_refinement_would_gain_against_the_closed_form(d):
    """refine_gain_ (128 sampled pairs, rows over refined curves) under the inversion metric
    agrees with how much longer the unrefined rows measure than the closed form over all
    pairs, and turns refinement on for this small graph (refine="auto"). In the Euclidean
    limit on the same points the rows are exact (straight segments): the gain is 1,
    refinement stays off and nothing is said."""
    from gendist import GenerativeDistance

    model = Inversion(d).double()
    X = np.random.default_rng(d).uniform(size=(150, d))
    Y = model.phi(X)
    truth = np.linalg.norm(Y[:, None] - Y[None], axis=2)
    off = truth > 0.3 * np.median(truth)
    est = GenerativeDistance(TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0).fit(X)
    assert est.shortcuts_ and est.refine_
    rows = est.distances(refine=False)
    measured = np.median(rows[off] / truth[off])
    assert measured > 1.05
    assert est.refine_gain_ == pytest.approx(measured, rel=0.03)

    flat = GenerativeDistance(lambda Z: np.zeros(len(Z)), lam=1e12, n_quad=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat.fit(X)
    assert flat.shortcuts_ and not flat.refine_
    assert flat.refine_gain_ == pytest.approx(1.0, abs=1e-9)
    flat_graph = GenerativeDistance(lambda Z: np.zeros(len(Z)), lam=1e12, shortcuts=False)
    assert np.isnan(flat_graph.fit(X).refine_gain_)  # nothing stretches, nothing bends
    assert np.isnan(GenerativeDistance(refine=False).fit(X).refine_gain_)  # not measured


def test_refine_auto_makes_every_query_accurate_on_a_small_graph_and_warns_on_a_large_one(
    monkeypatch,
):
    """The default (refine="auto") under the inversion metric in 5-D, n = 120: fit_transform
    is within 1 % (median) and 2.5 % (95th percentile) of the closed form where
    refine=False's closed shortcut matrix is 5 % or more too long; it is the matrix of
    distances(refine=True), and kneighbors, geodesic and distance report refined lengths
    too, each no shorter than the truth beyond quadrature error. Where all pairs would take
    longer than REFINE_AUTO_SECONDS, fit warns and the queries stay unrefined (refine_ False)."""
    import gendist._engine
    from gendist import GenerativeDistance

    model = Inversion(5).double()
    X = np.random.default_rng(11).uniform(size=(120, 5))
    Y = model.phi(X)
    truth = np.linalg.norm(Y[:, None] - Y[None], axis=2)
    off = truth > 0.3 * np.median(truth)
    keywords = dict(density=TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0)
    est = GenerativeDistance(**keywords)
    D = est.fit_transform(X)
    assert est.refine_
    plain = GenerativeDistance(**keywords, refine=False).fit_transform(X)
    assert np.median(plain[off] / truth[off]) > 1.05
    ratio = D[off] / truth[off]
    assert np.median(ratio) < 1.01 and np.quantile(ratio, 0.95) < 1.025
    assert (D >= truth - 1e-3).all() and (D <= plain * (1 + 1e-12)).all()
    np.testing.assert_allclose(D, est.distances(refine=True), rtol=1e-12)
    dist, ind = est.kneighbors([0, 1], 4)
    assert (dist <= est.kneighbors([0, 1], 4, refine=False)[0] * (1 + 1e-12)).all()
    assert (dist >= truth[[[0], [1]], ind] - 1e-3).all()
    g = est.geodesic(2, 3)
    assert est.distance(2, 3) == pytest.approx(g.length, rel=1e-12)
    assert truth[2, 3] - 1e-3 <= g.length <= est.geodesic(2, 3, refine=False).length
    new = X[:4] + 0.01
    Y_new = model.phi(new)
    T = est.transform(new)
    new_truth = np.linalg.norm(Y_new[:, None] - Y[None], axis=2)
    plain_T = GenerativeDistance(**keywords, refine=False).fit(X).transform(new)
    assert (T >= new_truth - 1e-3).all() and (T <= plain_T * (1 + 1e-12)).all()
    far = new_truth > 0.3 * np.median(truth)
    assert np.median(T[far] / new_truth[far]) < 1.01 < np.median(plain_T[far] / new_truth[far])

    monkeypatch.setattr(gendist._engine, "REFINE_AUTO_SECONDS", 1e-6)
    with pytest.warns(UserWarning, match=r"refine='auto' leaves refinement off") as record:
        est = GenerativeDistance(**keywords).fit(X)
    assert not est.refine_ and est.refine_seconds_ > 1e-6
    message = next(str(w.message) for w in record if "refine='auto'" in str(w.message))
    assert f"{est.refine_gain_ - 1:.1%}" in message and "7,140 pairs" in message
    assert f"{est.refine_seconds_ / 60:.1f} min" in message
    # two far components: only the pairs within each are refined, and counted
    far = np.vstack([X[:60], X[60:] + 100.0])
    with pytest.warns(UserWarning, match=r"refine='auto' leaves refinement off") as record:
        GenerativeDistance(**keywords, n_neighbors=10).fit(far)  # kept apart
    message = next(str(w.message) for w in record if "refine='auto'" in str(w.message))
    assert "3,540 pairs" in message  # 2 x 60 x 59 / 2, not 7,140
    np.testing.assert_array_equal(est.fit_transform(X), plain)
    with pytest.raises(ValueError, match="one network per pair"):
        GenerativeDistance(**keywords, refine={"curve": "neural"}).fit(X)
    with pytest.raises(TypeError, match="unknown refinement options"):
        GenerativeDistance(**keywords, refine={"n_pionts": 4}).fit(X)


def test_the_default_model_is_refined_in_closed_form_and_reports_lengths_of_real_curves(
    monkeypatch,
):
    """The default density (scikit-learn's GaussianMixture, 8 components) on a 5-D cloud,
    whose geodesics bend between its components: the adapter has its closed-form score, so
    refine="auto" turns on within its time budget (here made large, to not depend on this
    machine's speed). Each refined geodesic's reported length is its polyline's length under
    the metric by an independent 257-node trapezoid rule on score_samples (>= it, within 2 %:
    the metric's 8 nodes per segment); the matrix is no longer than refine=False's anywhere,
    and a median 5 % or more shorter."""
    import gendist._engine
    from gendist import GenerativeDistance

    monkeypatch.setattr(gendist._engine, "REFINE_AUTO_SECONDS", 1e9)
    X = make_blobs(120, n_features=5, centers=1, random_state=0)[0]
    est = GenerativeDistance(random_state=0)
    D = est.fit_transform(X)
    assert est.density_.has_score and est.refine_ and est.log_distance_unit_ == 0
    assert _gradient_method(est.metric_) == "closed-form"
    plain = est.distances(refine=False)
    off = plain > 0
    assert (D <= plain * (1 + 1e-12)).all()
    assert np.median(plain[off] / D[off]) > 1.05
    rng = np.random.default_rng(3)
    a = rng.integers(0, 120, 30)
    b = (a + rng.integers(1, 119, 30)) % 120
    log_lam = np.log(est.lam_)
    for g in est.geodesics(a, b):
        assert (g.indices[1:-1] == -1).all()  # refined: points off the vertices
        nodes = g.points[:-1, None] + np.linspace(0, 1, 257)[:, None] * np.diff(
            g.points, axis=0
        )[:, None]
        log_p = est.density_.estimator.score_samples(nodes.reshape(-1, 5)).reshape(-1, 257)
        h = np.exp(est.beta * (np.logaddexp(np.log(est.p0) if est.p0 else -np.inf, log_lam)
                               - np.logaddexp(log_p, log_lam)))
        length = np.sum(np.linalg.norm(np.diff(g.points, axis=0), axis=1)
                        * np.trapezoid(h, dx=1 / 256, axis=1))
        assert length * (1 - 1e-3) <= g.length <= length * 1.02


def test_refine_auto_in_3d_where_shortcuts_stay_off():
    """In 3-D the graph stretches less than the shortcuts' threshold, but under the inversion
    metric its distances are still about 15 % long: fit measures the gain without shortcuts,
    and the default fit_transform is within 1 % (median) of the closed form."""
    from gendist import GenerativeDistance

    model = Inversion(3).double()
    X = np.random.default_rng(7).uniform(size=(150, 3))
    Y = model.phi(X)
    truth = np.linalg.norm(Y[:, None] - Y[None], axis=2)
    off = truth > 0.3 * np.median(truth)
    est = GenerativeDistance(TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0)
    D = est.fit_transform(X)
    assert not est.shortcuts_ and 1.02 < est.graph_stretch_
    assert est.refine_ and est.refine_gain_ > 1.05
    plain = est.distances(refine=False)
    assert np.median(plain[off] / truth[off]) > 1.05
    assert np.median(D[off] / truth[off]) < 1.01
    assert (D >= truth - 1e-3).all() and (D <= plain * (1 + 1e-12)).all()


def test_refine_setting_is_fixed_at_fit_and_numpy_booleans_count():
    """np.False_ turns refinement off as False does; set_params after fit changes nothing
    until the next fit; distance(a, b) under refinement is symmetric to the bit."""
    from gendist import GenerativeDistance

    model = Inversion(5).double()
    X = np.random.default_rng(11).uniform(size=(60, 5))
    keywords = dict(density=TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0)
    assert not GenerativeDistance(**keywords, refine=np.False_).fit(X).refine_
    assert GenerativeDistance(**keywords, refine=np.True_).fit(X).refine_
    est = GenerativeDistance(**keywords).fit(X)
    assert est.refine_
    refined = est.distances([2])
    est.set_params(refine=False)
    np.testing.assert_array_equal(est.distances([2]), refined)
    assert est.distance(2, 3) == est.distance(3, 2)
    assert not est.fit(X).refine_


def test_a_path_still_gaining_is_not_stopped_for_staying_above_its_start():
    """Two tight clusters under the default mixture: a graph path of 6 vertices, resampled to
    8 points and optimised, gains several percent a round yet stays above the (quadrature-
    light) graph path for rounds. Those rounds are progress: with 8 rounds it passes the
    graph path (a refinement that stopped after two rounds without a new best did not)."""
    from gendist import GenerativeDistance

    X = make_blobs(n_samples=30, centers=[[0, 0, 0], [1, 1, 1]], random_state=0,
                   cluster_std=0.1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GenerativeDistance(n_neighbors=3, random_state=0, refine=False).fit(X)
        g = est.geodesics([12], [19], refine=False)[0]
        P, L, info = refine_paths(est.metric_, [g.points], return_info=True, n_points=8,
                                  n_rounds=8, max_iter=3, tol=1e-4)
    assert info["n_rounds"][0] > 2 and info["refined"][0]
    assert L[0] < g.length
    assert L[0] == pytest.approx(est.metric_.curve_length(P[0]), rel=1e-12)


def test_without_torch_the_default_model_refines_in_closed_form_as_finite_differences(
    monkeypatch,
):
    """Where torch is not installed, the default mixture still refines with its closed-form
    score; finite differences (what a model with neither gets) find distances no longer than
    the graph's and within a fraction of a percent of the closed form's (paths still moving
    after the late round differ either way: the median ratio is 1)."""
    import gendist.refine
    from gendist import GenerativeDistance

    X = make_blobs(30, n_features=4, centers=1, random_state=1)[0]
    monkeypatch.setattr(gendist.refine, "_has_torch", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = GenerativeDistance(random_state=0, refine=True).fit(X)
        assert _gradient_method(est.metric_) == "closed-form"
        closed = est.distances()
        calls = []
        original = gendist.refine._finite_difference_lengths
        monkeypatch.setattr(gendist.refine, "_finite_difference_lengths",
                            lambda metric: calls.append(1) or original(metric))
        finite = est.distances(refine={"method": "finite-difference"})
    plain = est.distances(refine=False)
    assert calls and (finite <= plain * (1 + 1e-12)).all()
    off = plain > 0
    ratio = finite[off] / closed[off]  # both lengths of real curves, neither ahead
    assert abs(np.median(ratio) - 1) < 1e-3 and np.median(np.abs(ratio - 1)) < 1e-2
    assert np.median(plain[off] / finite[off]) > 1.02


def test_the_closure_memory_guard_counts_the_matrix_it_closes(tmp_path):
    """distances(refine=True, out=...) closes the whole matrix in memory, in the dtype of
    ``out``: a float64 memory map needs twice what the float32 estimator's own dtype would,
    and the guard says so before any path is searched."""
    from gendist.graph import GraphTooLargeError
    from gendist.paths import _closure_bytes

    X = np.random.default_rng(0).uniform(size=(30, 2))
    est = GenerativeDistance(CallableDensity(lambda Z: -np.sum(Z**2, axis=1)),
                             dtype="float32", refine=False).fit(X)
    est.set_params(memory_limit=(_closure_bytes(30, 4) + _closure_bytes(30, 8)) // 2)
    out = np.lib.format.open_memmap(tmp_path / "D.npy", mode="w+", dtype=np.float64,
                                    shape=(30, 30))
    with pytest.raises(GraphTooLargeError, match="triangle inequality"):
        est.distances(refine=True, out=out)
    assert np.all(np.asarray(out) == 0)  # nothing written
    with pytest.raises(GraphTooLargeError, match="triangle inequality"):
        est.distances(refine=True, dtype="float64")


def test_paths_still_moving_continue_at_more_points(curved_pairs):
    """``late_points``: after rounds too few to converge, the paths still moving continue
    at more points. Against the closed form: each result is never longer than without the
    late rounds, never below the truth beyond quadrature error, and the median error
    falls; late paths come back with ``late_points`` points and count both stages' rounds;
    ``late_points`` not above ``n_points`` changes nothing."""
    est, truth = curved_pairs
    rng = np.random.default_rng(3)
    a = rng.integers(0, 110, 40)
    b = (a + rng.integers(1, 110, 40)) % 110
    paths = [g.points for g in est.geodesics(a, b, refine=False)]
    coarse = dict(n_points=5, n_rounds=1, max_iter=2, tol=1e-4, return_info=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        P0, L0, info0 = refine_paths(est.metric_, paths, **coarse)
        P1, L1, info1 = refine_paths(est.metric_, paths, late_points=12, **coarse)
    late = ~info0["converged"]
    assert late.mean() > 0.5
    assert [len(p) for p in np.array(P1, dtype=object)[late]] == [12] * late.sum()
    assert all(len(p) == 5 for p in np.array(P1, dtype=object)[~late])
    np.testing.assert_array_equal(info1["n_rounds"][late], info0["n_rounds"][late] + 1)
    assert np.all(L1 <= L0 * (1 + 1e-12))
    exact = truth[a, b]
    assert (L1 / exact).min() >= 1 - 1e-3
    assert np.median(L1[late] / exact[late]) < np.median(L0[late] / exact[late]) - 1e-3
    same = refine_paths(est.metric_, paths, late_points=5, **coarse)  # not above n_points
    np.testing.assert_array_equal(same[1], L0)


def test_the_late_round_minimises_fewer_nodes_and_reports_the_metrics_own_lengths(
    curved_pairs,
):
    """The late round minimises a quadrature with the fewest nodes per segment that keep
    at least as many intervals along a path as the rounds before (none fewer than 2, never
    more than the metric's own); a metric that cannot change its nodes keeps them. The
    lengths returned are the metric's own (n_quad) lengths of the returned polylines."""
    est, truth = curved_pairs
    metric = est.metric_
    n_quad = metric.n_quad
    for n_points, late in [(5, 12), (8, 32), (8, 16), (4, 40), (8, 9)]:
        nodes = _late_round_metric(metric, n_points, late).n_quad
        needed = (n_points - 1) * (n_quad - 1)
        assert (late - 1) * (nodes - 1) >= needed or nodes == n_quad
        assert nodes == 2 or (late - 1) * (nodes - 2) < needed
    assert _late_round_metric(metric, 8, 9) is metric
    two = metric.with_nodes(2)
    assert _late_round_metric(two, 8, 32) is two

    class FixedNodes(type(metric)):
        def with_nodes(self, n_quad):
            raise NotImplementedError

    fixed = FixedNodes(**{f.name: getattr(metric, f.name) for f in fields(metric)})
    assert _late_round_metric(fixed, 8, 32) is fixed

    rng = np.random.default_rng(4)
    a = rng.integers(0, 110, 30)
    b = (a + rng.integers(1, 110, 30)) % 110
    paths = [g.points for g in est.geodesics(a, b, refine=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        P, L, info = refine_paths(metric, paths, n_points=5, n_rounds=1, max_iter=2,
                                  tol=1e-4, late_points=12, return_info=True)
    assert (info["late_seconds"] > 0).any()
    own = np.exp([metric.log_polyline_lengths(p[None])[0] for p in P])
    np.testing.assert_allclose(L, own, rtol=1e-12)


def test_all_pairs_refinement_takes_late_points(curved_pairs):
    """distances(refine={..., "late_points": ...}): after rounds too few to converge, the
    row's paths still moving continue at more points: no longer than without them, not
    below the closed form beyond quadrature error, and closer to it (median)."""
    est, truth = curved_pairs
    coarse = {"n_points": 5, "n_rounds": 1, "max_iter": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # late_points at n_points: no late round (the all-pairs default continues at 16)
        plain = est.distances([7], refine={**coarse, "late_points": 5})[0]
        late = est.distances([7], refine={**coarse, "late_points": 12})[0]
    off = truth[7] > 0
    assert np.all(late <= plain * (1 + 1e-12))
    assert (late[off] / truth[7][off]).min() >= 1 - 1e-3
    assert np.median(late[off] / truth[7][off]) < np.median(plain[off] / truth[7][off]) - 1e-3
    # the other queries take the option too (their own point counts: 16, 32)
    option = {"late_points": 40}
    pair = est.geodesics(np.array([7]), np.array([8]), refine=option)[0].length
    assert truth[7, 8] * (1 - 1e-3) <= pair <= est.distances([7])[0, 8] * (1 + 1e-12)
    one = est.geodesic(7, 8, refine=option).length
    assert truth[7, 8] * (1 - 1e-3) <= one <= est.distances([7])[0, 8] * (1 + 1e-12)
    assert est.kneighbors([7], 3, refine=option)[0].shape == (1, 3)


def test_the_time_estimate_refines_more_pairs_only_near_or_over_the_budget(monkeypatch):
    """fit's sample: one pair untimed (the compiled kernels' first call), then 16 and 112
    pairs; only where those gain (not under a constant density) and put all pairs over a
    sixth of the budget (REFINE_CHECK_OVER),
    and 64 x 32 pairs would take at most REFINE_CHECK_MORE_SECONDS, those 2 048 more (a
    larger batch, whose own time per pair is the estimate); an expensive model's first 16
    pairs alone. refine_gain_ is the first sample's."""
    import gendist._engine as engine

    model = Inversion(5).double()
    X = np.random.default_rng(5).uniform(size=(150, 5))  # 11 175 pairs: over 4 x 2 048
    keywords = dict(density=TorchDensity(model), lam=model.lam, beta=1.0, p0=0.0)
    sizes = []
    refine = engine.GraphDistanceBase._refined_geodesics

    def spy(self, a, *args, **kwargs):
        sizes.append(len(a))
        return refine(self, a, *args, **kwargs)

    monkeypatch.setattr(engine.GraphDistanceBase, "_refined_geodesics", spy)
    monkeypatch.setattr(engine, "REFINE_AUTO_SECONDS", 1e6)
    est = GenerativeDistance(**keywords).fit(X)
    assert sizes == [1, 16, 112] and est.refine_
    sizes.clear()
    monkeypatch.setattr(engine, "REFINE_AUTO_SECONDS", 1e-6)
    with pytest.warns(UserWarning, match="leaves refinement off"):
        est = GenerativeDistance(**keywords).fit(X)
    assert sizes == [1, 16, 112, 2048] and not est.refine_
    assert 1.0 < est.refine_gain_ and est.refine_seconds_ > 0
    sizes.clear()  # nothing to gain (a constant density): no third batch, whatever the time
    flat = GenerativeDistance(lambda Z: np.zeros(len(Z)), lam=1e12, n_quad=2).fit(X)
    assert sizes == [1, 16, 112] and flat.refine_gain_ == pytest.approx(1.0, abs=1e-3)
    sizes.clear()  # a third batch too long itself
    monkeypatch.setattr(engine, "REFINE_CHECK_MORE_SECONDS", 0.0)
    with pytest.warns(UserWarning, match="leaves refinement off"):
        est = GenerativeDistance(**keywords).fit(X)
    assert sizes == [1, 16, 112] and not est.refine_
    sizes.clear()  # an expensive model: its first 16 pairs alone measure it
    monkeypatch.setattr(engine, "REFINE_CHECK_SECONDS", 0.0)
    with pytest.warns(UserWarning, match="leaves refinement off"):
        est = GenerativeDistance(**keywords).fit(X)
    assert sizes == [1, 16] and 1.0 < est.refine_gain_ and est.refine_seconds_ > 0


def test_auto_drops_the_late_round_only_where_it_alone_is_over_the_budget(monkeypatch):
    """The all-pairs settings continue the paths still moving at 32 points (late_points).
    fit times that round apart on its sample: where it puts all pairs over the budget,
    "auto" refines with it at 16 points if that (REFINE_LATE_FALLBACK_COST of its time) fits,
    else
    without it (late_points at n_points); the late round only ever shortens the refined
    distances of the default model (a mixture, whose paths bend)."""
    import gendist._engine as engine

    assert ALL_PAIRS_REFINE["late_points"] > ALL_PAIRS_REFINE["n_points"]
    X = make_blobs(60, n_features=5, centers=1, random_state=0)[0]
    per_pair = iter([])

    def estimate(seconds, sizes):  # the sample's two estimates: with, then without
        return next(per_pair)

    monkeypatch.setattr(engine, "_all_pairs_seconds", estimate)
    monkeypatch.setattr(engine, "REFINE_AUTO_SECONDS", 1000.0)
    pairs = 60 * 59 // 2
    outcomes = {}
    # the budget: 1000 s / 1770 pairs = 0.565 s a pair
    # the last: each row's nearest pairs would not fit either (1000 s / 10 s / 60 rows)
    for with_late, without in [(0.1, 0.05), (0.7, 0.2), (1.0, 0.1), (10.0, 9.0)]:
        per_pair = iter([with_late, without])
        est = GenerativeDistance(random_state=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X)
        outcomes[with_late, without] = (est.refine_, est.refine_seconds_ / pairs, est)
        if not est.refine_:
            assert any("leaves refinement off" in str(w.message) for w in caught)
    late, fewer, budget_cut, off = outcomes.values()
    assert late[:2] == (True, pytest.approx(0.1))
    assert fewer[:2] == (True, pytest.approx(0.2 + 0.5 * REFINE_LATE_FALLBACK_COST))
    assert budget_cut[:2] == (True, pytest.approx(0.1))  # the estimate without the round
    assert off[:2] == (False, pytest.approx(10.0))
    assert off[2].refine_nearest_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        D_late = late[2].distances()
        D_fewer = fewer[2].distances()
        D_cut = budget_cut[2].distances()
        explicit = late[2].distances(refine={"late_points": ALL_PAIRS_REFINE["n_points"]})
        explicit_16 = late[2].distances(refine={"late_points": 16})
    np.testing.assert_array_equal(D_cut, explicit)
    np.testing.assert_array_equal(D_fewer, explicit_16)
    assert np.all(D_late <= D_cut * (1 + 1e-12))
    assert np.median(D_cut[D_late > 0] / D_late[D_late > 0]) > 1.001
    assert np.median(D_fewer[D_late > 0] / D_late[D_late > 0]) >= 1.0


def test_auto_refines_each_rows_nearest_pairs_where_all_pairs_are_over_the_budget(
        monkeypatch):
    """Where every pair, with or without the late round, is over the budget, "auto" refines
    each row's nearest pairs, as many as the budget holds at the measured time per pair
    (1000 s / (1 s x 60 rows) = 16 of them: refine_nearest_), and warns that the farther
    distances keep the measured excess; all-pairs queries then refine exactly the pairs
    among either row's 16 nearest, and fit_transform with refine={"nearest": 16} gives the
    same matrix."""
    import gendist._engine as engine

    X = make_blobs(60, n_features=5, centers=1, random_state=0)[0]
    monkeypatch.setattr(engine, "_all_pairs_seconds", lambda seconds, sizes: 1.0)
    monkeypatch.setattr(engine, "REFINE_AUTO_SECONDS", 1000.0)
    est = GenerativeDistance(random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    assert est.refine_ is True and est.refine_nearest_ == 16
    assert est.refine_gain_ > 1.05
    assert any("16 nearest pairs" in str(w.message) for w in caught)
    R0 = est.distances(refine=False)
    with warnings.catch_warnings():  # a pair by name: refined
        warnings.simplefilter("ignore", ConvergenceWarning)
        g = est.geodesic(0, 5)
    assert g.length < R0[0, 5] and np.all(g.indices[1:-1] == -1)
    assert est.distance(0, 5) == pytest.approx(g.length, rel=1e-12)
    refined_pairs = []
    refine = engine.GraphDistanceBase._refined_geodesics

    def spy(self, a, b, *args, **kwargs):
        refined_pairs.extend(zip(np.minimum(a, b), np.maximum(a, b)))
        return refine(self, a, b, *args, **kwargs)

    monkeypatch.setattr(engine.GraphDistanceBase, "_refined_geodesics", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        D = est.distances()  # the queries' default: refine_ as fitted
    assert set(map(tuple, np.array(refined_pairs).tolist())) == _nearest_pairs(R0, 16)
    assert len(refined_pairs) < 60 * 59 // 2
    monkeypatch.undo()
    explicit = GenerativeDistance(random_state=0, refine={"nearest": 16})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(explicit.fit_transform(X), D, rtol=1e-12)
    assert explicit.refine_ is True and explicit.refine_nearest_ is None


def test_nearest_pairs_of_a_graph_on_samples_and_data_and_of_a_latent_space():
    """refine={"nearest": k} where the graph's vertices are samples and the data
    (fit_transform's matrix is the data's rows and columns among more vertices; the default
    model) and in a latent space (the pullback metric of a decoder): never longer than the
    unrefined matrix, never shorter than every pair refined (up to the stopping tolerance,
    1e-4: a path may stop a round apart in another batch), symmetric, and
    shorter than unrefined on many pairs (chains of refined near pairs)."""
    X = make_blobs(60, n_features=5, centers=2, random_state=0)[0]
    keywords = dict(vertices="both", n_vertex_samples=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        none, near, full = (GenerativeDistance(**keywords, refine=r).fit_transform(X)
                            for r in (False, {"nearest": 4}, True))
    off = none > 0
    assert np.all(near <= none * (1 + 1e-12)) and np.all(near >= full * (1 - 1e-4))
    np.testing.assert_array_equal(near, near.T)
    assert np.mean(near[off] < none[off] * (1 - 1e-6)) > 0.5
    from gendist import LatentDistance

    torch.manual_seed(0)
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(),
                                  torch.nn.Linear(16, 5)).double()
    Z = np.random.default_rng(0).normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        none, near, full = (LatentDistance(decoder, refine=r).fit_transform(Z)
                            for r in (False, {"nearest": 3}, True))
    assert np.all(near <= none * (1 + 1e-12)) and np.all(near >= full * (1 - 1e-4))
    np.testing.assert_array_equal(near, near.T)
    assert np.mean(near[none > 0] < none[none > 0] * (1 - 1e-6)) > 0.2


def test_sparse_cost_matrix_refines_each_pair_once_from_its_lower_index(curved_pairs,
                                                                        monkeypatch):
    """With refinement on, the sparse cost matrix refines each pair within the limit once,
    from its lower index (a spy counts the pairs: none twice, none from the higher index),
    and its entries are those rows' refined values (rows of distances(refine=True), up to
    the stopping tolerance: other batches), at least the closed form up to quadrature."""
    import gendist._engine as engine

    est, truth = curved_pairs
    refined = GenerativeDistance(**{**est.get_params(), "refine": True}).fit(est.vertices_)
    N = len(truth)
    rows = refined.distances(np.arange(N)[::-1])[::-1]  # not square: each row its own
    limit = float(np.quantile(rows, 0.3))
    pairs = []
    refine = engine.GraphDistanceBase._refined_geodesics

    def spy(self, a, b, *args, **kwargs):
        pairs.extend(zip(a.tolist(), b.tolist()))
        return refine(self, a, b, *args, **kwargs)

    monkeypatch.setattr(engine.GraphDistanceBase, "_refined_geodesics", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        C = refined.sparse_cost_matrix(limit).toarray()
    assert len(pairs) == len(set(pairs)) and all(a < b for a, b in pairs)
    unrefined = refined.distances(refine=False)
    within = np.triu(np.isfinite(unrefined) & (unrefined <= limit), 1)
    assert len(pairs) == within.sum()
    i, j = np.nonzero(within)
    np.testing.assert_allclose(C[i, j], rows[i, j], rtol=1e-4)
    assert (C[i, j] / truth[i, j]).min() >= 1 - 1e-3
    assert np.median(C[i, j] / unrefined[i, j]) < 0.995
