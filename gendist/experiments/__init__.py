"""The paper's experiments as runnable jobs: ``gendist experiment NAME``.

Each module has ``DEFAULTS`` (the full run), ``QUICK`` (overrides for a smoke run) and
``run(out, config) -> dict``, which writes figures (PNG), tables (CSV) and ``summary.md`` to
``out``.
"""

from __future__ import annotations

import importlib

__all__ = ["EXPERIMENTS", "experiment_module"]

#: name -> module of the experiment
EXPERIMENTS = {
    "clustering": "gendist.experiments.clustering",
    "embedding": "gendist.experiments.embedding",
    "convergence": "gendist.experiments.convergence",
    "refinement": "gendist.experiments.refinement",
    "moons": "gendist.experiments.moons",
    "mnist": "gendist.experiments.mnist",
    "latent": "gendist.experiments.latent",
}


def experiment_module(name: str):
    """The module of experiment ``name`` (with ``DEFAULTS``, ``QUICK`` and ``run``)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name])
