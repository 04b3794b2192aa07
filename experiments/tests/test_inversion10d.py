"""The inversion10d experiment (graph-only vs shortcut distances against a closed form in 10-D)
in its --quick settings."""

import csv

import numpy as np

from experiments import inversion10d
from experiments.__main__ import main
from experiments.reference import Inversion


def test_neighbour_recall_counts_shared_neighbours():
    t = np.array([0.0, 1.0, 3.0, 7.0])
    T = np.abs(t[:, None] - t[None, :])
    assert inversion10d.neighbour_recall(T, T, 1) == 1.0
    # reversed order on the line: each point's nearest is now a farthest one
    D = t.max() - T
    np.fill_diagonal(D, 0.0)
    # nearest by D: 0->3, 1->3, 2->0, 3->0; by T: 0->1, 1->0, 2->1, 3->2
    assert inversion10d.neighbour_recall(D, T, 1) == 0.0


def test_draw_stays_in_the_cube_and_follows_the_density():
    model = Inversion(10).double()
    X = inversion10d.draw(model, 4000, seed=0)
    assert X.shape == (4000, 10) and X.min() >= 0 and X.max() <= 1
    # along x0 the density |x - c|^2 - lam grows as (x0 + 0.5)^2 + const: the drawn mean of
    # x0 against the closed form of that marginal (the other axes integrate to constants)
    c = model.c.numpy()
    rest = (c.size - 1) * (1 / 12) - model.lam  # E|x_i - 0.5|^2 = 1/12 per other axis
    x = np.linspace(0, 1, 200001)
    p = (x - c[0]) ** 2 + rest
    mean = np.trapezoid(x * p, x) / np.trapezoid(p, x)
    assert abs(X[:, 0].mean() - mean) < 4 * X[:, 0].std() / np.sqrt(len(X))


def test_inversion10d_quick(tmp_path):
    assert main(["inversion10d", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("inversion10d.csv", "summary.md", "inversion10d.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "inversion10d.csv") as fh:
        rows = {r["distance"]: r for r in csv.DictReader(fh)}

    def value(distance, key):
        return float(rows[distance][key])

    # the truth against itself; every generative distance is an actual curve's length, so
    # not below the closed form (up to quadrature); the shortcuts are on and closer
    assert value("truth", "recall") == 1.0 and value("truth", "median_ratio") == 1.0
    assert rows["shortcuts"]["shortcuts_on"] == "True"
    assert 1.0 <= value("shortcuts", "median_ratio") < value("graph", "median_ratio")
    assert value("graph", "median_ratio") > 1.3
    assert value("shortcuts", "spearman") > value("graph", "spearman")
    assert value("shortcuts", "recall") > value("graph", "recall") + 0.1
    assert value("graph", "refined_recall") >= value("graph", "recall") - 0.05
    # every pair refined: within 1 % of the closed form (median), never below it beyond
    # quadrature error, and closer than the shortcuts in every score of the distances
    assert 1.0 - 1e-3 <= value("refined", "median_ratio") < 1.01
    assert value("refined", "spearman") > value("shortcuts", "spearman")
    assert value("refined", "recall") > value("shortcuts", "recall")
