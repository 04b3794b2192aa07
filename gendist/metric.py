"""Segment metrics: the one protocol the graph engine weights edges with, and the conformal
(generative) metric.

A *segment metric* measures straight segments ``A[e] -> B[e]`` (numpy arrays, or torch tensors
on any device, with or without autograd) with one quadrature: :class:`SegmentMetric` gives
every metric its chunked, parallel, device-aware edge weights and its curve lengths, so that
a metric only says how to measure one block of segments. :class:`ConformalMetric` (here) and
:class:`gendist.latent.PullbackMetric` (a decoder's pullback) implement it.

The conformal length factor is ``h(x) = ((p0 + lam) / (p(x) + lam)) ** beta``, so that the
length of a curve gamma is ``L(gamma) = integral of h(gamma(t)) |gamma'(t)| dt``. Everything
is computed in log space: ``log h = beta * (logaddexp(log p0, log lam) - logaddexp(log p,
log lam))``, which stays exact where ``p`` itself under- or overflows (a 784-dimensional
density, say).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, replace

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from ._compute import (
    _SAFE_SQUARES,
    chunk_rows,
    get_namespace,
    iter_chunks,
    log_segment_norms,
    progress_bar,
    row_norms,
    segment_nodes,
    to_numpy,
)
from ._validation import check_int, check_log_density_values, check_positive
from .densities import Density, evaluate_log_density

__all__ = [
    "SegmentMetric",
    "ConformalMetric",
    "resolve_lambda",
    "log_length_factor",
    "log_largest_factor",
    "log_factor_ratio",
]

#: fewest edges per chunk sent to a joblib worker
_MIN_PARALLEL_CHUNK = 20_000

#: below this, a sum of factors relative to the largest may have lost terms to exp's underflow
#: (results below exp(-708) are flushed to zero, see gendist._compute.exp_in_place), each by
#: less than exp(-40) of the sum; the sum is then taken in log space
_LOG_UNDERFLOW = -668.0

_QUANTILE = re.compile(r"^quantile:\s*([0-9.eE+-]+)$")


def check_lambda(lam):
    """Check a ``lam`` argument before any work.

    Parameters
    ----------
    lam : float or str
        A positive number, or ``"quantile:q"`` with ``0 < q < 1`` (see :func:`resolve_lambda`).

    Returns
    -------
    lam : float or str
        The number as a float, or the quantile q as a float in a tuple ``("quantile", q)``.
    """
    if isinstance(lam, str):
        match = _QUANTILE.match(lam.strip())
        if match is None:
            raise ValueError(
                f"lam must be a positive number or 'quantile:q' with 0<q<1; got {lam!r}."
            )
        q = float(match.group(1))
        if not 0.0 < q < 1.0:
            raise ValueError(f"the quantile in lam={lam!r} must lie strictly between 0 and 1.")
        return ("quantile", q)
    return check_positive(lam, "lam")


def resolve_lambda(lam, log_p: np.ndarray | None = None) -> float:
    """Return ``log(lambda)`` from an absolute value or a quantile of the density.

    Parameters
    ----------
    lam : float or str
        A positive number (an absolute density value, in the units of ``p``), or
        ``"quantile:q"`` with ``0 < q < 1``: lambda is the q-quantile of ``p`` over the points
        whose log-densities are ``log_p`` (computed on ``log p``, which has the same quantiles).
        A quantile is the way to set lambda in high dimension, where nobody can guess the
        scale of ``p`` (log p of an MNIST digit is in the thousands).
    log_p : ndarray of shape (n,), optional
        Log-densities of the graph's vertices; required for a quantile.

    Returns
    -------
    log_lam : float
    """
    checked = check_lambda(lam)
    if not isinstance(checked, tuple):
        return math.log(checked)
    q = checked[1]
    if log_p is None or len(log_p) == 0:
        raise ValueError("lam given as a quantile needs the log-densities of the vertices.")
    with np.errstate(invalid="ignore"):  # -inf entries (p = 0) are valid
        log_lam = float(np.quantile(log_p, q))
    if not np.isfinite(log_lam):
        raise ValueError(
            f"lam={lam!r} resolved to p = 0: at least a fraction {q} of the vertices have zero "
            "density. Give lam as a positive number, or a larger quantile."
        )
    return log_lam


def log_largest_factor(log_lam: float, beta: float = 1.0, p0: float = 0.0) -> float:
    """``log h`` where ``p = 0``: ``beta * (log(p0 + lam) - log(lam))``, the largest value of
    ``log h`` (0 for ``p0 = 0``)."""
    log_p0 = math.log(p0) if p0 > 0 else -math.inf
    return beta * (float(np.logaddexp(log_p0, log_lam)) - log_lam)


def log_factor_ratio(log_p, log_lam: float, beta: float = 1.0):
    """``log(h(x) / h_max) = -beta * softplus(log p(x) - log lam)`` (<= 0), with ``h_max``
    the factor where ``p = 0`` (:func:`log_largest_factor`); numpy arrays or torch tensors.

    Parameters
    ----------
    log_p : array of shape (...)
        Natural log-densities (``-inf`` allowed, giving 0).
    log_lam : float
        ``log(lambda)``.
    beta : float
        Exponent (> 0).

    Returns
    -------
    log_ratio : array of the shape of ``log_p``
    """
    ratio = get_namespace(log_p).softplus(log_p - log_lam)
    ratio *= -beta  # in place: a fresh array, which autograd does not keep
    return ratio


def log_length_factor(log_p, log_lam: float, beta: float = 1.0, p0: float = 0.0):
    """``log h(x)`` from ``log p(x)``; works on numpy arrays and torch tensors alike.

    ``log h = beta * (logaddexp(log p0, log lam) - logaddexp(log p, log lam))``, computed as
    :func:`log_largest_factor` plus :func:`log_factor_ratio`.

    Parameters
    ----------
    log_p : array of shape (...)
        Natural log-densities (``-inf`` allowed).
    log_lam : float
        ``log(lambda)``.
    beta : float
        Exponent (> 0).
    p0 : float
        Reference density (>= 0) where the metric is exactly Euclidean.

    Returns
    -------
    log_h : array of the shape of ``log_p``
    """
    return log_factor_ratio(log_p, log_lam, beta) + log_largest_factor(log_lam, beta, p0)


def trapezoid_log_weights(n_quad: int) -> np.ndarray:
    """Log of the equispaced trapezoidal weights on ``n_quad`` nodes of [0, 1] (they sum to 1)."""
    n_quad = check_int(n_quad, "n_quad", minimum=2)
    w = np.full(n_quad, 1.0 / (n_quad - 1))
    w[[0, -1]] *= 0.5
    return np.log(w)


def _ends_first_log_weights(n_quad: int) -> np.ndarray:
    """:func:`trapezoid_log_weights` in the node order of the segment quadrature: both ends,
    then the interior nodes."""
    log_w = trapezoid_log_weights(n_quad)
    return np.concatenate([log_w[[0, -1]], log_w[1:-1]])


class SegmentMetric:
    """The protocol of the metrics that weight graph edges, with its shared implementations.

    A subclass sets ``n_quad`` (nodes per segment), ``batch_size`` (points per model call)
    and ``chunk_bytes`` (None: the chunk rule of :mod:`gendist._compute`), and implements
    :meth:`_segment_log_lengths` for one block of segments, on numpy arrays or torch tensors.
    It may override :meth:`vertex_values` to evaluate something once per vertex that every
    edge at that vertex reuses (the conformal metric's ``log p``), and ``differentiable``
    when lengths of torch tensors can be differentiated by autograd.
    """

    n_quad: int
    batch_size: int
    chunk_bytes: int | None

    @property
    def differentiable(self) -> bool:
        """Whether lengths of torch tensors can be differentiated by autograd."""
        return False

    @property
    def has_gradients(self) -> bool:
        """Whether :meth:`log_polyline_lengths_and_gradients` is available (closed form)."""
        return False

    def log_polyline_lengths_and_gradients(self, P):
        """Log-lengths of a batch of polylines and their gradients, in closed form.

        Parameters
        ----------
        P : ndarray of shape (B, m, d)

        Returns
        -------
        log_length : ndarray of shape (B,)
        gradient : ndarray of shape (B, m, d)
            ``d log L / d P``; zero for a polyline of zero length.
        """
        raise TypeError(f"{type(self).__name__} has no closed-form length gradient.")

    def vertex_values(self, X, progress: bool = False):
        """Values at points that segments starting or ending there reuse (None: nothing).

        Parameters
        ----------
        X : array of shape (n, d)
        progress : bool
            Show a progress bar.
        """
        return None

    def _segment_log_lengths(self, A, B, values_A, values_B):
        """Log-lengths of one block of segments ``A[e] -> B[e]``; -inf for zero length."""
        raise NotImplementedError

    def _nodes_per_segment(self) -> int:
        """Model evaluations per segment."""
        return self.n_quad

    def _segments_per_chunk(self, n_features: int, device=None) -> int:
        """Segments per block: memory (nodes, model temporaries) and ``batch_size`` bound it."""
        nodes = max(1, self._nodes_per_segment())
        rows = chunk_rows(4 * nodes * n_features * 8, device=device, budget=self.chunk_bytes)
        return max(1, min(rows, self.batch_size // nodes))

    def log_segment_lengths(self, A, B, values_A=None, values_B=None):
        """Log-length of the straight segments ``A[e] -> B[e]`` under the metric.

        Parameters
        ----------
        A, B : array of shape (E, d)
            Segment ends: numpy arrays, or torch tensors (on any device; autograd passes
            through when the metric is ``differentiable``).
        values_A, values_B : array of shape (E,), optional
            :meth:`vertex_values` of the ends when they are known already.

        Returns
        -------
        log_length : array of shape (E,)
            ``-inf`` for zero-length segments.
        """
        xp = get_namespace(A, B)
        if xp.name == "numpy":
            A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
        E, d = A.shape
        step = self._segments_per_chunk(d, getattr(A, "device", None))
        if E <= step:
            return self._segment_log_lengths(A, B, values_A, values_B)

        def part(values, s):
            return None if values is None else values[s : s + step]

        return xp.concatenate(
            [
                self._segment_log_lengths(
                    A[s : s + step], B[s : s + step], part(values_A, s), part(values_B, s)
                )
                for s in range(0, E, step)
            ]
        )

    def log_polyline_lengths(self, P):
        """Log-lengths of a batch of polylines of equal point count, every point evaluated once.

        Parameters
        ----------
        P : array of shape (B, m, d)
            ``B`` polylines of ``m`` points: a numpy array, or a float64 torch tensor (autograd
            passes through when the metric is ``differentiable``).

        Returns
        -------
        log_length : array of shape (B,)
            Summed in log space, so exact where the lengths under- or overflow; -inf for
            ``m < 2`` or a polyline of zero length.
        """
        xp = get_namespace(P)
        if xp.name == "numpy":
            P = np.asarray(P, dtype=np.float64)
        B, m, d = P.shape
        if m < 2:
            return np.full(B, -np.inf) if xp.name == "numpy" else P.new_full((B,), -np.inf)
        flat = P.reshape(B * m, d)
        values = self.vertex_values(flat)
        tails = (np.arange(B)[:, None] * m + np.arange(m - 1)).ravel()
        ends = (None, None) if values is None else (values[tails], values[tails + 1])
        log_lengths = self.log_segment_lengths(flat[tails], flat[tails + 1], *ends)
        return xp.logsumexp(log_lengths.reshape(B, m - 1), axis=1)

    def log_curve_length(self, points) -> float:
        """Log-length of the polyline through ``points`` (shape (k, d)); -inf for k < 2.

        Summed in log space, so it stays exact where the length itself under- or overflows.
        """
        points = np.asarray(points, dtype=np.float64)
        return float(self.log_polyline_lengths(points[None])[0])

    def curve_length(self, points) -> float:
        """Length of the polyline through ``points`` (shape (k, d)) under the metric."""
        with np.errstate(over="ignore"):
            return float(np.exp(self.log_curve_length(points)))

    def with_nodes(self, n_quad: int) -> SegmentMetric:
        """The same metric with ``n_quad`` nodes per segment."""
        raise NotImplementedError

    def quadrature_error(
        self, X, rows, cols, values, log_weights, n_check: int = 256, tol: float = 0.05
    ) -> float:
        """Spot check of the edge quadrature: how much a sample of edges moves at 2 n_quad.

        ``n_check`` edges drawn at random (seed 0) are measured again with ``2 n_quad - 1``
        nodes (the same nodes and one between each pair); the error of the rule is about
        4/3 of the change. Shortest paths seek out the edges that the rule makes too short,
        so where at least 1 % of the sampled edges come out longer by more than ``tol``
        (relative) with the finer rule, a warning says so: h varies within one edge (a
        sharp density, a large beta). Raise ``n_quad``, or use a graph with shorter edges.

        Returns
        -------
        change : float
            The largest relative change over the sample (0.0 without edges).
        """
        positive = np.flatnonzero(np.isfinite(log_weights))
        if positive.size == 0:
            return 0.0
        sample = np.random.default_rng(0).choice(
            positive, size=min(n_check, positive.size), replace=False
        )
        r, c = rows[sample], cols[sample]
        pick = (None, None) if values is None else (values[r], values[c])
        finer = self.with_nodes(2 * self.n_quad - 1).log_segment_lengths(X[r], X[c], *pick)
        relative = np.expm1(finer - log_weights[sample])
        too_short = relative > tol
        if too_short.sum() >= max(1, 0.01 * len(sample)):
            warnings.warn(
                f"the quadrature of the edge lengths is coarse for this metric: with "
                f"{2 * self.n_quad - 1} nodes instead of n_quad={self.n_quad}, "
                f"{too_short.mean():.0%} of {len(sample)} sampled edges come out longer by "
                f"more than {tol:.0%} (up to {relative.max():.1%}). The metric varies within "
                "one edge (a sharp density or a large beta; a fast-changing decoder), and "
                "shortest paths take the edges the rule makes too short: raise n_quad (the "
                "error falls like 1 / n_quad**2) or shorten the edges (smaller radius or "
                "n_neighbors).",
                UserWarning,
                stacklevel=3,
            )
        return float(np.max(np.abs(relative)))

    def _require_differentiable(self):
        if not self.differentiable:
            model = getattr(self, "density", getattr(self, "decoder", self))
            raise TypeError(
                f"{type(model).__name__} cannot evaluate torch tensors; compute the edge "
                "weights with numpy (device=None), or pass a torch model."
            )

    def edge_log_weights(
        self,
        X,
        rows: np.ndarray,
        cols: np.ndarray,
        values=None,
        Y=None,
        values_Y=None,
        *,
        progress: bool = False,
        n_jobs: int | None = None,
        device=None,
    ) -> np.ndarray:
        """Log-lengths of the edges ``X[rows[e]] -> Y[cols[e]]``, in memory-bounded chunks.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            Vertices.
        rows, cols : ndarray of shape (E,), int
            Edge ends (indices into ``X`` and ``Y``).
        values : ndarray of shape (n,), optional
            :meth:`vertex_values` of every vertex, evaluated once and reused by every edge.
        Y, values_Y : optional
            A second point set for the edges' other ends (default: ``X``, ``values``).
        progress : bool
            Show a progress bar over chunks.
        n_jobs : int, optional
            Workers for the chunks, through joblib (default one: this process). Every chunk
            carries the metric (with its model) and its segments' ends, so any joblib
            backend runs them: processes (loky), a dask.distributed or Ray cluster under
            ``joblib.parallel_config``. Worth it for models that evaluate on one core
            (sklearn mixtures and KDE, Python callables); torch models already use threads.
            Ignored with ``device``.
        device : None, str or torch.device
            None: numpy. A torch device: the points, edges and vertex values move there
            once, the quadrature runs there chunk by chunk in float64 (chunks sized from the
            device's free memory, halved on out-of-memory), and only the log-weights come
            back; needs a ``differentiable`` metric.

        Returns
        -------
        log_weight : ndarray of shape (E,), float64
        """
        if Y is None:
            Y, values_Y = X, values
        E, d = len(rows), X.shape[1]
        out = np.empty(E)
        bar = progress_bar(total=E, desc="edge weights", progress=progress)
        if device is not None:
            self._require_differentiable()
            for s, e, res in self._device_chunks(X, rows, cols, values, Y, values_Y, device):
                out[s:e] = res
                bar.update(e - s)
            bar.close()
            return out
        step = self._segments_per_chunk(d)
        workers = effective_n_jobs(n_jobs)
        if workers > 1:  # a few chunks per worker, but not so small that transfers dominate
            step = min(step, max(_MIN_PARALLEL_CHUNK, -(-E // (4 * workers))))
        starts = range(0, E, step)

        def pick(values, index):  # np.take: many times faster than fancy indexing of rows
            return None if values is None else np.take(values, index, axis=0)

        chunks = (
            (
                pick(X, rows[s : s + step]),
                pick(Y, cols[s : s + step]),
                pick(values, rows[s : s + step]),
                pick(values_Y, cols[s : s + step]),
            )
            for s in starts
        )
        if workers > 1 and len(starts) > 1:
            results = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(self.log_segment_lengths)(*chunk) for chunk in chunks
            )
        else:
            results = (self.log_segment_lengths(*chunk) for chunk in chunks)
        for s, res in zip(starts, results):
            out[s : s + len(res)] = res
            bar.update(len(res))
        bar.close()
        return out

    def _device_chunks(self, X, rows, cols, values, Y, values_Y, device):
        """``(start, stop, log-weights)`` of the edges, computed with torch on ``device``."""
        import torch

        device = torch.device(device)

        def put(a, dtype=torch.float64):
            if a is None:
                return None
            a = np.asarray(a)
            a = a if a.flags.writeable else a.copy()  # torch shares only writeable memory
            return torch.as_tensor(a, dtype=dtype, device=device)

        Xt, Yt, vX, vY = put(X), put(Y), put(values), put(values_Y)
        rows_t, cols_t = put(rows, torch.int64), put(cols, torch.int64)

        def block(s, e):
            r, c = rows_t[s:e], cols_t[s:e]
            pick = (None, None) if vX is None else (vX[r], vY[c])
            return to_numpy(self._segment_log_lengths(Xt[r], Yt[c], *pick))

        nodes = max(1, self._nodes_per_segment())
        with torch.no_grad():
            yield from iter_chunks(
                block,
                len(rows),
                4 * nodes * X.shape[1] * 8,
                device=device,
                budget=self.chunk_bytes,
                max_rows=max(1, self.batch_size // nodes),
            )


@dataclass(frozen=True)
class ConformalMetric(SegmentMetric):
    """The generative metric ``h(x) = ((p0 + lam) / (p(x) + lam)) ** beta`` of a density.

    A segment's length is ``|B - A| * sum_k w_k h(A + t_k (B - A))`` with the equispaced
    trapezoidal rule on ``n_quad`` nodes (endpoints included), in log space:
    ``log L = log |B - A| + logsumexp_k (log w_k + log h(z_k))``. The endpoints' ``log p``
    (:meth:`vertex_values`) is evaluated once per vertex and reused by every edge.

    Parameters
    ----------
    density : Density
        A fitted density adapter (see :func:`gendist.densities.as_density`).
    log_lam : float
        ``log(lambda)`` (see :func:`resolve_lambda`).
    beta : float
        Exponent (> 0); 1 is the paper's metric.
    p0 : float
        Reference density (>= 0); the metric is Euclidean where ``p = p0``.
    n_quad : int
        Nodes of the equispaced trapezoidal rule along each segment (>= 2), endpoints included.
    chunk_bytes : int, optional
        Memory budget of the quadrature nodes held at once (default: scikit-learn's
        ``working_memory`` on the CPU, half the free memory on CUDA).
    batch_size : int
        Most points per call to the density.
    """

    density: Density
    log_lam: float
    beta: float = 1.0
    p0: float = 0.0
    n_quad: int = 8
    chunk_bytes: int | None = None
    batch_size: int = 65536

    @property
    def differentiable(self) -> bool:
        """Whether lengths can be differentiated by autograd (the density takes tensors)."""
        return bool(getattr(self.density, "differentiable", False))

    @property
    def has_gradients(self) -> bool:
        """Whether the density has a closed-form score (Gaussian mixtures)."""
        return bool(getattr(self.density, "has_score", False))

    def log_polyline_lengths_and_gradients(self, P):
        """Log-lengths of a batch of polylines and their gradients, from the density's score.

        The same quadrature as :meth:`log_polyline_lengths`, differentiated by hand: with
        ``pi_s`` segment s's share of the length, ``q_k`` node k's share of its segment's sum
        and ``sigma = p / (p + lam)``, node ``z = (1 - t) A + t B`` contributes
        ``-beta pi_s q_k sigma(z) score(z)`` to the gradient, split between A and B by
        ``1 - t`` and ``t``, and the segment's Euclidean length ``pi_s (B - A) / |B - A|^2``.
        One call to ``log_prob_and_score`` per point: a third of autograd's time (10-D,
        8-component mixture, 2 000 polylines of 8 points); the rest in one compiled pass per
        polyline (:func:`gendist._numba.polyline_length_gradients`; 10-D, 4 000 polylines of
        8 points at 3 nodes per segment: 41-60 -> 26-36 ms with the score). Parameters and
        returns as :meth:`SegmentMetric.log_polyline_lengths_and_gradients`.
        """
        P = np.ascontiguousarray(P, dtype=np.float64)
        B, m, d = P.shape
        if m < 2:
            return np.full(B, -np.inf), np.zeros_like(P)
        step = max(1, self._segments_per_chunk(d) // (m - 1))
        log_lengths, grads = np.empty(B), np.empty_like(P)
        for s in range(0, B, step):
            log_lengths[s : s + step], grads[s : s + step] = self._polyline_gradients(
                P[s : s + step]
            )
        return log_lengths, grads

    def _polyline_gradients(self, P):
        """:meth:`log_polyline_lengths_and_gradients` of one block of polylines."""
        from ._numba import polyline_length_gradients, polyline_nodes  # imported where used

        B, m, d = P.shape
        E, T = B * (m - 1), self.n_quad
        t = np.linspace(0.0, 1.0, T)[1:-1]
        points = np.empty((B * m + (T - 2) * E, d))  # the points, then the nodes node-major
        points[: B * m] = P.reshape(-1, d)
        polyline_nodes(P, t, points[B * m :])
        log_p, score = self.density.log_prob_and_score(points)
        source = f"density ({type(self.density).__name__})"
        log_p = check_log_density_values(log_p, len(log_p), source=source)
        score = np.asarray(score, dtype=np.float64)
        if not np.isfinite(score.sum()):  # one pass without temporaries; then row by row
            bad = ~np.isfinite(score).all(axis=1) & np.isfinite(log_p)
            if bad.any():  # refused as a NaN log p is: a line search steps back
                raise ValueError(
                    f"{source} returned a non-finite score for {int(bad.sum())} points."
                )
        log_length, grads = np.empty(B), np.empty_like(P)
        polyline_length_gradients(
            P, log_p, score, t, np.exp(_ends_first_log_weights(T)),
            self.log_lam, self.beta, log_largest_factor(self.log_lam, self.beta, self.p0),
            _SAFE_SQUARES, math.exp(_LOG_UNDERFLOW), log_length, grads,
        )
        return log_length, grads

    def with_nodes(self, n_quad: int) -> ConformalMetric:
        """The same metric with ``n_quad`` trapezoidal nodes per segment."""
        return replace(self, n_quad=int(n_quad))

    def log_factor(self, log_p):
        """``log h`` from ``log p`` (numpy array or torch tensor of any shape)."""
        return log_length_factor(log_p, self.log_lam, self.beta, self.p0)

    def log_prob(self, X):
        """``log p`` of the rows of ``X``, checked: numpy through
        :func:`~gendist.densities.evaluate_log_density`, torch tensors through the density's
        ``log_prob_tensor`` (differentiable)."""
        if get_namespace(X).name == "numpy":
            return evaluate_log_density(self.density, X, self.batch_size)
        self._require_differentiable()
        log_p = self.density.log_prob_tensor(X)
        bad = log_p.isnan() | (log_p == float("inf"))
        if bool(bad.any()):
            raise ValueError(
                f"density ({type(self.density).__name__}) returned NaN or +inf for "
                f"{int(bad.sum())} of {len(log_p)} points."
            )
        return log_p

    def vertex_values(self, X, progress: bool = False):
        """``log p`` at the points (each vertex once, reused by all its edges)."""
        if get_namespace(X).name == "numpy":
            return evaluate_log_density(self.density, X, self.batch_size, progress)
        return self.log_prob(X)

    def _nodes_per_segment(self) -> int:
        return max(1, self.n_quad - 2)

    def _segment_log_lengths(self, A, B, log_p_A, log_p_B):
        xp = get_namespace(A)
        E, d = A.shape
        if log_p_A is None:
            log_p_A = self.log_prob(A)
        if log_p_B is None:
            log_p_B = self.log_prob(B)
        T = self.n_quad
        if xp.name == "numpy":
            delta, log_norm = None, log_segment_norms(A, B)
        else:
            delta = B - A
            grad = A.requires_grad or B.requires_grad
            log_norm = xp.log(row_norms(delta, floor=1e-300 if grad else 0.0))
        # node-major (T - 2, E) interior nodes, so that the sum over the nodes of a segment
        # runs along contiguous rows
        log_p = [log_p_A[None], log_p_B[None]]
        if T > 2 and E:
            t = xp.linspace(0.0, 1.0, T, like=A)[1:-1]
            if xp.name == "numpy":  # a Gaussian mixture's nodes follow from the ends' terms
                inner = self.density.log_prob_on_segments(A, B, t)
                source = f"density ({type(self.density).__name__})"
                check_log_density_values(inner.reshape(-1), inner.size, source)
                log_p.append(inner)
            else:
                nodes = segment_nodes(A, B, t, delta, node_major=True).reshape(-1, d)
                log_p.append(self.log_prob(nodes).reshape(T - 2, E))
        # the rule relative to the largest factor h_max: sum_k w_k h_k / h_max, whose terms
        # cannot overflow (h_k <= h_max); summed in log space only where all terms underflow
        w = np.exp(trapezoid_log_weights(T))
        if xp.name == "numpy" and self.beta == 1.0:  # the default: one compiled pass
            from ._numba import log_trapezoid_of_factors  # numba is imported where it is used

            log_sum = np.empty(E)
            inner = log_p[2] if len(log_p) > 2 else np.empty((0, E))
            log_trapezoid_of_factors(log_p_A, log_p_B, inner, self.log_lam, w[0],
                                     w[1] if T > 2 else 0.0, _LOG_UNDERFLOW, log_sum)
            return log_norm + log_largest_factor(self.log_lam, self.beta, self.p0) + log_sum
        ratio = [xp.exp(log_factor_ratio(v, self.log_lam, self.beta)) for v in log_p]
        total = w[0] * (ratio[0][0] + ratio[1][0])
        if len(ratio) > 2:
            total = total + w[1] * xp.sum(ratio[2], axis=0)
        log_sum = xp.log(total)
        if E and bool((log_sum < _LOG_UNDERFLOW).any()):
            terms = log_factor_ratio(xp.concatenate(log_p, axis=0), self.log_lam, self.beta)
            terms += xp.asarray(_ends_first_log_weights(T), like=A)[:, None]
            log_sum = xp.logsumexp(terms, axis=0, overwrite=True)
        return log_norm + log_largest_factor(self.log_lam, self.beta, self.p0) + log_sum
