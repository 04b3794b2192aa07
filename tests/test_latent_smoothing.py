"""Metric smoothing and velocity profiles of the latent pullback metric (Chen et al. 2018).

References: a Jacobian built from chosen singular vectors and values (the smoothed matrix in
closed form), numpy's SVD of analytic Jacobians, linear decoders (constant velocity
``|A (z1 - z0)|``, straight geodesics of length ``|J_hat (z1 - z0)|``).
"""

import numpy as np
import pytest
import torch

from gendist.latent import (
    LatentDistance,
    PullbackMetric,
    magnification_factor,
    smoothed_jacobian,
)
from gendist.metric import trapezoid_log_weights


def analytic(Z):
    """f(z) = (sin z0, cos z0 e^(0.3 z1), z0 z1, z1^2) and its Jacobian (m, 4, 2)."""
    z0, z1 = Z[:, 0], Z[:, 1]
    e = np.exp(0.3 * z1)
    F = np.column_stack([np.sin(z0), np.cos(z0) * e, z0 * z1, z1**2])
    J = np.zeros((len(Z), 4, 2))
    J[:, 0, 0] = np.cos(z0)
    J[:, 1, 0] = -np.sin(z0) * e
    J[:, 1, 1] = 0.3 * np.cos(z0) * e
    J[:, 2, 0] = z1
    J[:, 2, 1] = z0
    J[:, 3, 1] = 2 * z1
    return F, J


class AnalyticDecoder(torch.nn.Module):
    """The decoder of :func:`analytic` as a torch module (Jacobians by autograd)."""

    def forward(self, z):
        z0, z1 = z[:, 0], z[:, 1]
        e = torch.exp(0.3 * z1)
        return torch.stack([torch.sin(z0), torch.cos(z0) * e, z0 * z1, z1**2], dim=1)


def numpy_analytic(Z):
    return analytic(Z)[0]


def direct_smoothed(J, rank, lam):
    """U_r diag(s^3 / (s^2 + lam)) V_r^T from numpy's SVD, one matrix at a time."""
    out = []
    for M in J:
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        r = len(s) if rank is None else rank
        out.append(U[:, :r] @ np.diag(s[:r] ** 3 / (s[:r] ** 2 + lam)) @ Vt[:r])
    return np.array(out)


def orthonormal(rng, n, k):
    Q, _ = np.linalg.qr(rng.normal(size=(n, k)))
    return Q


@pytest.mark.parametrize("rank, lam", [(None, 0.0), (None, 0.5), (2, 0.5), (1, 2.0), (3, 1e-3)])
def test_smoothed_jacobian_of_a_known_jacobian_is_the_closed_form(rng, rank, lam):
    """J = U diag(s) V^T with chosen U, s, V: J_hat = U_r diag(s^3 / (s^2 + lam)) V_r^T."""
    U, V = orthonormal(rng, 6, 3), orthonormal(rng, 3, 3)
    s = np.array([3.0, 1.0, 0.1])
    J = U @ np.diag(s) @ V.T
    r = 3 if rank is None else rank
    expected = U[:, :r] @ np.diag(s[:r] ** 3 / (s[:r] ** 2 + lam)) @ V[:, :r].T
    np.testing.assert_allclose(smoothed_jacobian(J, rank, lam), expected, atol=1e-13)
    # batched: the same for every matrix of a stack
    np.testing.assert_allclose(
        smoothed_jacobian(np.stack([J, 2 * J]), rank, lam),
        np.stack([expected, direct_smoothed((2 * J)[None], rank, lam)[0]]),
        atol=1e-12,
    )
    # the filter damps small singular values much more than large ones
    out = np.linalg.svd(smoothed_jacobian(J, rank, lam), compute_uv=False)[:r]
    np.testing.assert_allclose(out, s[:r] ** 3 / (s[:r] ** 2 + lam), rtol=1e-10)


def test_smoothed_jacobian_limits_and_errors(rng):
    J = rng.normal(size=(5, 2))
    np.testing.assert_allclose(smoothed_jacobian(J), J, atol=1e-14)  # rank all, lam 0
    zero = np.zeros((4, 2))
    np.testing.assert_array_equal(smoothed_jacobian(zero, lam=0.0), zero)  # 0/0 -> 0
    with pytest.raises(ValueError, match="exceeds"):
        smoothed_jacobian(J, rank=3)
    with pytest.raises(ValueError, match="lam"):
        smoothed_jacobian(J, lam=-1.0)
    with pytest.raises(ValueError, match="unknown keys"):
        PullbackMetric(numpy_analytic, smoothing={"rank": 1, "lambda": 1.0})
    with pytest.raises(TypeError, match="dict"):
        PullbackMetric(numpy_analytic, smoothing=0.5)
    with pytest.raises(ValueError, match="exceeds"):
        LatentDistance(numpy_analytic, n_neighbors=3, smoothing={"rank": 3}).fit(
            rng.normal(size=(10, 2))
        )


@pytest.mark.parametrize("decoder", ["torch", "numpy"])
@pytest.mark.parametrize("rank, lam", [(None, 0.0), (None, 0.3), (1, 0.3), (1, 0.0)])
def test_smoothed_segment_lengths_equal_direct_svd_quadrature(rng, decoder, rank, lam):
    """A segment costs sum_k w_k |J_hat(z_k) (b - a)|, J_hat from numpy's SVD of the
    analytic Jacobian at each trapezoidal node; the metric tensor is J_hat^T J_hat."""
    dec = AnalyticDecoder() if decoder == "torch" else numpy_analytic
    metric = PullbackMetric(dec, n_quad=5, smoothing={"rank": rank, "lam": lam})
    A = rng.normal(size=(7, 2))
    B = A + rng.normal(size=(7, 2))
    t = np.linspace(0, 1, 5)
    w = np.exp(trapezoid_log_weights(5))
    expected = []
    for a, b in zip(A, B):
        nodes = a + t[:, None] * (b - a)
        Jh = direct_smoothed(analytic(nodes)[1], rank, lam)
        expected.append(w @ np.linalg.norm(Jh @ (b - a), axis=1))
    rtol = 1e-10 if decoder == "torch" else 1e-7  # central differences for callables
    np.testing.assert_allclose(np.exp(metric.log_segment_lengths(A, B)), expected, rtol=rtol)
    Jh = direct_smoothed(analytic(A)[1], rank, lam)
    np.testing.assert_allclose(
        metric.metric_tensor(A), np.einsum("mdi,mdj->mij", Jh, Jh), rtol=rtol, atol=1e-12
    )
    s = np.linalg.svd(analytic(A)[1], compute_uv=False)
    mf = magnification_factor(dec, A, smoothing={"rank": rank, "lam": lam})
    if rank == 1:  # the smoothed metric has rank 1 < q: it measures no area
        assert np.all(mf == 0)
    else:
        np.testing.assert_allclose(mf, np.prod(s**3 / (s**2 + lam), axis=1), rtol=rtol)
    if decoder == "torch":  # tensors (the device path) and their gradients agree
        At = torch.tensor(A, requires_grad=True)
        log_len = metric.log_segment_lengths(At, torch.tensor(B))
        np.testing.assert_allclose(np.exp(log_len.detach().numpy()), expected, rtol=1e-10)
        log_len.sum().backward()
        h = 1e-6
        E = np.zeros_like(A)
        E[:, 0] = h
        fd = (metric.log_segment_lengths(A + E, B) - metric.log_segment_lengths(A - E, B)) / (2 * h)
        np.testing.assert_allclose(At.grad[:, 0].numpy(), fd, rtol=1e-5, atol=1e-8)


def test_unsmoothed_jacobian_quadrature_converges_to_the_decoded_polyline(rng):
    """smoothing={"lam": 0} integrates |J z'| by the trapezoidal rule; the default decodes
    the polyline. Both converge to the decoded curve's arc length."""
    A, B = np.array([[0.2, -0.4]]), np.array([[1.9, 0.8]])
    reference = np.exp(PullbackMetric(numpy_analytic, n_quad=4001).log_segment_lengths(A, B))
    for n in (9, 65):
        poly = np.exp(PullbackMetric(AnalyticDecoder(), n_quad=n).log_segment_lengths(A, B))
        jac = PullbackMetric(AnalyticDecoder(), n_quad=n, smoothing={"lam": 0.0})
        jac = np.exp(jac.log_segment_lengths(A, B))
        tol = 2.0 / n**2
        np.testing.assert_allclose(poly, reference, rtol=tol)
        np.testing.assert_allclose(jac, reference, rtol=tol)


@pytest.mark.parametrize("lam", [0.0, 0.8])
def test_linear_decoder_smoothed_geodesic_is_straight_with_closed_form_length(rng, lam):
    """A linear decoder has the constant smoothed Jacobian A_hat: every edge weighs
    |A_hat (z_u - z_v)| and the refined geodesic is the straight line of that length."""
    A = rng.normal(size=(5, 2))
    layer = torch.nn.Linear(2, 5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(A))
    A_hat = smoothed_jacobian(A, lam=lam)
    Z = rng.uniform(-1, 1, size=(200, 2))
    est = LatentDistance(
        layer, n_neighbors=8, n_quad=3, shortcuts=False, smoothing={"lam": lam}
    ).fit(Z)
    rows, cols = est.graph_.nonzero()
    np.testing.assert_allclose(
        est.graph_.data, np.linalg.norm((Z[rows] - Z[cols]) @ A_hat.T, axis=1), rtol=1e-10
    )
    a, b = int(np.argmin(Z.sum(1))), int(np.argmax(Z.sum(1)))
    graph = est.geodesic(a, b)
    refined = est.geodesic(a, b, refine=True)
    exact = np.linalg.norm(A_hat @ (Z[b] - Z[a]))
    assert graph.length > exact * (1 + 1e-4)
    np.testing.assert_allclose(refined.length, exact, rtol=1e-6)
    if lam > 0:  # smoothing shrinks every singular value, so every length
        plain = LatentDistance(layer, n_neighbors=8, n_quad=3, shortcuts=False).fit(Z)
        assert np.all(est.graph_.data < plain.graph_.data)


# ------------------------------------------------------------------ velocity


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_velocity_of_a_linear_decoder_is_constant(rng, kind):
    """Along z(t) = z0 + t (z1 - z0), phi(t) = |A (z1 - z0)| for every t."""
    A = rng.normal(size=(6, 3))
    layer = torch.nn.Linear(3, 6, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(A))
    dec = layer if kind == "torch" else (lambda Z: Z @ A.T - 2.0)
    z0, z1 = rng.normal(size=3), rng.normal(size=3)
    exact = np.linalg.norm(A @ (z1 - z0))
    rtol = 1e-12 if kind == "torch" else 1e-8
    est = LatentDistance(dec)  # velocity needs no fit
    t, phi = est.velocity(np.linspace(z0, z1, 9), n_per_segment=3)
    assert t.shape == phi.shape == (8 * 3,)
    assert np.all(np.diff(t) > 0) and 0 < t[0] and t[-1] < 1
    np.testing.assert_allclose(phi, exact, rtol=rtol)
    # unevenly spaced points on the same line: the index parametrization moves at the
    # latent speed (k - 1) |dz_i| on segment i; "length" re-times it to the constant speed
    s = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 5)]))
    P = z0 + s[:, None] * (z1 - z0)
    t, phi = est.velocity(P, n_per_segment=2)
    np.testing.assert_allclose(phi, np.repeat(exact * np.diff(s) * 6, 2), rtol=rtol)
    t, phi = est.velocity(P, n_per_segment=2, parametrization="length")
    np.testing.assert_allclose(phi, exact, rtol=rtol)
    np.testing.assert_allclose(t[::2], s[:-1] + np.diff(s) / 4, rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_velocity_of_a_nonlinear_decoder_equals_the_analytic_jacobian(rng, kind):
    """phi(t) = |J(z(t)) z'(t)| with the analytic Jacobian, at the returned t, along a
    polyline z(t) interpolated independently; its mean is the curve's length."""
    dec = AnalyticDecoder() if kind == "torch" else numpy_analytic
    P = np.cumsum(rng.normal(size=(6, 2)) * 0.5, axis=0)
    k = len(P)
    t, phi = PullbackMetric(dec).velocity(P, n_per_segment=5)
    knots = np.linspace(0, 1, k)
    Zt = np.column_stack([np.interp(t, knots, P[:, j]) for j in range(2)])
    segment = np.minimum((t * (k - 1)).astype(int), k - 2)
    dz = (P[segment + 1] - P[segment]) * (k - 1)
    expected = np.linalg.norm(np.einsum("mdq,mq->md", analytic(Zt)[1], dz), axis=1)
    rtol = 1e-12 if kind == "torch" else 1e-7
    np.testing.assert_allclose(phi, expected, rtol=rtol)
    # a smooth curve: the latent circle z(t) = (cos 2 pi t, sin 2 pi t) / 2, finely sampled
    tt = np.linspace(0, 1, 401)
    circle = 0.5 * np.column_stack([np.cos(2 * np.pi * tt), np.sin(2 * np.pi * tt)])
    t, phi = PullbackMetric(dec).velocity(circle, n_per_segment=1)
    zc = 0.5 * np.column_stack([np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)])
    dzc = np.pi * np.column_stack([-np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])
    exact = np.linalg.norm(np.einsum("mdq,mq->md", analytic(zc)[1], dzc), axis=1)
    np.testing.assert_allclose(phi, exact, rtol=1e-4)  # chords of a 1/400 arc
    length = PullbackMetric(dec, n_quad=2).curve_length(circle)
    np.testing.assert_allclose(phi.mean(), length, rtol=1e-4)


def test_smoothed_velocity_equals_direct_svd(rng):
    P = rng.normal(size=(4, 2))
    smoothing = {"lam": 0.4}
    t, phi = LatentDistance(AnalyticDecoder(), smoothing=smoothing).velocity(P, n_per_segment=2)
    u = np.array([0.25, 0.75])
    nodes = (P[:-1, None] + u[None, :, None] * (P[1:] - P[:-1])[:, None]).reshape(-1, 2)
    dz = np.repeat((P[1:] - P[:-1]) * 3, 2, axis=0)
    Jh = direct_smoothed(analytic(nodes)[1], None, 0.4)
    np.testing.assert_allclose(phi, np.linalg.norm(np.einsum("mdq,mq->md", Jh, dz), axis=1))
    _, plain = LatentDistance(AnalyticDecoder()).velocity(P, n_per_segment=2)
    assert np.all(phi < plain)
    with pytest.raises(ValueError, match="parametrization"):
        PullbackMetric(numpy_analytic).velocity(P, parametrization="arc")
    with pytest.raises(ValueError, match="minimum of 2"):
        PullbackMetric(numpy_analytic).velocity(P[:1])
