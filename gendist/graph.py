"""Neighbourhood graphs on the vertices: epsilon (radius), symmetrised kNN and adaptive epsilon.

Edges are returned once, as pairs ``i < j`` with their exact Euclidean lengths, and become a
symmetric CSR matrix in :func:`symmetric_csr`. Coincident points (duplicates) are joined by
zero-length edges, which are kept as explicit zeros: scipy's shortest paths treat an explicit
zero in a sparse matrix as an edge of weight 0, so duplicates stay at distance 0 instead of
falling apart into separate components.

:func:`neighbourhood_graph` is the one entry point (:class:`NeighbourIndex` on the CPU: trees
in low dimension, blocked matrix products in high, chosen by :func:`search_method`;
:func:`torch_edges` on a device). Building blocks, for advanced use: :func:`build_edges`,
:func:`radius_edges`, :func:`knn_edges`, :func:`symmetric_csr`, :func:`add_vertices` (new
vertices joined to a graph), :func:`min_length_factor` (the A* bound of a weighted graph).
"""

from __future__ import annotations

import itertools
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs
from scipy import sparse
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ._compute import chunk_rows, default_memory_limit, row_norms, to_numpy
from ._validation import check_int, check_positive

__all__ = [
    "neighbourhood_graph",
    "NeighbourIndex",
    "BlockedSearch",
    "search_method",
    "auto_radius",
    "join_edges",
    "component_report",
    "GraphTooLargeError",
]


class GraphTooLargeError(MemoryError):
    """Raised when a graph or a distance matrix would not fit the memory budget."""


#: coordinates whose largest magnitude lies outside [_SEARCH_RANGE, 1 / _SEARCH_RANGE] are
#: divided by a power of two before a neighbour search (squared distances of differences of
#: about 1e150 overflow, of about 1e-150 underflow)
_SEARCH_RANGE = 2.0**-200

#: the largest coordinate magnitude whose differences float64 still holds
_MAX_COORDINATE = 1e300


#: the blocked matrix-product search is chosen from this many features on (trees below)
BLOCKED_MIN_FEATURES = 8

#: ... and from this many points on (below, any search takes milliseconds)
BLOCKED_MIN_SAMPLES = 1000

#: a block's screen runs in float32 unless its rounding slack exceeds this fraction of the
#: squared search radius of some row (then float64)
_FLOAT32_SLACK = 0.125

#: ... and only where the largest squared norm lies in this range, far inside float32's
#: (beyond it the products underflow or overflow, which the rounding bound does not cover)
_FLOAT32_RANGE = (2.0**-60, 2.0**60)

#: below this many features the screen's product and comparison run on tiles of
#: ``_SCREEN_TILE`` query rows by fitted points (8 MiB of float32), which stay in cache
#: between the two: there a whole row block's products written to memory and read back cost
#: about as much as the products themselves (10-D, n = 1e5: 7.4 s against 9.8 s untiled).
#: Wider products are compute-bound and run whole (784-D: tiles were up to 1.5x slower).
_SCREEN_TILED_BELOW = 64
_SCREEN_TILE = (1024, 2048)

#: exact lengths are computed on groups of pairs whose coordinate differences take about
#: this many bytes, which stay in cache (784-D: 5x faster than groups of ``working_memory``)
_EXACT_CHUNK_BYTES = 1 << 21


def search_method(n_samples: int, n_features: int) -> str:
    """The exact neighbour search :class:`NeighbourIndex` runs for Euclidean data of this shape.

    Trees (scipy's cKDTree, on all threads) prune well in low dimension, where a query visits
    O(log n) cells; from :data:`BLOCKED_MIN_FEATURES` features on their pruning fails and a
    query visits a growing share of all points (scikit-learn's 10-D KD-tree grows like
    n^1.9), while a blocked all-pairs search runs at matrix-product speed
    (:class:`BlockedSearch`). Below :data:`BLOCKED_MIN_SAMPLES` points the tree is kept: both
    take milliseconds.

    Parameters
    ----------
    n_samples, n_features : int
        Shape of the fitted points.

    Returns
    -------
    method : {"tree", "blocked"}
    """
    if n_features >= BLOCKED_MIN_FEATURES and n_samples >= BLOCKED_MIN_SAMPLES:
        return "blocked"
    return "tree"


def _by_row(rows: np.ndarray, values: np.ndarray, n_rows: int, fill) -> np.ndarray:
    """Values grouped by non-decreasing ``rows`` into a padded (n_rows, longest row) array."""
    counts = np.bincount(rows, minlength=n_rows)
    out = np.full((n_rows, int(counts.max(initial=0))), fill, dtype=values.dtype)
    starts = np.cumsum(counts) - counts
    out[rows, np.arange(len(rows)) - starts[rows]] = values
    return out


def _threads(n_jobs) -> int:
    """Worker threads of the blocked search: ``n_jobs``, or all cores when None (as BLAS)."""
    return effective_n_jobs(-1 if n_jobs is None else n_jobs)


class BlockedSearch:
    """Exact Euclidean kNN and radius search by blocked matrix products, in float64 results.

    For a block of queries q, ``|x_j|^2 - 2 q.x_j`` for all fitted points x_j is one matrix
    product with the augmented matrix ``[-2 X, |X|^2]`` (points centred first, which keeps
    the norms, and so the rounding, small). That expanded form is inexact, so it only
    *screens*: every product carries a rounding bound ``s`` (a multiple of the unit roundoff
    times ``|q|^2 + 2 max |x|^2``, covering the product, the conversion to float32 and the
    norms), and a point is kept as a candidate whenever its screened value could be within
    the search radius. The kept candidates' distances are then recomputed exactly from the
    coordinates (:func:`_pair_lengths`), so the neighbours and the reported lengths are those
    of an exact search: the same sets as a KD-tree's, ties at exactly equal distances aside.

    kNN: the search radius of a query is bounded from above by its (k+1)-th smallest
    distance to a fixed random sample of 1/16 of the points (computed first, in float64),
    so a candidate set holds about 16 k points; among them only those whose screened value
    lies within ``2 s`` of the k-th smallest screened value are recomputed. A block screens
    in float32 (twice the speed) unless its bound ``s`` exceeds 1/8 of some row's squared
    radius, then in float64. Blocks of queries run on ``n_jobs`` threads (BLAS on one
    thread each); their size comes from :func:`gendist._compute.chunk_rows`.

    Parameters
    ----------
    X : ndarray of shape (n, d), float64
        The fitted points.
    n_jobs : int, optional
        Threads; None uses every core.
    """

    def __init__(self, X: np.ndarray, n_jobs: int | None = None):
        self.X = X
        n, d = X.shape
        self.center = X.mean(axis=0)
        centred = X - self.center
        self.sq = np.einsum("ij,ij->i", centred, centred)
        self.sq_max = float(self.sq.max()) if n else 0.0
        self.augmented = {}  # the screens' matrices by dtype, made when first needed
        self.n_jobs = n_jobs
        self._local = threading.local()

    @staticmethod
    def memory(n: int, d: int) -> int:
        """Bytes the search holds beyond the points: the float32 and float64 screens."""
        return 12 * n * (d + 1)

    def __getstate__(self):  # the scratch buffers of each thread are not pickled
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _float32_fits(self, sq_query: np.ndarray) -> bool:
        """Whether float32 products of these squared norms neither underflow nor overflow
        (the rounding bound ``_slack`` assumes neither)."""
        low, high = _FLOAT32_RANGE
        largest = max(self.sq_max, float(sq_query.max(initial=0.0)))
        return low <= largest <= high

    def _screen_dtype(self, sq_query, s32, radius2):
        """float32 where it fits and its rounding slack is under ``_FLOAT32_SLACK`` of every
        row's squared search radius, else float64."""
        if self._float32_fits(sq_query) and np.all(s32 <= _FLOAT32_SLACK * radius2):
            return np.float32
        return np.float64

    def _matrix(self, dtype) -> np.ndarray:
        if dtype not in self.augmented:
            centred = self.X - self.center
            self.augmented[dtype] = np.hstack([-2 * centred, self.sq[:, None]]).astype(dtype)
        return self.augmented[dtype]

    def _slack(self, sq_query: np.ndarray, dtype) -> np.ndarray:
        d = self.X.shape[1]
        return 2 * (d + 8) * np.finfo(dtype).eps * (sq_query + 2 * self.sq_max)

    def _buffer(self, shape, dtype) -> np.ndarray:
        """A reused scratch array of this thread (fresh pages cost as much as the product)."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        size = shape[0] * shape[1]
        key = np.dtype(dtype)
        if key not in buffers or buffers[key].size < size:
            buffers[key] = np.empty(size, dtype)
        return buffers[key][:size].reshape(shape)

    def _screen(self, Q, bound, dtype):
        """Pairs (row, column) with screened ``|x_j|^2 - 2 q.x_j <= bound[row]``, and the values.

        Rows come out in increasing order, columns increasing within a row.
        """
        A = self._matrix(dtype)
        lhs = np.hstack([Q, np.ones((len(Q), 1))]).astype(dtype)
        if dtype == np.float32:  # round the bound up, never down
            bound = np.nextafter(bound.astype(np.float32), np.float32(np.inf))
        n = A.shape[0]
        tiled = A.shape[1] < _SCREEN_TILED_BELOW
        tile_rows, tile_cols = _SCREEN_TILE if tiled else (max(len(Q), 1), max(n, 1))
        rows, cols, vals = [], [], []
        for i in range(0, len(Q), tile_rows):
            block, limit = lhs[i : i + tile_rows], bound[i : i + tile_rows, None]
            for j in range(0, n, tile_cols):
                part = A[j : j + tile_cols]
                S = np.matmul(block, part.T, out=self._buffer((len(block), len(part)), dtype))
                mask = np.less_equal(S, limit, out=self._buffer(S.shape, bool))
                flat = np.flatnonzero(mask)
                r, c = np.divmod(flat, len(part))
                rows.append(r + i)
                cols.append(c + j)
                vals.append(S.ravel()[flat])
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        if not tiled:  # one product: already in order
            return rows, cols, vals[0].astype(np.float64)
        order = np.argsort(rows, kind="stable")  # tiles in column order: columns stay sorted
        return rows[order], cols[order], np.concatenate(vals)[order].astype(np.float64)

    def _query(self, Y):
        Q = Y - self.center
        return Q, np.einsum("ij,ij->i", Q, Q)

    def _knn_block(self, Y, first, k, self_query):
        n = self.X.shape[0]
        Q, sq_q = self._query(Y)
        s64 = self._slack(sq_q, np.float64)
        m = min(n, max(n // 16, 16 * (k + 1)))
        if m <= k:
            radius2 = np.full(len(Y), np.inf)
        else:
            sample = np.random.default_rng(0).choice(n, m, replace=False)
            # in float32 where it fits: its rounding bound keeps radius2 an upper bound
            sample_dtype = np.float32 if self._float32_fits(sq_q) else np.float64
            lhs = np.hstack([Q, np.ones((len(Q), 1))]).astype(sample_dtype)
            S = (lhs @ self._matrix(sample_dtype)[sample].T).astype(np.float64)
            S.partition(k, axis=1)  # in place: np.partition would copy the block
            radius2 = S[:, k] + sq_q + self._slack(sq_q, sample_dtype)
        s32 = self._slack(sq_q, np.float32)
        dtype = self._screen_dtype(sq_q, s32, radius2)
        s = s32 + s64 if dtype == np.float32 else 2 * s64
        rows, cols, vals = self._screen(Q, radius2 + s - sq_q, dtype)
        if self_query:
            keep = cols != first + rows
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        vals += sq_q[rows]
        # the k-th smallest screened value u of each row: the exact k nearest lie within 2 s
        grouped = _by_row(rows, vals, len(Y), np.inf)
        grouped.partition(k - 1, axis=1)
        kth = grouped[:, k - 1]
        keep = vals <= kth[rows] + 2 * s[rows]
        cols = _by_row(rows[keep], cols[keep], len(Y), -1)
        # exact lengths as _pair_lengths computes them, each query broadcast over its row, a
        # few rows at a time: the differences then stay in cache (784-D, 21 candidates a row:
        # 0.05 s a block against 0.4 s for the whole block's differences at once)
        exact = np.empty(cols.shape)
        gather = np.maximum(cols, 0)
        step = max(1, _EXACT_CHUNK_BYTES // (8 * Y.shape[1] * max(1, cols.shape[1])))
        for a in range(0, len(Y), step):
            delta = self.X[gather[a : a + step]] - Y[a : a + step, None, :]
            exact[a : a + step] = row_norms(delta.reshape(-1, Y.shape[1])).reshape(delta.shape[:2])
        exact[cols < 0] = np.inf
        # a stable sort keeps equal lengths in increasing column order
        nearest = np.argsort(exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, nearest, 1), np.take_along_axis(cols, nearest, 1)

    def _radius_block(self, Y, first, radius, self_query, exact_all):
        Q, sq_q = self._query(Y)
        s64 = self._slack(sq_q, np.float64)
        s32 = self._slack(sq_q, np.float32)
        dtype = self._screen_dtype(sq_q, s32, radius**2)
        s = s32 + s64 if dtype == np.float32 else 2 * s64
        rows, cols, vals = self._screen(Q, radius**2 + s - sq_q, dtype)
        if self_query:
            keep = cols != first + rows
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        vals += sq_q[rows]
        lengths = np.full(len(rows), np.nan)
        check = np.ones(len(rows), bool) if exact_all else vals > radius**2 - s[rows]
        lengths[check] = _pair_lengths(Y, rows[check], cols[check], self.X)
        keep = ~check | (lengths <= radius)
        return first + rows[keep], cols[keep], lengths[keep]

    def _blocks(self, Y, func, row_bytes):
        """``func(block, first)`` over row blocks of ``Y``, on the worker threads, in order."""
        workers = _threads(self.n_jobs)
        # at least 4 blocks per worker where the rows allow, so that the threads finish together
        balanced = max(64, -(-Y.shape[0] // (4 * workers)))
        step = chunk_rows(row_bytes * workers, max_rows=min(2048, balanced))
        starts = range(0, Y.shape[0], step)
        if workers == 1 or len(starts) == 1:
            return [func(Y[s : s + step], s) for s in starts]
        with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda s: func(Y[s : s + step], s), starts))

    def kneighbors(self, Y, k: int, self_query: bool):
        """The k nearest fitted points of every row of ``Y``, nearest first.

        Parameters
        ----------
        Y : ndarray of shape (m, d)
        k : int
        self_query : bool
            ``Y`` is the fitted points: a point is not its own neighbour (a duplicate is).

        Returns
        -------
        distances : ndarray of shape (m, k), exact Euclidean lengths
        indices : ndarray of shape (m, k), int64; equal distances by increasing index
        """
        n = self.X.shape[0]
        # the screen (float64 at worst) and its mask unless tiled, the candidates' indices
        # and values, the sample's distances (the differences to the kept candidates are
        # taken on row groups of _EXACT_CHUNK_BYTES)
        d = self.X.shape[1]
        row_bytes = 16 * (k + 1) * 64 + 8 * (n // 16 + 1)
        if d + 1 >= _SCREEN_TILED_BELOW:
            row_bytes += n * (8 + 1)
        parts = self._blocks(Y, lambda B, s: self._knn_block(B, s, k, self_query), row_bytes)
        if not parts:
            return np.empty((0, k)), np.empty((0, k), dtype=np.int64)
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def radius_neighbors(self, Y, radius: float, self_query: bool, return_distance: bool):
        """Fitted points within ``radius`` (``<=``) of every row of ``Y``.

        Returns
        -------
        rows, cols : ndarray of shape (E,), int64
            Query row and fitted point of every pair, by query row.
        lengths : ndarray of shape (E,)
            Exact lengths (NaN where ``return_distance`` is False and the screen alone
            proved the pair within the radius).
        """
        n = self.X.shape[0]
        parts = self._blocks(
            Y,
            lambda B, s: self._radius_block(B, s, radius, self_query, return_distance),
            n * (8 + 1),
        )
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


class NeighbourIndex(NearestNeighbors):
    """scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors`, exact at any scale and fast
    in any dimension.

    **Search.** With ``algorithm="auto"`` and the Euclidean metric, the search is chosen by
    :func:`search_method` from the shape of the fitted points: trees in low dimension (kNN
    queries by scipy's :class:`~scipy.spatial.cKDTree` on ``n_jobs`` threads, all cores when
    None, for radius queries too), :class:`BlockedSearch` (blocked matrix
    products, float64-exact results, on ``n_jobs`` threads, all cores when None, as BLAS)
    from :data:`BLOCKED_MIN_FEATURES` features on; :attr:`method_` says which. All return
    the same neighbours, up to the order of points at exactly equal distances. Another
    ``algorithm`` or metric is scikit-learn's own search.
    The blocked search needs 12 (d + 1) bytes per point beyond the points; when that exceeds
    :func:`gendist._compute.default_memory_limit`, the tree is used.

    **Scale.** Searches use squared distances, which overflow for coordinates near 1e155
    and underflow near 1e-160. Here the points are divided by a power of two (an exact
    operation) that brings their largest magnitude near 1 when it lies outside
    [2^-200, 2^200], and queries, radii and returned distances are converted; inside that
    range nothing changes. Coordinates beyond 1e300 in magnitude are refused (their
    differences overflow).

    Attributes
    ----------
    scale_ : float
        The power of two the points are divided by (1.0 in the usual range).
    method_ : {"tree", "blocked", "sklearn"}
        The search that runs ("sklearn": scikit-learn's, as asked by ``algorithm``/``metric``).
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        largest = float(np.max(np.abs(X))) if X.size else 0.0
        if largest > _MAX_COORDINATE:
            raise ValueError(
                f"coordinates as large as {largest:.3g} cannot be differenced in float64 "
                f"(the limit is {_MAX_COORDINATE:.0e}); rescale the data."
            )
        self.scale_ = 1.0
        if largest > 0 and not _SEARCH_RANGE <= largest <= 1 / _SEARCH_RANGE:
            self.scale_ = float(2.0 ** np.round(np.log2(largest)))
        X = X / self.scale_ if self.scale_ != 1.0 else X
        euclidean = self.metric == "euclidean" or (self.metric == "minkowski" and self.p == 2)
        self.method_ = "sklearn"
        self._blocked = None
        if self.algorithm == "auto" and euclidean and not self.metric_params and X.ndim == 2:
            self.method_ = search_method(*X.shape)
            if self.method_ == "blocked" and BlockedSearch.memory(*X.shape) > (
                default_memory_limit()
            ):
                self.method_ = "tree"
        self._kdtree = None
        if self.method_ == "sklearn":
            return super().fit(X)
        # scikit-learn's fitted state, without building a tree the search will not use
        super().set_params(algorithm="brute")
        try:
            super().fit(X)
        finally:
            super().set_params(algorithm="auto")
        if self.method_ == "tree":  # scipy's KD-tree: queries on n_jobs threads
            self._kdtree = cKDTree(self._fit_X)
        else:
            self._blocked = BlockedSearch(np.ascontiguousarray(self._fit_X), self.n_jobs)
        return self

    def _scaled(self, X):
        if X is None or self.scale_ == 1.0:
            return X
        return np.asarray(X, dtype=np.float64) / self.scale_

    def _own_query(self, X):
        """The query points for our own searches (None: the fitted points themselves), and
        whether they are the fitted points."""
        fitted = self._fit_X if self._blocked is None else self._blocked.X
        if X is None:
            return fitted, True
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != fitted.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the index was fitted on {fitted.shape[1]}."
            )
        return np.ascontiguousarray(self._scaled(X)), False

    def _check_k(self, k, self_query: bool) -> int:
        k = check_int(self.n_neighbors if k is None else k, "n_neighbors")
        if k > self.n_samples_fit_ - int(self_query):
            raise ValueError(
                f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {k}, "
                f"n_samples_fit = {self.n_samples_fit_}"
            )
        return k

    def _tree_kneighbors(self, X, k):
        """The k nearest fitted points by scipy's cKDTree, in query blocks of
        ``working_memory``; a fitted point queried as itself (``X`` None) is not its own
        neighbour (a duplicate of it is)."""
        Y, self_query = self._own_query(X)
        k = self._check_k(k, self_query)
        m, kk = Y.shape[0], k + int(self_query)
        dist, ind = np.empty((m, k)), np.empty((m, k), dtype=np.int64)
        step = chunk_rows(2 * 16 * kk)
        for s in range(0, m, step):
            d, i = self._kdtree.query(Y[s : s + step], kk, workers=_threads(self.n_jobs))
            d, i = d.reshape(-1, kk), i.reshape(-1, kk)
            if self_query:  # drop the point itself, or the farthest where duplicates hide it
                own = i == np.arange(s, s + len(i))[:, None]
                drop = np.where(own.any(axis=1), own.argmax(axis=1), kk - 1)
                keep = np.ones(i.shape, dtype=bool)
                keep[np.arange(len(i)), drop] = False
                d, i = d[keep].reshape(-1, k), i[keep].reshape(-1, k)
            dist[s : s + step], ind[s : s + step] = d, i
        return dist, ind

    def _tree_radius(self, Y, radius: float, self_query: bool):
        """Pairs within ``radius`` (``<=``) by scipy's cKDTree, by query row, with their
        exact lengths (:func:`_pair_lengths`); a point is not its own neighbour."""
        # a little beyond the radius: the tree's own rounding may leave out a point whose
        # exact length is the radius; the exact lengths decide below
        reach = radius * (1 + 1e-12) + np.finfo(float).tiny
        lists = self._kdtree.query_ball_point(Y, reach, workers=_threads(self.n_jobs))
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        rows = np.repeat(np.arange(len(Y)), counts)
        cols = np.fromiter(itertools.chain.from_iterable(lists), np.int64, count=len(rows))
        lengths = _pair_lengths(Y, rows, cols, self._fit_X)
        keep = lengths <= radius  # by the exact lengths returned, not the tree's rounding
        if self_query:
            keep &= rows != cols
        return rows[keep], cols[keep], lengths[keep]

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        check_is_fitted(self)
        if self.method_ == "sklearn":
            out = super().kneighbors(self._scaled(X), n_neighbors, return_distance)
        else:
            if self._kdtree is not None:
                dist, ind = self._tree_kneighbors(X, n_neighbors)
            else:
                Y, self_query = self._own_query(X)
                dist, ind = self._blocked.kneighbors(
                    Y, self._check_k(n_neighbors, self_query), self_query
                )
            out = (dist, ind) if return_distance else ind
        if return_distance and self.scale_ != 1.0:
            return out[0] * self.scale_, out[1]
        return out

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=False):
        check_is_fitted(self)
        radius = self.radius if radius is None else radius
        if self.method_ == "sklearn":
            out = super().radius_neighbors(
                self._scaled(X), radius / self.scale_, return_distance, sort_results
            )
        else:
            Y, self_query = self._own_query(X)
            r = check_positive(radius / self.scale_, "radius", allow_zero=True)
            if self._kdtree is not None:
                rows, cols, lengths = self._tree_radius(Y, r, self_query)
            else:
                rows, cols, lengths = self._blocked.radius_neighbors(
                    Y, r, self_query, return_distance
                )
            if sort_results:
                order = np.lexsort((cols, lengths, rows))
                rows, cols, lengths = rows[order], cols[order], lengths[order]
            bounds = np.searchsorted(rows, np.arange(Y.shape[0] + 1))
            ind = np.empty(Y.shape[0], dtype=object)
            ind[:] = np.split(cols, bounds[1:-1])
            if not return_distance:
                return ind
            dist = np.empty(Y.shape[0], dtype=object)
            dist[:] = np.split(lengths, bounds[1:-1])
            out = dist, ind
        if return_distance and self.scale_ != 1.0:
            return np.array([d * self.scale_ for d in out[0]], dtype=object), out[1]
        return out


def _pair_lengths(X: np.ndarray, rows: np.ndarray, cols: np.ndarray, Y=None) -> np.ndarray:
    """Exact ``|X[rows] - Y[cols]|`` (Y defaults to X), in chunks.

    The tree and brute-force neighbour searches use the expanded form
    ``|x|^2 - 2 x.y + |y|^2``, which loses all precision for near-duplicates.
    """
    Y = X if Y is None else Y
    out = np.empty(len(rows))
    step = max(1, _EXACT_CHUNK_BYTES // (8 * max(1, X.shape[1])))
    for s in range(0, len(rows), step):
        out[s : s + step] = row_norms(X[rows[s : s + step]] - Y[cols[s : s + step]])
    return out


def _unique_pairs(rows, cols, n):
    """Upper-triangle (i < j) unique pairs from possibly repeated, unordered pairs."""
    keep = rows != cols
    lo = np.minimum(rows[keep], cols[keep]).astype(np.int64)
    hi = np.maximum(rows[keep], cols[keep]).astype(np.int64)
    key = np.unique(lo * n + hi)
    return key // n, key % n


def _too_many(n_edges: int, max_edges: int | None, what: str, estimated: bool = False):
    if max_edges is not None and n_edges > max_edges:
        size = f"would have about {n_edges:,}" if estimated else f"has more than {max_edges:,}"
        raise GraphTooLargeError(
            f"the {what} {size} edges, over the memory budget of {max_edges:,} edges. Use a "
            "smaller radius, n_neighbors (a kNN graph has at most n*k edges), fewer vertices, "
            "or raise memory_limit."
        )


def _sampled_degree(nn, X, radius, n_sample: int = 256) -> float:
    """Mean number of other points within ``radius``, from a sample of at most ``n_sample``
    points queried a few at a time, so that the estimate itself stays small in memory even
    when the radius covers every point."""
    n = X.shape[0]
    sample = np.random.default_rng(0).choice(n, size=min(n, n_sample), replace=False)
    per_query = max(1, min(len(sample), chunk_rows(8 * n)))
    counts = [
        len(a) - 1
        for s in range(0, len(sample), per_query)
        for a in nn.radius_neighbors(X[sample[s : s + per_query]], radius, return_distance=False)
    ]
    return float(np.mean(counts))


def radius_edges(X, radius: float, nn: NeighbourIndex | None = None, max_edges=None):
    """Pairs ``i < j`` with ``|x_i - x_j| <= radius`` (duplicates included, at length 0).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    radius : float
    nn : NeighbourIndex, optional
        Already fitted on ``X``.
    max_edges : int, optional
        Refuse (GraphTooLargeError) before building more edges than this.

    Returns
    -------
    rows, cols : ndarray of shape (E,), int64, with ``rows < cols``
    lengths : ndarray of shape (E,), Euclidean lengths
    """
    n = X.shape[0]
    nn = nn if nn is not None else NeighbourIndex().fit(X)
    degree = _sampled_degree(nn, X, radius)
    what = f"radius graph (radius={radius:.4g})"
    _too_many(int(n * degree / 2), max_edges, what, estimated=True)
    rows, cols, total = [], [], 0
    step = chunk_rows(3 * 8 * (degree + 1))  # neighbour lists, their rows, the mask
    for s in range(0, n, step):
        ind = nn.radius_neighbors(X[s : s + step], radius, return_distance=False)
        counts = np.fromiter((len(a) for a in ind), dtype=np.int64, count=len(ind))
        r = np.repeat(np.arange(s, s + len(ind)), counts)
        c = np.concatenate(ind) if len(ind) else np.empty(0, np.int64)
        upper = r < c
        rows.append(r[upper])
        cols.append(c[upper])
        total += int(upper.sum())
        _too_many(total, max_edges, what)
    rows = np.concatenate(rows).astype(np.int64)
    cols = np.concatenate(cols).astype(np.int64)
    return rows, cols, _pair_lengths(X, rows, cols)


def knn_edges(X, n_neighbors: int, nn: NeighbourIndex | None = None):
    """Symmetrised k-nearest-neighbour pairs ``i < j``: i is among j's k nearest, or j among i's.

    Returns
    -------
    rows, cols, lengths : as in :func:`radius_edges`
    """
    n = X.shape[0]
    k = min(check_int(n_neighbors, "n_neighbors"), n - 1)
    nn = nn if nn is not None else NeighbourIndex().fit(X)
    ind = nn.kneighbors(None, k, return_distance=False)
    rows, cols = _unique_pairs(np.repeat(np.arange(n), k), ind.ravel(), n)
    return rows, cols, _pair_lengths(X, rows, cols)


def build_edges(X, radius=None, n_neighbors=None, nn=None, max_edges=None):
    """Edges of the epsilon-, kNN or adaptive-epsilon graph.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    radius : float, optional
        Join points closer than ``radius``.
    n_neighbors : int, optional
        Join every point to its k nearest neighbours (symmetrised). Given together with
        ``radius``, the graph is the adaptive epsilon-graph: the union of both, so that every
        vertex keeps at least k neighbours.
    nn : NeighbourIndex, optional
        Already fitted on ``X``.
    max_edges : int, optional
        Memory guard for the radius graph.

    Returns
    -------
    rows, cols, lengths : ndarray of shape (E,), with ``rows < cols``
    """
    if radius is None and n_neighbors is None:
        raise ValueError("give radius, n_neighbors, or both (adaptive epsilon).")
    nn = nn if nn is not None else NeighbourIndex().fit(X)
    parts = []
    if radius is not None:
        parts.append(radius_edges(X, radius, nn=nn, max_edges=max_edges))
    if n_neighbors is not None:
        parts.append(knn_edges(X, n_neighbors, nn=nn))
    if len(parts) == 1:
        return parts[0]
    n = X.shape[0]
    rows, cols = _unique_pairs(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), n
    )
    return rows, cols, _pair_lengths(X, rows, cols)


def neighbourhood_graph(
    X, radius=None, n_neighbors=None, *, device=None, nn=None, max_edges=None, neighbors=None
):
    """Edges of the epsilon-, kNN or adaptive-epsilon graph, on the CPU or on a torch device.

    The one switch between the builders: scikit-learn's neighbour search
    (:func:`build_edges`) when ``device`` is None, the blocked all-pairs search in torch
    (:func:`torch_edges`) on a device. Both give the same graph, up to the order in which
    neighbours at exactly equal distances are chosen. With ``neighbors``, a sparse
    neighbour graph on ``X`` computed elsewhere, its pairs are the edges
    (:func:`precomputed_edges`) and no search runs.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    radius, n_neighbors, max_edges : as in :func:`build_edges`
    device : None, str or torch.device
    nn : NeighbourIndex, optional
        Already fitted on ``X`` (CPU search only).
    neighbors : sparse matrix of shape (n, n), optional
        A neighbour graph in scikit-learn's precomputed convention; ``radius`` must then be
        None and ``n_neighbors`` is not used.

    Returns
    -------
    rows, cols : ndarray of shape (E,), int64, with ``rows < cols``
    lengths : ndarray of shape (E,), exact Euclidean lengths
    """
    if neighbors is not None:
        if radius is not None:
            raise ValueError("a given neighbour graph is a kNN graph: radius must be None.")
        return precomputed_edges(X, neighbors)
    if device is None:
        return build_edges(X, radius, n_neighbors, nn=nn, max_edges=max_edges)
    return torch_edges(X, radius, n_neighbors, device=device, max_edges=max_edges)


def precomputed_edges(X, graph):
    """Edges from a sparse neighbour graph computed elsewhere (an approximate kNN search).

    The graph follows scikit-learn's precomputed convention (``KNeighborsTransformer``,
    pynndescent's ``PyNNDescentTransformer``): row i stores i's neighbours, an entry's value
    is their distance, and a missing entry means "not a neighbour". Only which pairs are
    stored matters: every stored pair ``(i, j)``, ``i != j``, explicit zeros included, is an
    edge (symmetrised, once as ``i < j``), and its length is computed again exactly from
    ``X``; the diagonal (each point as its own neighbour) is ignored.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    graph : sparse matrix of shape (n, n)

    Returns
    -------
    rows, cols, lengths : as in :func:`radius_edges`
    """
    n = X.shape[0]
    if not sparse.issparse(graph):
        raise TypeError(
            f"a neighbour graph must be a scipy sparse matrix, got {type(graph).__name__}."
        )
    if graph.shape != (n, n):
        raise ValueError(
            f"the neighbour graph has shape {graph.shape}; the graph's {n} vertices need "
            f"({n}, {n})."
        )
    coo = sparse.coo_matrix(graph)
    rows, cols = _unique_pairs(coo.row.astype(np.int64), coo.col.astype(np.int64), n)
    return rows, cols, _pair_lengths(X, rows, cols)


def torch_edges(X, radius=None, n_neighbors=None, device=None, dtype=None, max_edges=None):
    """:func:`build_edges` by a blocked all-pairs search in torch (on CUDA when present).

    Row blocks of the distance matrix come from the matrix-product form of ``torch.cdist``
    (fast on a GPU, but it loses precision for near-duplicates), so the candidates are chosen
    with a slack on the squared distance, ``tol * (|x|^2 + |y|^2)``, and their lengths
    recomputed exactly in float64 on the CPU: the radius graph is then exactly
    :func:`radius_edges`'s. For kNN, the ``k + 8`` nearest by the fast form are recomputed
    exactly and the k nearest kept; a row whose margin does not prove that (its (k+8)-th
    candidate is not surely farther than its exact k-th) is searched exactly over all points.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    radius, n_neighbors, max_edges : as in :func:`build_edges`
    device : str or torch.device, optional
        Default: ``"cpu"``.
    dtype : torch dtype, optional
        Of the fast search: float32 on CUDA, float64 on the CPU by default.

    Returns
    -------
    rows, cols, lengths : ndarray of shape (E,), with ``rows < cols``
    """
    from ._optional import import_optional

    torch = import_optional("torch")
    if radius is None and n_neighbors is None:
        raise ValueError("give radius, n_neighbors, or both (adaptive epsilon).")
    device = torch.device("cpu" if device is None else device)
    dtype = dtype or (torch.float32 if device.type == "cuda" else torch.float64)
    tol = 64 * torch.finfo(dtype).eps
    n = X.shape[0]
    k = None if n_neighbors is None else min(check_int(n_neighbors, "n_neighbors"), n - 1)
    Xt = torch.as_tensor(np.array(X, copy=not X.flags.writeable), dtype=dtype, device=device)
    sq_norm = (Xt * Xt).sum(1)
    # a block of distance rows, with its slack, mask and top-k temporaries
    step = chunk_rows(4 * max(n, 1) * torch.finfo(dtype).bits // 8, device=device)
    rows, cols, total = [], [], 0
    for s in range(0, n, step):
        block = torch.arange(s, min(n, s + step), device=device)
        d2 = torch.cdist(Xt[block], Xt, compute_mode="use_mm_for_euclid_dist") ** 2
        slack = tol * (sq_norm[block, None] + sq_norm[None, :])
        d2[torch.arange(len(block), device=device), block] = float("inf")  # not itself
        if radius is not None:
            r, c = torch.nonzero(d2 <= radius**2 + slack, as_tuple=True)
            r, c = to_numpy(r + s), to_numpy(c)
            exact = _pair_lengths(X, r, c)
            within = (exact <= radius) & (r < c)
            rows.append(r[within])
            cols.append(c[within])
            total += int(within.sum())
            _too_many(total, max_edges, f"radius graph (radius={radius:.4g})")
        if k:
            m = min(k + 8, n - 1)
            approx, idx = torch.topk(d2, m, dim=1, largest=False)
            idx, approx = to_numpy(idx), to_numpy(approx)
            r = np.repeat(np.arange(s, s + len(block)), m)
            exact = _pair_lengths(X, r, idx.ravel()).reshape(-1, m)
            order = np.argsort(exact, axis=1, kind="stable")[:, :k]
            kth = np.take_along_axis(exact, order[:, -1:], 1)[:, 0]
            # proven when the (m)-th candidate is surely farther than the exact k-th
            margin = to_numpy(slack.max(dim=1).values)
            proven = (m == n - 1) | (approx[:, -1] - margin > kth**2 * (1 + 1e-12))
            chosen = np.take_along_axis(idx, order, 1)
            for i in np.flatnonzero(~proven):  # exact over all points
                full = _pair_lengths(X, np.full(n, s + i), np.arange(n))
                full[s + i] = np.inf
                chosen[i] = np.argsort(full, kind="stable")[:k]
            rows.append(np.repeat(np.arange(s, s + len(block)), k))
            cols.append(chosen.ravel())
    rows, cols = _unique_pairs(np.concatenate(rows), np.concatenate(cols), n)
    return rows, cols, _pair_lengths(X, rows, cols)


#: Neighbours per vertex of the default graph (``radius=None, n_neighbors=None``).
DEFAULT_NEIGHBORS = 10

#: A vertex whose nearest neighbour is this many times farther than the median vertex's is
#: reported as isolated by :func:`connected_knn_edges`.
_ISOLATED = 10.0


def component_joins(X, rows, cols, lengths):
    """Edges that join the components of a graph into one: Boruvka-style, each component's
    shortest edge to the rest, until one is left.

    The result with the graph's edges contains a spanning tree of shortest links, so with a
    kNN graph it contains the minimum spanning tree of the kNN graph completed across
    components.

    Returns
    -------
    rows, cols, lengths : ndarray of shape (J,)
        The joining edges (``rows < cols``), J = 0 when the graph is connected.
    """
    n = X.shape[0]
    extra_r, extra_c, extra_l = [], [], []
    while True:
        r = np.concatenate([rows, extra_r]).astype(np.int64)
        c = np.concatenate([cols, extra_c]).astype(np.int64)
        graph = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        n_comp, labels = connected_components(graph, directed=False)
        if n_comp == 1:
            break
        for component in range(n_comp):
            i, j, length = _nearest_outside(X, labels, component)
            extra_r.append(min(i, j))
            extra_c.append(max(i, j))
            extra_l.append(length)
    if not extra_r:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    rows, cols = _unique_pairs(np.asarray(extra_r), np.asarray(extra_c), n)
    return rows, cols, _pair_lengths(X, rows, cols)


def connected_knn_edges(X, rows, cols, lengths, warn: bool = True):
    """The default graph from its kNN edges: the kNN graph, joined into one component.

    A kNN graph bounds the degree (and the memory) and lets a far point join through its
    own nearest neighbours, whatever its distance; groups of points that the kNN graph
    leaves apart are then joined by their shortest links (:func:`component_joins`), so the
    distances between them are finite: the length of a curve that crosses the gap. Warns
    (``warn``) when links were added and when some vertices lie far from all others.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    rows, cols, lengths : ndarray of shape (E,)
        The kNN edges (``rows < cols``).

    Returns
    -------
    rows, cols, lengths : ndarray
        The kNN edges and the joining ones.
    """
    n = X.shape[0]
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, rows, lengths)
    np.minimum.at(nearest, cols, lengths)
    typical = float(np.median(nearest[np.isfinite(nearest)])) if len(lengths) else 0.0
    isolated = np.flatnonzero(nearest > _ISOLATED * typical) if typical > 0 else []
    jr, jc, jl = component_joins(X, rows, cols, lengths)
    if warn and len(isolated):
        warnings.warn(
            f"{len(isolated)} of {n} points lie far from all others (their nearest neighbour "
            f"is more than {_ISOLATED:g}x the median nearest-neighbour distance "
            f"{typical:.3g}): they join the graph through their own nearest neighbours, and "
            "their distances cross low density in long straight edges.",
            UserWarning,
            stacklevel=3,
        )
    if warn and len(jr):
        warnings.warn(
            f"the {DEFAULT_NEIGHBORS}-nearest-neighbour graph fell apart into groups of "
            f"points; {len(jr)} shortest links (up to {jl.max():.3g} long, against a median "
            f"edge of {np.median(lengths):.3g}) join them into one graph, so distances "
            "between the groups are finite and cross the gaps between them.",
            UserWarning,
            stacklevel=3,
        )
    return (
        np.concatenate([rows, jr]),
        np.concatenate([cols, jc]),
        np.concatenate([lengths, jl]),
    )


def auto_radius(X, n_neighbors: int = 10, nn: NeighbourIndex | None = None) -> float:
    """A radius whose epsilon-graph is connected: the longest edge of a spanning tree.

    The spanning tree is the minimum spanning tree of the kNN graph, completed (when the kNN
    graph falls apart) by the shortest edge from each component to the rest, Boruvka-style
    (:func:`component_joins`). Every tree edge is then no longer than the radius, so the
    radius graph contains the tree and is connected. On a kNN graph that is already
    connected this is the smallest radius that the kNN edges can certify; the exact minimum
    (the bottleneck of the Euclidean MST) can only be smaller. One far point sets it for
    every vertex: a warning says so when the longest tree edge exceeds ten times the
    median one (the default graph, ``radius=None``, is safe there).

    Returns
    -------
    radius : float
    """
    n = X.shape[0]
    if n < 2:
        raise ValueError("a graph needs at least 2 points.")
    nn = nn if nn is not None else NeighbourIndex().fit(X)
    rows, cols, lengths = knn_edges(X, min(n_neighbors, n - 1), nn=nn)
    jr, jc, jl = component_joins(X, rows, cols, lengths)
    rows, cols = np.concatenate([rows, jr]), np.concatenate([cols, jc])
    lengths = np.concatenate([lengths, jl])
    # MST ignores explicit zeros: lift zero lengths (duplicates) to the smallest positive
    weights = np.maximum(lengths, np.finfo(float).tiny)
    tree = minimum_spanning_tree(sparse.csr_matrix((weights, (rows, cols)), shape=(n, n)))
    if not tree.nnz:
        return 0.0
    radius = float(tree.data.max()) * (1 + 1e-9)
    median = float(np.median(tree.data))
    if radius > _ISOLATED * median:
        warnings.warn(
            f"radius='auto' is {radius:.4g}, {radius / median:.0f}x the median edge of the "
            "spanning tree: a few far points set it for every vertex, and the graph gets "
            "many long edges. The default graph (radius=None, n_neighbors=None) joins far "
            "points through their own nearest neighbours instead.",
            UserWarning,
            stacklevel=3,
        )
    return radius


def _nearest_outside(X, labels, component):
    """Shortest edge (i, j, length) from a point of ``component`` to a point outside it."""
    inside = np.flatnonzero(labels == component)
    outside = np.flatnonzero(labels != component)
    nn = NeighbourIndex(n_neighbors=1).fit(X[outside])
    dist, ind = nn.kneighbors(X[inside])
    best = int(np.argmin(dist[:, 0]))
    i, j = inside[best], outside[ind[best, 0]]
    return i, j, float(row_norms(X[i][None] - X[j][None])[0])


def symmetric_csr(n: int, rows, cols, weights) -> sparse.csr_matrix:
    """Symmetric CSR adjacency from pairs ``i < j``; zero weights stay as explicit entries.

    Each pair appears once in ``rows, cols``, so writing both (i, j) and (j, i) creates no
    duplicate entries (summing duplicates would double weights).
    """
    r = np.concatenate([rows, cols])
    c = np.concatenate([cols, rows])
    w = np.concatenate([weights, weights]).astype(np.float64)
    order = np.lexsort((c, r))
    r, c, w = r[order], c[order], w[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    idx_dtype = np.int32 if max(n, len(w)) < 2**31 - 1 else np.int64
    return sparse.csr_matrix((w, c.astype(idx_dtype), indptr.astype(idx_dtype)), shape=(n, n))


def add_vertices(
    graph, rows, cols, weights, n_new: int, *, both_directions: bool, links=None
) -> sparse.csr_matrix:
    """The graph with ``n_new`` new vertices ``N, N + 1, ...`` joined to it.

    New vertex ``N + rows[e]`` is joined to old vertex ``cols[e]`` with weight
    ``weights[e]``. With ``both_directions`` the edges go both ways (the new vertices are
    passable, as the ends of a pair query); without, only out of the new vertices, which then
    have no incoming edge, so that no path passes through them and the old graph's distances
    are unchanged (sources for :meth:`transform`-style queries).

    The new vertices' indices are the largest, so their entries go at the ends of the old
    rows: one insertion into the CSR arrays, without sorting or converting the graph.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
    rows : ndarray of shape (E,), int
        New vertex of each edge, in ``[0, n_new)``.
    cols : ndarray of shape (E,), int
        Old vertex of each edge, in ``[0, N)``.
    weights : ndarray of shape (E,)
    n_new : int
        Number of new vertices m.
    both_directions : bool
    links : tuple of three arrays (i, j, weight), optional
        Edges between new vertices ``N + i`` and ``N + j``, both ways.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (N + m, N + m)
    """
    G = sparse.csr_matrix(graph)
    N = G.shape[0]
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    m = int(n_new)
    indices, data, indptr = G.indices.astype(np.int64), G.data, G.indptr.astype(np.int64)
    if both_directions:
        order = np.lexsort((rows, cols))  # by old vertex, then new vertex
        at = indptr[cols[order] + 1]
        indices = np.insert(indices, at, N + rows[order])
        data = np.insert(data, at, weights[order])
        indptr = indptr + np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=N))])
    if links is not None:  # among new vertices: both ways, after the old columns
        li, lj, lw = (np.asarray(a) for a in links)
        rows = np.concatenate([rows, li, lj]).astype(np.int64)
        cols = np.concatenate([cols, N + lj, N + li]).astype(np.int64)
        weights = np.concatenate([weights, lw, lw]).astype(np.float64)
    by_new = np.lexsort((cols, rows))  # the new vertices' own rows, at the end
    indices = np.concatenate([indices, cols[by_new]])
    data = np.concatenate([data, weights[by_new]])
    indptr = np.concatenate([indptr, indptr[-1] + np.cumsum(np.bincount(rows, minlength=m))])
    return sparse.csr_matrix((data, indices, indptr), shape=(N + m, N + m))


def min_length_factor(lengths, log_weights) -> float:
    """Smallest ``weight / Euclidean length`` over edges, rounded down a little.

    Every graph distance ``d(u, v)`` is then at least ``factor * |x_u - x_v|`` (a path's
    weight is at least ``factor`` times its Euclidean length, which is at least the chord):
    the admissible A* bound of single-pair queries. Zero-length edges (duplicates) are left
    out; ``inf`` when no edge has a positive length.

    Parameters
    ----------
    lengths : ndarray of shape (E,)
        Euclidean lengths of the edges, as the graph builders return them.
    log_weights : ndarray of shape (E,)
        Their log-weights.

    Returns
    -------
    factor : float
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    moved = lengths > 0
    ratio = np.asarray(log_weights)[moved] - np.log(lengths[moved])
    return float(np.exp(ratio.min()) * (1 - 1e-9)) if ratio.size else np.inf


#: exp() of log-weights in [_LOG_FLOOR, _LOG_CEILING] is a normal float64
_LOG_FLOOR, _LOG_CEILING = -700.0, 700.0


def distance_unit(log_weights, n_vertices: int) -> float:
    """The log of the unit graph weights are stored in: 0 unless they leave float64.

    Weights are exact in log space, but a graph stores ``exp(log w)``: below about e^-708 it
    is 0 (every distance 0), above e^709 inf (every pair "disconnected"), and a path adds up
    to ``n_vertices`` weights. When the log-weights leave that range, all of them are
    shifted by one common constant ``c`` (weights in units of e^c) with a warning that says
    so; when they span more than float64 can hold at once, no unit helps, and an error says
    what to change.

    Parameters
    ----------
    log_weights : ndarray of shape (E,)
        Log-weights of the graph's edges (-inf for zero-length edges).
    n_vertices : int

    Returns
    -------
    log_unit : float
        ``c``; distances are reported as multiples of ``e^c``.

    Raises
    ------
    ValueError
        If the finite log-weights span more than float64's range.
    """
    finite = np.asarray(log_weights)[np.isfinite(log_weights)]
    if finite.size == 0:
        return 0.0
    low, high = float(finite.min()), float(finite.max())
    ceiling = _LOG_CEILING - np.log(max(n_vertices, 2))  # room for sums along paths
    if low >= _LOG_FLOOR and high <= ceiling:
        return 0.0
    if high - low > ceiling - _LOG_FLOOR:
        raise ValueError(
            f"the edge weights under this metric span e^{low:.4g} to e^{high:.4g}, a range "
            "float64 cannot hold (about e^-700 to e^700): some distances would become 0 "
            "or inf. Lower beta (the contrast grows like beta * log p), or set lam relative "
            "to the data (lam='quantile:q') or larger."
        )
    # any unit in [high - ceiling, low - floor] holds every weight; the middle one leaves the
    # most room on both sides (sums along paths, new points' edges, float32 results)
    unit = 0.5 * ((high - ceiling) + (low - _LOG_FLOOR))
    warnings.warn(
        f"the edge weights under this metric lie between e^{low:.6g} and e^{high:.6g}, "
        f"outside float64; distances are reported in units of e^{unit:.6g} "
        "(log_distance_unit_): multiply by exp(log_distance_unit_) for the metric's own "
        "units. Lower beta or raise lam to stay in range.",
        UserWarning,
        stacklevel=3,
    )
    return unit


def component_report(graph: sparse.csr_matrix, warn: bool = True):
    """Connected components of the graph, with a warning when there is more than one.

    Returns
    -------
    n_components : int
    labels : ndarray of shape (n,)
    """
    n_comp, labels = connected_components(graph, directed=False)
    if warn and n_comp > 1:
        sizes = np.bincount(labels)
        warnings.warn(
            f"the graph has {n_comp} connected components (largest {sizes.max()} of "
            f"{len(labels)} vertices); distances between components are inf. Use a larger "
            "radius, radius='auto', or n_neighbors.",
            UserWarning,
            stacklevel=3,
        )
    return n_comp, labels


def join_edges(nn: NeighbourIndex, vertices, Y, radius=None, n_neighbors=None):
    """Edges that join new points ``Y`` to the fitted vertices, by the graph's own rule.

    A new point is joined to the vertices within ``radius`` and/or to its ``n_neighbors``
    nearest vertices. A point with no vertex within ``radius`` (and no kNN rule) is joined to
    its nearest vertex, with a warning that counts such points.

    Returns
    -------
    rows : ndarray of shape (E,), index into ``Y``
    cols : ndarray of shape (E,), index into ``vertices``
    lengths : ndarray of shape (E,)
    """
    m = Y.shape[0]
    rows, cols = [], []
    if radius is not None:
        ind = nn.radius_neighbors(Y, check_positive(radius, "radius"), return_distance=False)
        counts = np.fromiter((len(a) for a in ind), dtype=np.int64, count=m)
        rows.append(np.repeat(np.arange(m), counts))
        cols.append(np.concatenate(ind).astype(np.int64) if m else np.empty(0, np.int64))
        lonely = np.flatnonzero(counts == 0)
        if n_neighbors is None and len(lonely):
            warnings.warn(
                f"{len(lonely)} of {m} new points have no vertex within radius={radius:.4g}; "
                "each is joined to its nearest vertex instead.",
                UserWarning,
                stacklevel=3,
            )
            rows.append(lonely)
            cols.append(nn.kneighbors(Y[lonely], 1, return_distance=False)[:, 0])
    if n_neighbors is not None:
        k = min(n_neighbors, vertices.shape[0])
        ind = nn.kneighbors(Y, k, return_distance=False)
        rows.append(np.repeat(np.arange(m), k))
        cols.append(ind.ravel())
    rows = np.concatenate(rows).astype(np.int64)
    cols = np.concatenate(cols).astype(np.int64)
    key = np.unique(rows * vertices.shape[0] + cols)
    rows, cols = key // vertices.shape[0], key % vertices.shape[0]
    return rows, cols, _pair_lengths(Y, rows, cols, vertices)
