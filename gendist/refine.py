"""Geodesic refinement: shorten polylines under the metric by moving their interior points.

A graph geodesic only passes through vertices, so it carries the graph's discretisation
error: corners at the vertices and edges that cut across curved high-density ridges.
:func:`refine_paths` resamples a batch of paths to evenly spaced points and minimises each
one's discretised length

    L(x_1, ..., x_{m-2}) = sum_s |x_{s+1} - x_s| * sum_k w_k h(x_s + t_k (x_{s+1} - x_s))

(the same trapezoidal rule as the graph's edges) over the interior points with L-BFGS, the
endpoints fixed. Its initial inverse Hessian is the inverse second-difference matrix along
the curve (a Sobolev gradient): bending a polyline of m points costs like ``(m - 1) T``, and
without it the iterations needed grow with m. The paths are independent, so their lengths
are minimised as one problem: the sum of the lengths, each relative to its starting path,
over coordinates relative to its Euclidean length. The batch is one ``(B, m, d)`` array,
every model call holds points of many paths, and a path leaves the batch once a round no
longer shortens it. Gradients come from autograd through ``log p`` when the density can be
evaluated on torch tensors (torch models, flows, mixtures; on the device of ``device=``),
and from central finite differences of ``log p`` otherwise. Length alone does not fix where
the points sit along a curve, so the points are resampled to even spacing after every few
iterations (as in the string method of E, Ren and Vanden-Eijnden). A path whose straight
line between its ends is shorter under the metric starts from that line instead (a local
optimiser keeps the basin it starts in), so no result is longer than the straight line.
:func:`refine_path` is the batch of one.
"""

from __future__ import annotations

import importlib.util
import time
import warnings

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.exceptions import ConvergenceWarning

from ._compute import chunk_rows, progress_bar, row_norms, to_numpy
from ._optional import import_optional
from ._validation import check_int, check_points, check_positive

__all__ = [
    "ALL_PAIRS_REFINE",
    "REFINE_AUTO_SECONDS",
    "REFINE_CHECK_FIRST",
    "REFINE_CHECK_MORE",
    "REFINE_CHECK_MORE_SECONDS",
    "REFINE_CHECK_OVER",
    "REFINE_CHECK_PAIRS",
    "REFINE_CHECK_SECONDS",
    "REFINE_GAIN",
    "REFINE_LATE_FALLBACK",
    "REFINE_LATE_FALLBACK_COST",
    "REFINE_WARN",
    "REFINE_OPTIONS",
    "PATHS_PER_WORKER",
    "check_refine_options",
    "refine_path",
    "refine_paths",
    "resample_polyline",
    "resample_polylines",
]

_METHODS = ("auto", "closed-form", "autograd", "finite-difference")

#: The keyword options of :func:`refine_paths` that a ``refine=`` dict may pass.
REFINE_OPTIONS = (
    "n_points", "n_rounds", "max_iter", "method", "tol", "straight_start", "device", "late_points",
)

#: The options with which ``distances(refine=True)`` refines every pair of a matrix (a
#: ``refine`` dict overrides them): 8 points, at most 4 rounds of 3 preconditioned L-BFGS
#: iterations, a path done once a round shortens it by less than 1e-4. Starting from graph
#: paths with shortcuts under a closed-form curved metric, the paths converge in 2-3 rounds;
#: what is left is mostly the polyline's own discretisation (about 1 / n_points^2): 4
#: rounds of 8 iterations give the same lengths to 4 digits
#: (``benchmarks/bench_refined_pairs.py``). Under a mixture most paths are still moving
#: after 4 rounds, and 8 points are too few for their bends: ``late_points`` continues them
#: at 32 points (see :func:`refine_paths`; ``{"late_points": 8}`` in a ``refine`` dict
#: leaves that round out), minimising a quadrature with as many nodes along the path as the
#: rounds before (:func:`_late_round_metric`: 3 per segment at ``n_quad = 8``). The default
#: model's ``fit_transform`` at n = 200 went from a median 0.6 % / 1.6 % / 4.3 % above a
#: heavy refinement (3-, 5-, 10-D) to 0.2 % / 0.4 % / 1.2 % with a late round at 16 points
#: (``benchmarks/bench_default_model.py``). On 1 800 of its 10-D pairs (n = 300, 450 checked
#: against 32 points and 600 iterations) the late round at 24 points and 8 nodes reached a
#: median / 95th percentile of 0.30 % / 1.67 % in 6.8-7.7 s, at 32 points and 3 nodes 0.23 %
#: / 1.54 % in 5.2-5.9 s (5-D: 0.15 % / 0.95 % in 2.2-2.3 s, 0.11 % / 0.95 % in 1.8-2.2 s).
ALL_PAIRS_REFINE = {"n_points": 8, "n_rounds": 4, "max_iter": 3, "tol": 1e-4, "late_points": 32}

#: Where the late round of :data:`ALL_PAIRS_REFINE` puts all pairs over the budget,
#: ``refine="auto"`` tries it at this many points (its time estimated as
#: :data:`REFINE_LATE_FALLBACK_COST` of the measured one), before leaving it out: on the
#: 1 800 pairs above, 16 points reached 0.70 % / 2.5 % (10-D), none 3.6 % / 9.9 %.
REFINE_LATE_FALLBACK = 16

#: The time of the late round at :data:`REFINE_LATE_FALLBACK` points over its time at
#: ``ALL_PAIRS_REFINE["late_points"]``: 0.63 on the 10-D pairs above (the nodes per path
#: stay about the same, 61 and 63; the points, which L-BFGS moves, halve).
REFINE_LATE_FALLBACK_COST = 0.65

#: With shortcuts on, ``fit`` refines this many pairs (sources, targets per source: random,
#: seeded) with :data:`ALL_PAIRS_REFINE` and records the median of their
#: distance over the refined length (``refine_gain_``; within 2 % of the rows' measured
#: excess over the closed form under the inversion metric in 5-D and 10-D, where 4 sources
#: missed by up to 4 %) and the time per pair ...
REFINE_CHECK_PAIRS = (16, 8)

#: The sampled pairs are refined in two batches: the first this many (in random order)
#: and, unless they took longer than :data:`REFINE_CHECK_SECONDS` (an expensive model,
#: such as a large mixture in hundreds of dimensions: they alone then measure it), the rest.
#: A batch carries fixed costs (its model calls and L-BFGS steps) that a large batch shares
#: among all its paths, so the time per pair of all pairs is the slope between the two
#: batches (their average per pair was 3-5x the all-pairs time with an 8-component mixture).
REFINE_CHECK_FIRST = 16

#: See :data:`REFINE_CHECK_FIRST`.
REFINE_CHECK_SECONDS = 2.0

#: Where the sampled pairs gain more than :data:`REFINE_GAIN` (else ``"auto"`` refines
#: nothing, whatever the time), the two batches put all pairs over a sixth of
#: :data:`REFINE_AUTO_SECONDS` (:data:`REFINE_CHECK_OVER`), and this batch would take at most
#: :data:`REFINE_CHECK_MORE_SECONDS` at their rate, a third batch of this many more pairs
#: (sources drawn anew, targets per source; only under ``refine="auto"``, with over 4 times
#: this many pairs within components, and where the sample finds at least twice the second
#: batch) is refined, and its own time per pair is the estimate (``refine_gain_`` stays the
#: first 128 pairs'). Two small batches measure the time of a large one poorly: 16 and 112
#: pairs take 12-13 ms and 18-44 ms, so a few ms of noise move their slope by half, and the
#: time per pair of a batch still changes up to about 2 000 pairs (ms per pair at 16 / 112 /
#: 512 / 2 048 / 16 000 pairs: 0.75 / 0.16 / 0.093 / 0.080 / 0.088 under the 10-D inversion
#: metric at n = 2 000, closed-form torch density; 0.79 / 0.40 / 0.42 / 0.50 / 0.52 with the
#: 8-component default mixture in 10-D at n = 400). The slope put all pairs at 0.4-1.7 times
#: their time in three fits of the same 800 points; 2 048 pairs' average at 0.9-1.1 times.
REFINE_CHECK_MORE = (64, 32)

#: See :data:`REFINE_CHECK_MORE`: the slope between the first two batches may err by a few
#: times either way, so an estimate down to a sixth of the budget is measured again.
REFINE_CHECK_OVER = 6.0

#: See :data:`REFINE_CHECK_MORE`.
REFINE_CHECK_MORE_SECONDS = 15.0

#: ... and ``refine="auto"`` refines when it exceeds this (the accuracy that
#: ``benchmarks/bench_accuracy.py`` asks of the distances: median within 2 % of the truth)
#: ...
REFINE_GAIN = 1.02

#: ... and every pair of vertices is estimated to take at most this many seconds (the sampled pairs'
#: time per pair times the pairs, ``refine_seconds_``; all pairs took 0.7-0.85 times it at n = 1 200
#: and 2 000 in 10-D under the inversion metric). On two CPU cores all pairs cost about 0.06-0.09
#: ms each with a closed-form torch density in 5-10-D (n up to about 1 500-2 000 within the
#: budget), 0.16 / 0.25 / 0.5 ms in 3 / 5 / 10-D with an 8-component mixture and its closed-form
#: score (n up to about 700 in 10-D; autograd took 1.75 times as long), 1-3 ms by finite
#: differences of a cheap numpy callable. A time,
#: so a slower or busier machine may choose differently: pass ``refine=True`` or ``False``
#: for a fixed choice.
REFINE_AUTO_SECONDS = 120.0

#: Where all pairs exceed the budget, ``refine="auto"`` refines each row's nearest pairs, as
#: many as fit it (``refine_nearest_``), if that is at least this many: the neighbourhoods
#: that clustering, t-SNE and kNN read. Fewer leave refinement off, with a warning.
REFINE_NEAREST_MIN = 10

#: The fewest paths that :func:`refine_paths` gives each of its ``n_jobs`` workers. A batch
#: carries costs per L-BFGS step whatever its size: in 10-D, under a torch density, the time
#: per path of 2 000-path batches was 1.1-1.3 times that of 16 000, of 4 000 the same.
PATHS_PER_WORKER = 2048

#: Where ``"auto"`` leaves refinement off, ``fit`` warns when ``refine_gain_`` exceeds this
#: (the few percent of a 2-D or 3-D graph's zig-zag are only recorded).
REFINE_WARN = 1.05


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def resample_polylines(P, n_points: int) -> np.ndarray:
    """Points evenly spaced in Euclidean arc length along each polyline, endpoints kept.

    Parameters
    ----------
    P : ndarray of shape (B, k, d)
        ``B`` polylines of ``k`` points each.
    n_points : int
        Points per polyline returned (>= 2).

    Returns
    -------
    resampled : ndarray of shape (B, n_points, d)
        A polyline of zero length gives ``n_points`` copies of its first point.
    """
    P = np.asarray(P, dtype=np.float64)
    n_points = check_int(n_points, "n_points", minimum=2)
    B, k, d = P.shape
    steps = row_norms(np.diff(P, axis=1).reshape(-1, d)).reshape(B, k - 1)
    arc = np.concatenate([np.zeros((B, 1)), np.cumsum(steps, axis=1)], axis=1)
    targets = np.linspace(0.0, 1.0, n_points)[None] * arc[:, -1:]
    # the segment holding each target: the last arc position at or before it (rows sorted)
    segment = (arc[:, None, :] <= targets[:, :, None]).sum(axis=2) - 1
    segment = np.clip(segment, 0, k - 2)
    rows = np.arange(B)[:, None]
    before, after = arc[rows, segment], arc[rows, segment + 1]
    span = after - before
    t = np.divide(targets - before, span, out=np.zeros_like(targets), where=span > 0)
    out = P[rows, segment] + t[..., None] * (P[rows, segment + 1] - P[rows, segment])
    out[:, [0, -1]] = P[:, [0, -1]]
    return out


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
    return resample_polylines(np.asarray(points, dtype=np.float64)[None], n_points)[0]


def _autograd_lengths(metric, device=None):
    """``f(P) -> (log L, d log L / d P)`` for polylines ``P`` of shape (B, m, d), by autograd
    through ``metric.log_polyline_lengths`` on float64 tensors on ``device`` (default CPU).

    The paths are independent, so the gradient of the sum of their log-lengths is each one's
    own; the batch goes in blocks of paths that bound the memory autograd keeps. The
    log-length's gradient is scale-free: it does not under- or overflow with the length.
    """
    torch = import_optional("torch")

    def log_lengths_and_grads(P: np.ndarray):
        B, m, d = P.shape
        step = max(1, metric._segments_per_chunk(d, device) // max(1, m - 1))
        log_lengths, grads = np.empty(B), np.empty_like(P)
        for s in range(0, B, step):
            T = torch.tensor(P[s : s + step], dtype=torch.float64, device=device)
            T.requires_grad_(True)
            total = metric.log_polyline_lengths(T)
            total.sum().backward()
            log_lengths[s : s + step] = to_numpy(total.detach())
            grads[s : s + step] = to_numpy(T.grad)
        return log_lengths, grads

    return log_lengths_and_grads


def _finite_difference_lengths(metric):
    """``f(P) -> (log L, d log L / d P)`` for polylines ``P`` of shape (B, m, d), by central
    differences of the segment lengths.

    Moving point i changes only segments i - 1 and i, so all points of one parity are moved
    at once and each segment's change is credited to its one moved end: a gradient costs
    ``4 d`` evaluations of the segment lengths, whatever the number of points. The step is
    relative to each path's mean segment length, and the differences are taken of segment
    lengths relative to the whole length, so both are scale-free.
    """

    def log_lengths_and_grads(P: np.ndarray):
        B, m, d = P.shape
        spacing = row_norms(np.diff(P, axis=1).reshape(-1, d)).reshape(B, m - 1).mean(axis=1)
        fallback = np.maximum(np.abs(P).max(axis=(1, 2)), 1.0)
        step = 6e-6 * np.where(spacing > 0, spacing, fallback)  # (B,)
        log_lengths = metric.log_polyline_lengths(P)
        grads = np.zeros_like(P)
        for parity in (1, 2):
            moved = np.arange(parity, m - 1, 2)
            trials = np.repeat(P[None], 2 * d, axis=0)  # (+step, -step) per coordinate
            for j in range(d):
                trials[2 * j][:, moved, j] += step[:, None]
                trials[2 * j + 1][:, moved, j] -= step[:, None]
            log_seg = metric.log_segment_lengths(
                trials[:, :, :-1].reshape(-1, d), trials[:, :, 1:].reshape(-1, d)
            ).reshape(2 * d, B, m - 1)
            relative = np.exp(log_seg - log_lengths[None, :, None])  # fractions of each L
            slope = (relative[0::2] - relative[1::2]) / (2 * step[None, :, None])  # (d, B, m-1)
            grads[:, moved] = np.moveaxis(slope[:, :, moved - 1] + slope[:, :, moved], 0, -1)
        grads[:, [0, -1]] = 0.0
        return log_lengths, grads

    return log_lengths_and_grads


def _refusals_as_inf(evaluate, refused):
    """``evaluate(P)`` on a batch of paths, in halves where the model refuses the batch.

    A trial point of a line search (or a corner cut by resampling) can leave the density's
    domain, where ``log p`` is NaN and the metric raises. Such a path gets ``refused(P)`` (a
    log-length of +inf) so that its line search steps back, and the other paths of the batch
    go on. (The starting paths themselves are measured strictly before: a model that fails
    everywhere is reported there.)
    """

    def wrapped(P):
        try:
            return evaluate(P)
        except ValueError:
            if len(P) == 1:
                return refused(P)
        # halves, so that a few refused paths cost O(log B) calls, not one call per path
        half = len(P) // 2
        parts = [wrapped(P[:half]), wrapped(P[half:])]
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(column) for column in zip(*parts))
        return np.concatenate(parts)

    return wrapped


def _refused_length(P):
    return np.full(len(P), np.inf)


def _refused_length_and_gradient(P):
    return np.full(len(P), np.inf), np.zeros_like(P)


def _gradient_method(metric, method: str = "auto", device=None) -> str:
    """The gradient ``method`` resolved and checked: "auto" is the closed form where the
    metric has one (a mixture's score; on the CPU, where it runs), else autograd where the
    metric offers it and torch is installed, else finite differences."""
    _check_method(method)
    model = getattr(metric, "density", getattr(metric, "decoder", metric))
    closed = getattr(metric, "has_gradients", False)
    differentiable = getattr(metric, "differentiable", False)
    if method == "closed-form" and not closed:
        raise TypeError(
            f"{type(model).__name__} has no closed-form score; use method='autograd' or "
            "'finite-difference'."
        )
    if method == "autograd" and not differentiable:
        raise TypeError(
            f"{type(model).__name__} cannot be differentiated with torch; "
            "use method='finite-difference'."
        )
    if method != "auto":
        return method
    if closed and device is None:
        return "closed-form"
    return "autograd" if differentiable and _has_torch() else "finite-difference"


def _gradient_function(metric, method: str, device=None):
    """The log-length gradient of ``method`` (see :func:`_gradient_method`), checked."""
    method = _gradient_method(metric, method, device)
    if method == "closed-form":
        gradients = metric.log_polyline_lengths_and_gradients
    elif method == "autograd":
        gradients = _autograd_lengths(metric, device)
    else:
        gradients = _finite_difference_lengths(metric)
    return _refusals_as_inf(gradients, _refused_length_and_gradient)


def _ragged_log_lengths(metric, paths: list) -> np.ndarray:
    """Log-lengths of polylines of any point counts: one batch per count."""
    out = np.empty(len(paths))
    counts = np.array([len(p) for p in paths])
    for k in np.unique(counts):
        group = np.flatnonzero(counts == k)
        out[group] = metric.log_polyline_lengths(np.stack([paths[i] for i in group]))
    return out


def _ragged_euclidean_lengths(paths: list) -> np.ndarray:
    """Euclidean lengths of polylines of any point counts: one batch per count."""
    out = np.empty(len(paths))
    counts = np.array([len(p) for p in paths])
    for k in np.unique(counts):
        group = np.flatnonzero(counts == k)
        steps = np.diff(np.stack([paths[i] for i in group]), axis=1)
        out[group] = row_norms(steps.reshape(-1, steps.shape[2])).reshape(len(group), -1).sum(1)
    return out


def _ragged_resample(paths: list, n_points: int) -> np.ndarray:
    """:func:`resample_polylines` of polylines of any point counts, shape (B, n_points, d)."""
    out = np.empty((len(paths), n_points, paths[0].shape[1]))
    counts = np.array([len(p) for p in paths])
    for k in np.unique(counts):
        group = np.flatnonzero(counts == k)
        out[group] = resample_polylines(np.stack([paths[i] for i in group]), n_points)
    return out


def refine_paths(
    metric,
    paths,
    *,
    n_points: int | None = None,
    n_rounds: int | None = None,
    max_iter: int | None = None,
    method: str = "auto",
    tol: float = 1e-6,
    straight_start: bool = True,
    device=None,
    progress: bool = False,
    return_info: bool = False,
    late_points: int | None = None,
    n_jobs: int | None = None,
):
    """Shorten a batch of paths under the metric by moving their interior points (ends fixed).

    All paths are refined together: each L-BFGS iteration evaluates the density on the
    points of every path still in the batch, in one model call per memory block. A path
    leaves the batch once a round shortens it by less than ``tol``; each path keeps the
    shortest polyline it reached, so no result is longer than its input, nor (with
    ``straight_start``) than the straight line between its ends.

    Parameters
    ----------
    metric : SegmentMetric
        The metric (``GenerativeDistance.metric_``, ``LatentDistance.metric_``): anything
        with ``log_polyline_lengths`` and ``log_segment_lengths``, and for autograd
        ``differentiable``. Lengths use its own quadrature.
    paths : sequence of array-like of shape (k_b, d), or array of shape (B, k, d)
        The starting polylines (point counts may differ), typically graph geodesics.
    n_points : int, optional
        Points of each refined polyline (>= 3); default ``max(max_b k_b, 16)``. In a batch,
        more points converge more slowly (the paths share L-BFGS's steps); 16 reach about
        1e-3 on graph paths in 10-D (:func:`refine_path` takes 32 for one path).
    n_rounds : int, optional
        Most rounds of (optimise, resample evenly); default ``max(20, n_points // 2)``, as
        more points need more rounds. A :class:`~sklearn.exceptions.ConvergenceWarning` says
        how many paths were still gaining more than ``tol`` when the rounds ran out.
    max_iter : int, optional
        L-BFGS iterations per round; default ``max(30, n_points // 2)`` (more points, more
        variables). Each path runs its own L-BFGS (its own curvature pairs and line search)
        within the batch. Left alone for very long, the points bunch up and leave long
        segments whose trapezoidal rule underestimates their length, a discretisation
        artefact that the even re-spacing between rounds removes.
    method : {"auto", "closed-form", "autograd", "finite-difference"}, default="auto"
        Gradients in closed form from the density's score (Gaussian mixtures, scikit-learn's
        ``GaussianMixture``; numpy, a third of autograd's time per gradient: see
        ``ConformalMetric.log_polyline_lengths_and_gradients``), by autograd (through the density's
        ``log_prob_tensor`` for torch models, flows and mixtures; through a torch decoder)
        or by central differences of the segment lengths (any density or decoder; ``4 d``
        length evaluations per gradient). ``"auto"`` takes the first the metric offers
        (the closed form only without ``device``; autograd only where torch is installed).
    tol : float, default=1e-6
        Relative gain of a round below which a path is done.
    straight_start : bool, default=True
        Start instead from the straight line between a path's ends (``n_points`` evenly
        spaced points) where that line is the shorter under the metric. A graph path
        follows the data; where the metric is cheap across a gap or a fold (a decoder's
        pullback metric between two arms of a folded manifold), refining it would stay in
        the longer basin. One length evaluation per path.
    device : torch device, optional
        Where autograd evaluates the batch (default: the CPU); the density must accept
        tensors there.
    progress : bool or None, default=False
        Show a progress bar over rounds (None: only once they have run a few seconds).
    late_points : int, optional
        Paths still gaining more than ``tol`` when the rounds run out are resampled to this many
        points and given one more round of ``3 * max_iter`` iterations (nothing where it is not
        above ``n_points``): a path that is still moving after its rounds is usually too coarse for
        its bends (a mixture's geodesics), and converged paths cost nothing more. With the all-pairs
        settings (:data:`ALL_PAIRS_REFINE`, 8 points) and ``late_points=16``, on 300 pairs of the
        default model's paths (an 8-component ``GaussianMixture`` on a 5-D / 10-D Gaussian cloud)
        the median excess over a 32-point, 600-iteration refinement fell from 1.9 % / 6.2 % to 0.4 %
        / 1.4 % (95th percentile 7.0 % / 28 % to 1.8 % / 6.6 %), for 1.5 times the time of those
        pairs (1.2-1.8 times for all pairs at n = 200; it is in :data:`ALL_PAIRS_REFINE`); 8 points
        for 12 rounds reached 4.6 % / 15 % (10-D) in 2.7 times the time, 16 points for 8 rounds
        1.4 % / 8.6 % in 2.9. (Those figures are for a late round of ``2 * max_iter``; with
        ``3 * max_iter`` at 32 points, see :data:`ALL_PAIRS_REFINE`.) The round minimises the
        lengths of a quadrature with fewer nodes per segment, as many along the path as the
        rounds before had (:func:`_late_round_metric`); the lengths it keeps and returns are
        the metric's own.
    n_jobs : int, optional
        Workers (joblib semantics: None is one, or ``joblib.parallel_config``'s; -1 all
        cores), each refining an interleaved share of at least :data:`PATHS_PER_WORKER`
        paths; ignored with ``device``. Every share carries the metric (with its model), so
        any joblib backend runs them (processes by default). The paths are independent, so
        the results are those of one batch up to rounding, which the iterations carry (it
        may stop a path a round apart): the same lengths within ``tol``.
        On two cores, two workers took 0.57 of one process's time with the 10-D default
        model (an 8-component mixture, closed-form gradients) and 0.96 with a torch density,
        whose own threads already use both cores (``benchmarks/bench_refine_workers.py``).
    return_info : bool, default=False
        Also return a dict of arrays of shape (B,): ``refined`` (whether the path was
        replaced, by the refinement or by the straight line), ``converged``, ``n_rounds``
        (rounds run), ``gain`` (the last round's relative gain), ``gradient_norm`` (of the
        relative length in relative coordinates at the end of the last round),
        ``log_length`` and ``late_seconds`` (the wall time of the ``late_points`` round,
        shared evenly among the paths it ran on in their worker; 0 for the others).

    Returns
    -------
    paths : list of B ndarrays
        Each refined polyline, of shape (n_points, d) and evenly spaced; or the shorter of
        the input path itself and the straight line where refinement did not shorten it.
    lengths : ndarray of shape (B,)
        Their lengths under the metric.
    info : dict
        Only with ``return_info``.
    """
    best, info, n_rounds = _refine_all(
        metric, paths, n_points, 16, n_rounds, max_iter, method, tol, straight_start, device,
        progress, late_points, n_jobs,
    )
    late = ~info["converged"]
    _warn_unconverged("refine_paths", int(late.sum()), len(late),
                      float(np.abs(info["gain"][late]).max(initial=0.0)), n_rounds, tol,
                      late_points=late_points if info["late_seconds"].any() else None)
    with np.errstate(over="ignore"):
        lengths = np.exp(info["log_length"])  # inf beyond float64: log_length holds it
    return (best, lengths, info) if return_info else (best, lengths)


def check_refine_options(options: dict) -> None:
    """Check the values of :func:`refine_paths` options (a ``refine=`` dict without its
    ``curve``) before any work: the same checks and errors as :func:`refine_paths` itself.
    """
    unknown = sorted(set(options) - set(REFINE_OPTIONS))
    if unknown:
        raise TypeError(f"unknown refinement options {unknown}; expected {list(REFINE_OPTIONS)}.")
    for name, minimum in (("n_points", 3), ("n_rounds", 1), ("max_iter", 1), ("late_points", 4)):
        if options.get(name) is not None:
            check_int(options[name], name, minimum=minimum)
    if "tol" in options:
        check_positive(options["tol"], "tol")
    _check_method(options.get("method", "auto"))


def _check_method(method) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")


def _warn_unconverged(caller: str, n_late: int, n_paths: int, change: float, n_rounds: int,
                      tol: float, stacklevel: int = 3, late_points: int | None = None) -> None:
    """The :class:`~sklearn.exceptions.ConvergenceWarning` of a refinement where ``n_late``
    of ``n_paths`` paths still changed by more than ``tol`` (at most ``change``, relative)
    in their last round when the rounds ran out (with ``late_points``, also the rounds at
    that many points); none if ``n_late`` is 0."""
    if n_late:
        rounds = f"{n_rounds} rounds" + (f" and one more at {late_points} points"
                                         if late_points else "")
        warnings.warn(
            f"{caller}: {n_late} of {n_paths} paths did not converge in {rounds}: "
            f"the last round still changed their length by a fraction up to {change:.2g} "
            f"(tol={tol:g}). Raise n_rounds"
            + ("" if late_points else ", continue them at more points (late_points)")
            + ", or use fewer n_points.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def _refine_all(
    metric, paths, n_points, min_points, n_rounds, max_iter, method, tol, straight_start, device,
    progress, late_points=None, n_jobs=None,
):
    """:func:`refine_paths` without its warning: the checks, then the rounds (``n_points``
    defaults to ``max(longest path, min_points)``), then the late paths' rounds at
    ``late_points``; in ``n_jobs`` joblib workers where the batch is large enough
    (:data:`PATHS_PER_WORKER`) and ``device`` is None.

    Returns
    -------
    best : list of ndarray
    info : dict of ndarray
    n_rounds : int
        The resolved most rounds.
    """
    if isinstance(paths, np.ndarray) and paths.ndim == 3:
        paths = list(paths)
    if len(paths) == 0:
        raise ValueError("paths is empty; pass at least one path.")
    P0 = _check_paths(paths)
    d = P0[0].shape[1]
    for b, p in enumerate(P0):
        if len(p) < 2:
            raise ValueError(f"a path needs at least 2 points, got {len(p)} in paths[{b}].")
        if p.shape[1] != d:
            raise ValueError(f"paths[{b}] has {p.shape[1]} features, paths[0] has {d}.")
    longest = max(len(p) for p in P0)
    check_refine_options({"n_points": n_points, "n_rounds": n_rounds, "max_iter": max_iter,
                          "tol": tol, "late_points": late_points})
    n_points = max(longest, min_points) if n_points is None else int(n_points)
    n_rounds = max(20, n_points // 2) if n_rounds is None else int(n_rounds)
    max_iter = max(30, n_points // 2) if max_iter is None else int(max_iter)
    gradients = _gradient_function(metric, method, device)
    B = len(P0)
    workers = 1 if device is not None else min(effective_n_jobs(n_jobs), B // PATHS_PER_WORKER)
    if workers > 1:
        return _refine_in_workers(
            metric, P0, workers, n_jobs, (n_points, min_points, n_rounds, max_iter, method, tol,
                                          straight_start, None, False, late_points), progress,
        )
    info = {
        "refined": np.zeros(B, dtype=bool),
        "converged": np.ones(B, dtype=bool),
        "n_rounds": np.zeros(B, dtype=np.int64),
        "gain": np.zeros(B),
        "gradient_norm": np.zeros(B),
        "log_length": _ragged_log_lengths(metric, P0),
        "late_seconds": np.zeros(B),
    }
    straight = np.zeros(B, dtype=bool)
    if straight_start:
        straight = _take_shorter_straight_lines(metric, P0, info["log_length"], n_points)
    best = list(P0)
    scale = _ragged_euclidean_lengths(P0)
    todo = np.flatnonzero(np.isfinite(info["log_length"]) & (scale > 0))  # else points
    # L-BFGS keeps 2 * 8 curvature vectors per path, beside the points and their gradients
    per_path = chunk_rows(24 * n_points * d * 8, max_rows=len(todo)) if todo.size else 1
    for s in range(0, todo.size, per_path):  # memory-bounded blocks of paths
        block = todo[s : s + per_path]
        _refine_batch(
            metric, [P0[b] for b in block], block, scale[block], gradients, n_points,
            n_rounds, max_iter, tol, progress, best, info,
        )
    late = todo[~info["converged"][todo]]
    if late_points is not None and late_points > n_points and late.size:  # still moving
        start = time.perf_counter()
        coarse = _late_round_metric(metric, n_points, int(late_points))
        if coarse is not metric:
            gradients = _gradient_function(coarse, method, device)
        refined, rounds = info["refined"].copy(), info["n_rounds"].copy()
        info["n_rounds"][late] = 0  # a path that resampling takes off the domain is skipped
        per_path = chunk_rows(24 * late_points * d * 8, max_rows=len(late))
        for s in range(0, late.size, per_path):
            block = late[s : s + per_path]
            _refine_batch(
                metric, [best[b] for b in block], block, scale[block], gradients,
                int(late_points), 1, 3 * max_iter, tol, progress, best, info,
            )
        info["refined"] |= refined
        info["n_rounds"][late] += rounds[late]
        info["late_seconds"][late] = (time.perf_counter() - start) / late.size
    info["refined"] |= straight
    return best, info, n_rounds


def _late_round_metric(metric, n_points: int, late_points: int):
    """The metric whose lengths the ``late_points`` round minimises: ``metric`` with the
    fewest nodes per segment that keep the nodes along a path at least as dense as in the
    rounds at ``n_points`` (8 points at ``n_quad = 8``, 49 intervals: 32 points at 3 nodes,
    62). Only the minimisation uses it; the lengths it keeps and reports are ``metric``'s
    own, so a coarser objective can cost accuracy, never a length below the curve's. On
    the default model's 10-D paths (:data:`ALL_PAIRS_REFINE`), 24 points at 4 nodes took
    the late round from 4.6-5.2 s to 2.3-2.9 s (1 800 paths), with a median / 95th
    percentile of 0.33 % / 1.77 % above a heavy refinement instead of 0.30 % / 1.67 %.
    """
    n_quad = getattr(metric, "n_quad", None)
    if n_quad is None:
        return metric
    nodes = max(2, 1 + -(-(n_points - 1) * (n_quad - 1) // (late_points - 1)))
    if nodes >= n_quad:
        return metric
    try:
        return metric.with_nodes(nodes)
    except NotImplementedError:  # a metric that cannot change its nodes
        return metric


def _refine_in_workers(metric, paths: list, workers: int, n_jobs, options: tuple, progress):
    """:func:`_refine_all` (with ``options``, its arguments after ``paths``) on ``workers``
    interleaved shares of ``paths`` (the paths of a graph's row differ in length and in
    rounds, so every share gets some of each) in joblib workers: every share carries the
    metric (with its model), so any joblib backend runs them. The paths are independent
    (each runs its own L-BFGS), so the results are those of one batch up to rounding (the
    model calls hold other points)."""
    shares = [np.arange(w, len(paths), workers) for w in range(workers)]
    best, info = [None] * len(paths), {}
    bar = progress_bar(total=len(paths), desc="refining paths", progress=progress)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_refine_all)(metric, [paths[i] for i in share], *options) for share in shares
    )
    for share, (share_best, share_info, _) in zip(shares, results):
        for i, path in zip(share, share_best):
            best[i] = path
        for key, values in share_info.items():
            info.setdefault(key, np.empty(len(paths), dtype=values.dtype))[share] = values
        bar.update(len(share))
    bar.close()
    return best, info, options[2]


def _check_paths(paths) -> list[np.ndarray]:
    """The paths as checked float64 arrays: one check of all their points where they are 2-D
    arrays of one width (thousands of graph paths), path by path otherwise or to name the
    path that fails."""
    if all(isinstance(p, np.ndarray) and p.ndim == 2 for p in paths) and (
        len({p.shape[1] for p in paths}) == 1
    ):
        try:
            flat = check_points(np.concatenate(paths), "paths")
        except ValueError:
            pass
        else:
            return np.split(flat, np.cumsum([len(p) for p in paths])[:-1])
    return [check_points(p, f"paths[{b}]") for b, p in enumerate(paths)]


def _take_shorter_straight_lines(metric, paths: list, log_lengths: np.ndarray, n_points: int):
    """Replace each path by the straight line between its ends (``n_points`` evenly spaced
    points) where that line is shorter under the metric; updates both in place.

    A graph path follows the data, which is the right basin where the data are dense, but
    where the metric is cheap across a gap or fold (a decoder's pullback metric between two
    arms of a folded manifold) the straight line is shorter, and refinement started from the
    graph path would stay in the longer basin. A line that leaves the density's domain
    measures +inf and is not taken.

    Returns
    -------
    taken : ndarray of shape (B,), bool
        Where the straight line replaced the path.
    """
    taken = np.zeros(len(paths), dtype=bool)
    ends = np.stack([p[[0, -1]] for p in paths])
    apart = np.flatnonzero(np.any(ends[:, 0] != ends[:, 1], axis=1))
    if not apart.size:
        return taken
    t = np.linspace(0.0, 1.0, n_points)[None, :, None]
    lines = ends[apart, :1] + t * (ends[apart, 1:] - ends[apart, :1])
    lines[:, -1] = ends[apart, 1]  # the end exactly, not up to rounding
    line_log = _refusals_as_inf(metric.log_polyline_lengths, _refused_length)(lines)
    for j in np.flatnonzero(line_log < log_lengths[apart]):
        paths[apart[j]] = lines[j]
        log_lengths[apart[j]] = line_log[j]
        taken[apart[j]] = True
    return taken


def _two_loop(g, S, Y, rho, head, count, rows, precondition=None, initial=None):
    """L-BFGS's two-loop recursion, row by row: ``H g`` for the rows ``g`` (b, n) of the
    functions ``rows``, each from its own curvature pairs in the rings ``S``, ``Y`` (B, H, n),
    ``rho`` (B, H) (``count[r]`` valid, the newest in slot ``head[r]``), read in place by
    compiled loops (:func:`gendist._numba.lbfgs_first_loop`).

    ``precondition`` (``(b, n) -> (b, n)``, symmetric positive definite, default the identity)
    is the shape of the initial inverse Hessian ``H0 = gamma M``; ``gamma`` is the usual
    ``s.y / y.M y`` of the newest pair, else ``initial`` (shape (b,), default 1)."""
    from ._numba import lbfgs_first_loop, lbfgs_second_loop  # numba where it is used

    precondition = precondition or (lambda v: v)
    q, alpha = g.copy(), np.empty((len(g), S.shape[1]))
    lbfgs_first_loop(q, S, Y, rho, head, count, rows, alpha)
    gamma = np.ones(len(g)) if initial is None else initial
    held = count[rows] > 0
    if held.any():
        y, s = Y[rows, head[rows]], S[rows, head[rows]]
        yy = np.einsum("bn,bn->b", y, precondition(y))
        sy = np.einsum("bn,bn->b", s, y)
        gamma = np.where(held, sy / np.where(yy > 0, yy, 1.0), gamma)
    z = gamma[:, None] * precondition(q)
    lbfgs_second_loop(z, S, Y, rho, head, count, rows, alpha)
    return z


def _batched_lbfgs(fun, x0, max_iter: int, history: int = 8, gtol: float = 1e-5,
                   ftol: float = 2.2e-9, precondition=None, initial: float | None = None):
    """Minimise B independent functions of n variables at once, each by its own L-BFGS.

    ``fun(x, rows) -> (f, g)`` evaluates the functions ``rows`` at the points ``x`` (shapes
    (b, n) -> (b,), (b, n)), so that every evaluation holds all the rows still moving. Each
    row has its own curvature pairs and its own backtracking (Armijo) line search, and stops
    at ``gtol`` (largest gradient entry) or ``ftol`` (relative decrease), as scipy's
    L-BFGS-B does. scipy's and torch's L-BFGS minimise one function: on the sum of B
    independent ones they share each step and each curvature pair between the rows, which
    slowed the paths of a batch by orders of magnitude against one at a time.

    ``precondition`` (``(b, n) -> (b, n)``, symmetric positive definite) shapes the initial
    inverse Hessian, and ``initial`` is its scale before a row has curvature pairs: the first
    step is then ``-initial * precondition(g)`` at full length, not at most 1 long.

    The line search's trial points and bookkeeping run in compiled passes
    (:func:`gendist._numba.lbfgs_trial_points`, :func:`gendist._numba.lbfgs_accept`), where
    numpy's gathers and scatters of (b, n) arrays took a fifth of the samples of the default
    model's refinement (10-D, 300 points; thread time 6.5-7.0 -> 6.2-6.5 s for 40 rows).

    Returns
    -------
    x : ndarray of shape (B, n)
    g : ndarray of shape (B, n)
        The gradients there.
    """
    from ._numba import lbfgs_accept, lbfgs_trial_points  # numba is imported where it is used

    x = x0.copy()
    B, n = x.shape
    f, g = fun(x, np.arange(B))
    f, g = np.array(f, dtype=np.float64), np.array(g, dtype=np.float64)  # updated in place
    # each row's curvature pairs in a ring of ``history`` slots, the newest at ``head``: a
    # new pair overwrites one slot instead of shifting the row's history
    S, Y = np.zeros((B, history, n)), np.zeros((B, history, n))
    rho, count = np.zeros((B, history)), np.zeros(B, dtype=np.int64)
    head = np.zeros(B, dtype=np.int64)
    active = np.flatnonzero(np.abs(g).max(axis=1) > gtol)
    for _ in range(max_iter):
        if not active.size:
            break
        ga = g[active]
        start = None if initial is None else np.full(len(active), initial)
        d = -_two_loop(ga, S, Y, rho, head, count, active, precondition, start)
        slope = np.einsum("bn,bn->b", ga, d)
        uphill = ~(slope < 0)  # lost curvature information: steepest descent, history reset
        if uphill.any():  # the initial inverse Hessian alone: H0 g
            scale = 1.0 if start is None else start[uphill, None]
            steepest = -scale * (ga[uphill] if precondition is None else precondition(ga[uphill]))
            d[uphill], slope[uphill] = steepest, np.einsum("bn,bn->b", ga[uphill], steepest)
        count[active[uphill]] = 0
        # the first step of a row without history: with a preconditioner at its scale,
        # else at most 1 long, as in scipy
        first = 1.0 if initial is not None else np.minimum(1.0, 1.0 / np.linalg.norm(ga, axis=1))
        t = np.where(count[active] > 0, 1.0, first)
        pending, moved = np.arange(len(active)), np.zeros(len(active), dtype=bool)
        for _ in range(30):  # backtracking: halve the step of each row that did not descend
            rows = active[pending]
            xt = np.empty((len(rows), n))
            lbfgs_trial_points(x, d, t, rows, pending, xt)
            ft, gt = fun(xt, rows)
            ok = np.empty(len(rows), dtype=bool)
            lbfgs_accept(x, f, g, xt, np.asarray(ft, dtype=np.float64),
                         np.ascontiguousarray(gt, dtype=np.float64), rows, pending, t, slope,
                         S, Y, rho, head, count, ftol, gtol, moved, ok)
            pending = pending[~ok]
            t[pending] *= 0.5
            if not pending.size:
                break
        active = active[moved]  # rows that converged or found no descent stop here
    return x, g


def _curve_preconditioner(n_inner: int, d: int):
    """The inverse of the second-difference matrix ``tridiag(-1, 2, -1)`` over a polyline's
    ``n_inner`` interior points, applied to each coordinate: ``(b, n_inner * d)`` arrays.

    Bending an evenly spaced polyline of ``m`` points (Euclidean length 1, factor ``h``)
    costs ``h (m - 1) u.T T u / 2`` to second order for a normal displacement ``u``: the
    length's Hessian is ``h (m - 1) T`` whatever the metric's smooth part, so ``T^-1``
    removes the ``m^2`` spread of its eigenvalues (the H^1, Sobolev, gradient of curve
    shortening) and L-BFGS starts at the right scale ``1 / (m - 1)``. The inverse is
    applied by numpy's batched matmul (one small product per path: 3-7 times faster than
    the einsum it replaced, which was a tenth of the default model's refinement time; two
    running sums, an O(n) solve, were slower at these sizes)."""
    T = 2.0 * np.eye(n_inner) - np.eye(n_inner, k=1) - np.eye(n_inner, k=-1)
    inverse = np.linalg.inv(T)

    def precondition(v):
        return np.matmul(inverse, v.reshape(len(v), n_inner, d)).reshape(v.shape)

    return precondition


def _refine_batch(
    metric, starts, index, scale, gradients, n_points, n_rounds, max_iter, tol, progress,
    best, info,
):
    """The rounds of :func:`refine_paths` on the paths ``starts`` (positive lengths, Euclidean
    lengths ``scale``), which are paths ``index`` of the batch; updates ``best`` and ``info``
    in place."""
    log_start = info["log_length"][index].copy()
    P = _ragged_resample(starts, n_points)
    log_lengths_of = _refusals_as_inf(metric.log_polyline_lengths, _refused_length)
    previous = log_lengths_of(P)
    improved = previous < log_start
    for a in np.flatnonzero(improved):  # resampling alone already shortened the path
        best[index[a]] = P[a].copy()
    best_log = np.minimum(previous, log_start)
    active = np.flatnonzero(np.isfinite(previous))  # resampling may leave the domain
    stale = np.zeros(len(starts), dtype=np.int64)  # rounds in a row without a new best
    info["converged"][index[active]] = False
    inner = (n_points - 2, P.shape[2])
    precondition = _curve_preconditioner(*inner)
    for rounds in progress_bar(range(1, n_rounds + 1), desc="refining", progress=progress):
        A = len(active)
        origin, sc, base = P[active, :1], scale[active, None, None], log_start[active]
        ends = (P[active][:, [0, -1]] - origin) / sc

        def objective(u, rows, origin=origin, sc=sc, base=base, ends=ends):
            full = origin[rows] + sc[rows] * np.concatenate(
                [ends[rows, :1], u.reshape(len(rows), *inner), ends[rows, 1:]], axis=1
            )
            log_lengths, grads = gradients(full)
            value = np.exp(log_lengths - base[rows])  # each relative to its starting path
            weight = np.where(np.isfinite(value), value, 0.0)  # inf: refused, stepped back
            grads = (weight[:, None, None] * sc[rows]) * grads[:, 1:-1]
            return value, grads.reshape(len(rows), -1)

        u, jac = _batched_lbfgs(
            objective, ((P[active, 1:-1] - origin) / sc).reshape(A, -1), max_iter,
            precondition=precondition, initial=1.0 / (n_points - 1),
        )
        moved = origin + sc * u.reshape(A, *inner)
        P[active] = resample_polylines(np.concatenate([P[active, :1], moved, P[active, -1:]], 1),
                                       n_points)
        log_lengths = log_lengths_of(P[active])
        for a in np.flatnonzero(log_lengths < best_log[active]):
            best[index[active[a]]] = P[active[a]].copy()
        gain = -np.expm1(log_lengths - previous[active])  # this round's relative gain
        # stale: neither a new best nor shorter than the last round. A path resampled to
        # fewer points than its graph path can start longer than it and gain for several
        # rounds before it passes it: those rounds are progress.
        new_best = -np.expm1(log_lengths - best_log[active]) > tol
        stale[active] = np.where(new_best | (gain > tol), 0, stale[active] + 1)
        best_log[active] = np.minimum(best_log[active], log_lengths)
        previous[active] = log_lengths
        rows = index[active]
        info["n_rounds"][rows] = rounds
        info["gain"][rows] = gain
        info["gradient_norm"][rows] = np.linalg.norm(jac, axis=1)
        # done: this round changed the length by (almost) nothing, or two rounds in a row
        # found nothing shorter (optimising and resampling evenly undo each other)
        done = ~(np.abs(gain) > tol) | (stale[active] >= 2)
        info["converged"][rows[done]] = True
        active = active[~done]
        if not active.size:
            break
    info["refined"][index] = best_log < log_start
    info["log_length"][index] = best_log


def refine_path(
    metric,
    points,
    *,
    n_points: int | None = None,
    n_rounds: int | None = None,
    max_iter: int | None = None,
    method: str = "auto",
    tol: float = 1e-6,
    straight_start: bool = True,
    progress: bool = False,
    return_info: bool = False,
    late_points: int | None = None,
):
    """Shorten one path under the metric by moving its interior points (endpoints fixed):
    :func:`refine_paths` on a batch of one.

    The objective is the length relative to the starting path's, over coordinates relative
    to its Euclidean length, so the optimiser's (absolute) stopping tests mean the same at
    any scale of lengths and coordinates; lengths are summed in log space.

    Parameters
    ----------
    metric : SegmentMetric
        See :func:`refine_paths`.
    points : array-like of shape (k, d)
        The starting polyline, typically a graph geodesic's ``points``.
    n_points : int, optional
        Points of the refined polyline (>= 3); default ``max(k, 32)``.
    n_rounds, max_iter, method, tol, straight_start, progress
        See :func:`refine_paths`.
    late_points : int, optional
        As in :func:`refine_paths`: if the rounds run out before the path converges, one
        more round at this many points.
    return_info : bool, default=False
        Also return a dict: ``refined`` (bool: the path was replaced), ``converged`` (bool),
        ``n_rounds`` (rounds run), ``gain`` (the last round's relative gain),
        ``gradient_norm`` and ``log_length``.

    Returns
    -------
    points : ndarray of shape (n_points, d)
        The refined polyline, evenly spaced; or the shorter of the input itself and the
        straight line when refinement did not shorten either, so the result is never longer
        than the input (nor, with ``straight_start``, than the straight line) under the
        metric.
    length : float
        Its length under the metric.
    info : dict
        Only with ``return_info``.
    """
    best, info, n_rounds = _refine_all(
        metric, [points], n_points, 32, n_rounds, max_iter, method, tol, straight_start, None,
        progress, late_points,
    )
    one = {key: value[0].item() for key, value in info.items()}
    if not one["converged"]:
        warnings.warn(
            f"refine_path did not converge in {n_rounds} rounds: the last round still "
            f"shortened the path by a fraction {one['gain']:.2g} (tol={tol:g}). Raise "
            "n_rounds, or use fewer n_points.",
            ConvergenceWarning,
            stacklevel=2,
        )
    with np.errstate(over="ignore"):
        length = float(np.exp(one["log_length"]))
    return (best[0], length, one) if return_info else (best[0], length)
