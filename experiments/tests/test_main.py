"""``python -m experiments``: its help, and bad inputs as one-line usage errors raised before
anything is computed."""

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import EXPERIMENTS, experiment_module
from experiments.__main__ import main
from gendist.cli import load_config

ROOT = Path(__file__).resolve().parents[2]


def _usage_error(capsys, argv):
    """Run ``python -m experiments argv``, which must stop with a usage error; return the
    error line."""
    prog = f"python -m experiments {argv[0]}"
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
    "name, setting",
    [
        ("refinement", "n_vertex=[100]"),  # unknown key
        ("clustering", "seeds=[]"),  # an empty list where values are needed
        ("clustering", "relative_taus=[]"),
        ("clustering", "n_neighbors=many"),  # a string where an int (or null) is expected
        ("embedding", "n_samples=abc"),
        ("embedding", "perplexity=high"),  # a string where a number is expected
        ("convergence", "n_vertices=[250, 1000.5]"),
        ("mnist", "data_dir=[a, b]"),
    ],
)
def test_bad_settings_stop_before_computing(tmp_path, capsys, name, setting):
    out = tmp_path / "out"
    message = _usage_error(capsys, [name, "--quick", "--out", str(out), "--set", setting])
    assert setting.split("=")[0] in message
    assert not out.exists()


def test_a_config_file_that_does_not_exist(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "missing.yaml"
    message = _usage_error(capsys, ["refinement", "--out", str(out), "--config", str(path)])
    assert str(path) in message and "does not exist" in message
    assert not out.exists()


def test_a_yaml_syntax_error_names_the_file(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "bad.yaml"
    path.write_text("seeds: [0, 1\nlam: 0.01\n")
    message = _usage_error(capsys, ["refinement", "--out", str(out), "--config", str(path)])
    assert str(path) in message and "YAML" in message
    assert not out.exists()


def test_an_output_folder_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    out = blocker / "refinement"
    message = _usage_error(capsys, ["refinement", "--quick", "--out", str(out)])
    assert str(out) in message
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    "name, module, install",
    [
        ("convergence", "skfmm", 'pip install "gendist[experiments]"'),
        ("clustering", "dwave.samplers", 'pip install "gendist[experiments]"'),
        ("moons", "zuko", 'pip install "gendist[experiments]"'),
        ("refinement", "matplotlib", 'pip install "gendist[experiments]"'),
    ],
)
def test_a_missing_extra_names_its_install_command(
    tmp_path, capsys, monkeypatch, name, module, install
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    out = tmp_path / "out"
    message = _usage_error(capsys, [name, "--quick", "--out", str(out)])
    assert module in message and install in message
    assert not out.exists()


def test_missing_data_names_the_file_and_the_data_folder_settings(tmp_path, capsys):
    out, nowhere = tmp_path / "out", tmp_path / "nowhere"
    argv = ["mnist", "--quick", "--out", str(out), "--set", f"data_dir={nowhere}"]
    message = _usage_error(capsys, argv)
    assert str(nowhere) in message and "GENDIST_DATA_DIR" in message and "data_dir" in message
    assert not out.exists()


def test_help_lists_the_experiments_and_their_parameters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert f"  {name}: " in text
        assert all(key in text for key in experiment_module(name).DEFAULTS)
    with pytest.raises(SystemExit):
        main(["mnist", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:4] == ["data_dir", "str", "or", "None"] for line in lines)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_quick_settings_and_declared_types_fit_the_defaults(name):
    """QUICK only overrides known keys with values of their types, and every parameter whose
    default is None has a declared type."""
    module = experiment_module(name)
    quick = [f"{key}={value}" for key, value in module.QUICK.items() if not isinstance(value, list)]
    quick += [
        f"{key}=[{', '.join(map(str, value))}]"
        for key, value in module.QUICK.items()
        if isinstance(value, list)
    ]
    assert load_config(module.DEFAULTS, None, quick, module.TYPES) == {
        **module.DEFAULTS,
        **module.QUICK,
    }
    undeclared = [k for k, v in module.DEFAULTS.items() if v is None and k not in module.TYPES]
    assert not undeclared


def test_runs_as_a_module_from_the_checkout():
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("usage: python -m experiments")
