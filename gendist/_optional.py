"""Imports of optional dependencies, failing with the command that installs them."""

from __future__ import annotations

import importlib

_EXTRAS = {
    "torch": "torch",
    "zuko": "flows",
    "matplotlib": "plot",
    "dwave.samplers": "ising",
    "dimod": "ising",
    "openTSNE": "embed",
    "dask": "dask",
    "cupy": "gpu",
    "pylibcugraph": "gpu",
    "bokeh": "explore",
}


def import_optional(module: str):
    """Import ``module`` or raise ImportError naming the gendist extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module.split(".")[0], _EXTRAS.get(module))
        hint = f'pip install "gendist[{extra}]"' if extra else f"pip install {module}"
        raise ImportError(
            f"{module} is required for this feature; install it with: {hint}"
        ) from exc
