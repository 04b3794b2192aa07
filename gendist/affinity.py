"""Affinities from distances: ``A = exp(-d**power / tau)``, zero where ``d`` is inf."""

from __future__ import annotations

import numpy as np

from ._validation import check_positive

__all__ = ["distance_affinity"]


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
    D = np.asarray(D, dtype=np.float64)
    if np.isnan(D).any() or (D < 0).any():
        raise ValueError("D must hold non-negative distances (inf allowed), without NaN.")
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(-(D**power) / tau)
