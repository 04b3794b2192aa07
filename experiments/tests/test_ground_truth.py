"""Generative distances against fast marching (scikit-fmm), the ground truth for 2-D densities.

The generative distance from a is the viscosity solution of the eikonal equation |grad T| = h
with T(a) = 0. scikit-fmm solves it on a grid (second order); the travel time at b is the
reference distance, and descending grad T from b traces the true geodesic.
"""

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff

from experiments import reference, refinement
from gendist import GaussianMixtureDensity, GenerativeDistance
from gendist.refine import resample_polyline

A, B = np.array([-1.5, 0.0]), np.array([1.5, 0.0])
LAM = 0.01  # absolute: h = lam / (p + lam) is ~0.05 at the modes and ~0.5-1 in the gaps


def fast_marching(h, a=A, b=B, **kwargs):
    return reference.fast_marching(h, a, b, **kwargs)


def length_factor(density):
    return lambda P: LAM / (np.exp(density.log_prob(P)) + LAM)


def graph_distance(density, n, seed):
    """Graph distance A -> B with vertices sampled from p and a kNN graph, k ~ 4 log n.

    k growing like log n keeps the graph connected and its edges shrinking (the regime of
    Theorem 2.5); adaptive neighbourhoods (kNN) cross the sparse gap with straighter edges
    than a fixed radius would.
    """
    X = density.sample(n, random_state=seed)
    est = GenerativeDistance(density, lam=LAM, n_neighbors=int(round(4 * np.log(n)))).fit(X)
    return est, est.geodesic(A, B)


@pytest.fixture(scope="module")
def gap():
    """Two components with a low-density gap; the geodesic between the modes crosses it."""
    dens = GaussianMixtureDensity([0.5, 0.5], [A, B], np.array([np.diag([0.3, 0.6])] * 2))
    return dens, fast_marching(length_factor(dens))


@pytest.fixture(scope="module")
def bridge():
    """Two modes joined by a curved high-density bridge above the straight line."""
    dens = refinement.bridge_mixture()
    dist, path = fast_marching(length_factor(dens), n_grid=1201, half_width=3.5, trace=True)
    return dens, dist, path


def test_fast_marching_reference_is_trustworthy(gap):
    dens, reference = gap
    # constant metric: the travel time is h * |a - b|
    assert fast_marching(lambda P: np.full(len(P), 0.7), n_grid=801) == pytest.approx(
        0.7 * np.linalg.norm(B - A), rel=1e-3
    )
    # grid convergence: halving the cell changes the answer by far less than the tolerances
    coarse = fast_marching(length_factor(dens), n_grid=801)
    assert coarse == pytest.approx(reference, rel=1e-3)


def test_distance_across_a_gap_within_3_percent_at_4000_vertices(gap):
    dens, reference = gap
    for seed in range(3):
        _, g = graph_distance(dens, 4000, seed)
        assert abs(g.length / reference - 1) < 0.03


def test_error_falls_as_vertices_are_added(gap):
    dens, reference = gap
    errors = [
        np.mean([abs(graph_distance(dens, n, seed)[1].length / reference - 1) for seed in range(5)])
        for n in (250, 1000, 4000)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01


def test_geodesic_bends_through_the_high_density_bridge(bridge):
    dens, reference, true_path = bridge
    straight = np.array([A, B])
    est, g = graph_distance(dens, 4000, 0)
    # the reference itself: the traced path realises the travel time (midpoint rule along it,
    # independent of gendist), and a coarser grid agrees
    h = length_factor(dens)
    mid, seg = 0.5 * (true_path[1:] + true_path[:-1]), np.diff(true_path, axis=0)
    assert np.sum(h(mid) * np.linalg.norm(seg, axis=1)) == pytest.approx(reference, rel=1e-3)
    assert fast_marching(h, n_grid=801, half_width=3.5) == pytest.approx(reference, rel=1e-3)
    # ground truth: the geodesic leaves the straight line for the bridge, and is far shorter
    assert true_path[:, 1].max() > 1.0
    assert est.metric_.curve_length(straight) > 2 * reference
    # the graph geodesic follows it
    assert abs(g.length / reference - 1) < 0.03
    assert g.length == pytest.approx(est.metric_.curve_length(g.points), rel=1e-12)
    hausdorff = max(
        directed_hausdorff(g.points, true_path)[0],
        directed_hausdorff(true_path, g.points)[0],
    )
    chord = A + np.linspace(0, 1, 200)[:, None] * (B - A)
    straight_hausdorff = directed_hausdorff(true_path, chord)[0]
    assert hausdorff < 0.2 < 1.0 < straight_hausdorff


@pytest.mark.parametrize("n", [250, 1000])
def test_refinement_moves_the_geodesic_toward_the_true_one(bridge, n):
    """On coarse graphs, the refined path is shorter, its length closer to the fast-marching
    distance and its course closer to the traced true geodesic than the graph path's."""
    dens, reference, true_path = bridge
    for seed in range(2):
        est, g = graph_distance(dens, n, seed)
        refined = est.geodesic(A, B, refine=True)
        assert refined.length <= g.length
        graph_error = g.length / reference - 1
        # measured with a fine quadrature, independent of the rule the refinement minimised
        dense = est.metric_.curve_length(resample_polyline(refined.points, 3000))
        assert abs(dense / reference - 1) < min(0.003, graph_error / 3)
        assert abs(refined.length / reference - 1) < min(0.003, graph_error / 3)
        assert refinement.hausdorff(refined.points, true_path) < min(
            0.03, refinement.hausdorff(g.points, true_path) / 3
        )


def test_out_of_sample_distance_on_sampled_vertices(gap):
    """vertices="samples": a and b join a graph on 4000 draws from p; transform agrees."""
    dens, reference = gap
    for seed in range(3):
        est = GenerativeDistance(
            dens,
            lam=LAM,
            n_neighbors=int(round(4 * np.log(4000))),
            vertices="samples",
            n_vertex_samples=4000,
            random_state=seed,
        ).fit(np.array([A, B]))
        d = est.transform(A[None])[0, 1]
        assert abs(d / reference - 1) < 0.03
        assert d == pytest.approx(est.geodesic(A, B).length, rel=1e-12)
