"""The paper's experiments, run from the source checkout: ``python -m experiments NAME``.

They use gendist through its public modules and are not part of the installed package. Each
module has ``DEFAULTS`` (the parameters of the full run, documented in ``configs/NAME.yaml``),
``QUICK`` (overrides for a smoke run), ``TYPES`` (accepted types of the parameters whose
default does not say, see :func:`gendist.cli.parameter_types`),
``check_requirements(config)`` (raises before any computation when an optional dependency or
a data file is missing) and ``run(out, config) -> dict``, which writes tables (CSV),
``summary.md`` and figures (PNG) to ``out``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ._common import load_config, require

__all__ = [
    "EXPERIMENTS",
    "experiment_module",
    "experiment_config",
    "check_requirements",
    "run_experiment",
]

#: name -> module of the experiment
EXPERIMENTS = {
    "clustering": "experiments.clustering",
    "embedding": "experiments.embedding",
    "convergence": "experiments.convergence",
    "refinement": "experiments.refinement",
    "moons": "experiments.moons",
    "mnist": "experiments.mnist",
    "latent": "experiments.latent",
    "curved10d": "experiments.curved10d",
    "cylinders10d": "experiments.cylinders10d",
    "inversion10d": "experiments.inversion10d",
    "pendulum": "experiments.pendulum",
    "robot_arm": "experiments.robot_arm",
}


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name`` (see the package's docstring for what it holds)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name])


def experiment_config(name: str, config_path=None, overrides=(), quick: bool = False) -> dict:
    """Parameters of experiment ``name``: its defaults (``QUICK`` on top when ``quick``), then
    the YAML file ``config_path``, then ``key=value`` overrides; every key and the type of
    every value checked (:func:`gendist.cli.load_config`)."""
    module = experiment_module(name)
    defaults = {**module.DEFAULTS, **(module.QUICK if quick else {})}
    return load_config(defaults, config_path, overrides, module.TYPES)


def check_requirements(name: str, config: dict) -> None:
    """Raise ImportError (naming the ``pip install``) when a dependency of experiment ``name``
    with ``config`` is missing, FileNotFoundError when its data is; matplotlib draws every
    experiment's figures."""
    require("matplotlib")
    experiment_module(name).check_requirements(config)


def run_experiment(
    name: str, out=None, config_path=None, overrides=(), quick: bool = False, config=None
) -> dict:
    """Run experiment ``name`` with the parameters of :func:`experiment_config` (or ``config``
    when given), after :func:`check_requirements`.

    Outputs go to ``out`` (default ``gendist-output/NAME``). Returns the experiment's results:
    ``summary``, ``files``, ``seconds`` and its own entries.
    """
    if config is None:
        config = experiment_config(name, config_path, overrides, quick)
    check_requirements(name, config)
    out = Path(out) if out is not None else Path("gendist-output") / name
    return experiment_module(name).run(out, config)
