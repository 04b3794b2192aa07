"""Input checks shared by every stage, with errors that name the offending argument."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_array


def check_points(X, name: str = "X", *, n_features: int | None = None, min_samples: int = 1):
    """Validate a point array and return it as a C-contiguous float64 ndarray.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points. NaN, inf, object, complex, sparse, empty and 1-D inputs are refused.
    name : str
        Argument name used in error messages.
    n_features : int, optional
        Required number of columns.
    min_samples : int
        Minimum number of rows.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    """
    X = check_array(
        X,
        dtype=np.float64,
        order="C",
        ensure_min_samples=min_samples,
        input_name=name,
    )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {n_features} were expected "
            "(the number of features of the points the model was fitted on)."
        )
    return X


def check_positive(value, name: str, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking that it is a positive real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return value


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking that it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_log_density_values(values, n_rows: int, source: str = "the density") -> np.ndarray:
    """Check what a density returned for ``n_rows`` points and return it as float64.

    ``-inf`` (zero density) is allowed; NaN, ``+inf`` and a wrong shape are errors that say how
    many rows are affected.
    """
    values = np.asarray(values)
    if values.dtype == object or not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"{source} returned values of dtype {values.dtype}; expected real numbers.")
    if np.iscomplexobj(values):
        raise TypeError(f"{source} returned complex values; expected real log-densities.")
    if values.shape != (n_rows,):
        hint = " (squeeze the trailing axis)" if values.shape == (n_rows, 1) else ""
        raise ValueError(
            f"{source} returned an array of shape {values.shape} for {n_rows} points; "
            f"expected one log-density per point, shape ({n_rows},){hint}."
        )
    values = values.astype(np.float64, copy=False)
    if (values < np.inf).all():  # one pass: False for NaN and +inf
        return values
    n_nan = int(np.isnan(values).sum())
    n_pinf = int(np.isposinf(values).sum())
    if n_nan or n_pinf:
        raise ValueError(
            f"{source} returned NaN for {n_nan} and +inf for {n_pinf} of {n_rows} points; "
            "a log-density must be finite or -inf (zero density)."
        )
    return values
