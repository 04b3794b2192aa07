"""The scikit-learn estimator: :class:`GenerativeDistance`, and :func:`generative_distances`."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions

from ._engine import GraphDistanceBase
from ._validation import check_points
from .densities import as_density, evaluate_log_density
from .graph import GraphTooLargeError
from .interop import NEIGHBORS_CONSTRAINT, DistanceFeaturesOutMixin, check_neighbors
from .metric import ConformalMetric, check_lambda, resolve_lambda

__all__ = ["GenerativeDistance", "generative_distances"]

_VERTEX_MODES = ("data", "samples", "both")


class GenerativeDistance(DistanceFeaturesOutMixin, GraphDistanceBase):
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
        With ``neighbors``, only the k by which new points join the graph.
    neighbors : transformer or sparse matrix, default=None
        Bring your own neighbours: ``None`` builds the graph by the exact search above. A
        ``KNeighborsTransformer``-style object (``fit_transform(X)`` returns a sparse distance
        graph in scikit-learn's precomputed convention: ``sklearn.neighbors.
        KNeighborsTransformer``, pynndescent's ``PyNNDescentTransformer``), cloned and fitted
        on the graph's vertices, or such a graph of shape (n_vertices, n_vertices) itself:
        its pairs become the edges (symmetrised, with exact lengths recomputed; the graph's
        distances are not used). A kNN rule only: ``radius`` must be None. New points in
        ``transform``, ``distance`` and ``geodesic`` still join by the exact search, to their
        ``n_neighbors`` nearest vertices (default: the given graph's median number of
        neighbours per vertex). An approximate graph has other edges than the exact one, so
        the distances and geodesics change with it: a missed neighbour can only lengthen a
        path, an extra (farther) one can shorten it.
    n_quad : int, default=8
        Trapezoidal nodes per edge, endpoints included (>= 2). Error falls like 1/n_quad^2.
        The rule must follow how fast h varies along an edge: log h changes by about
        ``beta`` times the change of log p, so a large beta or a sharp density needs more
        nodes (or shorter edges). ``fit`` measures a sample of edges again at
        ``2 n_quad - 1`` nodes and warns when they move by more than 5 %
        (``quadrature_error_``).
    shortcuts : bool or "auto", default="auto"
        Also start every source with the straight segment to every vertex
        (:mod:`gendist.shortcuts`): a distance is then the shortest curve made of one
        segment and a graph path. In dimension about 4 and up, graph paths zig-zag between
        random vertices and come out tens of percent too long (1.7x in 10-D at k = 10);
        the segments remove that stretch (exact in the Euclidean limit) at the cost of
        n^2 segment quadratures for all pairs (long segments get nodes in proportion to
        their length). ``"auto"`` measures the stretch on 16 sources at fit
        (``graph_stretch_``) and turns them on when it exceeds 10 % and a segment needs on
        average at most 8 ``n_quad`` nodes (not in 2-D at large n, where segments are long
        against the edges and the stretch is a few percent), unless more than 5 % of the
        segments that beat their graph path leave the data (``shortcuts_off_data_``: a node
        outside the 10-nearest-neighbour ball of its nearest data point). Such segments
        cross a gap or the hollow of a curved sheet that only the model prices; a model
        that fills it would make the shortcuts cross it, so they stay off and fit warns
        (pass ``True`` to follow the model there). Fit also times those rows
        (``shortcut_cost_``) and warns when a row with shortcuts costs more than 30
        graph-only rows (an expensive model: a large mixture or a flow evaluated at n
        segments per row); refining the pairs that matter is then the cheaper way to
        accurate distances. ``shortcuts_`` says what is in use. Components stay as
        the graph's: no segment joins two of them.
    refine : bool, "auto" or dict, default="auto"
        Refine the curves behind the distances (:mod:`gendist.refine`): the queries
        (:meth:`fit_transform`, :meth:`transform`, :meth:`distances`, :meth:`kneighbors`,
        :meth:`geodesic`, :meth:`geodesics`, :meth:`distance`) then report lengths of
        curves whose points move off the vertices, under a curved metric the accurate
        answer where straight pieces between vertices stay several percent long, at a few
        hundred model evaluations per pair. A query's own ``refine=`` overrides this.
        ``"auto"``: on when ``fit``'s sample of pairs shows the rows a median more than 2 %
        longer than refined curves (``refine_gain_``) and refining every pair of vertices is
        estimated, from the time the sample took, to take at most
        :data:`gendist.refine.REFINE_AUTO_SECONDS` (two minutes; ``refine_seconds_``): on two
        CPU cores n up to about 1 500 in 10-D and 2 000 in 5-D with a closed-form torch
        density, about 700 in 10-D with an 8-component mixture (closed-form gradients from
        its score, also for scikit-learn's ``GaussianMixture``; benchmarks/refined_pairs.md
        and benchmarks/default_model.md). A time,
        so a slower or busier machine may choose differently; pass True or False for a fixed
        choice. Where all pairs are over the budget, ``"auto"`` refines each row's nearest
        pairs, as many as the budget holds at the measured rate (``refine_nearest_``, at
        least :data:`gendist.refine.REFINE_NEAREST_MIN`): the neighbourhoods that
        clustering, t-SNE and kNN read come out refined, the farther distances keep the
        measured excess, and ``fit`` says so where it exceeds 5 %
        (:data:`gendist.refine.REFINE_WARN`); fewer leave refinement off, with that warning
        and the estimated time. A dict turns it on with those
        options (of :func:`gendist.refine.refine_paths`; all pairs start from
        :data:`gendist.refine.ALL_PAIRS_REFINE`), plus ``"nearest": k``: the all-pairs
        queries (:meth:`fit_transform`, :meth:`distances`, :meth:`transform`) refine only
        the pairs among each row's k shortest unrefined entries (in a square matrix, either
        row's; each pair once), :meth:`kneighbors` only its first k (with the same
        settings), before the closure
        under the triangle inequality; pairs asked for by name (:meth:`geodesic`,
        :meth:`geodesics`, :meth:`distance`) are always refined. ``refine_`` says what is
        in use.
    vertices : {"data", "samples", "both"}, default="data"
        Graph vertices: the training points, ``n_vertex_samples`` points drawn from the
        density (the training points then join the sample graph through their neighbours),
        or both.
    n_vertex_samples : int, default=None
        Number of vertices to sample for ``vertices="samples"`` or ``"both"``.
    backend : {"auto", "scipy", "torch", "cugraph"}, default="auto"
        Shortest-path backend of the many-source queries (see :mod:`gendist.paths`):
        ``"scipy"`` runs scipy's Dijkstra; ``"torch"`` a batched Bellman-Ford on ``device``
        (needs torch); ``"cugraph"`` RAPIDS cuGraph's SSSP (extra ``gpu``). ``"auto"`` picks
        by device, installed libraries and graph (:func:`gendist.paths.choose_backend`):
        scipy unless ``device`` is a CUDA device. Single pairs always use the bidirectional
        search.
    n_jobs : int, default=None
        Workers for many-source shortest paths, the edge-weight chunks and the refinement
        of large batches of pairs (joblib semantics: processes by default, a dask or Ray
        cluster under ``joblib.parallel_config``; ``refine_seconds_`` counts them); threads
        of the neighbour search and of the triangle closure (None: all cores, as BLAS).
    dtype : {"float64", "float32"}, default="float64"
        Dtype of returned distance matrices; float32 halves their memory.
    memory_limit : int, default=None
        Bytes allowed for a distance matrix or the graph (default: half the physical memory).
    batch_size : int, default=65536
        Most points per call to the density (vertices and quadrature nodes alike).
    device : str or torch.device, default=None
        None: numpy on the CPU, for every stage. A torch device (``"cpu"``, ``"cuda"``,
        ``"cuda:1"``): build the graph (:func:`gendist.graph.torch_edges`, a blocked
        all-pairs search), compute the edge weights (the quadrature, where the density is
        evaluated most; :meth:`ConformalMetric.edge_log_weights` with ``device``) and run the
        ``"torch"`` shortest-path backend there; points and edges stay there and only the
        weights come back. Needs a density that evaluates torch tensors (torch models,
        flows, ``GaussianMixtureDensity``); the density itself runs on its own device.
    random_state : int, RandomState or None, default=None
        Seeds the default density and vertex sampling.
    verbose : bool or None, default=None
        Progress bars: None shows one only for a stage that runs longer than 5 s (the
        graph's edge weights, the shortest paths, refinement); True always; False never.

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
        that starts single-pair queries (in the graph's unit, see ``log_distance_unit_``; in the
        metric's own unit it is at least ``((p0 + lam) / (max p + lam)) ** beta``).
    log_distance_unit_ : float
        0 unless the edge weights leave float64's range (a large beta, a density whose log p
        is in the thousands with an absolute lam): then every distance (and ``limit``) is in
        units of ``exp(log_distance_unit_)``, with a warning; ``metric_.curve_length`` stays
        in the metric's own unit (``metric_.log_curve_length`` holds any value).
    quadrature_error_ : float
        Largest relative change of a sample of edge weights with ``2 n_quad - 1`` nodes.
    shortcuts_ : bool
        Whether queries use the shortcuts (see ``shortcuts``).
    graph_stretch_ : float
        Median, over pairs from 16 random sources, of the graph-only distance over the
        distance with shortcuts (nan with ``shortcuts=False``): 1 where the graph alone is
        accurate.
    shortcut_cost_ : float
        On those sources, the time of the rows with shortcuts over the graph-only rows (nan
        with ``shortcuts=False``).
    shortcuts_off_data_ : float
        On those sources, the fraction of the straight segments beating their graph path
        by more than 10 % that leave the data (:class:`gendist.shortcuts.StretchSample`;
        nan with ``shortcuts=False``).
    refine_gain_ : float
        With shortcuts on (``shortcuts_``), where the graph alone measures more than 2 %
        longer than with them (``graph_stretch_``) and the segments stay on the data
        (``shortcuts_off_data_``), or where the density's factor ``h`` varies by more than
        2 % over the vertices (5th to 95th percentile) in 3 or more dimensions: the median,
        over a sample of 128 pairs (8 from each of 16 random sources,
        :data:`gendist.refine.REFINE_CHECK_PAIRS`), of their distance in the rows of
        :meth:`distances` over the length of the curve that
        refinement (:data:`gendist.refine.ALL_PAIRS_REFINE`) finds between the same ends
        (>= 1): how much too long the unrefined distances still are where the metric's
        geodesics bend between the vertices. Above :data:`gendist.refine.REFINE_GAIN` (2 %),
        ``refine="auto"`` turns refinement on (``refine_``) or, where all pairs would take
        long, ``fit`` warns. nan otherwise, or with ``refine=False``.
    refine_seconds_ : float
        With ``refine_gain_``: the estimated seconds to refine every pair of vertices on this
        machine, the sampled pairs' time per pair (after one untimed pair, the slope between
        two batches of 16 and 112 pairs, as a batch carries fixed costs; where the sample
        gains and that puts all pairs over a sixth of the budget, the average of a third
        batch of 2 048, :data:`gendist.refine.REFINE_CHECK_MORE`, as the slope of small
        batches is noisy and the per-pair cost still changes with the batch) times the number
        of vertex pairs within components, divided among the ``n_jobs`` workers. Under the
        10-D inversion metric all pairs took 1.5-1.6 times the slope's estimate at n = 800
        and 0.7-0.85 times the third batch's at n = 1 200 and 2 000. It includes the
        ``late_points`` round of
        :data:`gendist.refine.ALL_PAIRS_REFINE`, timed apart on the sample, unless that round
        alone puts all pairs over the budget of ``refine="auto"``, which then refines without
        it (where both are over, it stays the estimate of all pairs with the round, from
        which ``refine_nearest_`` is sized). nan where not measured.
    refine_ : bool
        Whether queries refine by default (see ``refine``).
    refine_nearest_ : int or None
        Where ``refine="auto"`` found all pairs over its budget: how many of each row's
        nearest pairs the all-pairs queries refine (the ``"nearest"`` option of
        ``refine``); None otherwise (all pairs, or none).
    device_ : None or torch.device
        The checked ``device``.

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
        neighbors=None,
        n_quad=8,
        shortcuts="auto",
        refine="auto",
        vertices="data",
        n_vertex_samples=None,
        backend="auto",
        n_jobs=None,
        dtype="float64",
        memory_limit=None,
        batch_size=65536,
        device=None,
        random_state=None,
        verbose=None,
    ):
        self.density = density
        self.lam = lam
        self.beta = beta
        self.p0 = p0
        self.radius = radius
        self.n_neighbors = n_neighbors
        self.neighbors = neighbors
        self.n_quad = n_quad
        self.shortcuts = shortcuts
        self.refine = refine
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

    _parameter_constraints: dict = {
        **GraphDistanceBase._parameter_constraints,
        "density": "no_validation",  # anything as_density accepts; checked by as_density
        "lam": [Real, str],  # > 0 or "quantile:q", checked by check_lambda
        "beta": [Interval(Real, 0, None, closed="neither")],
        "p0": [Interval(Real, 0, None, closed="left")],
        "vertices": [StrOptions(set(_VERTEX_MODES))],
        "n_vertex_samples": [None, Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "neighbors": NEIGHBORS_CONSTRAINT,
    }

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        check_lambda(self.lam)
        check_neighbors(self)
        if self.vertices != "data" and self.n_vertex_samples is None:
            raise ValueError(f"vertices={self.vertices!r} needs n_vertex_samples.")

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

    def _check_sample_memory(self, n_features):
        need = self.n_vertex_samples * n_features * 8
        if need > self._memory_limit():
            raise GraphTooLargeError(
                f"n_vertex_samples={self.n_vertex_samples:,} points of {n_features} features "
                f"need {need / 2**30:.2f} GiB, over memory_limit ({self._memory_limit():,} "
                "bytes); draw fewer vertices or raise memory_limit."
            )

    def _sample_vertices(self, density, n_features):
        S = density.sample(self.n_vertex_samples, random_state=self.random_state)
        S = check_points(S, "samples drawn from the density")
        if S.shape != (self.n_vertex_samples, n_features):
            raise ValueError(
                f"the density sampled an array of shape {S.shape}; expected "
                f"({self.n_vertex_samples}, {n_features})."
            )
        return S

    def _prepare(self, X):
        """The density (fitted on X if needed), the vertices, their log-densities, lambda
        and the conformal metric; in ``"samples"`` mode the graph is built on the samples and
        the training points join it through their neighbours there, as new points do."""
        if self.vertices != "data":
            self._check_sample_memory(X.shape[1])
        self.density_ = self._make_density(X)
        if self.device is not None and not getattr(self.density_, "differentiable", False):
            raise TypeError(
                f"device={self.device!r} computes the edge weights with torch, but "
                f"{type(self.density_).__name__} cannot evaluate torch tensors; use "
                "device=None, or a torch model, flow or GaussianMixtureDensity."
            )
        if self.vertices == "data":
            V = X
        else:
            V = np.vstack([X, self._sample_vertices(self.density_, X.shape[1])])
            V.setflags(write=False)
        self.log_prob_ = evaluate_log_density(
            self.density_, V, self.batch_size, bool(self.verbose)
        )
        self.log_lam_ = resolve_lambda(self.lam, self.log_prob_)
        with np.errstate(over="ignore"):
            self.lam_ = float(np.exp(self.log_lam_))
        metric = ConformalMetric(
            self.density_,
            self.log_lam_,
            float(self.beta),
            float(self.p0),
            int(self.n_quad),
            batch_size=int(self.batch_size),
        )
        offset = X.shape[0] if self.vertices == "samples" else 0
        return V, offset, metric, self.log_prob_


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
