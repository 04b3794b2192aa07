import csv

import numpy as np
import pytest

from gendist.affinity import distance_affinity
from gendist.cli import main


def test_demo_writes_table_and_figure(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "NMI geodesic" in printed and "geodesic 3" in printed
    with (tmp_path / "demo.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    geo = np.array([float(r["NMI geodesic"]) for r in rows])
    euc = np.array([float(r["NMI euclidean"]) for r in rows])
    assert np.all((geo >= 0) & (geo <= 1)) and np.all((euc >= 0) & (euc <= 1))
    # two moons: the geodesic affinity separates the moons over the wide-tau half of the sweep
    assert geo.max() >= 0.95 and geo[3:].mean() > euc[3:].mean()
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_distance_affinity():
    D = np.array([[0.0, 1.0], [2.0, np.inf]])
    np.testing.assert_allclose(distance_affinity(D, 2.0), [[1, np.exp(-0.5)], [np.exp(-2), 0]])
    np.testing.assert_allclose(distance_affinity(D, 1.0, power=1), np.exp(-D))
    with pytest.raises(ValueError, match="tau"):
        distance_affinity(D, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        distance_affinity(-D, 1.0)


def test_config_file_and_overrides(tmp_path):
    from gendist.cli import DEMO_DEFAULTS
    from gendist.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("n_samples: 123\nlam: 'quantile:0.2'\n")
    cfg = load_config(DEMO_DEFAULTS, path, ["n_quad=16", "beta=2.5", "relative_taus=[0.1, 1]"])
    assert cfg["n_samples"] == 123 and cfg["lam"] == "quantile:0.2"
    assert cfg["n_quad"] == 16 and cfg["beta"] == 2.5 and cfg["relative_taus"] == [0.1, 1]
    assert cfg["seed"] == DEMO_DEFAULTS["seed"]
    with pytest.raises(ValueError, match="unknown parameter"):
        load_config(DEMO_DEFAULTS, None, ["n_sample=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(DEMO_DEFAULTS, None, ["n_samples"])
    # the shipped config is the defaults
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert load_config(DEMO_DEFAULTS, shipped) == DEMO_DEFAULTS
