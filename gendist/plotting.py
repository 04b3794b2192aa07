"""Figures: geodesics drawn over a 2-D density (needs the ``plot`` extra, matplotlib)."""

from __future__ import annotations

import numpy as np

from ._optional import import_optional
from .densities import as_density, evaluate_log_density

__all__ = ["plot_geodesics"]


def plot_geodesics(
    density,
    X=None,
    geodesics=(),
    *,
    ax=None,
    labels=None,
    straight_lines: bool = True,
    grid_size: int = 200,
    margin: float = 0.15,
    title: str | None = None,
):
    """Draw geodesics over the log-density of a 2-D model.

    Parameters
    ----------
    density : Density, callable, estimator or torch model
        Evaluated on a grid covering the points (see :func:`gendist.as_density`).
    X : array-like of shape (n, 2), optional
        Points to scatter (coloured by ``labels`` when given).
    geodesics : sequence of Geodesic
        Drawn as polylines; with ``straight_lines`` the chord between the endpoints is dashed.
    ax : matplotlib Axes, optional
        Where to draw; by default the axes of a new :class:`matplotlib.figure.Figure` (not
        managed by pyplot: save it with ``ax.figure.savefig(path)``).
    grid_size : int
        Grid resolution per axis for the background.
    margin : float
        Relative padding around the points (or geodesics).

    Returns
    -------
    ax : matplotlib Axes
    """
    figure_module = import_optional("matplotlib.figure")
    density = as_density(density)
    pts = [np.asarray(X)] if X is not None else []
    pts += [g.points for g in geodesics]
    if not pts:
        raise ValueError("give X or at least one geodesic to set the plotting range.")
    allpts = np.vstack(pts)
    if allpts.shape[1] != 2:
        raise ValueError(f"plot_geodesics draws 2-D data; got {allpts.shape[1]} features.")
    lo, hi = allpts.min(0), allpts.max(0)
    pad = margin * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid_size)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid_size)
    gx, gy = np.meshgrid(xs, ys)
    log_p = evaluate_log_density(density, np.column_stack([gx.ravel(), gy.ravel()]))
    if ax is None:
        ax = figure_module.Figure(figsize=(6, 5)).subplots()
    floor = np.quantile(log_p[np.isfinite(log_p)], 0.2)
    im = ax.contourf(gx, gy, np.maximum(log_p, floor).reshape(gx.shape), levels=30, cmap="Greys")
    ax.figure.colorbar(im, ax=ax, label="log p(x)", shrink=0.8)
    if X is not None:
        X = np.asarray(X)
        ax.scatter(
            X[:, 0],
            X[:, 1],
            s=6,
            c=labels,
            cmap="coolwarm" if labels is not None else None,
            alpha=0.7,
            linewidths=0,
        )
    for i, g in enumerate(geodesics):
        color = f"C{i % 10}"
        ax.plot(
            g.points[:, 0],
            g.points[:, 1],
            "-",
            color=color,
            lw=2,
            label=f"geodesic {i + 1} (length {g.length:.3g})",
        )
        if straight_lines:
            ends = g.points[[0, -1]]
            ax.plot(ends[:, 0], ends[:, 1], "--", color=color, lw=1)
        ax.plot(*g.points[[0, -1]].T, "o", color=color, ms=5)
    if geodesics:
        ax.legend(loc="best", fontsize=7)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return ax
