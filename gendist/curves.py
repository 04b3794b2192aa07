"""Neural-network curves: a geodesic as a small network ``t -> z(t)`` trained to be short.

The curve of Chen et al. ("Metrics for Deep Generative Models", AISTATS 2018, Sec. 3) is a
multilayer perceptron ``g: [0, 1] -> R^d`` (input ``t``, ``n_layers`` tanh layers of
``hidden`` units, output in the space of the metric). Its end points are met exactly by
shifting and rescaling the raw output ``g_hat`` component by component,

    z(t) = A g_hat(t) - B,   A = (a - b) / (g_hat(0) - g_hat(1)),
                             B = (a g_hat(1) - b g_hat(0)) / (g_hat(0) - g_hat(1)),

so that ``z(0) = a`` and ``z(1) = b`` whatever the weights. Where ``a`` and ``b`` (almost)
share a component the rescaling would freeze it (``A = 0``), and where ``g_hat(0) ~
g_hat(1)`` it divides by zero; there the ends are pinned by adding the straight line
between the two errors instead, ``z(t) = g_hat(t) + (1 - t) (a - g_hat(0)) + t (b -
g_hat(1))``.

The length minimised (with Adam, by autograd) is that of the polyline through ``n_samples``
points ``z(t_i)`` at equispaced ``t_i``, with the model evaluated at those points only (the
metric with two quadrature nodes per segment, ``metric.with_nodes(2)``: for a decoder, the
length of the decoded polyline through them). The length returned is that of the same
polyline under the metric's own quadrature (the lengths of the graph's edges and of
:func:`gendist.refine.refine_path`), so that all three compare. Against
local minima, the network is first fitted (least squares on the same ``t_i``) to the best
of ``n_candidates`` random Bézier curves from ``a`` to ``b``: their ``n_control`` interior
control points lie on the straight line at ``j / (n_control + 1)`` plus an offset drawn
uniformly in the space orthogonal to the line, each coordinate of an orthonormal basis of it
in ``[-|b - a| / 2, |b - a| / 2]``. The best candidate is the one of least ``L +
velocity_penalty * max_t phi(t)``, with ``L`` its length and ``phi`` its speed in the
metric (on the polyline: ``(n_samples - 1)`` times the longest segment); the straight line
is among the candidates.
"""

from __future__ import annotations

from math import comb

import numpy as np

from ._compute import to_numpy
from ._optional import import_optional
from ._validation import check_int, check_points, check_positive

__all__ = ["neural_curve", "NEURAL_CURVE_OPTIONS"]

#: the options of :func:`neural_curve` that ``refine={"curve": "neural", ...}`` passes on
NEURAL_CURVE_OPTIONS = (
    "hidden",
    "n_layers",
    "n_samples",
    "n_iter",
    "lr",
    "n_candidates",
    "n_control",
    "pretrain_iter",
    "velocity_penalty",
    "tol",
    "random_state",
)


def _bezier_candidates(a, b, n_candidates: int, n_control: int, t, rng) -> np.ndarray:
    """The straight line and ``n_candidates`` random Bézier curves from ``a`` to ``b``.

    Parameters
    ----------
    a, b : ndarray of shape (d,)
    n_candidates, n_control : int
    t : ndarray of shape (n,)
    rng : numpy.random.Generator

    Returns
    -------
    curves : ndarray of shape (n_candidates + 1, n, d)
        Candidate 0 is the straight line.
    """
    d = len(a)
    degree = n_control + 1
    chord = b - a
    # an orthonormal basis of the space orthogonal to the line: the last d - 1 left
    # singular vectors of the chord
    basis = np.linalg.svd(chord[:, None])[0][:, 1:]  # (d, d - 1)
    half = 0.5 * np.linalg.norm(chord)
    s = np.arange(1, degree) / degree
    offsets = rng.uniform(-half, half, size=(n_candidates, n_control, d - 1)) @ basis.T
    control = np.empty((n_candidates + 1, degree + 1, d))
    control[:, 0], control[:, -1] = a, b
    control[:, 1:-1] = a + s[:, None] * chord
    control[1:, 1:-1] += offsets
    bernstein = np.stack(
        [comb(degree, j) * t**j * (1 - t) ** (degree - j) for j in range(degree + 1)], axis=1
    )
    return np.einsum("nj,cjd->cnd", bernstein, control)


def _candidate_scores(metric, curves, velocity_penalty: float) -> np.ndarray:
    """``L + velocity_penalty * max phi`` of polylines ``curves`` (C, n, d) under ``metric``."""
    C, n, d = curves.shape
    log_seg = metric.log_segment_lengths(
        curves[:, :-1].reshape(-1, d), curves[:, 1:].reshape(-1, d)
    ).reshape(C, n - 1)
    with np.errstate(over="ignore"):
        seg = np.exp(log_seg)
    return seg.sum(1) + velocity_penalty * (n - 1) * seg.max(1)


def _network(torch, d: int, hidden: int, n_layers: int):
    layers, width = [], 1
    for _ in range(n_layers):
        layers += [torch.nn.Linear(width, hidden), torch.nn.Tanh()]
        width = hidden
    layers.append(torch.nn.Linear(width, d))
    return torch.nn.Sequential(*layers).double()


def _pinned(torch, raw, t, a, b, rescale):
    """The network's raw output ``raw`` (n, d) at ``t`` (n, 1; ``t[0] = 0``, ``t[-1] = 1``)
    moved onto the end points ``a``, ``b``: rescaled where ``rescale`` (and ``g_hat(0) -
    g_hat(1)`` is not negligible), else shifted by the straight line between the errors."""
    r0, r1 = raw[0], raw[-1]
    diff = r0 - r1
    scale = (a - b).abs().max()
    usable = rescale & (diff.abs() > 1e-6 * scale)
    safe = torch.where(usable, diff, torch.ones_like(diff))
    A = (a - b) / safe
    B = (a * r1 - b * r0) / safe
    shifted = raw + (1 - t) * (a - r0) + t * (b - r1)
    return torch.where(usable, A * raw - B, shifted)


def neural_curve(
    metric,
    a,
    b,
    *,
    hidden: int = 150,
    n_layers: int = 2,
    n_samples: int = 500,
    n_iter: int = 500,
    lr: float = 1e-2,
    n_candidates: int = 20,
    n_control: int = 3,
    pretrain_iter: int = 300,
    velocity_penalty: float = 0.1,
    tol: float = 1e-4,
    random_state=0,
    return_info: bool = False,
):
    """A short curve from ``a`` to ``b`` under ``metric``, as a neural network of ``t``.

    See the module's docstring for the method (Chen et al. 2018). The end points are met
    exactly (to float rounding) by construction; the returned polyline is the shortest met
    during the optimisation, and its length is measured by the metric's own quadrature.

    Parameters
    ----------
    metric : SegmentMetric
        A differentiable metric (``metric.differentiable``): :class:`gendist.PullbackMetric`
        of a torch decoder, or :class:`gendist.ConformalMetric` of a torch density.
    a, b : array-like of shape (d,)
        The end points.
    hidden : int, default=150
        Units of each tanh layer.
    n_layers : int, default=2
        Tanh layers.
    n_samples : int, default=500
        Points ``z(t_i)`` on which the length is measured (>= 3), ``t_i`` equispaced in [0, 1].
    n_iter : int, default=500
        Most Adam steps on the length.
    lr : float, default=1e-2
        Adam's learning rate (pre-training and length).
    n_candidates : int, default=20
        Random Bézier curves for the pre-training (0: the straight line alone).
    n_control : int, default=3
        Interior control points of each Bézier curve.
    pretrain_iter : int, default=300
        Adam steps fitting the network to the best candidate.
    velocity_penalty : float, default=0.1
        ``lambda_phi`` of the candidates' score ``L + lambda_phi max_t phi(t)``.
    tol : float, default=1e-4
        The optimisation stops when 50 steps in a row shorten the best length by less than
        this fraction.
    random_state : int or None, default=0
        Seeds the candidates and the network's initial weights.
    return_info : bool, default=False
        Also return a dict: ``pretrain_length`` (the fitted network's length before the
        length is minimised, on the sample points), ``candidate_length`` (the chosen
        candidate's length), ``straight_length``, ``n_iter`` (steps run), ``converged``.

    Returns
    -------
    points : ndarray of shape (n_samples, d)
        ``z(t_i)``, from ``a`` to ``b``.
    length : float
        Its length under the metric.
    info : dict
        Only with ``return_info``.
    """
    torch = import_optional("torch")
    ends = check_points(np.vstack([np.ravel(a), np.ravel(b)]), "the end points a, b")
    if not getattr(metric, "differentiable", False):
        model = getattr(metric, "density", getattr(metric, "decoder", metric))
        raise TypeError(
            f"a neural curve needs autograd through the metric; {type(model).__name__} cannot "
            "be differentiated with torch (use the polyline refinement instead)."
        )
    hidden = check_int(hidden, "hidden")
    n_layers = check_int(n_layers, "n_layers")
    n_samples = check_int(n_samples, "n_samples", minimum=3)
    n_iter = check_int(n_iter, "n_iter", minimum=0)
    lr = check_positive(lr, "lr")
    n_candidates = check_int(n_candidates, "n_candidates", minimum=0)
    n_control = check_int(n_control, "n_control")
    pretrain_iter = check_int(pretrain_iter, "pretrain_iter", minimum=0)
    velocity_penalty = check_positive(velocity_penalty, "velocity_penalty", allow_zero=True)
    tol = check_positive(tol, "tol")
    a, b = ends
    d = len(a)
    t = np.linspace(0.0, 1.0, n_samples)
    info = {"straight_length": metric.curve_length(np.linspace(a, b, n_samples))}
    if np.array_equal(a, b):
        points = np.repeat(a[None], n_samples, axis=0)
        info.update(pretrain_length=0.0, candidate_length=0.0, n_iter=0, converged=True)
        return (points, 0.0, info) if return_info else (points, 0.0)

    seed = np.random.SeedSequence(random_state).generate_state(2)
    rng = np.random.default_rng(seed[0])
    sampled = metric.with_nodes(2)  # the model at the sample points only
    candidates = _bezier_candidates(a, b, n_candidates if d > 1 else 0, n_control, t, rng)
    best = int(np.argmin(_candidate_scores(sampled, candidates, velocity_penalty)))
    info["candidate_length"] = metric.curve_length(candidates[best])

    with torch.random.fork_rng():
        torch.manual_seed(int(seed[1]))
        net = _network(torch, d, hidden, n_layers)
    T = torch.as_tensor(t, dtype=torch.float64)[:, None]
    At, Bt = (torch.as_tensor(v, dtype=torch.float64) for v in (a, b))
    # components where a and b differ enough to be rescaled (fixed for the whole fit)
    rescale = torch.as_tensor(np.abs(b - a) > 1e-2 * np.abs(b - a).max())

    def curve():
        return _pinned(torch, net(T), T, At, Bt, rescale)

    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    target = torch.as_tensor(candidates[best], dtype=torch.float64)
    chord = float(np.linalg.norm(b - a))
    for _ in range(pretrain_iter):
        optimizer.zero_grad()
        loss = ((curve() - target) ** 2).sum(1).mean() / chord**2
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        best_points = to_numpy(curve(), np.float64)
    best_log = float(sampled.log_polyline_lengths(best_points[None])[0])
    info["pretrain_length"] = float(np.exp(best_log))
    log_start, mark, since, steps = best_log, best_log, 0, 0
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    converged = n_iter == 0
    for _ in range(n_iter):
        steps += 1
        optimizer.zero_grad()
        Z = curve()
        log_length = sampled.log_polyline_lengths(Z[None])[0]
        value = float(log_length.detach())
        if np.isfinite(value) and value < best_log:
            best_log, best_points = value, to_numpy(Z.detach(), np.float64)
        torch.exp(log_length - log_start).backward()  # the length relative to the start
        optimizer.step()
        since += 1
        if since == 50:
            if -np.expm1(best_log - mark) < tol:
                converged = True
                break
            since, mark = 0, best_log
    length = metric.curve_length(best_points)
    info.update(n_iter=steps, converged=converged)
    return (best_points, length, info) if return_info else (best_points, length)
