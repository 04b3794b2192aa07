"""The conformal (generative) metric and the length of straight segments under it.

The length factor is ``h(x) = ((p0 + lam) / (p(x) + lam)) ** beta``, so that the length of a
curve gamma is ``L(gamma) = integral of h(gamma(t)) |gamma'(t)| dt``. Everything is computed in
log space: ``log h = beta * (logaddexp(log p0, log lam) - logaddexp(log p, log lam))``, which
stays exact where ``p`` itself under- or overflows (a 784-dimensional density, say).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from tqdm.auto import tqdm

from ._compute import logsumexp
from ._validation import check_int, check_positive
from .densities import Density, evaluate_log_density

__all__ = ["ConformalMetric", "resolve_lambda", "log_length_factor", "trapezoid_log_weights"]

#: fewest edges per chunk sent to a joblib worker
_MIN_PARALLEL_CHUNK = 20_000

_QUANTILE = re.compile(r"^quantile:\s*([0-9.eE+-]+)$")


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
    if isinstance(lam, str):
        match = _QUANTILE.match(lam.strip())
        if match is None:
            raise ValueError(
                f"lam must be a positive number or 'quantile:q' with 0<q<1; got {lam!r}."
            )
        q = float(match.group(1))
        if not 0.0 < q < 1.0:
            raise ValueError(f"the quantile in lam={lam!r} must lie strictly between 0 and 1.")
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
    return math.log(check_positive(lam, "lam"))


def log_length_factor(log_p, log_lam: float, beta: float = 1.0, p0: float = 0.0):
    """``log h(x)`` from ``log p(x)``; works on numpy arrays and torch tensors alike.

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
    log_p0 = math.log(p0) if p0 > 0 else -math.inf
    offset = float(np.logaddexp(log_p0, log_lam))
    if hasattr(log_p, "logaddexp"):  # torch tensor
        return beta * (offset - log_p.logaddexp(log_p.new_tensor(log_lam)))
    return beta * (offset - np.logaddexp(log_p, log_lam))


def trapezoid_log_weights(n_quad: int) -> np.ndarray:
    """Log of the equispaced trapezoidal weights on ``n_quad`` nodes of [0, 1] (they sum to 1)."""
    n_quad = check_int(n_quad, "n_quad", minimum=2)
    w = np.full(n_quad, 1.0 / (n_quad - 1))
    w[[0, -1]] *= 0.5
    return np.log(w)


@dataclass(frozen=True)
class ConformalMetric:
    """The generative metric ``h(x) = ((p0 + lam) / (p(x) + lam)) ** beta`` of a density.

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
    chunk_bytes : int
        Memory budget of the quadrature nodes held at once.
    """

    density: Density
    log_lam: float
    beta: float = 1.0
    p0: float = 0.0
    n_quad: int = 8
    chunk_bytes: int = 1 << 27

    @property
    def differentiable(self) -> bool:
        """Whether lengths can be differentiated by autograd (the density takes tensors)."""
        return bool(getattr(self.density, "differentiable", False))

    def curve_length_tensor(self, P):
        """Differentiable length of a polyline given as a float64 torch tensor (m, d).

        The same trapezoidal rule as :meth:`log_segment_lengths`, with ``log p`` evaluated by
        the density's ``log_prob_tensor`` (once at each point, once at each interior node).
        """
        import torch

        T = self.n_quad
        log_w = torch.as_tensor(trapezoid_log_weights(T), dtype=P.dtype, device=P.device)
        t = torch.linspace(0.0, 1.0, T, dtype=P.dtype, device=P.device)[1:-1]
        A, delta = P[:-1], P[1:] - P[:-1]
        m, d = P.shape
        log_h_points = self.log_factor(self.density.log_prob_tensor(P))
        nodes = (A[:, None, :] + t[None, :, None] * delta[:, None, :]).reshape(-1, d)
        log_h_nodes = self.log_factor(self.density.log_prob_tensor(nodes)).reshape(m - 1, -1)
        log_h = torch.cat([log_h_points[:-1, None], log_h_nodes, log_h_points[1:, None]], 1)
        # |delta| with a floor, so that coincident points have a finite gradient
        log_norm = 0.5 * torch.log((delta * delta).sum(1) + 1e-300)
        return torch.exp(log_norm + torch.logsumexp(log_h + log_w, dim=1)).sum()

    def log_factor(self, log_p):
        """``log h`` from ``log p`` (array of any shape)."""
        return log_length_factor(log_p, self.log_lam, self.beta, self.p0)

    def _segments_per_chunk(self, n_features: int) -> int:
        return max(1, self.chunk_bytes // (max(1, self.n_quad - 2) * n_features * 8))

    def log_segment_lengths(
        self,
        A: np.ndarray,
        B: np.ndarray,
        log_p_A: np.ndarray | None = None,
        log_p_B: np.ndarray | None = None,
    ) -> np.ndarray:
        """Log-length of the straight segments ``A[e] -> B[e]`` under the metric.

        ``log L_e = log |B_e - A_e| + logsumexp_k (log w_k + log h(A_e + t_k (B_e - A_e)))``
        with the equispaced trapezoidal rule. Zero-length segments get ``-inf``. The interior
        nodes are generated and evaluated in chunks of at most ``chunk_bytes``.

        Parameters
        ----------
        A, B : ndarray of shape (E, d)
            Segment endpoints.
        log_p_A, log_p_B : ndarray of shape (E,), optional
            Known log-densities of the endpoints, so that vertices are evaluated only once.

        Returns
        -------
        log_length : ndarray of shape (E,)
        """
        E, d = A.shape
        if log_p_A is None:
            log_p_A = evaluate_log_density(self.density, A)
        if log_p_B is None:
            log_p_B = evaluate_log_density(self.density, B)
        step = self._segments_per_chunk(d)
        if E > step:
            return np.concatenate(
                [
                    self.log_segment_lengths(
                        A[s : s + step],
                        B[s : s + step],
                        log_p_A[s : s + step],
                        log_p_B[s : s + step],
                    )
                    for s in range(0, E, step)
                ]
            )
        T = self.n_quad
        log_w = trapezoid_log_weights(T)
        delta = B - A
        with np.errstate(divide="ignore"):  # zero-length segments have log-length -inf
            log_norm = np.log(np.sqrt(np.einsum("ij,ij->i", delta, delta)))
        acc = np.empty((E, T))
        acc[:, 0] = self.log_factor(log_p_A)
        acc[:, -1] = self.log_factor(log_p_B)
        if T > 2 and E:
            t = np.linspace(0.0, 1.0, T)[1:-1]
            nodes = A[:, None, :] + t[None, :, None] * delta[:, None, :]
            log_p = evaluate_log_density(self.density, nodes.reshape(-1, d))
            acc[:, 1:-1] = self.log_factor(log_p).reshape(E, T - 2)
        return log_norm + logsumexp(acc + log_w, axis=1)

    def edge_log_weights(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        log_p: np.ndarray,
        Y: np.ndarray | None = None,
        log_p_Y: np.ndarray | None = None,
        progress: bool = False,
        n_jobs: int | None = None,
    ) -> np.ndarray:
        """Log-lengths of the edges ``X[rows[e]] -> Y[cols[e]]``, in memory-bounded chunks.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            Vertices.
        rows, cols : ndarray of shape (E,), int
            Edge endpoints (indices into ``X`` and ``Y``).
        log_p : ndarray of shape (n,)
            Log-density of every vertex, evaluated once and reused by every edge.
        Y, log_p_Y : optional
            A second point set for the edges' other ends (default: ``X``, ``log_p``).
        progress : bool
            Show a progress bar over chunks.
        n_jobs : int, optional
            Workers for the chunks, through joblib (default one: this process). Every chunk
            carries the metric (with its density) and its segments' endpoints, so any joblib
            backend runs them: processes (loky), a dask.distributed or Ray cluster under
            ``joblib.parallel_config``. Worth it for densities that evaluate on one core
            (sklearn mixtures and KDE, Python callables); torch models already use threads.

        Returns
        -------
        log_weight : ndarray of shape (E,)
        """
        if Y is None:
            Y, log_p_Y = X, log_p
        E = len(rows)
        step = self._segments_per_chunk(X.shape[1])
        workers = effective_n_jobs(n_jobs)
        if workers > 1:  # a few chunks per worker, but not so small that transfers dominate
            step = min(step, max(_MIN_PARALLEL_CHUNK, -(-E // (4 * workers))))
        starts = range(0, E, step)
        chunks = (
            (
                X[rows[s : s + step]],
                Y[cols[s : s + step]],
                log_p[rows[s : s + step]],
                log_p_Y[cols[s : s + step]],
            )
            for s in starts
        )
        if workers > 1 and len(starts) > 1:
            results = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(self.log_segment_lengths)(*chunk) for chunk in chunks
            )
        else:
            results = (self.log_segment_lengths(*chunk) for chunk in chunks)
        out = np.empty(E)
        bar = tqdm(total=E, desc="edge weights", disable=not progress, leave=False)
        for s, res in zip(starts, results):
            out[s : s + len(res)] = res
            bar.update(len(res))
        bar.close()
        return out

    def edge_log_weights_torch(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        log_p: np.ndarray,
        Y: np.ndarray | None = None,
        log_p_Y: np.ndarray | None = None,
        device=None,
        progress: bool = False,
    ) -> np.ndarray:
        """:meth:`edge_log_weights` on a torch device (CUDA when present).

        The points, edge indices and vertex log-densities move to the device once; the
        quadrature nodes are generated there chunk by chunk and only the log-weights come
        back. Chunks are sized from the device's free memory (``chunk_bytes`` on a CPU); an
        out-of-memory error halves the chunk and retries. Coordinates and the quadrature are
        float64 whatever the model's dtype (a float32 torch model is evaluated in float32 by
        its adapter), so the result matches the numpy path.

        Parameters
        ----------
        X, rows, cols, log_p, Y, log_p_Y, progress
            As in :meth:`edge_log_weights`.
        device : str or torch.device, optional
            Default: ``"cuda"`` when available, else ``"cpu"``.

        Returns
        -------
        log_weight : ndarray of shape (E,)

        Raises
        ------
        TypeError
            If the density cannot evaluate torch tensors (``density.differentiable`` false).
        """
        from ._optional import import_optional

        torch = import_optional("torch")
        if not getattr(self.density, "differentiable", False):
            raise TypeError(
                f"{type(self.density).__name__} cannot evaluate torch tensors; compute the "
                "edge weights with numpy (device=None)."
            )
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if Y is None:
            Y, log_p_Y = X, log_p
        E, d, T = len(rows), X.shape[1], self.n_quad

        def put(a, dtype=torch.float64):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        Xt, Yt, lp_X, lp_Y = put(X), put(Y), put(log_p), put(log_p_Y)
        rows_t, cols_t = put(rows, torch.int64), put(cols, torch.int64)
        log_w = put(trapezoid_log_weights(T))
        t = torch.linspace(0.0, 1.0, T, dtype=torch.float64, device=device)[1:-1]
        per_segment = max(1, T - 2) * d * 8 * 4  # nodes and the density's work on them
        if device.type == "cuda":
            step = max(1, torch.cuda.mem_get_info(device)[0] // 2 // per_segment)
        else:
            step = self._segments_per_chunk(d)
        out = torch.empty(E, dtype=torch.float64, device=device)
        bar = tqdm(total=E, desc="edge weights", disable=not progress, leave=False)
        start = 0
        with torch.no_grad():
            while start < E:
                r, c = rows_t[start : start + step], cols_t[start : start + step]
                try:
                    A, delta = Xt[r], Yt[c] - Xt[r]
                    acc = torch.empty((len(r), T), dtype=torch.float64, device=device)
                    acc[:, 0] = self.log_factor(lp_X[r])
                    acc[:, -1] = self.log_factor(lp_Y[c])
                    if T > 2:
                        nodes = A[:, None, :] + t[None, :, None] * delta[:, None, :]
                        lp = self.density.log_prob_tensor(nodes.reshape(-1, d))
                        bad = torch.isnan(lp) | (lp == float("inf"))
                        if bool(bad.any()):
                            raise ValueError(
                                f"density ({type(self.density).__name__}) returned NaN or +inf "
                                f"for {int(bad.sum())} of {len(lp)} quadrature nodes."
                            )
                        acc[:, 1:-1] = self.log_factor(lp).reshape(len(r), T - 2)
                    log_norm = torch.log(torch.sqrt((delta * delta).sum(1)))
                    out[start : start + len(r)] = log_norm + torch.logsumexp(acc + log_w, 1)
                except torch.cuda.OutOfMemoryError:
                    if step == 1:
                        raise
                    step //= 2  # and retry the same edges
                    torch.cuda.empty_cache()
                    continue
                start += len(r)
                bar.update(len(r))
        bar.close()
        return out.cpu().numpy()

    def curve_length(self, points: np.ndarray) -> float:
        """Length of the polyline through ``points`` (shape (k, d)) under the metric."""
        points = np.asarray(points, dtype=np.float64)
        if len(points) < 2:
            return 0.0
        log_len = self.log_segment_lengths(points[:-1], points[1:])
        return float(np.exp(log_len).sum())
