"""The graph-distance engine under the estimators, after scikit-learn's ``NeighborsBase``.

:class:`GraphDistanceBase` owns the fit skeleton

    vertices -> metric -> neighbourhood graph -> edge weights -> symmetric CSR -> components

and implements every query once: ``transform``, ``distances``, ``kneighbors``, ``distance``
and ``geodesic``. A subclass only says what its vertices and its metric are
(:meth:`GraphDistanceBase._prepare`); it owns no graph or path algorithm, which live in
:mod:`gendist.graph` and :mod:`gendist.paths` (as scikit-learn's Isomap owns none).
:class:`gendist.GenerativeDistance` (a density's conformal metric on data points) and
:class:`gendist.LatentDistance` (a decoder's pullback metric on latent codes) are the two.
"""

from __future__ import annotations

import time
import warnings
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from scipy.sparse.csgraph import connected_components
from sklearn import get_config
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._compute import chunk_rows, default_memory_limit, progress_bar, resolve_device, row_norms
from ._validation import check_int, check_points
from .curves import NEURAL_CURVE_OPTIONS, neural_curve
from .graph import (
    DEFAULT_NEIGHBORS,
    GraphTooLargeError,
    NeighbourIndex,
    add_vertices,
    auto_radius,
    component_report,
    connected_knn_edges,
    distance_unit,
    join_edges,
    min_length_factor,
    neighbourhood_graph,
    symmetric_csr,
)
from .interop import given_neighbours, kneighbors_graph, sparse_cost_matrix
from .paths import (
    BACKEND_NAMES,
    Geodesic,
    _closure_bytes,
    _pair_shortest_path,
    check_vertex_indices,
    minimum_with_transpose,
    mirror_upper_triangle,
    nearest_vertices,
    reconstruct_path,
    reconstruct_seeded_path,
    shortest_path_tree,
    shortest_path_trees,
    shortest_paths,
    triangle_closure,
)
from .refine import (
    ALL_PAIRS_REFINE,
    PATHS_PER_WORKER,
    REFINE_AUTO_SECONDS,
    REFINE_CHECK_FIRST,
    REFINE_CHECK_MORE,
    REFINE_CHECK_MORE_SECONDS,
    REFINE_CHECK_OVER,
    REFINE_CHECK_PAIRS,
    REFINE_CHECK_SECONDS,
    REFINE_GAIN,
    REFINE_LATE_FALLBACK,
    REFINE_LATE_FALLBACK_COST,
    REFINE_NEAREST_MIN,
    REFINE_WARN,
    _gradient_function,
    _gradient_method,
    _warn_unconverged,
    check_refine_options,
    refine_path,
    refine_paths,
)
from .shortcuts import (
    SHORTCUT_MAX_COST,
    SHORTCUT_MAX_NODES,
    SHORTCUT_MAX_OFF_DATA,
    SHORTCUT_STRETCH,
    Shortcuts,
    chord_spacing,
    closed_shortcut_matrix,
    graph_stretch,
)

__all__ = ["GraphDistanceBase"]

#: Pairs per batch of ``distances(refine=...)``: whole rows, about this many pairs, so that
#: each model call holds points of thousands of paths (the time per pair is flat from about
#: 2 000 paths on) while the graph paths of a batch stay small in memory.
PAIRS_PER_BATCH = 16384


def _all_pairs_seconds(seconds: list, sizes: list) -> float:
    """Seconds per pair of a large batch, from the times ``seconds`` of refining successive
    batches of the sampled pairs (``sizes`` pairs each): the slope of time over batch size
    between the last two, as a batch carries costs (its model calls and L-BFGS steps,
    whatever the number of paths) that a large one shares among all its paths; at least a
    tenth of the average. Where the last batch is under twice the one before (no steady
    slope), or there is one batch (an expensive model), the average."""
    average = sum(seconds) / sum(sizes)
    if len(seconds) < 2 or sizes[-1] < 2 * sizes[-2]:
        return average
    return max((seconds[-1] - seconds[-2]) / (sizes[-1] - sizes[-2]), 0.1 * average)


def _nearest_bound(rows: np.ndarray, nearest: int) -> np.ndarray:
    """The ``nearest``-th smallest finite, positive entry of each row of ``rows`` (inf where
    a row has fewer): entries up to it are the row's ``nearest`` shortest (ties too)."""
    rows = np.where(np.isfinite(rows) & (rows > 0), rows, np.inf)
    k = min(nearest, rows.shape[1]) - 1
    return np.partition(rows, k, axis=1)[:, k] if rows.size else np.full(len(rows), np.inf)


class GraphDistanceBase(TransformerMixin, BaseEstimator):
    """Distances and geodesics on a neighbourhood graph weighted by a segment metric.

    Not for direct use: subclasses implement :meth:`_prepare` and set ``__init__`` with the
    parameters named in ``_parameter_constraints`` (the shared ones below, plus their own).

    Shared parameters: ``radius``, ``n_neighbors`` (the graph rule), ``n_quad`` (nodes per
    edge), ``shortcuts`` (straight segments from each source, :mod:`gendist.shortcuts`),
    ``refine`` (the queries' default refinement, :mod:`gendist.refine`),
    ``backend`` (shortest paths), ``n_jobs`` (joblib workers), ``dtype`` (of returned
    distance matrices), ``memory_limit`` (bytes), ``batch_size`` (points per model call),
    ``device`` (None: numpy on the CPU; a torch device: graph search, quadrature and the torch
    shortest-path backend there), ``verbose`` (progress bars).
    """

    _parameter_constraints: dict = {
        "radius": [None, StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "n_neighbors": [None, Interval(Integral, 1, None, closed="left")],
        "n_quad": [Interval(Integral, 2, None, closed="left")],
        "shortcuts": ["boolean", StrOptions({"auto"})],
        "refine": ["boolean", StrOptions({"auto"}), dict],
        "backend": [StrOptions(set(BACKEND_NAMES))],
        "n_jobs": [None, Integral],
        "dtype": [str, type, np.dtype],
        "memory_limit": [None, Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",  # checked by gendist._compute.resolve_device
        "verbose": [None, "verbose"],
    }

    # ------------------------------------------------------------------ subclass hooks
    def _check_params(self) -> None:
        """Checks of the subclass's own parameters beyond the declared constraints."""

    def _prepare(self, X: np.ndarray):
        """Vertices and metric for the training points ``X`` (validated float64, a copy).

        Returns
        -------
        vertices : ndarray of shape (N, d)
            The training points first (vertex ``i`` is ``X[i]``), then any other vertex.
        join_offset : int
            Vertices ``[join_offset, N)`` carry the graph; those before it (the training
            points, when the graph is built on synthetic vertices only) join it through
            their neighbours there, as new points do.
        metric : gendist.metric.SegmentMetric
        vertex_values : ndarray of shape (N,) or None
            ``metric.vertex_values(vertices)``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _check_all_params(self):
        """Every parameter, before any work: declared constraints, then the rest."""
        self._validate_params()
        try:
            name = str(np.dtype(self.dtype))
        except TypeError:
            name = None
        if name not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        if isinstance(self.refine, dict):  # its options, before any work
            if self._refine_options(self.refine)["curve"] == "neural":
                raise ValueError(
                    "refine={'curve': 'neural', ...} trains one network per pair; the "
                    "estimator's refine is for every query (all pairs included). Pass it to "
                    "geodesic(a, b, refine=...) for the pairs you need."
                )
        self._check_params()
        return resolve_device(self.device)

    def _progress(self) -> bool | None:
        """``progress`` of the stages: None (the default ``verbose=None``) shows a bar only
        once a stage has run a few seconds (:func:`gendist._compute.progress_bar`)."""
        return None if self.verbose is None else bool(self.verbose)

    def _memory_limit(self) -> int:
        return default_memory_limit() if self.memory_limit is None else self.memory_limit

    # ------------------------------------------------------------------ fitting
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
        try:
            return self._fit(X)
        except BaseException:
            # a failed (re)fit leaves no half-fitted state behind: the estimator is unfitted
            for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
                delattr(self, name)
            raise

    def _fit(self, X):
        device = self._check_all_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, copy=True)
        X.setflags(write=False)  # the fitted vertices: no model may edit them
        self.device_ = device
        progress = self._progress()
        V, offset, metric, values = self._prepare(X)
        self.vertices_, self.metric_ = V, metric
        self.data_index_ = np.arange(X.shape[0])
        self._vertex_values, self._join_offset = values, offset

        graph_points = V[offset:]
        self.nn_ = NeighbourIndex().fit(graph_points)
        given, self._join_neighbors = given_neighbours(self, graph_points)  # gendist.interop
        radius, n_neighbors = self.radius, self.n_neighbors
        default = radius is None and n_neighbors is None and given is None
        if default:  # kNN, joined into one component (gendist.graph.connected_knn_edges)
            n_neighbors = self._join_neighbors = DEFAULT_NEIGHBORS
        if isinstance(radius, str):
            radius = auto_radius(graph_points, nn=self.nn_)
        self.radius_ = radius
        rows, cols, lengths = neighbourhood_graph(
            graph_points,
            radius,
            n_neighbors,
            device=device,
            nn=self.nn_,
            max_edges=self._memory_limit() // 64,
            neighbors=given,
        )
        if default:
            rows, cols, lengths = connected_knn_edges(graph_points, rows, cols, lengths)
        rows, cols = rows + offset, cols + offset
        if offset:
            self._nn_data = NeighbourIndex().fit(X)
            jr, jc, jl = self._join_edges(X)
            keep = (jc >= offset) | (jr < jc)  # coincident training points: each pair once
            rows, cols = np.concatenate([rows, jr[keep]]), np.concatenate([cols, jc[keep]])
            lengths = np.concatenate([lengths, jl[keep]])
        log_w = metric.edge_log_weights(
            V, rows, cols, values, progress=progress, n_jobs=self.n_jobs, device=device
        )
        self.log_distance_unit_ = distance_unit(log_w, V.shape[0])
        log_w = log_w - self.log_distance_unit_
        self.graph_ = symmetric_csr(V.shape[0], rows, cols, np.exp(log_w))
        factor = min_length_factor(lengths, log_w)
        self.min_length_factor_ = factor if np.isfinite(factor) else 0.0
        self.n_components_, self.component_labels_ = component_report(self.graph_)
        self.quadrature_error_ = metric.quadrature_error(
            V, rows, cols, values, log_w + self.log_distance_unit_
        )
        self._chord_spacing = chord_spacing(lengths, metric.n_quad)
        self.graph_stretch_ = self.shortcut_cost_ = self.shortcuts_off_data_ = np.nan
        self.shortcuts_ = self.shortcuts is True
        if self.shortcuts is not False and self.graph_.nnz:
            sample = graph_stretch(
                self.graph_,
                self._start(self.graph_),
                nn=self.nn_,
                data=graph_points,
                n_neighbors=max(n_neighbors or 0, DEFAULT_NEIGHBORS),
                radius=radius or 0.0,
            )
            stretch, nodes, cost = sample.stretch, sample.nodes, sample.cost
            self.graph_stretch_, self.shortcut_cost_ = stretch, cost
            self.shortcuts_off_data_ = sample.off_data
            affordable = nodes <= SHORTCUT_MAX_NODES * metric.n_quad
            on_data = sample.off_data <= SHORTCUT_MAX_OFF_DATA
            if self.shortcuts == "auto":  # counts, not times: the same choice on any machine
                self.shortcuts_ = stretch > SHORTCUT_STRETCH and affordable and on_data
            if stretch > SHORTCUT_STRETCH and not on_data:
                warnings.warn(
                    f"the graph alone measures a median {stretch:.2f} times longer than with "
                    f"straight segments (graph_stretch_), but {sample.off_data:.0%} of the "
                    "segments that beat their graph path leave the data "
                    "(shortcuts_off_data_): they cross space without points, such as a gap "
                    "or the inside of a curved sheet, where only the model prices them. "
                    + (
                        "Shortcuts stay off; pass shortcuts=True to follow the model there."
                        if self.shortcuts == "auto"
                        else "Check that the model has no density there, or pass "
                        "shortcuts=False to keep the paths on the data."
                    ),
                    UserWarning,
                    stacklevel=3,
                )
            if self.shortcuts_ and cost > SHORTCUT_MAX_COST:
                warnings.warn(
                    f"shortcuts are on (the graph alone measures a median {stretch:.2f} times "
                    f"longer, graph_stretch_), and a row with them took {cost:.0f} times a "
                    f"graph-only row here (shortcut_cost_; the segments average {nodes:.0f} "
                    "model evaluations each): all pairs will take long. For speed, pass "
                    "shortcuts=False and refine the pairs you need (geodesics(a, b, "
                    "refine=True), kneighbors(..., refine=True)), or use landmarks.",
                    UserWarning,
                    stacklevel=3,
                )
        # refinement can gain where shortcuts are on, or where the graph stretches on the
        # data without them (a 3-D graph: about 10 %, under the shortcuts' threshold), or
        # where a density varies over the data in 3 or more dimensions: its geodesics bend
        # between the vertices, and straight segments are as long as the graph's paths (a
        # mixture fitted to a 5-D cloud: graph_stretch_ 1.00, refine_gain_ 1.4-1.5)
        stretched = self.graph_stretch_ > REFINE_GAIN and self.shortcuts_off_data_ <= (
            SHORTCUT_MAX_OFF_DATA
        )
        curved = V.shape[1] >= 3 and self._density_varies()
        self.refine_gain_ = self.refine_seconds_ = self._seconds_without_late = np.nan
        self._auto_options = self.refine_nearest_ = None
        setting = self._refine_setting()
        if (self.shortcuts_ or stretched or curved) and self.graph_.nnz and setting is not False:
            self._check_refinement_gain()
        self.refine_ = self._choose_refinement(setting)
        # what a query's refine=None means: fixed at fit, as refine_ (set_params after fit
        # changes nothing until the next fit)
        self._query_refine = False
        if self.refine_:
            self._query_refine = setting if isinstance(setting, dict) else (
                self._auto_options or True
            )
        return self

    def _pairs_within(self) -> int:
        """The vertex pairs within components: those that all-pairs refinement refines."""
        sizes = np.bincount(self.component_labels_)
        return int(np.sum(sizes * (sizes - 1) // 2))

    def _density_varies(self) -> bool:
        """Whether a conformal metric's factor ``h`` varies over the vertices by more than
        :data:`gendist.refine.REFINE_GAIN` (5th to 95th percentile): not in the Euclidean
        limit. False for other metrics (a decoder's pullback), which have no vertex values."""
        log_factor = getattr(self.metric_, "log_factor", None)
        if log_factor is None or self._vertex_values is None:
            return False
        log_h = log_factor(self._vertex_values)
        log_h = log_h[np.isfinite(log_h)]
        if not log_h.size:
            return False
        low, high = np.quantile(log_h, [0.05, 0.95])
        return bool(high - low > np.log(REFINE_GAIN))

    def _refine_setting(self):
        """The ``refine`` parameter as False, True, "auto" or a dict (numpy booleans too)."""
        if isinstance(self.refine, (bool, np.bool_)):
            return bool(self.refine)
        return self.refine

    def _choose_refinement(self, setting) -> bool:
        """``refine_``: the ``refine`` parameter, or for ``"auto"`` the measured gain
        (``refine_gain_``) and the estimated time of all pairs (``refine_seconds_``, at most
        :data:`gendist.refine.REFINE_AUTO_SECONDS`; where the ``late_points`` round of
        :data:`gendist.refine.ALL_PAIRS_REFINE` puts them over, the queries refine with it at
        :data:`gendist.refine.REFINE_LATE_FALLBACK` points, or without it); warns where auto
        leaves a measured gain unused."""
        if not isinstance(setting, str):  # True, False or a dict
            return setting is not False
        gain = self.refine_gain_
        if not gain > REFINE_GAIN:  # nan too: not measured
            return False
        if self.refine_seconds_ <= REFINE_AUTO_SECONDS:
            return True
        # the late_points round puts all pairs over the budget: at fewer points (a measured
        # share of its time), else without it (late_points at n_points runs none)
        late = self.refine_seconds_ - self._seconds_without_late
        for points, seconds in (
            (REFINE_LATE_FALLBACK, late * REFINE_LATE_FALLBACK_COST),
            (ALL_PAIRS_REFINE["n_points"], 0.0),
        ):
            if self._seconds_without_late + seconds <= REFINE_AUTO_SECONDS:
                self.refine_seconds_ = self._seconds_without_late + seconds
                self._auto_options = {"late_points": points}
                return True
        N = self.graph_.shape[0]
        pairs = self._pairs_within()
        # each row's nearest pairs within the budget (at most N of them a row: their union
        # holds N/2 to N per row), where they are enough to matter for neighbourhoods
        nearest = REFINE_AUTO_SECONDS / self.refine_seconds_ * pairs / N
        if nearest >= REFINE_NEAREST_MIN:  # nan: not measured, nothing refined
            nearest = int(nearest)
            self.refine_nearest_ = nearest
            self._auto_options = {"nearest": nearest}
        if not gain > REFINE_WARN:  # the few percent of a zig-zag in 2-D or 3-D: recorded
            return self.refine_nearest_ is not None
        how = {
            "closed-form": "closed-form gradients",
            "autograd": "autograd",
            "finite-difference": "finite differences: 4 d model evaluations per gradient",
        }[_gradient_method(self.metric_, "auto", self.device_)]
        workers = self._refine_workers({})
        where = f"in {workers} workers" if workers > 1 else "(n_jobs shares them among workers)"
        chosen = (
            f"refine='auto' refines only each row's {nearest} nearest pairs "
            "(refine_nearest_; their union in fit_transform), so farther distances keep that "
            "excess"
            if self.refine_nearest_ is not None
            else "refine='auto' leaves refinement off"
        )
        warnings.warn(
            f"the distances measure a median {gain - 1:.1%} longer than the refined curves "
            "between the same ends, on a sample of pairs (refine_gain_): the graph's paths "
            "zig-zag between the vertices, or the metric's geodesics bend between them. "
            f"{chosen}: the {pairs:,} pairs of the {N:,} vertices "
            f"(within components) would take about {self.refine_seconds_ / 60:.1f} min here "
            f"{where} (refine_seconds_, {how}; the budget is {REFINE_AUTO_SECONDS:g} s). "
            "Refine what "
            "you need: kneighbors(..., refine=True), geodesics(a, b, refine=True), "
            "distances(rows, refine=True), or pass refine=True for every query.",
            UserWarning,
            stacklevel=4,
        )
        return self.refine_nearest_ is not None

    def _resolve_refine(self, refine):
        """A query's ``refine``: None follows the estimator as fitted (``refine_``, with the
        options of a ``refine`` dict)."""
        return self._query_refine if refine is None else refine

    def _check_refinement_gain(self) -> None:
        """Set ``refine_gain_`` and ``refine_seconds_`` on a sample of pairs.

        Where the graph zig-zags (shortcuts on, or a measured stretch without them), or a
        density varies over data in 3 or more dimensions, the remaining error of the rows is
        that of their straight pieces: under a curved metric the geodesics bend between the
        vertices. Refining a sample of pairs (:data:`gendist.refine.REFINE_CHECK_PAIRS`, from
        random sources, with :data:`gendist.refine.ALL_PAIRS_REFINE`, in two batches:
        :data:`gendist.refine.REFINE_CHECK_FIRST`; a third,
        :data:`gendist.refine.REFINE_CHECK_MORE`, where the two put all pairs over the
        budget) measures it and its time per pair."""
        n_sources, per_source = REFINE_CHECK_PAIRS
        rng = np.random.default_rng(0)
        a, b = self._sample_pairs(rng, n_sources, per_source)
        order = rng.permutation(a.size)  # the first batch: pairs of many sources
        a, b = a[order], b[order]
        if not a.size:
            return
        graph_paths = self._graph_geodesics(a, b)
        _gradient_function(self.metric_, "auto", self.device_)  # torch's import: not timed
        # nor the first call's loading of compiled kernels (0.3 s, more than 16 pairs take):
        # one pair, one iteration (a few model calls: an expensive model's batches dwarf it)
        warm_up = {"curve": "polyline", **ALL_PAIRS_REFINE, "n_rounds": 1, "max_iter": 1,
                   "late_points": ALL_PAIRS_REFINE["n_points"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._refined_geodesics(a[:1], b[:1], warm_up, progress=False,
                                    graph_paths=graph_paths[:1])
        refined, seconds, sizes, without_late = [], [], [], []

        def timed_batch(a, b, graph_paths):
            start, found = time.perf_counter(), []
            refined.extend(self._refined_geodesics(
                a, b, {"curve": "polyline", **ALL_PAIRS_REFINE}, progress=False, late=found,
                graph_paths=graph_paths,
            ))
            seconds.append(time.perf_counter() - start)
            without_late.append(seconds[-1] - sum(entry[2] for entry in found))
            sizes.append(len(a))

        first = REFINE_CHECK_FIRST
        for lo, hi in ((0, first), (first, a.size)):
            if lo >= a.size or (lo and seconds[0] > REFINE_CHECK_SECONDS):
                break  # an expensive model: the first pairs measure it
            timed_batch(a[lo:hi], b[lo:hi], graph_paths[lo:hi])
        pairs = self._pairs_within()
        # each worker's share: all pairs go in batches of PAIRS_PER_BATCH per worker
        share = pairs / max(1, min(self._refine_workers({}), pairs // PATHS_PER_WORKER))
        self.refine_seconds_ = _all_pairs_seconds(seconds, sizes) * share
        self._seconds_without_late = _all_pairs_seconds(without_late, sizes) * share
        before = np.array([g.length for g in graph_paths[: len(refined)]])
        after = np.array([g.length for g in refined])
        keep = np.isfinite(before) & (after > 0)
        if not keep.any():
            return
        # the first sample's pairs only (an expensive model: its first batch)
        self.refine_gain_ = float(np.median(before[keep] / after[keep]))
        # where auto would refine (the gain), near or over the budget (where it then sizes
        # each row's nearest pairs by it), and a third batch affordable
        if (self.refine_gain_ > REFINE_GAIN
                and self.refine_seconds_ > REFINE_AUTO_SECONDS / REFINE_CHECK_OVER
                and self._refine_setting() == "auto" and len(seconds) == 2
                and self.refine_seconds_ / share * np.prod(REFINE_CHECK_MORE)
                <= REFINE_CHECK_MORE_SECONDS and pairs > 4 * np.prod(REFINE_CHECK_MORE)):
            more = self._sample_pairs(np.random.default_rng(1), *REFINE_CHECK_MORE)
            if more[0].size >= 2 * sizes[-1]:  # few pairs (small components): no better rate
                timed_batch(*more, self._graph_geodesics(*more))
                self.refine_seconds_ = seconds[-1] / sizes[-1] * share
                self._seconds_without_late = without_late[-1] / sizes[-1] * share

    def _sample_pairs(self, rng, n_sources: int, per_source: int):
        """Up to ``per_source`` random targets from each of ``n_sources`` random sources, in
        the source's component and at a positive distance: arrays ``(a, b)`` of vertices."""
        N = self.graph_.shape[0]
        a, b = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for s in rng.choice(N, size=min(n_sources, N), replace=False):
            same = self.component_labels_ == self.component_labels_[s]
            same &= np.any(self.vertices_ != self.vertices_[s], axis=1)  # length > 0
            targets = np.flatnonzero(same)
            targets = rng.choice(targets, size=min(per_source, targets.size), replace=False)
            a.append(np.full(targets.size, s))
            b.append(targets)
        return np.concatenate(a), np.concatenate(b)

    def _start(self, graph, new_points=None, new_values=None):
        """The shortcuts (:class:`gendist.shortcuts.Shortcuts`) of ``graph``: the fitted graph,
        or it with ``new_points`` joined as its last vertices."""
        points, values = self.vertices_, self._vertex_values
        if new_points is not None:
            points = np.vstack([points, new_points])
            if values is not None:
                values = np.concatenate([values, new_values])
        components = self.component_labels_
        if graph is not self.graph_:
            components = connected_components(graph, directed=True, connection="weak")[1]
        return Shortcuts(
            self.metric_,
            points,
            values,
            components,
            self.log_distance_unit_,
            self._chord_spacing,
            device=self.device_,
            n_jobs=self.n_jobs,
        )

    def _query_start(self, graph, new_points=None, new_values=None):
        """The shortcuts of ``graph`` when they are on (``shortcuts_``), else None."""
        return self._start(graph, new_points, new_values) if self.shortcuts_ else None

    def fit_transform(self, X, y=None):
        """Fit, then return the distances among the training points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        D : ndarray of shape (n_samples, n_samples)
            Exactly symmetric. Graph only, each pair is measured from its lower index (a
            path's length depends on the direction only through the order of float
            additions), the same float as :meth:`distance`. With shortcuts (``shortcuts_``),
            the matrix is the closure under the triangle inequality of the shorter of each
            pair's two directions (a segment from either end, then the graph, as
            :meth:`distance`): chains of such curves, which a row that may start only with
            its own source's segment misses under a curved metric. Where every vertex is a
            training point it is computed as the closure of the segment between every two
            points (each priced once) and the graph's edges, the same chains without the n
            searches (:func:`gendist.shortcuts.closed_shortcut_matrix`; O(n^3): the whole
            fit_transform took 1.7-1.9 s at n = 2 000 and 56-69 s at n = 8 000 on 2 cores in
            the Euclidean limit, 42-54 s of it in the closure). So with shortcuts each
            entry is at most :meth:`distance` and the rows of :meth:`distances` (up to
            rounding), and shorter wherever a chain is. With refinement on (``refine_``), as
            ``distances(refine=True)``: each pair refined once, from its shorter row, then
            closed.
        """
        self.fit(X)
        idx = self.data_index_
        start = self._query_start(self.graph_)
        options = self._all_pairs_options(self._resolve_refine(None))
        if start is not None or options is not None:
            self._check_closure_memory(len(idx), self.dtype)
        if options is None and start is not None and len(idx) == self.graph_.shape[0]:
            # every vertex a training point: the same closure, without the n searches
            return closed_shortcut_matrix(
                self.graph_, start, self.dtype, self.n_jobs, self._progress()
            )
        D = self._shortest_paths(self.graph_, idx, columns=idx, start=start)
        if options is not None:  # each pair from its shorter row, refined, then closed
            self._refine_rows(D, idx, options, square=True, columns=idx)
            triangle_closure(D, n_jobs=self.n_jobs, progress=self._progress())
        elif start is None:
            mirror_upper_triangle(D)
        else:
            minimum_with_transpose(D)
            triangle_closure(D, n_jobs=self.n_jobs, progress=self._progress())
        return D

    def _check_closure_memory(self, n: int, dtype) -> None:
        """Refuse, before any path is searched, an (n, n) closure
        (:func:`gendist.paths.triangle_closure`, which holds the matrix in memory) beyond
        the memory limit."""
        need = _closure_bytes(n, 4 if np.dtype(dtype) == np.float32 else 8)
        limit = self._memory_limit()
        if need > limit:
            raise GraphTooLargeError(
                f"the {n:,} x {n:,} distance matrix (with shortcuts, or refined) is closed "
                f"under the triangle inequality in memory, which needs about "
                f"{need / 2**30:.1f} GiB, over the memory limit of {limit / 2**30:.1f} GiB. "
                "Compute rows in blocks with distances(sources=...) (rows are not closed); "
                "use landmarks (gendist.landmarks); or raise memory_limit."
            )

    # ------------------------------------------------------------------ joining new points
    def _join_edges(self, Y):
        """(row of Y, vertex, Euclidean length) of the edges joining points to the graph by
        its own rule."""
        offset = self._join_offset
        rows, cols, lengths = join_edges(
            self.nn_, self.vertices_[offset:], Y, self.radius_, self._join_neighbors
        )
        cols = cols + offset
        if offset:
            # a point that coincides with a training point is that point (distance 0)
            same = self._nn_data.radius_neighbors(Y, 0.0, return_distance=False)
            counts = [len(a) for a in same]
            rows = np.concatenate([rows, np.repeat(np.arange(len(Y)), counts)])
            cols = np.concatenate([cols, np.concatenate(same).astype(np.int64)])
            lengths = np.concatenate([lengths, np.zeros(sum(counts))])
        return rows, cols, lengths

    def _are_neighbours(self, a, b) -> bool:
        """Whether two new points would be joined by the graph's own rule: within
        ``radius_``, or one among the other's ``n_neighbors`` nearest (had it been a
        vertex)."""
        gap = float(row_norms((a - b)[None])[0])
        if self.radius_ is not None and gap <= self.radius_:
            return True
        if self._join_neighbors is not None:
            k = min(self._join_neighbors, self.nn_.n_samples_fit_)
            kth = self.nn_.kneighbors(np.vstack([a, b]), k)[0][:, -1]
            return bool(gap <= kth.max())
        return False

    def _joined_graph(self, Y, both_directions: bool, link: bool = False):
        """The fitted graph with the points ``Y`` joined as vertices ``N, N + 1, ...``;
        with ``link``, two points (``Y`` of shape (2, d)) are also joined to each other by
        their segment when the graph's rule makes them neighbours.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (N + m, N + m)
        factor : float
            :func:`gendist.graph.min_length_factor` of the new edges (inf without any).
        values : ndarray of shape (m,) or None
            ``metric_.vertex_values(Y)``.
        """
        rows, cols, lengths = self._join_edges(Y)
        values = self.metric_.vertex_values(Y)
        log_w = self.metric_.edge_log_weights(
            Y,
            rows,
            cols,
            values,
            self.vertices_,
            self._vertex_values,
            device=self.device_,
        )
        log_w = log_w - self.log_distance_unit_
        if np.any(np.isnan(log_w) | np.isposinf(log_w) | (log_w > 709)):
            raise ValueError(
                "a new point's edges are longer than float64 holds in the graph's unit "
                f"(log_distance_unit_={self.log_distance_unit_:.6g}): the point lies too far "
                "from the fitted vertices under this metric."
            )
        links = None
        if link and self._are_neighbours(Y[0], Y[1]):
            ends = (None, None) if values is None else (values[:1], values[1:])
            log_link = self.metric_.log_segment_lengths(Y[:1], Y[1:], *ends)
            log_link = log_link - self.log_distance_unit_
            if not np.all(log_link <= 709):  # NaN, or beyond float64 in the graph's unit
                raise ValueError(
                    "the two new points' segment is longer than float64 holds in the graph's "
                    f"unit (log_distance_unit_={self.log_distance_unit_:.6g})."
                )
            links = ([0], [1], np.exp(log_link))
            lengths = np.append(lengths, row_norms(Y[1:] - Y[:1]))
            log_w = np.append(log_w, log_link)
        graph = add_vertices(
            self.graph_,
            rows,
            cols,
            np.exp(log_w[: len(rows)]),
            len(Y),
            both_directions=both_directions,
            links=links,
        )
        return graph, min_length_factor(lengths, log_w), values

    # ------------------------------------------------------------------ queries
    def _shortest_paths(
        self, graph, sources, columns=None, limit=np.inf, dtype=None, out=None, start=None
    ):
        return shortest_paths(
            graph,
            sources,
            columns=columns,
            limit=limit,
            dtype=self.dtype if dtype is None else dtype,
            backend=self.backend,
            n_jobs=self.n_jobs,
            memory_limit=self._memory_limit(),
            progress=self._progress(),
            out=out,
            device=self.device_,
            start=start,
        )

    def _sources(self, sources):
        N = self.graph_.shape[0]
        return np.arange(N) if sources is None else check_vertex_indices(sources, N, "sources")

    def transform(self, X):
        """Distances from new points to the training points.

        New points join the fitted graph through their neighbours (by the graph's own radius /
        kNN rule) with exact segment costs, as sources only: the fitted graph is not changed,
        and new points do not join each other. With shortcuts (``shortcuts_``) each new
        point also starts with the straight segment to every vertex, as rows of
        :meth:`distances` do. With refinement on (``refine_``) every pair is refined, as in
        ``distances(rows, refine=True)``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        D : ndarray of shape (n_queries, n_samples)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        options = self._all_pairs_options(self._resolve_refine(None))
        graph, _, values = self._joined_graph(X, both_directions=False)
        N = self.graph_.shape[0]
        start = self._query_start(graph, X, values)
        sources = N + np.arange(X.shape[0])
        D = self._shortest_paths(graph, sources, columns=self.data_index_, start=start)
        if options is not None:
            joined = graph, np.vstack([self.vertices_, X]), start
            self._refine_rows(D, sources, options, False, self.data_index_, joined)
        return D

    def distances(self, sources=None, *, limit=np.inf, dtype=None, out=None, refine=None):
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
            Write the rows there block by block (a ``numpy.memmap`` or a zarr array, float32
            or float64) instead of RAM; the memory limit then does not apply to the rows
            (it does to the closure of a refined square matrix, which runs in memory).
        refine : bool or dict, optional
            Default: the estimator's (``refine_``). Also refine the path of every pair with a
            finite, positive distance under the metric, in batches
            (:func:`gendist.refine.refine_paths` with :data:`gendist.refine.ALL_PAIRS_REFINE`; a
            dict overrides those options), and report the shorter of the refined and the graph
            length. This is the accurate answer where the metric's geodesics bend between the
            vertices (curved metrics in 5 or more dimensions, where even shortcut paths stay several
            percent long): every entry is still the length of an actual curve, never longer than
            without ``refine``. It costs a few hundred model evaluations per pair (about 0.09 ms
            per pair on one CPU core with a closed-form torch density in 10-D, 0.5 ms with an
            8-component mixture; ``benchmarks/refined_pairs.md``), so refine the pairs you need
            (:meth:`geodesics`, :meth:`kneighbors`, ``{"nearest": k}``: only the pairs among
            each row's k shortest unrefined entries) when the matrix is large. With all vertices
            as sources each pair is refined once (from the shorter of its two rows), and the
            matrix is then closed under the triangle inequality
            (:func:`gendist.paths.triangle_closure`, in memory): exactly symmetric, and no entry
            longer than a chain of others (entries beyond ``limit`` stay inf). For other
            sources, each row's pairs are refined from that row, without closure.

        Returns
        -------
        D : ndarray of shape (n_sources, n_vertices), or ``out``
            Row i is the single-source run from vertex i (the same floats whatever the other
            sources, without ``refine``); with shortcuts (``shortcuts_``), the shortest curve
            that starts with a straight segment from vertex i and then follows the graph.
            :meth:`fit_transform` is the exactly symmetric matrix (with shortcuts, the
            shorter of the two directions of each pair, closed under the triangle
            inequality, so at most these rows).

        Raises
        ------
        ValueError, TypeError
            For bad ``refine`` options (before any path is searched).
        GraphTooLargeError
            When the matrix (or, refined and square, its closure) exceeds the memory limit.
        """
        check_is_fitted(self)
        options = self._all_pairs_options(self._resolve_refine(refine))
        sources = self._sources(sources)
        N = self.graph_.shape[0]
        square = len(sources) == N and np.array_equal(sources, np.arange(N))
        if options is not None and square:
            self._check_closure_memory(
                N, out.dtype if out is not None else self.dtype if dtype is None else dtype
            )
        start = self._query_start(self.graph_)
        D = self._shortest_paths(
            self.graph_, sources, limit=limit, dtype=dtype, out=out, start=start
        )
        if options is not None:
            self._refine_rows(D, sources, options, square)
            if square:
                triangle_closure(D, n_jobs=self.n_jobs, progress=self._progress())
                if limit < np.inf:  # a chain of entries within limit may exceed it
                    step = max(1, PAIRS_PER_BATCH // N)
                    for r0 in range(0, N, step):
                        block = np.array(D[r0 : r0 + step])
                        block[block > limit] = np.inf
                        D[r0 : r0 + step] = block
        return D

    def _all_pairs_options(self, refine) -> dict | None:
        """The polyline options of ``distances(refine=...)``, checked (None: no refinement)."""
        options = self._refine_options(refine)
        if options is None:
            return None
        if options.pop("curve") == "neural":
            raise ValueError(
                "distances(refine=...) refines every pair as a polyline; a neural curve "
                "trains one network per pair. Use geodesics(a, b, refine={'curve': "
                "'neural'}) for the pairs you need."
            )
        given = {key: value for key, value in options.items() if value is not None}
        options = {**ALL_PAIRS_REFINE, **given}  # None: the all-pairs default
        if self.device_ is not None:
            options.setdefault("device", self.device_)
        # the metric must take the gradient asked for: known now, not at the first batch
        _gradient_function(self.metric_, options.get("method", "auto"), options.get("device"))
        return options

    def _refine_workers(self, options: dict) -> int:
        """The joblib workers among which :func:`gendist.refine.refine_paths` shares a large
        batch of paths (``n_jobs``): one where the paths are refined on a device."""
        if options.get("device", self.device_) is not None:
            return 1
        return effective_n_jobs(self.n_jobs)

    def _refine_rows(
        self, D, sources: np.ndarray, options: dict, square: bool, columns=None, joined=None,
        upper: bool = False,
    ) -> None:
        """Replace each finite, positive entry of the rows ``D`` (from ``sources`` to
        ``columns``, default every vertex) by its refined length where shorter, in place, in
        blocks of rows (``D`` may be a memory map or a zarr array). ``square`` (the sources
        are the columns, in order): each pair is refined once, from the shorter of its two
        rows (the lower index's on a tie), in that row's block, so that a block searches
        from its own sources only, and written to both entries; the matrix is then
        symmetric. ``options["nearest"]``: only the pairs among each row's that many
        shortest (square: either row's). ``joined``: as in :meth:`_graph_geodesics` (the
        sources are new points). ``upper``: only the pairs to later vertices (rows of
        vertices, each pair from its lower index)."""
        columns = np.arange(self.graph_.shape[0]) if columns is None else columns
        N = len(columns)
        step = max(1, PAIRS_PER_BATCH * self._refine_workers(options) // N)
        nearest = options.get("nearest")
        if nearest is not None:  # each row's nearest-th shortest positive entry, unrefined
            bound = np.concatenate([np.zeros(0)] + [
                _nearest_bound(np.array(D[r0 : r0 + step]), nearest)
                for r0 in range(0, len(sources), step)
            ])
        # paths not converged, paths refined, largest last gain of those, late-round seconds
        late = np.zeros(4)
        for r0 in progress_bar(range(0, len(sources), step), desc="refining pairs",
                               progress=self._progress()):
            r1 = min(r0 + step, len(sources))
            block = np.array(D[r0:r1])
            wanted = np.isfinite(block) & (block > 0)
            if upper:
                wanted &= columns[None, :] > sources[r0:r1, None]
            if square:
                # a pair of an earlier row refined there holds equal entries; the others
                # are as measured, so each pair goes to its shorter row once
                mirror = np.array(D[:, r0:r1]).T  # mirror[x, c] = D[c, r0 + x]
                here, there = np.arange(r0, r1)[:, None], np.arange(N)[None, :]
                wanted &= np.where(there > here, block <= mirror, block < mirror)
                value = np.minimum(block, mirror)
            if nearest is not None:  # among the row's nearest (square: or the column's)
                limit = bound[r0:r1, None]
                if square:
                    wanted &= value <= np.maximum(limit, bound[None, :])
                else:
                    wanted &= block <= limit
            rows, cols = np.nonzero(wanted)
            if rows.size:
                found = []
                a, b = sources[r0 + rows], columns[cols]
                paths = self._refined_geodesics(
                    a, b, {"curve": "polyline", **options}, progress=False, late=found,
                    graph_paths=self._graph_geodesics(a, b, joined),
                )
                refined = np.minimum(block[rows, cols], [g.length for g in paths])
                block[rows, cols] = refined
                if square:  # both entries; those within the block in both copies
                    mirror[rows, cols] = refined
                    inner = (cols >= r0) & (cols < r1)
                    block[cols[inner] - r0, rows[inner] + r0] = refined[inner]
                    mirror[cols[inner] - r0, rows[inner] + r0] = refined[inner]
                for unconverged, gain, seconds in found:
                    late[0] += unconverged.sum()
                    late[1] += len(unconverged)
                    late[2] = max(late[2], np.abs(gain[unconverged]).max(initial=0.0))
                    late[3] += seconds
            D[r0:r1] = block
            if square:
                D[:, r0:r1] = mirror.T
        if square:  # the pairs left as measured: the shorter direction
            minimum_with_transpose(D)
        _warn_unconverged(
            "distances(refine=...)", int(late[0]), int(late[1]), late[2],
            options["n_rounds"], options["tol"], stacklevel=4,
            late_points=options["late_points"] if late[3] > 0 else None,
        )

    def kneighbors(self, sources=None, n_neighbors: int = 5, refine=None):
        """The k nearest vertices in generative distance, without all-pairs distances.

        Bounded searches (:func:`gendist.paths.nearest_vertices`): each source's search stops
        at a radius that doubles until it holds k other vertices, and the sources go in
        memory-bounded blocks.

        Parameters
        ----------
        sources : array-like of int, optional
            Vertex indices (default: all vertices).
        n_neighbors : int, default=5
            k, the number of neighbours returned (not the graph's ``n_neighbors``).
        refine : bool or dict, optional
            Default: the estimator's (``refine_``). Also refine the paths to the k
            neighbours found, in one batch
            (:meth:`geodesics`; a dict passes options of
            :func:`gendist.refine.refine_paths`), and return the refined lengths, sorted
            again. Each is the length of an actual curve and never longer than the graph's.
            The candidates are the graph's k nearest: a vertex just beyond them whose refined
            distance would be shorter is not searched for.

        Returns
        -------
        distances : ndarray of shape (n_sources, n_neighbors)
            Increasing; inf where a component has fewer than k other vertices.
        indices : ndarray of shape (n_sources, n_neighbors)
            Vertex indices (-1 where the distance is inf). A vertex is not its own neighbour.
        """
        check_is_fitted(self)
        options = self._refine_options(self._resolve_refine(refine))
        sources = self._sources(sources)
        dist, ind = nearest_vertices(
            self.graph_,
            sources,
            n_neighbors,
            backend=self.backend,
            n_jobs=self.n_jobs,
            device=self.device_,
            progress=self._progress(),
            start=self._query_start(self.graph_),
        )
        if options is None:
            return dist, ind
        found = np.isfinite(dist)
        if options.get("nearest") is not None:  # the first found, as all-pairs queries do,
            found[:, options["nearest"] :] = False  # with their settings (many pairs)
            if options["curve"] == "polyline":
                refine = self._resolve_refine(refine)
                options = {"curve": "polyline", **self._all_pairs_options(refine)}
        rows = np.broadcast_to(sources[:, None], dist.shape)[found]
        refined = self._refined_geodesics(rows, ind[found], options)
        dist[found] = [g.length for g in refined]
        order = np.argsort(dist, axis=1, kind="stable")
        return np.take_along_axis(dist, order, 1), np.take_along_axis(ind, order, 1)

    def kneighbors_graph(self, n_neighbors: int = 5, mode: str = "distance", refine=None):
        """Sparse kNN graph in scikit-learn's precomputed convention; see
        :func:`gendist.interop.kneighbors_graph`."""
        return kneighbors_graph(self, n_neighbors, mode, refine)

    def sparse_cost_matrix(self, limit: float, dtype="float64"):
        """The distances up to ``limit`` as a symmetric sparse matrix; see
        :func:`gendist.interop.sparse_cost_matrix`."""
        return sparse_cost_matrix(self, limit, dtype)

    def _endpoint(self, a, name):
        """A vertex index, or a point (as a (1, d) array), from what the user passed.

        An integer (a Python or numpy integer, a 0-d integer array) is a vertex index; an
        array of shape (n_features,) or (1, n_features) is a point. Booleans, other scalars
        and several points are refused.
        """
        d = self.n_features_in_
        if a is None or isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{name} must be a vertex index or a point of {d} features, got {a!r}.")
        array = np.asarray(a)
        if array.ndim == 0:
            if array.dtype.kind not in "iu":
                raise TypeError(
                    f"{name} must be a vertex index (an integer) or a point of shape ({d},), "
                    f"got {a!r}."
                )
            return int(check_vertex_indices(array, self.graph_.shape[0], name)[0]), None
        if array.ndim > 2 or (array.ndim == 2 and array.shape[0] != 1):
            raise ValueError(
                f"{name} must be one point of shape ({d},), got an array of shape "
                f"{array.shape}; use transform for several points."
            )
        return None, check_points(array.reshape(1, -1), name, n_features=d)

    def _pair_query(self, a, b):
        """Shortest path between two vertices or points, without an all-pairs run.

        Points join the graph in both directions; a shortest path never passes through its
        own ends, so joining them changes no distance between the two. Two new points are
        joined to each other too, by their segment, when the graph's rule makes them
        neighbours; two equal points are at distance 0.

        Returns
        -------
        length : float
        path : ndarray of int or None
            Vertex indices; ``N`` and ``N + 1`` (``N`` vertices) are the new points.
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
            start = self._query_start(graph)
        else:
            graph, join_factor, values = self._joined_graph(
                np.vstack(new), both_directions=True, link=len(new) == 2
            )
            factor = min(self.min_length_factor_, join_factor)
            start = self._query_start(graph, np.vstack(new), values)
        swapped = pa is None and pb is None and ia > ib
        if swapped:
            ia, ib = ib, ia  # two vertices: from the lower index, as the all-pairs matrix
        source = N if pa is not None else ia
        target = N + len(new) - 1 if pb is not None else ib
        if start is not None:
            length, path = self._shortcut_pair(graph, source, target, start)
            if swapped and path is not None:
                path = path[::-1]
            return length, path, (np.vstack(new) if new else None)
        x_a = pa[0] if pa is not None else self.vertices_[ia]
        x_b = pb[0] if pb is not None else self.vertices_[ib]
        bound = factor * float(row_norms((x_a - x_b)[None])[0])
        # the graph was checked at fit (and the joined rows by construction)
        length, path = _pair_shortest_path(graph, source, target, bound)
        if swapped and path is not None:
            path = path[::-1]
        return length, path, (np.vstack(new) if new else None)

    def _shortcut_pair(self, graph, source, target, start):
        """The shorter of the two shortcut paths between ``source`` and ``target`` (a segment
        from either end, then the graph), as :meth:`fit_transform` takes it before its
        closure.

        Returns
        -------
        length : float
        path : ndarray of int or None
            From ``source`` to ``target``; None when there is no path.
        """
        options = {"backend": self.backend, "device": self.device_, "start": start}
        dist_s, pred_s = shortest_path_tree(graph, source, **options)
        dist_t, pred_t = shortest_path_tree(graph, target, **options)
        forward, backward = dist_s[target], dist_t[source]
        if not np.isfinite(min(forward, backward)):
            return np.inf, None
        if forward <= backward:
            return float(forward), reconstruct_seeded_path(pred_s, source, target)
        return float(backward), reconstruct_seeded_path(pred_t, target, source)[::-1]

    def distance(self, a, b) -> float:
        """The distance between two vertices or points.

        A bidirectional Dijkstra from both ends (:func:`gendist.paths.pair_shortest_path`),
        started from the admissible bound ``min_length_factor_ * |a - b|``: the work grows
        with the distance, not with the graph, and the result is the same float as the
        all-pairs one (``fit_transform``) between two vertices; with shortcuts, the shorter
        of the pair's two rows of :meth:`distances`, which the closed ``fit_transform``
        matrix may undercut. New points join the graph
        through their neighbours, and each other when the graph's rule makes them
        neighbours (two equal points are at distance 0).

        Parameters
        ----------
        a, b : int or array-like of shape (n_features,)
            A vertex index, or a point (which joins the graph through its neighbours).

        With refinement on (``refine_``), the length of the refined :meth:`geodesic` (the
        finer single-pair settings of :func:`gendist.refine.refine_path`, so it may be a
        little shorter than the matrix entry).

        Returns
        -------
        distance : float
            ``inf`` when a and b lie in different connected components.
        """
        if self.refine_ and isinstance(a, Integral) and isinstance(b, Integral) and a > b:
            a, b = b, a  # one orientation: the refined length is then symmetric to the bit
        query = self._pair_query(a, b)
        if self.refine_ and np.isfinite(query[0]) and query[0] > 0:
            return self._pair_geodesic(query, None).length
        return float(query[0])

    def geodesic(self, a, b, refine=None) -> Geodesic:
        """The geodesic between two vertices or points: the graph path, optionally refined.

        Parameters
        ----------
        a, b : int or array-like of shape (n_features,)
            A vertex index, or a point (which joins the graph through its neighbours).
        refine : bool or dict, optional
            Default: the estimator's (``refine_``). Also move the path's interior points off the
            vertices to shorten it under the metric (:func:`gendist.refine.refine_path`); a dict
            passes options such as ``n_points`` or ``method``. ``{"curve": "neural", ...}`` instead
            fits a neural network curve between the path's ends
            (:func:`gendist.curves.neural_curve`, with its options; a differentiable metric). The
            refined path is never longer than the graph path (a longer neural curve is not taken)
            and is closer to the true geodesic, at the cost of model evaluations along it.

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
        return self._pair_geodesic(self._pair_query(a, b), refine)

    def _pair_geodesic(self, query, refine) -> Geodesic:
        """:meth:`geodesic` from the pair's :meth:`_pair_query` result."""
        length, path, new = query
        if path is None:
            raise ValueError(
                f"a and b lie in different connected components of the graph "
                f"({self.n_components_} components); there is no geodesic between them."
            )
        N = self.graph_.shape[0]
        indices = np.where(path >= N, -1, path)
        points = np.vstack([self.vertices_[i] if i < N else new[i - N] for i in path])
        options = self._refine_options(self._resolve_refine(refine))
        if options is not None and len(points) > 1:
            options = dict(options)
            options.pop("nearest", None)  # a pair asked for by name is always refined
            if options.pop("curve") == "neural":
                refined, metric_length = neural_curve(
                    self.metric_, points[0], points[-1], **options
                )
                log_length = np.log(metric_length)
            else:
                refined, _, info = refine_path(
                    self.metric_, points, progress=self._progress(), return_info=True, **options
                )
                log_length = info["log_length"] if info["refined"] else np.inf
            # in the graph's unit (see log_distance_unit_), like the graph path's length
            new_length = float(np.exp(log_length - self.log_distance_unit_))
            if new_length < length:
                inner = np.full(len(refined) - 2, -1)
                indices = np.concatenate([indices[:1], inner, indices[-1:]])
                length, points = new_length, refined
        return Geodesic(points=points, indices=indices, length=float(length))

    @staticmethod
    def _refine_options(refine) -> dict | None:
        """The curve optimisation that ``refine`` asks for (None: none): a dict with
        ``curve`` ("polyline" or "neural") and the options of
        :func:`gendist.refine.refine_paths` or :func:`gendist.curves.neural_curve`."""
        if isinstance(refine, (bool, np.bool_)):
            return {"curve": "polyline"} if refine else None
        if not isinstance(refine, dict):
            raise TypeError(f"refine must be a bool or a dict of curve options, got {refine!r}.")
        options = {"curve": "polyline", **refine}
        if options.get("nearest") is not None:
            check_int(options["nearest"], "refine['nearest']", minimum=1)
        if options["curve"] not in ("polyline", "neural"):
            raise ValueError(
                f"refine['curve'] must be 'polyline' or 'neural', got {options['curve']!r}."
            )
        if options["curve"] == "neural":
            unknown = sorted(set(options) - {"curve", "nearest", *NEURAL_CURVE_OPTIONS})
            if unknown:
                raise ValueError(
                    f"refine has unknown options {unknown} for curve='neural'; expected "
                    f"{list(NEURAL_CURVE_OPTIONS)}."
                )
        else:  # before any work, as refine_paths would check them
            check_refine_options({k: v for k, v in options.items()
                                  if k not in ("curve", "nearest")})
        return options

    def _graph_geodesics(self, a: np.ndarray, b: np.ndarray, joined=None) -> list[Geodesic]:
        """The paths ``a[i] -> b[i]`` between vertices of one component, as the rows of
        :meth:`distances` take them: one shortest-path tree per distinct source, the trees
        of a memory-bounded block of sources in one run (:func:`gendist.paths.
        shortest_path_trees`; with shortcuts, their segments priced together).

        ``joined``: ``(graph, points, start)`` of the fitted graph with new points joined
        (:meth:`_joined_graph`, their shortcuts), whose vertices ``a`` and ``b`` index."""
        if joined is None:
            joined = self.graph_, self.vertices_, self._query_start(self.graph_)
        graph, points, start = joined
        reconstruct = reconstruct_path if start is None else reconstruct_seeded_path
        N = graph.shape[0]
        out = [None] * len(a)
        order = np.argsort(a, kind="stable")  # the pairs grouped by source
        distinct, first = np.unique(a[order], return_index=True)
        bounds = np.append(first, len(a))
        # distances, predecessors, the starts' labels and the seeded run's augmented graph:
        # about 64 bytes per (source, vertex), in a quarter of the working memory
        budget = int(get_config()["working_memory"] * 2**20) // 4
        step = chunk_rows(64 * N, max_rows=len(distinct), budget=budget)
        for s0 in range(0, len(distinct), step):
            block = distinct[s0 : s0 + step]
            dist, pred = shortest_path_trees(
                graph, block, backend=self.backend, device=self.device_, start=start
            )
            for row, s in enumerate(block):
                for i in order[bounds[s0 + row] : bounds[s0 + row + 1]]:
                    path = reconstruct(pred[row], s, b[i])
                    out[i] = Geodesic(points=points[path], indices=path, length=dist[row, b[i]])
        return out

    def _refined_geodesics(
        self, a, b, options: dict, progress=None, late: list | None = None, graph_paths=None
    ) -> list[Geodesic]:
        """:meth:`_graph_geodesics` refined in one batch (:func:`gendist.refine.refine_paths`);
        a path keeps the graph's where refinement does not measure shorter.

        ``progress`` defaults to the estimator's; with ``late`` (a list), the polyline
        refinement's ConvergenceWarning is not raised: ``(~converged, gain, late_seconds)``
        (two arrays and the seconds of the ``late_points`` round) is appended to ``late``
        instead, for one warning over many batches. ``graph_paths``:
        :meth:`_graph_geodesics` of the pairs when the caller has them already."""
        graph_paths = list(graph_paths) if graph_paths is not None else None
        graph_paths = self._graph_geodesics(a, b) if graph_paths is None else graph_paths
        progress = self._progress() if progress is None else progress
        moving = [i for i, g in enumerate(graph_paths) if len(g.points) > 1]
        if not moving:
            return graph_paths
        options = dict(options)
        options.pop("nearest", None)  # which pairs: the caller's choice, made already
        if options.pop("curve") == "neural":
            curves = [
                neural_curve(self.metric_, g.points[0], g.points[-1], **options)
                for g in (graph_paths[i] for i in moving)
            ]
            refined = [c[0] for c in curves]
            log_lengths = np.log([c[1] for c in curves])
        else:
            if self.device_ is not None:
                options.setdefault("device", self.device_)
            with warnings.catch_warnings():
                if late is not None:
                    warnings.simplefilter("ignore", ConvergenceWarning)
                refined, _, info = refine_paths(
                    self.metric_,
                    [graph_paths[i].points for i in moving],
                    progress=progress,
                    return_info=True,
                    n_jobs=self.n_jobs,
                    **options,
                )
            if late is not None:
                late.append((~info["converged"], info["gain"], info["late_seconds"].sum()))
            log_lengths = np.where(info["refined"], info["log_length"], np.inf)
        # in the graph's unit (see log_distance_unit_), like the graph paths' lengths
        lengths = np.exp(log_lengths - self.log_distance_unit_)
        for j, i in enumerate(moving):
            g = graph_paths[i]
            if lengths[j] < g.length:
                inner = np.full(len(refined[j]) - 2, -1)
                indices = np.concatenate([g.indices[:1], inner, g.indices[-1:]])
                graph_paths[i] = Geodesic(refined[j], indices, float(lengths[j]))
        return graph_paths

    def geodesics(self, a, b, refine=None) -> list[Geodesic]:
        """Geodesics between many pairs of vertices, optionally refined in one batch.

        The graph paths are those of the rows of :meth:`distances` (one shortest-path tree
        per distinct vertex of ``a``). With ``refine``, all the paths are refined together
        (:func:`gendist.refine.refine_paths`): one ``(pairs, n_points, d)`` array, every
        model call holding points of many paths, on the estimator's ``device`` when the
        density takes torch tensors there. Where the data's dimension makes the graph's
        lengths too long (``graph_stretch_``), this is the accurate answer for the pairs
        that matter (the k nearest, landmark rows, pairs to plot).

        Parameters
        ----------
        a, b : array-like of int, shape (n_pairs,)
            Vertex indices; pair i is ``a[i] -> b[i]``.
        refine : bool or dict, optional
            Default: the estimator's (``refine_``). Refine the paths under the metric; a
            dict passes options of
            :func:`gendist.refine.refine_paths` (``n_points``, ``n_rounds``, ``max_iter``,
            ``method``, ``tol``, ``device``), or ``{"curve": "neural", ...}`` one neural
            curve per pair (:func:`gendist.curves.neural_curve`). A refined path is never
            longer than its graph path; a path whose refinement does not measure shorter
            stays the graph's.

        Returns
        -------
        list of Geodesic
            ``points`` (k, d) from a[i] to b[i], ``indices`` (vertex index, -1 for the
            points of a refined path between its ends), ``length`` in the graph's unit.

        Raises
        ------
        ValueError
            If a pair lies in different connected components (checked before any work).
        """
        check_is_fitted(self)
        options = self._refine_options(self._resolve_refine(refine))
        N = self.graph_.shape[0]
        a, b = check_vertex_indices(a, N, "a"), check_vertex_indices(b, N, "b")
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}.")
        apart = self.component_labels_[a] != self.component_labels_[b]
        if apart.any():
            raise ValueError(
                f"{int(apart.sum())} of {len(a)} pairs lie in different connected components "
                f"of the graph ({self.n_components_} components), e.g. pair "
                f"{int(np.flatnonzero(apart)[0])}; there is no geodesic between them."
            )
        if options is None:
            return self._graph_geodesics(a, b)
        return self._refined_geodesics(a, b, options)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
