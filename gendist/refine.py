"""Geodesic refinement: shorten a polyline under the metric by moving its interior points.

A graph geodesic only passes through vertices, so it carries the graph's discretisation
error: corners at the vertices and edges that cut across curved high-density ridges.
:func:`refine_path` resamples it to evenly spaced points and minimises the discretised
length

    L(x_1, ..., x_{m-2}) = sum_s |x_{s+1} - x_s| * sum_k w_k h(x_s + t_k (x_{s+1} - x_s))

(the same trapezoidal rule as the graph's edges) over the interior points with L-BFGS, the
endpoints fixed. Gradients come from autograd through ``log p`` when the density can be
evaluated on torch tensors (torch models, flows, mixtures), and from central finite
differences of ``log p`` otherwise. Length alone does not fix where the points sit along the
curve, so the points are resampled to even spacing after every few iterations (as in the
string method of E, Ren and Vanden-Eijnden).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from ._compute import progress_bar, row_norms, to_numpy
from ._optional import import_optional
from ._validation import check_int, check_points, check_positive

__all__ = ["refine_path", "resample_polyline"]

_METHODS = ("auto", "autograd", "finite-difference")


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def resample_polyline(points: np.ndarray, n_points: int) -> np.ndarray:
    """Points evenly spaced in Euclidean arc length along a polyline, endpoints kept.

    Parameters
    ----------
    points : ndarray of shape (k, d)
    n_points : int
        Number of points returned (>= 2).

    Returns
    -------
    resampled : ndarray of shape (n_points, d)
    """
    points = np.asarray(points, dtype=np.float64)
    n_points = check_int(n_points, "n_points", minimum=2)
    arc = np.concatenate([[0.0], np.cumsum(row_norms(np.diff(points, axis=0)))])
    if arc[-1] == 0.0:
        return np.repeat(points[:1], n_points, axis=0)
    targets = np.linspace(0.0, arc[-1], n_points)
    segment = np.clip(np.searchsorted(arc, targets, side="right") - 1, 0, len(points) - 2)
    span = arc[segment + 1] - arc[segment]
    t = np.divide(targets - arc[segment], span, out=np.zeros_like(targets), where=span > 0)
    out = points[segment] + t[:, None] * (points[segment + 1] - points[segment])
    out[[0, -1]] = points[[0, -1]]
    return out


def _autograd_length(metric):
    """``f(P) -> (log L, d log L / d P)`` by autograd through ``metric.log_curve_length_tensor``.

    The log-length's gradient is scale-free: it does not under- or overflow with the length.
    """
    import torch

    def log_length_and_grad(P: np.ndarray):
        P = torch.tensor(P, dtype=torch.float64, requires_grad=True)
        total = metric.log_curve_length_tensor(P)
        total.backward()
        return float(total.detach()), to_numpy(P.grad)

    return log_length_and_grad


def _finite_difference_length(metric):
    """``f(P) -> (log L, d log L / d P)`` by central differences of the segment lengths.

    Moving point i changes only segments i - 1 and i, so all points of one parity are moved
    at once and each segment's change is credited to its one moved end: a gradient costs
    ``4 d`` evaluations of the segment lengths, whatever the number of points. The step is
    relative to the segments' Euclidean lengths, and the differences are taken of segment
    lengths relative to the whole length, so both are scale-free.
    """

    def log_length_and_grad(P: np.ndarray):
        m, d = P.shape
        spacing = row_norms(np.diff(P, axis=0)).mean()
        step = 6e-6 * (spacing if spacing > 0 else max(float(np.abs(P).max()), 1.0))
        log_length = metric.log_curve_length(P)
        grad = np.zeros_like(P)
        for parity in (1, 2):
            moved = np.arange(parity, m - 1, 2)
            trials = np.repeat(P[None], 2 * d, axis=0)  # (+step, -step) for each coordinate
            for j in range(d):
                trials[2 * j, moved, j] += step
                trials[2 * j + 1, moved, j] -= step
            log_seg = metric.log_segment_lengths(
                trials[:, :-1].reshape(-1, d), trials[:, 1:].reshape(-1, d)
            ).reshape(2 * d, m - 1)
            relative = np.exp(log_seg - log_length)  # each segment as a fraction of L
            slope = (relative[0::2] - relative[1::2]) / (2 * step)  # (d, m - 1) per segment
            grad[moved] = (slope[:, moved - 1] + slope[:, moved]).T
        grad[[0, -1]] = 0.0
        return log_length, grad

    return log_length_and_grad


def refine_path(
    metric,
    points,
    *,
    n_points: int | None = None,
    n_rounds: int | None = None,
    max_iter: int | None = None,
    method: str = "auto",
    tol: float = 1e-6,
    progress: bool = False,
    return_info: bool = False,
):
    """Shorten a path under the metric by moving its interior points (endpoints fixed).

    The objective is the length relative to the starting path's, over coordinates relative
    to its Euclidean length, so the optimiser's (absolute) stopping tests mean the same at
    any scale of lengths and coordinates; lengths are summed in log space.

    Parameters
    ----------
    metric : SegmentMetric
        The metric (``GenerativeDistance.metric_``, ``LatentDistance.metric_``): anything
        with ``log_curve_length`` and ``log_segment_lengths``, and for autograd
        ``differentiable`` and ``log_curve_length_tensor``. Lengths use its own quadrature.
    points : array-like of shape (k, d)
        The starting polyline, typically a graph geodesic's ``points``.
    n_points : int, optional
        Points of the refined polyline (>= 3); default ``max(k, 32)``.
    n_rounds : int, optional
        Most rounds of (optimise, resample evenly); default ``max(20, n_points // 2)``, as
        more points need more rounds. Stops early, converged, when a round gains less than
        ``tol`` (relative); a :class:`~sklearn.exceptions.ConvergenceWarning` says when the
        rounds ran out first.
    max_iter : int, optional
        L-BFGS iterations per round; default ``max(10, n_points // 4)`` (more points, more
        variables). Few: left alone for long, the points bunch up and leave long segments
        whose trapezoidal rule underestimates their length, a discretisation artefact that
        even spacing removes.
    method : {"auto", "autograd", "finite-difference"}, default="auto"
        Gradients by autograd (through the density's ``log_prob_tensor`` for torch models,
        flows and mixtures; through a torch decoder) or by central differences of the
        segment lengths (any density or decoder; ``4 d`` length evaluations per gradient).
        ``"auto"`` uses autograd when the metric offers it and torch is installed.
    tol : float, default=1e-6
        Relative gain of a round below which refinement stops.
    progress : bool, default=False
        Show a progress bar over rounds.
    return_info : bool, default=False
        Also return a dict: ``converged`` (bool), ``n_rounds`` (rounds run), ``gain`` (the
        last round's relative gain), ``gradient_norm`` (of the relative length in relative
        coordinates, at the end of the last round) and ``log_length``.

    Returns
    -------
    points : ndarray of shape (n_points, d)
        The refined polyline, evenly spaced; or the input itself when refinement did not
        shorten it, so the result is never longer than the input under the metric.
    length : float
        Its length under the metric.
    info : dict
        Only with ``return_info``.
    """
    P0 = check_points(points, "points")
    if len(P0) < 2:
        raise ValueError(f"a path needs at least 2 points, got {len(P0)}.")
    n_points = max(len(P0), 32) if n_points is None else check_int(n_points, "n_points", minimum=3)
    n_rounds = max(20, n_points // 2) if n_rounds is None else check_int(n_rounds, "n_rounds")
    max_iter = max(10, n_points // 4) if max_iter is None else check_int(max_iter, "max_iter")
    check_positive(tol, "tol")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    differentiable = getattr(metric, "differentiable", False)
    if method == "autograd":
        if not differentiable:
            model = getattr(metric, "density", getattr(metric, "decoder", metric))
            raise TypeError(
                f"{type(model).__name__} cannot be differentiated with torch; "
                "use method='finite-difference'."
            )
        import_optional("torch")
    if method == "autograd" or (method == "auto" and differentiable and _has_torch()):
        log_length_and_grad = _autograd_length(metric)
    else:
        log_length_and_grad = _finite_difference_length(metric)

    best, best_log = P0, metric.log_curve_length(P0)
    info = {"converged": True, "n_rounds": 0, "gain": 0.0, "gradient_norm": 0.0}
    scale = float(row_norms(np.diff(P0, axis=0)).sum())
    if np.isfinite(best_log) and scale > 0:  # else a point, or a path of zero length
        best, best_log = _refine(
            metric, P0, best_log, scale, log_length_and_grad, n_points, n_rounds, max_iter,
            tol, progress, info,
        )
    info["log_length"] = best_log
    length = float(np.exp(best_log))
    return (best, length, info) if return_info else (best, length)


def _refine(
    metric, P0, log_start, scale, log_length_and_grad, n_points, n_rounds, max_iter, tol,
    progress, info,
):
    """The rounds of :func:`refine_path` on a path of positive length ``exp(log_start)`` and
    Euclidean length ``scale``; updates ``info``.

    Returns
    -------
    best : ndarray of shape (n_points, d) or P0
    best_log : float
    """
    best, best_log = P0, log_start
    origin = P0[0]
    shape = (n_points - 2, P0.shape[1])
    P = resample_polyline(P0, n_points)
    previous = metric.log_curve_length(P)
    info["converged"] = False
    for rounds in progress_bar(range(1, n_rounds + 1), desc="refining", progress=progress):
        ends = (P[[0, -1]] - origin) / scale

        def objective(u, ends=ends):
            full = origin + scale * np.vstack([ends[:1], u.reshape(shape), ends[1:]])
            log_length, grad = log_length_and_grad(full)
            value = float(np.exp(log_length - log_start))  # relative to the starting path
            return value, (value * scale) * grad[1:-1].ravel()

        result = minimize(
            objective,
            ((P[1:-1] - origin) / scale).ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter},
        )
        inner = origin + scale * result.x.reshape(shape)
        P = resample_polyline(np.vstack([P[:1], inner, P[-1:]]), n_points)
        log_length = metric.log_curve_length(P)
        if log_length < best_log:
            best, best_log = P, log_length
        gain = -np.expm1(log_length - previous)  # this round's relative gain
        info.update(n_rounds=rounds, gain=float(gain))
        info["gradient_norm"] = float(np.linalg.norm(result.jac))
        if not gain > tol:  # this round gained (almost) nothing
            info["converged"] = True
            break
        previous = log_length
    if not info["converged"]:
        warnings.warn(
            f"refine_path did not converge in {n_rounds} rounds: the last round still "
            f"shortened the path by a fraction {info['gain']:.2g} (tol={tol:g}). Raise "
            "n_rounds, or use fewer n_points.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best, best_log
