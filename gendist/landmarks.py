"""Landmarks: distances to a few vertices instead of all pairs, bounds and an embedding.

When n x n distances do not fit, distances from ``L`` landmark vertices (an (L, n) matrix,
``L`` single-source runs) still give, for every pair, the triangle-inequality bounds

    max_l |d(l, i) - d(l, j)|  <=  d(i, j)  <=  min_l d(l, i) + d(l, j),

and an embedding of all n points by landmark MDS (de Silva and Tenenbaum, 2004): classical
MDS on the landmarks, then every point placed by distance-based triangulation.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_int
from .paths import check_vertex_indices, shortest_paths, validate_graph

__all__ = ["choose_landmarks", "landmark_bounds", "landmark_mds"]

_METHODS = ("random", "farthest")


def choose_landmarks(
    graph,
    n_landmarks: int,
    method: str = "farthest",
    random_state=None,
    n_jobs: int | None = None,
    backend: str = "auto",
):
    """Pick landmark vertices and their distances to every vertex.

    Parameters
    ----------
    graph : scipy.sparse.csr_matrix of shape (n, n)
        A fitted graph (``GenerativeDistance.graph_``).
    n_landmarks : int
        Number of landmarks L (<= n).
    method : {"farthest", "random"}, default="farthest"
        ``"farthest"``: farthest-point sampling in the graph distance, from a random first
        vertex (each next landmark is the vertex farthest from all chosen ones; unreachable
        vertices count as farthest, so every component gets one while there are landmarks
        left). ``"random"``: uniformly without replacement.
    random_state : int, RandomState or None
    n_jobs : int, optional
        Workers for the many-source run of ``"random"`` (see :func:`gendist.paths.shortest_paths`);
        farthest-point sampling runs one source after another.
    backend : str, default="auto"
        Shortest-path backend (see :mod:`gendist.paths`).

    Returns
    -------
    landmarks : ndarray of shape (L,), int
    distances : ndarray of shape (L, n)
        Generative distances from each landmark to every vertex.
    """
    graph = validate_graph(graph)
    n = graph.shape[0]
    L = check_int(n_landmarks, "n_landmarks")
    if L > n:
        raise ValueError(f"n_landmarks={L} exceeds the {n} vertices.")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    rng = check_random_state(random_state)
    if method == "random":
        landmarks = np.sort(rng.choice(n, L, replace=False))
        return landmarks, shortest_paths(graph, landmarks, n_jobs=n_jobs, backend=backend)
    landmarks = [int(rng.randint(n))]
    rows = [shortest_paths(graph, landmarks, backend=backend)[0]]
    nearest = rows[0].copy()
    for _ in range(L - 1):
        nearest[landmarks] = -1.0  # never pick a landmark twice
        landmarks.append(int(np.argmax(nearest)))
        rows.append(shortest_paths(graph, landmarks[-1:], backend=backend)[0])
        nearest = np.minimum(nearest, rows[-1])
    return np.array(landmarks, dtype=np.int64), np.vstack(rows)


def landmark_bounds(distances: np.ndarray, rows, cols):
    """Triangle-inequality bounds on ``d(rows[k], cols[k])`` from landmark distances.

    Parameters
    ----------
    distances : ndarray of shape (L, n)
        From :func:`choose_landmarks`.
    rows, cols : array-like of int, shape (m,)
        The pairs.

    Returns
    -------
    lower, upper : ndarray of shape (m,)
        ``lower <= d <= upper``. Where one end is reachable from a landmark and the other
        not, the two lie in different components: both bounds are inf. Where no landmark
        reaches either end, ``lower = 0`` and ``upper = inf``.
    """
    distances = _check_landmark_distances(distances)
    n = distances.shape[1]
    rows, cols = check_vertex_indices(rows, n, "rows"), check_vertex_indices(cols, n, "cols")
    if rows.shape != cols.shape:
        raise ValueError(
            f"rows and cols must pair up: got {len(rows)} rows and {len(cols)} cols."
        )
    A = distances[:, rows]
    B = distances[:, cols]
    with np.errstate(invalid="ignore"):  # inf - inf where a landmark reaches neither end
        gap = np.abs(A - B)
    gap[np.isinf(A) & np.isinf(B)] = 0.0
    return gap.max(axis=0), (A + B).min(axis=0)


def _check_landmark_distances(distances) -> np.ndarray:
    """An (L, n) matrix of non-negative distances (inf allowed), as float64."""
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or distances.size == 0:
        raise ValueError(
            f"distances must be an (L, n) matrix of landmark distances, got shape "
            f"{distances.shape}."
        )
    if np.isnan(distances).any() or (distances < 0).any():
        raise ValueError("distances must be >= 0 (inf allowed), without NaN.")
    return distances


def landmark_mds(distances: np.ndarray, landmarks, n_components: int = 2) -> np.ndarray:
    """Embed every vertex from its distances to the landmarks (landmark MDS).

    Classical MDS on the (L, L) landmark distances gives the landmarks' coordinates; each
    vertex is then placed by distance-based triangulation,
    ``x = -1/2 pinv(V) (delta - mean landmark delta)`` with ``delta`` its squared distances
    (de Silva and Tenenbaum, "Sparse multidimensional scaling using landmark points", 2004).
    For distances that are Euclidean it recovers the points up to a rigid motion.

    Parameters
    ----------
    distances : ndarray of shape (L, n)
        Finite landmark distances (one connected component).
    landmarks : array-like of int, shape (L,)
        Vertex index of each landmark.
    n_components : int, default=2
        Embedding dimension (< L).

    Returns
    -------
    embedding : ndarray of shape (n, n_components)
    """
    distances = _check_landmark_distances(distances)
    k = check_int(n_components, "n_components")
    L = distances.shape[0]
    landmarks = check_vertex_indices(landmarks, distances.shape[1], "landmarks")
    if len(landmarks) != L:
        raise ValueError(
            f"landmarks names {len(landmarks)} vertices, but distances has {L} rows (one "
            "per landmark)."
        )
    if k >= L:
        raise ValueError(f"n_components={k} must be below the {L} landmarks.")
    if not np.isfinite(distances).all():
        raise ValueError(
            "landmark distances contain inf: the graph is disconnected; embed one connected "
            "component at a time (component_labels_)."
        )
    sq = distances**2
    sq_landmarks = sq[:, landmarks]
    centring = np.eye(L) - 1.0 / L
    gram = -0.5 * centring @ sq_landmarks @ centring
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:k]
    if values[top[-1]] <= 0:
        raise ValueError(
            f"the landmark distances have fewer than {k} positive MDS eigenvalues; "
            "lower n_components or use more landmarks."
        )
    pseudo_inverse = vectors[:, top] / np.sqrt(values[top])  # (L, k)
    return -0.5 * (sq - sq_landmarks.mean(axis=1, keepdims=True)).T @ pseudo_inverse
