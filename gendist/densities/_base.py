"""The :class:`Density` protocol and :func:`evaluate_log_density`, which every stage calls."""

from __future__ import annotations

import numpy as np

from .._compute import is_torch_tensor, progress_bar, segment_nodes
from .._validation import check_log_density_values

__all__ = ["Density", "evaluate_log_density"]


def check_segments(A, B, t, n_features: int | None = None):
    """Segment ends ``A``, ``B`` (E, d) and positions ``t`` (T,) as float64 arrays, checked
    for matching shapes (and ``n_features`` columns where given); torch tensors are refused."""
    if any(is_torch_tensor(x) for x in (A, B, t)):
        raise TypeError(
            "log_prob_on_segments takes numpy arrays; evaluate torch tensors with log_prob."
        )
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    columns = "d" if n_features is None else n_features
    if (A.ndim != 2 or B.shape != A.shape or t.ndim != 1
            or (n_features is not None and A.shape[1] != n_features)):
        raise ValueError(
            f"segment ends of shapes {A.shape} and {B.shape} and positions of shape {t.shape}; "
            f"expected two arrays of shape (E, {columns}) and one of shape (T,)."
        )
    return A, B, t


class Density:
    """Base class of the density adapters.

    Subclasses implement :meth:`log_prob`; those that can draw points implement :meth:`sample`
    and set ``can_sample = True``; those with a closed-form gradient of ``log p`` implement
    :meth:`log_prob_and_score` and set ``has_score = True``; those that must be fitted on the
    training points first report ``requires_fit`` True (an attribute or a property) and
    implement :meth:`fit`, which returns a fitted adapter.
    """

    can_sample: bool = False
    requires_fit: bool = False
    differentiable: bool = False
    has_score: bool = False

    def log_prob_tensor(self, x):
        """Log-density of a torch tensor, differentiable with respect to ``x``.

        Implemented by adapters with ``differentiable = True`` (torch models, mixtures,
        flows); geodesic refinement uses it for exact gradients and falls back to finite
        differences of :meth:`log_prob` for the others.

        Parameters
        ----------
        x : torch.Tensor of shape (n, d)

        Returns
        -------
        log_p : torch.Tensor of shape (n,), on the device and in the dtype of ``x``
        """
        raise TypeError(f"{type(self).__name__} cannot evaluate log p on torch tensors.")

    def log_prob_and_score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-density and its gradient ``d log p / dx`` at each row of ``X``, in closed form.

        Implemented by adapters with ``has_score = True`` (Gaussian mixtures); geodesic
        refinement prefers it to autograd.

        Parameters
        ----------
        X : ndarray of shape (n, d), float64

        Returns
        -------
        log_p : ndarray of shape (n,)
        score : ndarray of shape (n, d)
        """
        raise TypeError(f"{type(self).__name__} has no closed-form score.")

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Natural log-density of each row of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n, d), float64

        Returns
        -------
        log_p : ndarray of shape (n,)
            ``log p(x)`` in nats; ``-inf`` where the density is zero.
        """
        raise NotImplementedError

    def log_prob_on_segments(self, A: np.ndarray, B: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Natural log-density at the points ``A[e] + t[j] (B[e] - A[e])`` of straight segments.

        The metric's quadrature asks for these nodes. This default evaluates them with
        :meth:`log_prob` (its output checked); Gaussian mixtures compute them from the
        segments' ends instead, from 4-D on.

        Parameters
        ----------
        A, B : ndarray of shape (E, d), float64
            Segment ends.
        t : ndarray of shape (T,)
            Positions along every segment (0 at ``A``, 1 at ``B``).

        Returns
        -------
        log_p : ndarray of shape (T, E)
            Node-major: row ``j`` holds the ``t[j]`` node of every segment.
        """
        A, B, t = check_segments(A, B, t)
        E, T = len(A), len(t)
        nodes = segment_nodes(A, B, t, node_major=True).reshape(T * E, -1)
        source = f"density ({type(self).__name__})"
        return check_log_density_values(self.log_prob(nodes), T * E, source).reshape(T, E)

    def sample(self, n_samples: int, random_state=None) -> np.ndarray:
        """Draw ``n_samples`` points, shape (n_samples, d)."""
        raise TypeError(
            f"{type(self).__name__} cannot draw samples; use vertices='data' or pass a density "
            "with a sample method (GaussianMixture, KernelDensity, a torch distribution, ...)."
        )

    def fit(self, X: np.ndarray) -> Density:
        """Return an adapter fitted on ``X`` (the adapter itself when nothing is to be fitted)."""
        return self


def evaluate_log_density(
    density: Density, X: np.ndarray, batch_size: int = 65536, progress: bool = False
) -> np.ndarray:
    """Log-density of every row of ``X``, in batches, with the model's output checked.

    Parameters
    ----------
    density : Density
    X : ndarray of shape (n, d), float64
    batch_size : int
        Rows per call to the model.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    log_p : ndarray of shape (n,), float64

    Raises
    ------
    ValueError
        If the model returns the wrong shape, NaN or +inf (the message counts the rows).
    """
    n = X.shape[0]
    out = np.empty(n, dtype=np.float64)
    starts = range(0, n, batch_size)
    if progress is not False and len(starts) > 1:  # a bar, even a hidden one, costs ~0.2 ms
        starts = progress_bar(starts, desc="density", progress=progress)
    for s in starts:
        chunk = X[s : s + batch_size]
        if isinstance(chunk, np.ndarray) and not chunk.flags.writeable:
            chunk = chunk.copy()  # the model gets its own copy of read-only (fitted) points
        out[s : s + len(chunk)] = check_log_density_values(
            density.log_prob(chunk), len(chunk), source=f"density ({type(density).__name__})"
        )
    return out
