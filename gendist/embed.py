"""Embeddings of generative distances: t-SNE on the precomputed distance matrix."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.manifold import TSNE
from sklearn.utils import check_random_state

from ._optional import import_optional
from ._validation import check_positive

__all__ = ["finite_distances", "tsne_embedding"]


def finite_distances(D, inf_factor: float = 2.0) -> np.ndarray:
    """Replace inf distances (pairs in different graph components) by a large finite value.

    Parameters
    ----------
    D : array-like of shape (n, n)
        Symmetric distances with a zero diagonal; inf allowed.
    inf_factor : float, default=2.0
        inf becomes ``inf_factor * max(finite D)``, farther than any connected pair, so
        components stay apart in an embedding without dominating its scale.

    Returns
    -------
    D : ndarray of shape (n, n), float64, finite
        A copy when it had inf entries (and a warning says how many pairs).
    """
    inf_factor = check_positive(inf_factor, "inf_factor")
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.size == 0:
        raise ValueError(f"D must be a non-empty square distance matrix, got shape {D.shape}.")
    if np.isnan(D).any() or (D < 0).any():
        raise ValueError("D must hold non-negative distances (inf allowed), without NaN.")
    infinite = np.isinf(D)
    if not infinite.any():
        return D
    finite = D[~infinite]
    largest = float(finite.max())
    # all pairs disconnected: no scale to take, components are placed 1 * inf_factor apart
    D = np.where(infinite, inf_factor * (largest if largest > 0 else 1.0), D)
    warnings.warn(
        f"{np.count_nonzero(infinite) // 2} pairs are disconnected (inf distance); they are "
        f"set to {inf_factor} x the largest finite distance for the embedding.",
        UserWarning,
        stacklevel=2,
    )
    return D


def tsne_embedding(
    D,
    n_components: int = 2,
    *,
    perplexity: float = 30.0,
    inf_factor: float = 2.0,
    method: str = "sklearn",
    random_state=None,
    **tsne_params,
) -> np.ndarray:
    """t-SNE of points given by their distance matrix (``metric="precomputed"``).

    Parameters
    ----------
    D : array-like of shape (n, n)
        Distances, e.g. ``GenerativeDistance.fit_transform(X)``; inf handled by
        :func:`finite_distances`.
    n_components : int, default=2
        Dimension of the embedding.
    perplexity : float, default=30.0
        Effective number of neighbours; lowered to ``(n - 1) / 3`` for small n.
    inf_factor : float, default=2.0
        See :func:`finite_distances`.
    method : {"sklearn", "opentsne"}, default="sklearn"
        scikit-learn's Barnes-Hut :class:`~sklearn.manifold.TSNE`, or
        openTSNE's (``pip install openTSNE``; FFT-accelerated gradients, faster for
        thousands of points and more, and multi-threaded).
    random_state : int, RandomState instance or None
    **tsne_params
        Further parameters of that implementation's ``TSNE``.

    Returns
    -------
    Y : ndarray of shape (n, n_components)
    """
    D = finite_distances(D, inf_factor)
    if len(D) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(D)}.")
    perplexity = min(check_positive(perplexity, "perplexity"), (len(D) - 1) / 3)
    if method == "opentsne":
        open_tsne = import_optional("openTSNE")
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        params = {"initialization": "random", **tsne_params}
        tsne = open_tsne.TSNE(
            n_components, perplexity=perplexity, metric="precomputed", random_state=seed, **params
        )
        return np.asarray(tsne.fit(D))
    if method != "sklearn":
        raise ValueError(
            f'method (the t-SNE backend) must be "sklearn" or "opentsne", got {method!r}.'
        )
    params = {"init": "random", **tsne_params}
    tsne = TSNE(
        n_components,
        perplexity=perplexity,
        metric="precomputed",
        random_state=random_state,
        **params,
    )
    return tsne.fit_transform(D)
