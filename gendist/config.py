"""Run configurations: a YAML file of parameters, overridden by ``key=value`` pairs."""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["load_config"]


def load_config(defaults: dict, path: str | Path | None = None, overrides=()) -> dict:
    """Merge ``defaults``, the YAML mapping in ``path`` and ``key=value`` overrides.

    Values of overrides are parsed as YAML scalars (``n_quad=16`` gives an int,
    ``lam=quantile:0.05`` a string). Unknown keys are errors, so a typo cannot be ignored.

    Parameters
    ----------
    defaults : dict
        Every allowed key with its default value.
    path : path-like, optional
        YAML file with a mapping of some of those keys.
    overrides : iterable of str
        ``key=value`` strings, applied last.

    Returns
    -------
    config : dict
    """
    config = dict(defaults)
    updates = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path} must hold a mapping of parameters, got {type(loaded).__name__}."
            )
        updates.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        updates[key.strip()] = yaml.safe_load(value)
    unknown = sorted(set(updates) - set(defaults))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(defaults)}.")
    for key, value in updates.items():
        if isinstance(defaults[key], list) and not isinstance(value, list):
            raise ValueError(f"{key} must be a list, e.g. {key}=[{value}], got {value!r}.")
    config.update(updates)
    return config
