"""Working with other libraries: neighbour graphs in, sparse neighbour and cost matrices out.

In: the ``neighbors`` parameter of :class:`gendist.GenerativeDistance` and
:class:`gendist.LatentDistance` takes a neighbour graph computed elsewhere, a scikit-learn
``KNeighborsTransformer``-style object (anything whose ``fit_transform(X)`` returns a sparse
distance graph in scikit-learn's precomputed convention, such as
``sklearn.neighbors.KNeighborsTransformer`` or pynndescent's ``PyNNDescentTransformer``) or
such a graph itself, of shape (n, n). Its pairs become the edges
(:func:`gendist.graph.precomputed_edges`).

Out: :func:`kneighbors_graph` (scikit-learn's precomputed convention, for UMAP, openTSNE,
``NearestNeighbors(metric="precomputed")``, ...) and :func:`sparse_cost_matrix` (the distances
up to a limit, for sparse optimal-transport solvers such as POT's ``ot.emd`` on a sparse
cost), both also methods of the estimators; and the feature names behind scikit-learn's
``set_output(transform="pandas")``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import ClassNamePrefixFeaturesOutMixin, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ._compute import chunk_rows
from ._validation import check_int

__all__ = ["kneighbors_graph", "sparse_cost_matrix", "NEIGHBORS_CONSTRAINT"]

#: the declared constraint of the ``neighbors`` parameter
NEIGHBORS_CONSTRAINT = [None, "sparse matrix", HasMethods(["fit_transform"])]


class DistanceFeaturesOutMixin(ClassNamePrefixFeaturesOutMixin):
    """``get_feature_names_out`` for transformers whose columns are the training points:
    ``classname0, classname1, ...`` (scikit-learn's class-name prefix convention), which also
    enables ``set_output(transform="pandas")``."""

    @property
    def _n_features_out(self):
        if not hasattr(self, "data_index_"):
            raise AttributeError("_n_features_out")  # not fitted
        return len(self.data_index_)


def check_neighbors(estimator) -> None:
    """The checks of ``neighbors`` beyond its declared constraint: a given neighbour graph is
    a kNN graph, so ``radius`` must be None (radius graphs keep the exact search)."""
    if getattr(estimator, "neighbors", None) is not None and estimator.radius is not None:
        raise ValueError(
            f"neighbors gives a kNN graph; radius={estimator.radius!r} cannot be used with it "
            "(radius graphs use the exact search). Set radius=None."
        )


def given_neighbours(estimator, X):
    """The neighbour graph the estimator was given for its graph points ``X``, and the k
    by which new points join the graph.

    Returns
    -------
    graph : scipy.sparse matrix of shape (n, n) or None
        None without ``neighbors`` (the exact search builds the graph). A transformer is
        cloned and its ``fit_transform(X)`` taken.
    join_k : int or None
        ``n_neighbors`` when it is set; with a given graph and ``n_neighbors=None``, the
        median number of neighbours per row of that graph (the point itself not counted).
    """
    neighbors = getattr(estimator, "neighbors", None)
    if neighbors is None:
        return None, estimator.n_neighbors
    if sparse.issparse(neighbors):
        graph = neighbors
    else:
        transformer = clone(neighbors) if hasattr(neighbors, "get_params") else neighbors
        graph = transformer.fit_transform(X)
        if not sparse.issparse(graph):
            raise TypeError(
                f"{type(neighbors).__name__}.fit_transform returned "
                f"{type(graph).__name__}; neighbors needs a sparse distance graph."
            )
    if graph.shape != (X.shape[0], X.shape[0]):
        raise ValueError(
            f"the neighbour graph has shape {graph.shape}; the graph's {X.shape[0]} vertices "
            f"need ({X.shape[0]}, {X.shape[0]})."
        )
    join_k = estimator.n_neighbors
    if join_k is None:
        coo = sparse.coo_matrix(graph)
        counts = np.bincount(coo.row[coo.row != coo.col], minlength=X.shape[0])
        join_k = max(1, int(np.median(counts)))
    return graph, join_k


def kneighbors_graph(estimator, n_neighbors: int = 5, mode: str = "distance", refine=None):
    """The k nearest neighbours of every vertex under the fitted metric, as a sparse graph.

    In scikit-learn's precomputed convention (that of ``KNeighborsTransformer``), which
    UMAP, openTSNE and ``NearestNeighbors(metric="precomputed")`` read: row i holds i itself
    first, as an explicit zero, then its neighbours in increasing distance. With
    ``mode="distance"`` a row has ``n_neighbors + 1`` entries (i and its k nearest); with
    ``mode="connectivity"`` ``n_neighbors`` entries of 1 (i and its k - 1 nearest), as
    ``sklearn.neighbors.kneighbors_graph(X, k, include_self=True)``.

    Built from :meth:`~gendist.GenerativeDistance.kneighbors` (bounded searches, no
    all-pairs matrix). A vertex whose component has fewer than k other vertices has fewer
    entries (no entry means "not a neighbour").

    Parameters
    ----------
    estimator : fitted GenerativeDistance or LatentDistance
    n_neighbors : int, default=5
    mode : {"distance", "connectivity"}, default="distance"
    refine : bool or dict, optional
        Default: the estimator's (``refine_``). Refine the paths to the neighbours found in
        one batch (see
        :meth:`~gendist.GenerativeDistance.kneighbors`): in high dimension the accurate
        lengths, at the cost of model evaluations along n k paths.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n_vertices, n_vertices)
        Rows and columns are the vertices (the training points in the default
        ``vertices="data"``); not symmetric.
    """
    check_is_fitted(estimator)
    k = check_int(n_neighbors, "n_neighbors")
    if mode not in ("distance", "connectivity"):
        raise ValueError(f'mode must be "distance" or "connectivity", got {mode!r}.')
    N = estimator.graph_.shape[0]
    others = k if mode == "distance" else k - 1
    if others:
        dist, ind = estimator.kneighbors(n_neighbors=others, refine=refine)
    else:
        dist, ind = np.empty((N, 0)), np.empty((N, 0), dtype=np.int64)
    dist = np.hstack([np.zeros((N, 1)), np.asarray(dist, dtype=np.float64)])
    ind = np.hstack([np.arange(N)[:, None], ind])
    keep = np.isfinite(dist) & (ind >= 0)
    data = dist[keep] if mode == "distance" else np.ones(int(keep.sum()))
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sparse.csr_matrix((data, ind[keep], indptr), shape=(N, N))


def sparse_cost_matrix(estimator, limit: float, dtype=np.float64):
    """The distances no larger than ``limit``, as a symmetric sparse matrix.

    For solvers that take a sparse cost (POT's ``ot.emd`` / ``ot.emd2`` on a scipy sparse
    ``M``: a missing entry is a pair that may not exchange mass). Each pair is measured from
    its lower index (refined there, once, where the estimator refines, ``refine_``; with
    its ``"nearest"`` option, among that row's nearest), so the matrix is exactly symmetric;
    the diagonal holds explicit zeros, and so do duplicate points. The searches stop at
    ``limit`` and go in memory-bounded blocks of rows, so the dense matrix is never held.

    Parameters
    ----------
    estimator : fitted GenerativeDistance or LatentDistance
    limit : float
        Largest distance kept (> 0; ``inf`` keeps every finite distance).
    dtype : {"float64", "float32"}, default="float64"

    Returns
    -------
    cost : scipy.sparse.csr_matrix of shape (n_vertices, n_vertices)
    """
    check_is_fitted(estimator)
    limit = float(limit)
    if not limit > 0:
        raise ValueError(f"limit must be > 0, got {limit!r}.")
    N = estimator.graph_.shape[0]
    options = estimator._all_pairs_options(estimator._resolve_refine(None))
    rows, cols, vals = [], [], []
    step = chunk_rows(8 * N)
    for s in range(0, N, step):
        block = np.arange(s, min(N, s + step))
        D = estimator.distances(block, limit=limit, dtype="float64", refine=False)
        if options is not None:  # each pair refined once, from its lower index
            estimator._refine_rows(D, block, options, False, upper=True)
        r, c = np.nonzero(np.isfinite(D) & (D <= limit))
        upper = block[r] < c
        rows.append(block[r[upper]])
        cols.append(c[upper])
        vals.append(D[r[upper], c[upper]])
    r, c, v = (np.concatenate(a) for a in (rows, cols, vals))
    diag = np.arange(N)
    r, c = np.concatenate([r, c, diag]), np.concatenate([c, r, diag])
    v = np.concatenate([v, v, np.zeros(N)]).astype(dtype)
    cost = sparse.csr_matrix((v, (r, c)), shape=(N, N))  # no duplicates: nothing summed
    cost.sort_indices()
    return cost
