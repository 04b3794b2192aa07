"""Ground truths: generative distances of 2-D densities by fast marching (scikit-fmm), and a
density in any dimension whose distances are known in closed form (:class:`Inversion`).

The generative distance from ``a`` is the viscosity solution of the eikonal equation
``|grad T| = h`` with ``T(a) = 0``; scikit-fmm solves it on a square grid (second order).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator

from ._common import require

__all__ = ["Inversion", "fast_marching"]


class Inversion(torch.nn.Module):
    """``log p = log(|x - c|^2 - lam)``: the metric is the pullback of the Euclidean one under
    the inversion ``phi`` about ``c`` (radius^2 ``lam``), so ``d(x, y) = |phi(x) - phi(y)|``.

    Use it with ``TorchDensity(Inversion(d).double()), lam=lam, beta=1.0, p0=0.0``: the
    length factor is then ``lam / |x - c|^2``, the conformal factor of the inversion, and
    the geodesics are circular arcs through ``c``'s mirror images. ``c = (-0.5, 0.5, ...,
    0.5)`` lies outside the unit cube, so the density is defined on all of it.
    """

    def __init__(self, d, lam=0.125):
        super().__init__()
        c = np.full(d, 0.5)
        c[0] = -0.5
        self.register_buffer("c", torch.tensor(c))
        self.lam = lam

    def log_prob(self, x):
        return torch.log(((x - self.c) ** 2).sum(-1) - self.lam)

    def phi(self, X):
        v = X - self.c.numpy()
        return self.c.numpy() + self.lam * v / (v**2).sum(1, keepdims=True)


def _travel_time(h, a, xs, dx):
    """Travel-time grid from ``a`` and its interpolator (the disc crossing added back)."""
    skfmm = require("skfmm")
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    speed = 1.0 / h(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    r0 = 3 * dx
    T = np.asarray(skfmm.travel_time(np.hypot(gx - a[0], gy - a[1]) - r0, speed, dx=dx, order=2))
    T = T + r0 * h(a[None])[0]
    return T, RegularGridInterpolator((xs, xs), T)


def _descend(T, xs, dx, start, stop_time, max_steps):
    """Points from ``start`` down ``-grad T`` in half-cell steps until ``T < stop_time``."""
    gradients = [RegularGridInterpolator((xs, xs), g) for g in np.gradient(T, dx)]
    time = RegularGridInterpolator((xs, xs), T)
    x, path = start.copy(), [start.copy()]
    for _ in range(max_steps):
        g = np.array([gi(x[None])[0] for gi in gradients])
        x = x - 0.5 * dx * g / np.linalg.norm(g)
        if time(x[None])[0] < stop_time:
            break
        path.append(x.copy())
    return np.array(path)


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
        Also trace the geodesic. Descending a travel-time field is inaccurate next to its
        source, where T is singular, so each half is traced away from the far end: from b
        down the field of a, and from a down the field of b, until the two halves meet at
        travel time d / 2 (a second fast-marching run).

    Returns
    -------
    distance : float
    path : ndarray of shape (m, 2), from ``a`` to ``b`` (only with ``trace``)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    xs = np.linspace(-half_width, half_width, n_grid)
    dx = float(xs[1] - xs[0])
    T_a, time_a = _travel_time(h, a, xs, dx)
    dist = float(time_a(b[None])[0])
    if not trace:
        return dist
    T_b, _ = _travel_time(h, b, xs, dx)
    near_b = _descend(T_a, xs, dx, b, dist / 2, 100 * n_grid)
    near_a = _descend(T_b, xs, dx, a, dist / 2, 100 * n_grid)
    return dist, np.vstack([near_a, near_b[::-1]])
