"""Neural-network curves (gendist.curves) against closed forms and direct decoding."""

import numpy as np
import pytest
import torch

from gendist.curves import neural_curve
from gendist.latent import LatentDistance, PullbackMetric

#: small settings that keep each fit to a second or two
FAST = {"hidden": 32, "n_samples": 100, "n_candidates": 8, "pretrain_iter": 100, "n_iter": 300}


def tanh_decoder(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6)
    ).double()


def test_neural_curve_meets_its_end_points_exactly(rng):
    metric = PullbackMetric(tanh_decoder())
    # one shared coordinate (rescaling would freeze it) and one generic pair
    for a, b in [
        (np.array([-1.5, 0.4]), np.array([1.0, -0.8])),
        (np.array([-1.0, 0.5]), np.array([1.0, 0.5])),
    ]:
        points, length = neural_curve(metric, a, b, **FAST)
        assert points.shape == (FAST["n_samples"], 2)
        eps = 4 * np.finfo(float).eps * np.abs(np.r_[a, b]).max()
        assert np.abs(points[0] - a).max() <= eps
        assert np.abs(points[-1] - b).max() <= eps
        assert np.isfinite(length) and length > 0


def test_neural_curve_length_is_that_of_its_points_decoded_directly():
    decoder = tanh_decoder(1)
    metric = PullbackMetric(decoder, n_quad=8)
    a, b = np.array([-1.2, -1.0]), np.array([1.4, 0.9])
    points, length = neural_curve(metric, a, b, **FAST)

    def decoded_length(subdivisions):
        # each segment cut into `subdivisions` equal pieces, decoded by the module itself
        u = np.linspace(0, 1, subdivisions + 1)[:-1]
        Z = points[:-1, None] + u[None, :, None] * np.diff(points, axis=0)[:, None]
        Z = np.vstack([Z.reshape(-1, 2), points[-1:]])
        with torch.no_grad():
            F = decoder(torch.as_tensor(Z)).numpy()
        return np.linalg.norm(np.diff(F, axis=0), axis=1).sum()

    # the metric's rule (8 nodes per segment: 7 pieces), recomputed independently
    np.testing.assert_allclose(length, decoded_length(7), rtol=1e-10)
    # the decoded curve's arc length: 10 times finer pieces nest the 7 ones, so they can only
    # add length (triangle inequality); the reported length is within 1e-4 of it
    dense = decoded_length(70)
    assert length <= dense and length >= dense * (1 - 1e-4)


def test_neural_curve_on_a_linear_decoder_converges_to_the_straight_line(rng):
    A = rng.normal(size=(5, 3))
    layer = torch.nn.Linear(3, 5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(A))
    a, b = rng.normal(size=3), rng.normal(size=3)
    exact = np.linalg.norm(A @ (b - a))
    # no pre-training: the optimisation starts from the randomly initialised network
    options = {**FAST, "pretrain_iter": 0, "n_iter": 1000, "tol": 1e-7}
    points, length, info = neural_curve(PullbackMetric(layer), a, b, return_info=True, **options)
    assert info["pretrain_length"] > exact * (1 + 1e-4)  # it did start off the line
    assert length >= exact * (1 - 1e-12)
    assert length <= exact * (1 + 1e-5)
    # and the curve is the segment itself: every point on the chord
    chord = (b - a) / np.linalg.norm(b - a)
    off = (points - a) - ((points - a) @ chord)[:, None] * chord
    assert np.abs(off).max() < 1e-2 * np.linalg.norm(b - a)


def test_geodesic_with_a_neural_curve_is_no_longer_than_the_graph_path(rng):
    decoder = tanh_decoder(2)
    Z = rng.normal(size=(120, 2))
    est = LatentDistance(decoder, n_neighbors=8).fit(Z)
    graph = est.geodesic(0, 1)
    neural = est.geodesic(0, 1, refine={"curve": "neural", **FAST})
    assert neural.length <= graph.length
    np.testing.assert_allclose(neural.points[[0, -1]], Z[[0, 1]], rtol=0, atol=1e-14)
    # the reported length is the metric's length of the returned points
    np.testing.assert_allclose(neural.length, est.metric_.curve_length(neural.points), rtol=1e-10)
    batch = est.geodesics([0, 2], [1, 3], refine={"curve": "neural", **FAST})
    graphs = est.geodesics([0, 2], [1, 3])
    assert all(g.length <= h.length for g, h in zip(batch, graphs))
    np.testing.assert_allclose(batch[0].length, neural.length, rtol=1e-10)


def test_bad_refine_options_give_clear_errors(rng):
    Z = rng.normal(size=(40, 2))
    est = LatentDistance(tanh_decoder(), n_neighbors=6).fit(Z)
    with pytest.raises(ValueError, match="'polyline' or 'neural'"):
        est.geodesic(0, 1, refine={"curve": "spline"})
    with pytest.raises(ValueError, match=r"unknown options \['n_points'\]"):
        est.geodesic(0, 1, refine={"curve": "neural", "n_points": 10})
    with pytest.raises(TypeError, match="bool or a dict"):
        est.geodesic(0, 1, refine="neural")
    with pytest.raises(ValueError, match="n_samples"):
        est.geodesic(0, 1, refine={"curve": "neural", "n_samples": 2})
    numpy_decoder = LatentDistance(lambda z: np.tanh(z @ np.ones((2, 3))), n_neighbors=6).fit(Z)
    with pytest.raises(TypeError, match="autograd"):
        numpy_decoder.geodesic(0, 1, refine={"curve": "neural"})
