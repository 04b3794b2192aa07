"""The curved10d experiment (graph-only vs shortcut distances in 10-D) in its --quick settings."""

import csv

import numpy as np

from experiments import curved10d
from experiments.__main__ import main


def test_arc_length_matches_the_half_circle_and_truth_is_infinite_across_curves():
    cfg = {**curved10d.DEFAULTS, "lift": 0.0}
    t = np.array([0.0, np.pi / 2, np.pi])
    for label in (0, 1):
        assert np.allclose(curved10d.arc_length(t, label, cfg), t, atol=1e-6)
    X, y, _, T = curved10d.make_curves({**cfg, "n_samples": 40}, seed=0)
    assert X.shape == (40, 10)
    assert np.isinf(T[y[:, None] != y[None, :]]).all()
    assert np.isfinite(T[y[:, None] == y[None, :]]).all()


def test_neighbour_agreement_is_one_for_the_truth_itself():
    t = np.sort(np.random.RandomState(0).uniform(0, 1, 30))  # no ties
    T = np.abs(t[:, None] - t[None, :])
    assert curved10d.neighbour_agreement(np.column_stack([t, 0 * t]), T, 5) == 1.0


def test_curved10d_quick(tmp_path):
    assert main(["curved10d", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("curved10d.csv", "summary.md", "curved10d.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "curved10d.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(curved10d.METHODS)

    def value(method, key):
        return float(rows[method][key])

    # against the curve labels: spectral clustering on either generative distance separates
    # the two manifolds at c = 1 (the graph's at c = 0.1 already; the closed shortcut
    # distances shrink the median d^2 that sets tau more than the shortest distances)
    assert value("graph", "nmi_tau0.1") > 0.99 and value("graph", "nmi_tau1") > 0.99
    assert value("shortcuts", "nmi_tau1") > 0.99
    # against the analytic arc length: the chord is monotone along a half circle, and both
    # generative distances follow the arc length
    assert value("euclidean", "spearman") > 0.95
    assert value("graph", "spearman") > 0.7 and value("shortcuts", "spearman") > 0.5
    # what the experiment finds on curved 1-D manifolds: the shortcuts shorten distances
    # (never lengthen them) but do not make them follow the arc length better: the density
    # metric's shorter curves cut across the mixture's bumps, away from the arc length
    assert value("shortcuts", "median_ratio_to_chord") <= value("graph", "median_ratio_to_chord")
    assert value("shortcuts", "spearman") < value("graph", "spearman") + 0.05
