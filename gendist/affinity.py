"""Affinities from distances: ``A = exp(-d**power / tau)``, zero where ``d`` is inf."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_positive

__all__ = ["distance_affinity", "median_bandwidth", "GeodesicAffinity"]


def _check_distances(D) -> np.ndarray:
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.size == 0:
        raise ValueError(f"D must be a non-empty 2-D distance matrix, got shape {D.shape}.")
    if np.isnan(D).any():
        raise ValueError("D must hold distances without NaN (inf allowed: disconnected pairs).")
    if (D < 0).any():
        raise ValueError("Negative values in data: D must hold non-negative distances.")
    return D


def distance_affinity(D, tau: float, power: float = 2.0) -> np.ndarray:
    """Affinity matrix ``exp(-D**power / tau)`` for spectral clustering and kernels.

    Parameters
    ----------
    D : array-like of shape (n, m)
        Non-negative distances; inf (disconnected) gives affinity 0.
    tau : float
        Bandwidth (> 0), in units of distance**power.
    power : float
        Exponent of the distance (> 0); 2 gives a Gaussian kernel.

    Returns
    -------
    A : ndarray of shape (n, m), values in [0, 1]
    """
    tau = check_positive(tau, "tau")
    power = check_positive(power, "power")
    D = _check_distances(D)
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(-(D**power) / tau)


def median_bandwidth(D, power: float = 2.0) -> float:
    """Median of ``D**power`` over the finite positive entries: a scale for ``tau``.

    A ``tau`` given relative to it (``tau = c * median_bandwidth(D)``) means the same thing
    for Euclidean and generative distances, whose units differ.

    Parameters
    ----------
    D : array-like of shape (n, m)
        Non-negative distances, inf allowed.
    power : float
        Exponent of the distance (> 0).

    Returns
    -------
    scale : float
        The median, in units of distance**power.
    """
    power = check_positive(power, "power")
    D = _check_distances(D)
    values = D[np.isfinite(D) & (D > 0)]
    if values.size == 0:
        raise ValueError("D has no finite positive distance to take a bandwidth from.")
    with np.errstate(over="ignore"):
        scale = float(np.median(values**power))
    if not np.isfinite(scale):
        raise ValueError(f"D**power overflows (power={power}); rescale the distances.")
    return scale


class GeodesicAffinity(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Turn a distance matrix into an affinity ``exp(-D**power / tau)``, for pipelines.

    Sits between :class:`gendist.GenerativeDistance` (which outputs distances) and an
    estimator that takes a precomputed affinity::

        Pipeline([
            ("distance", GenerativeDistance(GaussianMixture(8), n_neighbors=10)),
            ("affinity", GeodesicAffinity(tau="median")),
            ("cluster", SpectralClustering(2, affinity="precomputed")),
        ]).fit_predict(X)

    Parameters
    ----------
    tau : float or "median", default="median"
        Bandwidth (> 0) in units of distance**power. ``"median"`` takes
        ``tau_scale * median_bandwidth(D)`` of the distances seen by ``fit``.
    power : float, default=2.0
        Exponent of the distance; 2 is a Gaussian kernel, 1 a Laplacian one.
    tau_scale : float, default=1.0
        Multiplier of the median when ``tau="median"``; ignored otherwise.

    Attributes
    ----------
    tau_ : float
        The bandwidth used by ``transform``.
    n_features_in_ : int
        Number of columns of the distance matrix seen by ``fit``.
    """

    def __init__(self, tau="median", power: float = 2.0, tau_scale: float = 1.0):
        self.tau = tau
        self.power = power
        self.tau_scale = tau_scale

    @property
    def _n_features_out(self):
        """One output column per column of the distance matrix: ``get_feature_names_out``
        gives ``geodesicaffinity0, ...``, and ``set_output(transform="pandas")`` works."""
        if not hasattr(self, "tau_"):
            raise AttributeError("_n_features_out")  # not fitted
        return self.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # distances
        tags.input_tags.allow_nan = False
        return tags

    def fit(self, X, y=None):
        """Fix the bandwidth from the distance matrix ``X`` of shape (n, m)."""
        # inf is a real distance here (disconnected pairs), so finiteness is checked below
        D = _check_distances(validate_data(self, X, dtype=np.float64, ensure_all_finite=False))
        if isinstance(self.tau, str):
            if self.tau != "median":
                raise ValueError(f'tau must be a positive number or "median", got {self.tau!r}.')
            scale = check_positive(self.tau_scale, "tau_scale")
            self.tau_ = scale * median_bandwidth(D, self.power)
        elif isinstance(self.tau, numbers.Real):
            self.tau_ = check_positive(self.tau, "tau")
        else:
            raise TypeError(f'tau must be a positive number or "median", got {self.tau!r}.')
        check_positive(self.power, "power")
        return self

    def transform(self, X):
        """Affinities of shape (n, m) in [0, 1]; 0 where the distance is inf."""
        check_is_fitted(self, "tau_")
        D = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=False)
        D = _check_distances(D)
        return distance_affinity(D, self.tau_, self.power)
