import csv
import re

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
    from gendist.cli import DEMO_DEFAULTS, load_config

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


# ------------------------------------------------------------------ usage errors
def _usage_error(capsys, argv, prog="gendist demo"):
    """Run ``gendist argv``, which must stop with a usage error; return the error line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    *usage, message = err.strip().splitlines()
    assert usage[0].startswith(f"usage: {prog}")
    assert all(line.startswith(" ") for line in usage[1:])  # the usage, wrapped
    assert message.startswith(f"{prog}: error: ")
    return message


@pytest.mark.parametrize(
    "setting",
    [
        "n_sample=10",  # unknown key
        "n_jobs=abc",  # a string where an int (or null) is expected
        "n_samples=abc",
        "n_quad=8.5",  # a float where an int is expected
        "relative_taus=[]",  # an empty list where values are needed
        "relative_taus=0.1",  # a scalar where a list is expected
        "relative_taus=[0.1, big]",
    ],
)
def test_demo_rejects_bad_settings_before_computing(tmp_path, capsys, setting):
    out = tmp_path / "out"
    message = _usage_error(capsys, ["demo", "--out", str(out), "--set", setting])
    assert setting.split("=")[0] in message
    assert not out.exists()


def test_demo_rejects_a_config_file_that_does_not_exist(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "missing.yaml"
    message = _usage_error(capsys, ["demo", "--out", str(out), "--config", str(path)])
    assert str(path) in message and "does not exist" in message
    assert not out.exists()


def test_demo_rejects_a_yaml_syntax_error_naming_the_file(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "bad.yaml"
    path.write_text("n_samples: 100\nrelative_taus: [0.1, 1\n")
    message = _usage_error(capsys, ["demo", "--out", str(out), "--config", str(path)])
    assert str(path) in message and "YAML" in message
    assert not out.exists()


def test_demo_checks_the_types_of_config_file_values(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "c.yaml"
    path.write_text("n_jobs: abc\n")
    message = _usage_error(capsys, ["demo", "--out", str(out), "--config", str(path)])
    assert str(path) in message and "n_jobs" in message
    assert not out.exists()


def test_demo_rejects_an_output_folder_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "demo"):
        message = _usage_error(capsys, ["demo", "--quick", "--out", str(out)])
        assert str(out) in message
    assert blocker.read_text() == "not a folder"


def test_demo_names_the_missing_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    out = tmp_path / "out"
    message = _usage_error(capsys, ["demo", "--quick", "--out", str(out)])
    assert 'pip install "gendist[plot]"' in message
    assert not out.exists()


def test_version_and_help_list_the_parameters(capsys):
    import gendist
    from gendist.cli import DEMO_DEFAULTS

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gendist {gendist.__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for key in DEMO_DEFAULTS:
        assert any(line.split()[:1] == [key] for line in lines), key
    assert any(line.split()[:4] == ["n_jobs", "int", "or", "None"] for line in lines)
    assert not any("experiment" in line for line in lines)


def test_load_config_checks_types_against_the_defaults(tmp_path):
    from gendist.cli import load_config

    defaults = {"n": 3, "x": 0.5, "name": "a", "values": [1.0, 2.0], "seeds": [0], "free": None}
    cfg = load_config(defaults, None, ["x=2", "values=[1, 2.5]", "seeds=[4, 5]", "free=[a, 1]"])
    assert cfg == {**defaults, "x": 2, "values": [1, 2.5], "seeds": [4, 5], "free": ["a", 1]}
    assert load_config(defaults, None, ["x=1e-3"])["x"] == 0.001  # PyYAML reads a string
    for bad in ["n=2.5", "n=true", "n=[3]", "x=abc", "name=[a]", "name=null", "seeds=[0.5]"]:
        key = bad.split("=")[0]
        with pytest.raises(ValueError, match=re.escape(f"--set {bad}: {key} must be")):
            load_config(defaults, None, [bad])
    # declared types for what a default cannot say
    declared = {"free": int | None, "name": str | float}
    cfg = load_config(defaults, None, ["free=null", "name=0.1"], declared)
    assert cfg["free"] is None and cfg["name"] == 0.1
    with pytest.raises(ValueError, match="free must be int or None, got 'many'"):
        load_config(defaults, None, ["free=many"], declared)
    path = tmp_path / "c.yaml"
    path.write_text("values: []\n")
    with pytest.raises(ValueError, match="values must be a non-empty list of float"):
        load_config(defaults, path)
    path.write_text("- n\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(defaults, path)


def test_import_loads_neither_torch_nor_matplotlib():
    import subprocess
    import sys
    from pathlib import Path

    code = "import gendist, sys; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
