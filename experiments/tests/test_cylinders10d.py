"""The cylinders10d experiment (graph-only vs shortcut distances on two coaxial cylinders in
10-D): its closed-form density and reference curves against direct computations, and its
--quick run."""

import csv

import numpy as np
import pytest
from scipy.integrate import quad

from experiments import cylinders10d
from experiments.__main__ import main
from gendist.shortcuts import SHORTCUT_MAX_OFF_DATA, SHORTCUT_STRETCH

CFG = {**cylinders10d.DEFAULTS, "n_samples": 60}


def euclidean(P):
    """log h = 0: the Euclidean metric."""
    return np.zeros(len(P))


def _ring(z, R, s):
    """Density in the plane at (z0, z1) of the uniform circle of radius R blurred by
    N(0, s^2 I_2), by quadrature over the circle's angle."""

    def integrand(t):
        gap2 = (z[0] - R * np.cos(t)) ** 2 + (z[1] - R * np.sin(t)) ** 2
        return np.exp(-gap2 / (2 * s**2)) / (2 * np.pi * s**2) / (2 * np.pi)

    nearest = np.arctan2(z[1], z[0]) % (2 * np.pi)
    return quad(integrand, 0, 2 * np.pi, points=[nearest], limit=200)[0]


def _slab(u, width, s):
    """Density at u of the uniform interval [-width/2, width/2] blurred by N(0, s^2)."""

    def integrand(w):
        return np.exp(-((u - w) ** 2) / (2 * s**2)) / np.sqrt(2 * np.pi * s**2)

    inside = [u] if abs(u) < width / 2 else None
    return quad(integrand, -width / 2, width / 2, points=inside)[0] / width


def test_true_density_is_the_blurred_cylinders():
    """The closed form against a direct numerical convolution: the uniform circle (angle
    integral) and the uniform axial interval, each blurred by N(0, s^2), times the normal
    density of the other seven axes."""
    X, y, _, _, _, truth = cylinders10d.make_cylinders(CFG, seed=3)
    s = truth.noise
    P = X[:5] + 0.02 * np.random.RandomState(0).randn(5, 10)  # near the data
    Z = P @ truth.basis.T
    for z, log_p in zip(Z, truth(P)):
        ring = np.mean([_ring(z, R, s) for R in truth.radii])
        rest = np.exp(-(z[3:] ** 2).sum() / (2 * s**2)) / (2 * np.pi * s**2) ** 3.5
        expected = np.log(ring * _slab(z[2], truth.width, s) * rest)
        assert log_p == pytest.approx(expected, abs=1e-6)


def test_intrinsic_truth_and_curves_on_the_cylinders():
    """Noise-free points: the polyline along the cylinder has the on-cylinder geodesic length
    T, and T is infinite across cylinders."""
    cfg = {**CFG, "noise": 1e-12}
    X, y, _, _, T, truth = cylinders10d.make_cylinders(cfg, seed=1)
    assert X.shape == (60, 10)
    assert np.isinf(T[y[:, None] != y[None, :]]).all()
    feet, angle, axial = cylinders10d.cylinder_feet(X, y, truth.basis, truth.radii)
    np.testing.assert_allclose(feet, X, atol=1e-9)
    a, b = np.nonzero(np.triu(np.isfinite(T), 1))
    radius = np.asarray(truth.radii)[y]
    curves = cylinders10d.cylinder_curves(angle, axial, radius, a, b, truth.basis, 2001)
    np.testing.assert_allclose(curves[:, 0], X[a], atol=1e-9)
    np.testing.assert_allclose(curves[:, -1], X[b], atol=1e-9)
    lengths = cylinders10d.curve_lengths(curves, euclidean)
    np.testing.assert_allclose(lengths, T[a, b], rtol=1e-6)
    # the reference under h = 1 is the shorter candidate, the straight segment
    ref = cylinders10d.reference_lengths(X, y, (a, b), truth.basis, truth.radii, euclidean, 65)
    np.testing.assert_allclose(ref, np.linalg.norm(X[a] - X[b], axis=1), rtol=1e-9)


def test_cross_neighbours_counts_other_labels():
    D = np.abs(np.arange(6.0)[:, None] - np.arange(6.0)[None, :])
    y = np.array([0, 0, 0, 1, 1, 1])
    # nearest of each point: 1, 0 (tie with 2, stable), 1, 2 / 4, 3, 4 -> points 3 cross
    assert cylinders10d.cross_neighbours(D, y, 1) == pytest.approx(1 / 6)


def test_cylinders10d_quick(tmp_path):
    assert main(["cylinders10d", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("cylinders10d.csv", "summary.md", "cylinders10d.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "cylinders10d.csv") as fh:
        rows = {(r["density"], r["distance"]): r for r in csv.DictReader(fh)}

    def value(density, distance, key):
        return float(rows[density, distance][key])

    # under the true density: the graph alone barely stretches, so "auto" keeps the
    # shortcuts off; forced on, they shorten the distances towards the independent
    # reference curve (an upper bound on the truth), which every distance still exceeds
    assert rows["truth", "graph"]["auto_shortcuts"] == "False"
    assert value("truth", "graph", "graph_stretch") < 1.05
    graph_ratio = value("truth", "graph", "median_ratio_to_reference")
    assert 1 < value("truth", "shortcuts", "median_ratio_to_reference") < graph_ratio
    assert value("truth", "graph", "nmi_mean") > 0.99
    assert value("truth", "shortcuts", "nmi_mean") > 0.99
    # under the fitted mixture, which does not see the gap between the cylinders: the
    # graph stretches, but the segments that beat it leave the data, so "auto" keeps the
    # shortcuts off; forced on, their straight segments cross the gap
    assert value("mixture", "graph", "graph_stretch") > SHORTCUT_STRETCH
    assert value("mixture", "graph", "off_data") > SHORTCUT_MAX_OFF_DATA
    assert rows["mixture", "graph"]["auto_shortcuts"] == "False"
    assert value("mixture", "shortcuts", "cross_neighbours") > 5 * max(
        value("mixture", "graph", "cross_neighbours"), 0.005
    )
    assert value("mixture", "shortcuts", "spearman") < value("mixture", "graph", "spearman")
    assert value("mixture", "shortcuts", "nmi_mean") < value("mixture", "graph", "nmi_mean")
    # the chord is monotone in the angle on a circle: Euclidean distances rank the
    # on-cylinder distances almost perfectly
    assert value("-", "euclidean", "spearman") > 0.95
