"""The scikit-learn estimator: :class:`GenerativeDistance`, and :func:`generative_distances`."""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_int, check_points, check_positive
from .densities import as_density, evaluate_log_density
from .graph import (
    auto_radius,
    build_edges,
    component_report,
    join_edges,
    symmetric_csr,
    torch_edges,
)
from .metric import ConformalMetric, resolve_lambda
from .paths import (
    Geodesic,
    _closed,
    default_memory_limit,
    pair_shortest_path,
    shortest_paths,
)
from .refine import refine_path

__all__ = ["GenerativeDistance", "generative_distances"]

_VERTEX_MODES = ("data", "samples", "both")


class GenerativeDistance(TransformerMixin, BaseEstimator):
    """Generative distances and geodesics between points, under a density model.

    The density ``p`` defines the conformal metric with length factor
    ``h(x) = ((p0 + lam) / (p(x) + lam)) ** beta``: paths through high density are short,
    paths across low-density gaps are long. :meth:`fit` builds a neighbourhood graph on the
    vertices (the training points, samples drawn from the density, or both) and weights each
    edge by its length under the metric (trapezoidal rule on ``n_quad`` nodes, in log space);
    distances are shortest paths in that graph, and geodesics are the paths themselves.

    Parameters
    ----------
    density : callable, estimator, torch model or Density, default=None
        The model, evaluated only through its log-density: a callable mapping an (n, d) array
        to n log-densities; a scikit-learn estimator with ``score_samples`` (fitted, or
        unfitted: a clone is then fitted on X); a torch module or distribution with
        ``log_prob``; or a :class:`gendist.densities.Density`. ``None`` fits a
        ``GaussianMixture`` with ``min(8, n_samples)`` full-covariance components on X.
    lam : float or str, default="quantile:0.1"
        Regulariser lambda > 0 of the metric, in units of density. ``"quantile:q"`` sets it to
        the q-quantile of ``p`` over the vertices, which is how to choose it in high dimension.
        Small lambda: strong contrast between dense and sparse regions; lambda -> inf:
        Euclidean graph distances.
    beta : float, default=1.0
        Exponent of the length factor (> 0); larger sharpens the contrast.
    p0 : float, default=0.0
        Reference density (>= 0): the metric is exactly Euclidean where ``p = p0``.
    radius : float or "auto", default=None
        Join vertices closer than ``radius`` (epsilon-graph). ``"auto"`` picks a radius that
        makes the graph connected. ``None`` means ``"auto"`` unless ``n_neighbors`` is given.
    n_neighbors : int, default=None
        Join each vertex to its k nearest neighbours (symmetrised). With ``radius`` as well,
        the graph is the adaptive epsilon-graph: every vertex keeps at least k neighbours.
    n_quad : int, default=8
        Trapezoidal nodes per edge, endpoints included (>= 2). Error falls like 1/n_quad^2.
    vertices : {"data", "samples", "both"}, default="data"
        Graph vertices: the training points, ``n_vertex_samples`` points drawn from the
        density (the training points then join the sample graph through their neighbours),
        or both.
    n_vertex_samples : int, default=None
        Number of vertices to sample for ``vertices="samples"`` or ``"both"``.
    backend : {"auto", "scipy", "torch", "cugraph"}, default="auto"
        Shortest-path backend of the many-source queries (see :mod:`gendist.paths`):
        ``"scipy"`` runs scipy's Dijkstra; ``"torch"`` a batched Bellman-Ford on CUDA when
        present (needs torch); ``"cugraph"`` RAPIDS cuGraph's SSSP (extra ``gpu``).
        ``"auto"`` picks by hardware, installed libraries and graph
        (:func:`gendist.paths.choose_backend`): scipy without a CUDA device. Single pairs
        always use the bidirectional search.
    n_jobs : int, default=None
        Workers for many-source shortest paths and for the edge-weight chunks (joblib
        semantics: processes by default, a dask or Ray cluster under
        ``joblib.parallel_config``).
    dtype : {"float64", "float32"}, default="float64"
        Dtype of returned distance matrices; float32 halves their memory.
    memory_limit : int, default=None
        Bytes allowed for a distance matrix or the graph (default: half the physical memory).
    batch_size : int, default=65536
        Points per call to the density.
    device : str or torch.device, default=None
        Build the graph (:func:`gendist.graph.torch_edges`, a blocked all-pairs search) and
        compute the edge weights (the quadrature, where the density is evaluated most) with
        torch on this device, e.g. ``"cuda"``: points and edges stay there and only the
        weights come back (:meth:`ConformalMetric.edge_log_weights_torch`). Needs a density
        that evaluates torch tensors (torch models, flows, ``GaussianMixtureDensity``).
        None: numpy on the CPU.
    random_state : int, RandomState or None, default=None
        Seeds the default density and vertex sampling.
    verbose : bool, default=False
        Show progress bars.

    Attributes
    ----------
    n_features_in_ : int
    vertices_ : ndarray of shape (n_vertices, n_features)
        Graph vertices; the training points come first (``data_index_``).
    data_index_ : ndarray of shape (n_samples,)
        Vertex index of each training point.
    log_prob_ : ndarray of shape (n_vertices,)
        Log-density of each vertex.
    density_ : Density
        The fitted density adapter.
    log_lam_ : float
        Natural log of the lambda in use.
    lam_ : float
        The absolute lambda in use (inf when it overflows float64, as in high dimension;
        ``log_lam_`` is exact).
    metric_ : ConformalMetric
        The metric; ``metric_.curve_length(points)`` measures any polyline.
    radius_ : float or None
        The radius in use.
    graph_ : scipy.sparse.csr_matrix of shape (n_vertices, n_vertices)
        Symmetric edge weights (explicit zeros join duplicate points).
    n_components_ : int
        Connected components of the graph; more than one means some distances are inf.
    component_labels_ : ndarray of shape (n_vertices,)
    min_length_factor_ : float
        Smallest ratio of an edge's weight to its Euclidean length, so that every graph
        distance is at least ``min_length_factor_ * |x - y|``: the admissible (A*) lower bound
        that starts single-pair queries (it is at least ``((p0 + lam) / (max p + lam)) ** beta``).

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from sklearn.mixture import GaussianMixture
    >>> from gendist import GenerativeDistance
    >>> X, _ = make_moons(300, noise=0.05, random_state=0)
    >>> est = GenerativeDistance(GaussianMixture(10, random_state=0), n_neighbors=10)
    >>> D = est.fit_transform(X)
    >>> D.shape
    (300, 300)
    """

    def __init__(
        self,
        density=None,
        *,
        lam="quantile:0.1",
        beta=1.0,
        p0=0.0,
        radius=None,
        n_neighbors=None,
        n_quad=8,
        vertices="data",
        n_vertex_samples=None,
        backend="auto",
        n_jobs=None,
        dtype="float64",
        memory_limit=None,
        batch_size=65536,
        device=None,
        random_state=None,
        verbose=False,
    ):
        self.density = density
        self.lam = lam
        self.beta = beta
        self.p0 = p0
        self.radius = radius
        self.n_neighbors = n_neighbors
        self.n_quad = n_quad
        self.vertices = vertices
        self.n_vertex_samples = n_vertex_samples
        self.backend = backend
        self.n_jobs = n_jobs
        self.dtype = dtype
        self.memory_limit = memory_limit
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        check_positive(self.beta, "beta")
        check_positive(self.p0, "p0", allow_zero=True)
        if not isinstance(self.lam, str):
            check_positive(self.lam, "lam")
        check_int(self.n_quad, "n_quad", minimum=2)
        check_int(self.batch_size, "batch_size")
        if self.n_neighbors is not None:
            check_int(self.n_neighbors, "n_neighbors")
        if self.radius is not None and not (isinstance(self.radius, str) and self.radius == "auto"):
            check_positive(self.radius, "radius")
        if self.vertices not in _VERTEX_MODES:
            raise ValueError(f"vertices must be one of {_VERTEX_MODES}, got {self.vertices!r}.")
        if self.vertices != "data":
            if self.n_vertex_samples is None:
                raise ValueError(f"vertices={self.vertices!r} needs n_vertex_samples.")
            check_int(self.n_vertex_samples, "n_vertex_samples")
        if str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        if self.memory_limit is not None:
            check_int(self.memory_limit, "memory_limit")

    def _memory_limit(self) -> int:
        return default_memory_limit() if self.memory_limit is None else self.memory_limit

    def _make_density(self, X):
        density = self.density
        if density is None:
            density = GaussianMixture(
                n_components=min(8, X.shape[0]),
                covariance_type="full",
                random_state=self.random_state,
            )
        density = as_density(density)
        if not density.requires_fit:
            return density
        # a density that is an estimator itself (RealNVPDensity) is fitted as a copy, so that
        # the parameter stays as the user passed it and a refit starts afresh
        return (clone(density) if isinstance(density, BaseEstimator) else density).fit(X)

    def _sample_vertices(self, density, n_features):
        S = density.sample(self.n_vertex_samples, random_state=self.random_state)
        S = check_points(S, "samples drawn from the density")
        if S.shape != (self.n_vertex_samples, n_features):
            raise ValueError(
                f"the density sampled an array of shape {S.shape}; expected "
                f"({self.n_vertex_samples}, {n_features})."
            )
        return S

    def fit(self, X, y=None):
        """Build the graph on the vertices and weight its edges under the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : ignored

        Returns
        -------
        self
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        self._check_params()
        n = X.shape[0]
        progress = bool(self.verbose)
        self.density_ = self._make_density(X)

        if self.vertices == "data":
            V = X
        else:
            S = self._sample_vertices(self.density_, X.shape[1])
            V = np.vstack([X, S])
        self.vertices_ = V
        self.data_index_ = np.arange(n)
        self.log_prob_ = evaluate_log_density(self.density_, V, self.batch_size, progress)
        self.log_lam_ = resolve_lambda(self.lam, self.log_prob_)
        with np.errstate(over="ignore"):
            self.lam_ = float(np.exp(self.log_lam_))
        self.metric_ = ConformalMetric(
            self.density_,
            self.log_lam_,
            float(self.beta),
            float(self.p0),
            int(self.n_quad),
        )

        # in "samples" mode the graph is built on the samples, and the training points (like
        # any new point later) join it through their neighbours among the samples only
        self._join_offset = n if self.vertices == "samples" else 0
        graph_points = V[self._join_offset :]
        self.nn_ = NearestNeighbors().fit(graph_points)
        radius = self.radius
        if radius is None and self.n_neighbors is None:
            radius = "auto"
        if isinstance(radius, str):
            radius = auto_radius(graph_points, nn=self.nn_)
        self.radius_ = radius
        if self.device is None:
            rows, cols, _ = build_edges(
                graph_points,
                radius,
                self.n_neighbors,
                nn=self.nn_,
                max_edges=self._memory_limit() // 64,
            )
        else:
            rows, cols, _ = torch_edges(
                graph_points,
                radius,
                self.n_neighbors,
                device=self.device,
                max_edges=self._memory_limit() // 64,
            )
        rows, cols = rows + self._join_offset, cols + self._join_offset
        if self.vertices == "samples":
            self._nn_data = NearestNeighbors().fit(X)
            jr, jc = self._join_edges(X)
            keep = (jc >= n) | (jr < jc)  # coincident training points: each pair once
            rows, cols = np.concatenate([rows, jr[keep]]), np.concatenate([cols, jc[keep]])
        log_w = self._edge_log_weights(V, rows, cols, self.log_prob_)
        self.graph_ = symmetric_csr(V.shape[0], rows, cols, np.exp(log_w))
        factor = _min_length_factor(V, rows, cols, log_w, V)
        self.min_length_factor_ = factor if np.isfinite(factor) else 0.0
        self.n_components_, self.component_labels_ = component_report(self.graph_)
        return self

    def _edge_log_weights(self, X, rows, cols, log_p, Y=None, log_p_Y=None):
        """Edge log-weights with numpy, or with torch on ``device``."""
        compute = (
            partial(self.metric_.edge_log_weights, n_jobs=self.n_jobs)
            if self.device is None
            else partial(self.metric_.edge_log_weights_torch, device=self.device)
        )
        return compute(X, rows, cols, log_p, Y, log_p_Y, progress=bool(self.verbose))

    # ------------------------------------------------------------------ queries
    def _shortest_paths(self, graph, sources, columns=None, limit=np.inf, dtype=None, out=None):
        return shortest_paths(
            graph,
            sources,
            columns=columns,
            limit=limit,
            dtype=self.dtype if dtype is None else dtype,
            backend=self.backend,
            n_jobs=self.n_jobs,
            memory_limit=self._memory_limit(),
            progress=bool(self.verbose),
            out=out,
        )

    def fit_transform(self, X, y=None):
        """Fit, then return the generative distances among the training points.

        Returns
        -------
        D : ndarray of shape (n_samples, n_samples)
            Symmetric, zero diagonal; inf between disconnected components.
        """
        self.fit(X)
        idx = self.data_index_
        return self._shortest_paths(self.graph_, idx, columns=idx)

    def _join_edges(self, Y):
        """(row of Y, vertex index) pairs joining points to the graph by its own rule."""
        graph_points = self.vertices_[self._join_offset :]
        rows, cols, _ = join_edges(self.nn_, graph_points, Y, self.radius_, self.n_neighbors)
        cols = cols + self._join_offset
        if self._join_offset:
            # a point that coincides with a training point is that point (distance 0)
            same = self._nn_data.radius_neighbors(Y, 0.0, return_distance=False)
            counts = [len(a) for a in same]
            rows = np.concatenate([rows, np.repeat(np.arange(len(Y)), counts)])
            cols = np.concatenate([cols, np.concatenate(same).astype(np.int64)])
        return rows, cols

    def _join(self, Y):
        """Edges (row of Y, vertex, weight) joining new points to the fitted graph."""
        rows, cols = self._join_edges(Y)
        log_p_Y = evaluate_log_density(self.density_, Y, self.batch_size)
        log_w = self._edge_log_weights(Y, rows, cols, log_p_Y, self.vertices_, self.log_prob_)
        return rows, cols, np.exp(log_w)

    def _augmented_graph(self, Y):
        """The fitted graph plus one node per new point, with edges out of the new nodes only.

        A new node has no incoming edge, so no path passes through it: the distances from it
        are ``min_u w(y, u) + D(u, v)`` over its neighbours u, and the fitted graph's own
        distances are unchanged.
        """
        rows, cols, w = self._join(Y)
        G, m = self.graph_, Y.shape[0]
        N = G.shape[0]
        counts = np.bincount(rows, minlength=m)
        indptr = np.concatenate([G.indptr, G.nnz + np.cumsum(counts)])
        order = np.lexsort((cols, rows))
        aug = sparse.csr_matrix(
            (
                np.concatenate([G.data, w[order]]),
                np.concatenate([G.indices, cols[order]]).astype(np.int64),
                indptr.astype(np.int64),
            ),
            shape=(N + m, N + m),
        )
        return aug, N

    def transform(self, X):
        """Generative distances from new points to the training points.

        New points join the fitted graph through their neighbours (by the graph's own radius /
        kNN rule) with exact segment costs; the fitted graph is not changed, and new points do
        not join each other.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        D : ndarray of shape (n_queries, n_samples)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        aug, N = self._augmented_graph(X)
        return self._shortest_paths(aug, N + np.arange(X.shape[0]), columns=self.data_index_)

    def distances(self, sources=None, *, limit=np.inf, dtype=None, out=None):
        """Rows of the vertex distance matrix.

        Parameters
        ----------
        sources : array-like of int, optional
            Vertex indices (default: all vertices). Compute a large matrix in blocks of rows.
        limit : float, default=inf
            Stop searching beyond this distance; farther vertices get inf.
        dtype : {"float64", "float32"}, optional
            Defaults to the estimator's ``dtype``.
        out : array-like of shape (n_sources, n_vertices), optional
            Write the rows there block by block (a ``numpy.memmap`` or a zarr array) instead
            of RAM; the memory limit then does not apply.

        Returns
        -------
        D : ndarray of shape (n_sources, n_vertices), or ``out``
        """
        check_is_fitted(self)
        N = self.graph_.shape[0]
        sources = np.arange(N) if sources is None else _check_indices(sources, N, "sources")
        return self._shortest_paths(self.graph_, sources, limit=limit, dtype=dtype, out=out)

    def kneighbors(self, sources=None, n_neighbors: int = 5):
        """The k nearest vertices in generative distance, without all-pairs distances.

        Each source's search is bounded (``limit``) by a radius that doubles, from the
        largest weight of its own edges, until it reaches k other vertices (or its whole
        component), so the work is local.

        Parameters
        ----------
        sources : array-like of int, optional
            Vertex indices (default: all vertices).
        n_neighbors : int, default=5

        Returns
        -------
        distances : ndarray of shape (n_sources, n_neighbors)
            Increasing; inf where a component has fewer than k other vertices.
        indices : ndarray of shape (n_sources, n_neighbors)
            Vertex indices (-1 where the distance is inf). A vertex is not its own neighbour.
        """
        check_is_fitted(self)
        G = self.graph_
        N = G.shape[0]
        sources = np.arange(N) if sources is None else _check_indices(sources, N, "sources")
        k = min(check_int(n_neighbors, "n_neighbors"), N - 1)
        out_d = np.full((len(sources), k), np.inf)
        out_i = np.full((len(sources), k), -1, dtype=np.int64)
        largest = np.maximum.reduceat(np.append(G.data, 0.0), G.indptr[:-1])
        largest[np.diff(G.indptr) == 0] = 0.0
        radius = np.maximum(largest[sources], np.finfo(float).tiny)
        todo = np.arange(len(sources))
        reached_before = np.full(len(sources), -1)
        while todo.size:
            limit = float(radius[todo].max())
            D = self._shortest_paths(G, sources[todo], limit=limit, dtype=np.float64)
            D[np.arange(len(todo)), sources[todo]] = np.inf  # not itself
            reached = np.isfinite(D).sum(axis=1)
            done = reached >= k
            for row in np.flatnonzero(~done & (reached == reached_before[todo])):
                # no growth although the radius doubled: done if the component is exhausted
                ball = np.append(np.flatnonzero(np.isfinite(D[row])), sources[todo[row]])
                dist_row = D[row].copy()
                dist_row[sources[todo[row]]] = 0.0
                done[row] = _closed(G, ball, dist_row)
            nearest = np.argsort(D, axis=1, kind="stable")[:, :k]
            dist = np.take_along_axis(D, nearest, 1)
            rows = todo[done]
            out_d[rows] = dist[done]
            out_i[rows] = np.where(np.isfinite(dist[done]), nearest[done], -1)
            reached_before[todo] = reached
            radius[todo] = 2 * limit
            todo = todo[~done]
        return out_d, out_i

    def _endpoint(self, a, name):
        """A vertex index, or a point (as a (1, d) array), from what the user passed."""
        if isinstance(a, numbers.Integral) and not isinstance(a, bool):
            return int(_check_indices([a], self.graph_.shape[0], name)[0]), None
        point = check_points(
            np.asarray(a, dtype=float).reshape(1, -1), name, n_features=self.n_features_in_
        )
        return None, point

    def _joined_graph(self, Y):
        """The fitted graph with the points ``Y`` joined in both directions, as nodes
        ``N, N + 1, ...`` (edges to their neighbours by the graph's own rule; the points do
        not join each other).

        The new entries of the old rows point at the new nodes, whose indices are the largest,
        so they go at the ends of their rows: one insertion into the CSR arrays, without
        sorting or converting the graph.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (N + m, N + m)
        factor : float
            Smallest weight / Euclidean length over the new edges (inf when there is none).
        """
        G, N, m = self.graph_, self.graph_.shape[0], len(Y)
        rows, cols, w = self._join(Y)
        order = np.lexsort((rows, cols))  # by old vertex, then new node
        at = G.indptr[cols[order] + 1]
        indices = np.insert(G.indices, at, N + rows[order])
        data = np.insert(G.data, at, w[order])
        indptr = G.indptr + np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=N))])
        by_new = np.lexsort((cols, rows))  # the new nodes' own rows, at the end
        indices = np.concatenate([indices, cols[by_new]])
        data = np.concatenate([data, w[by_new]])
        indptr = np.concatenate([indptr, indptr[-1] + np.cumsum(np.bincount(rows, minlength=m))])
        graph = sparse.csr_matrix(
            (data, indices.astype(np.int64), indptr.astype(np.int64)), shape=(N + m, N + m)
        )
        with np.errstate(divide="ignore"):
            factor = _min_length_factor(Y, rows, cols, np.log(w), self.vertices_)
        return graph, factor

    def _pair_query(self, a, b):
        """Shortest path between two vertices or points, without an all-pairs run.

        Points join the graph in both directions (see :meth:`_joined_graph`); a shortest path
        never passes through its own ends, so joining them changes no distance between the
        two. Two equal points are at distance 0.

        Returns
        -------
        length : float
        path : ndarray of int or None
            Node indices; nodes ``N`` and ``N + 1`` (``N`` vertices) are the new points.
        new_points : ndarray of shape (m, d) or None
        """
        check_is_fitted(self)
        (ia, pa), (ib, pb) = self._endpoint(a, "a"), self._endpoint(b, "b")
        N = self.graph_.shape[0]
        if pa is not None and pb is not None and np.array_equal(pa, pb):
            return 0.0, np.array([N]), pa
        new = [p for p in (pa, pb) if p is not None]
        if not new:
            if self.component_labels_[ia] != self.component_labels_[ib]:
                return np.inf, None, None
            graph, factor = self.graph_, self.min_length_factor_
        else:
            graph, join_factor = self._joined_graph(np.vstack(new))
            factor = min(self.min_length_factor_, join_factor)
        source = N if pa is not None else ia
        target = N + len(new) - 1 if pb is not None else ib
        x_a = pa[0] if pa is not None else self.vertices_[ia]
        x_b = pb[0] if pb is not None else self.vertices_[ib]
        bound = factor * float(np.linalg.norm(x_a - x_b))
        length, path = pair_shortest_path(graph, source, target, lower_bound=bound)
        return length, path, (np.vstack(new) if new else None)

    def distance(self, a, b) -> float:
        """The generative distance between two vertices or points.

        A bidirectional Dijkstra from both ends (see
        :func:`gendist.paths.pair_shortest_path`): the work grows with the distance, not
        with the graph (up to one full single-source run for the farthest pairs), and the
        result is the same float as the all-pairs one. New points join the graph through
        their neighbours, not each other (two equal points are at distance 0).

        Parameters
        ----------
        a, b : int or array-like of shape (n_features,)
            A vertex index, or a point (which joins the graph through its neighbours).

        Returns
        -------
        distance : float
            ``inf`` when a and b lie in different connected components.
        """
        return float(self._pair_query(a, b)[0])

    def geodesic(self, a, b, refine=False) -> Geodesic:
        """The geodesic between two vertices or points: the graph path, optionally refined.

        Parameters
        ----------
        a, b : int or array-like of shape (n_features,)
            A vertex index, or a point (which joins the graph through its neighbours).
        refine : bool or dict, default=False
            Also move the path's interior points off the vertices to shorten it under the
            metric (:func:`gendist.refine.refine_path`); a dict passes options such as
            ``n_points`` or ``method``. The refined path is never longer than the graph path
            and is closer to the true geodesic, at the cost of density evaluations along it.

        Returns
        -------
        Geodesic
            ``points`` (k, d) from a to b, ``indices`` (vertex index, -1 for a point that is
            not a vertex), and ``length``, its length under the metric.

        Raises
        ------
        ValueError
            If a and b lie in different connected components.
        """
        length, path, new = self._pair_query(a, b)
        if path is None:
            raise ValueError(
                f"a and b lie in different connected components of the graph "
                f"({self.n_components_} components); there is no geodesic between them."
            )
        N = self.graph_.shape[0]
        indices = np.where(path >= N, -1, path)
        points = np.vstack([self.vertices_[i] if i < N else new[i - N] for i in path])
        if refine and len(points) > 1:
            options = refine if isinstance(refine, dict) else {}
            refined, refined_length = refine_path(
                self.metric_, points, progress=bool(self.verbose), **options
            )
            if refined is not points:
                inner = np.full(len(refined) - 2, -1)
                indices = np.concatenate([indices[:1], inner, indices[-1:]])
                points, length = refined, refined_length
        return Geodesic(points=points, indices=indices, length=float(length))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


def _min_length_factor(X, rows, cols, log_w, Y) -> float:
    """Smallest ``weight / Euclidean length`` over the edges ``X[rows] -> Y[cols]``, rounded
    down a little (so that it bounds every weight despite rounding); inf without edges."""
    length = np.linalg.norm(X[rows] - Y[cols], axis=1)
    moved = length > 0  # duplicate points: zero weight over zero length
    ratio = log_w[moved] - np.log(length[moved])
    return float(np.exp(ratio.min()) * (1 - 1e-9)) if ratio.size else np.inf


def _check_indices(indices, n, name):
    indices = np.asarray(indices).reshape(-1)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{name} must be vertex indices (integers), got dtype {indices.dtype}.")
    if np.any((indices < 0) | (indices >= n)):
        raise IndexError(f"{name} must be vertex indices in [0, {n}).")
    return indices.astype(np.int64)


def generative_distances(X, density=None, **params) -> np.ndarray:
    """Generative distance matrix among the points of ``X`` in one call.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    density : callable, estimator, torch model or Density
        See :class:`GenerativeDistance`; a callable ``log_prob(X) -> (n,)`` is the simplest.
    **params
        Any other parameter of :class:`GenerativeDistance` (lam, beta, radius, n_neighbors...).

    Returns
    -------
    D : ndarray of shape (n_samples, n_samples)
    """
    return GenerativeDistance(density, **params).fit_transform(X)
