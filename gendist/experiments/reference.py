"""Ground truth for 2-D densities: generative distances by fast marching (scikit-fmm).

The generative distance from ``a`` is the viscosity solution of the eikonal equation
``|grad T| = h`` with ``T(a) = 0``; scikit-fmm solves it on a square grid (second order).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from .._optional import import_optional

__all__ = ["fast_marching"]


def fast_marching(h, a, b, n_grid: int = 1601, half_width: float = 4.5, trace: bool = False):
    """Travel time from ``a`` to ``b`` under ``|grad T| = h(x)`` on a square grid.

    The front starts on a circle of radius ``r0`` (3 cells) around ``a``; the time to cross
    that disc, ``r0 * h(a)``, is added back (h is smooth there).

    Parameters
    ----------
    h : callable
        Length factor: (m, 2) points -> (m,) positive values.
    a, b : array-like of shape (2,)
        End points, inside the grid.
    n_grid : int, default=1601
        Grid nodes per axis.
    half_width : float, default=4.5
        The grid covers ``[-half_width, half_width]**2``.
    trace : bool, default=False
        Also trace the geodesic from ``b`` back to ``a`` along ``-grad T``.

    Returns
    -------
    distance : float
    path : ndarray of shape (m, 2), from ``a`` to ``b`` (only with ``trace``)
    """
    skfmm = import_optional("skfmm")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    xs = np.linspace(-half_width, half_width, n_grid)
    dx = float(xs[1] - xs[0])
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    speed = 1.0 / h(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    r0 = 3 * dx
    T = np.asarray(skfmm.travel_time(np.hypot(gx - a[0], gy - a[1]) - r0, speed, dx=dx, order=2))
    dist = float(RegularGridInterpolator((xs, xs), T)(b[None])[0] + r0 * h(a[None])[0])
    if not trace:
        return dist
    gradients = [RegularGridInterpolator((xs, xs), g) for g in np.gradient(T, dx)]
    x, path = b.copy(), [b.copy()]
    for _ in range(100 * n_grid):
        g = np.array([gi(x[None])[0] for gi in gradients])
        x = x - 0.5 * dx * g / np.linalg.norm(g)
        path.append(x.copy())
        if np.linalg.norm(x - a) < r0:
            break
    return dist, np.array([*path, a])[::-1]
