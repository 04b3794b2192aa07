"""Star shortcuts: a straight segment from each source to every vertex, priced exactly.

A neighbourhood graph gives the right topology but, once the data's dimension is about 4 or
more, not the right lengths: a path must hop between random vertices and in high dimension
those hops zig-zag (the Euclidean limit on uniform points in [0, 1]^10 gives graph paths
1.7-1.8 times too long at k = 10, and still 1.1 at k = 1000). More data does not help.

A straight segment's length under the metric is exact up to quadrature whatever its length.
So each source s also starts with the straight segment to every vertex u, and the shortest
path follows that segment and then the graph:

    D(s, t) = min_u  c(s, u) + d_graph(u, t),     c(s, u) = length of the segment s -> u

(:func:`gendist.paths.seeded_shortest_paths`; ``u = s`` gives the graph path, so D never
exceeds the graph distance). Every value is the length of an actual curve (one segment, then
graph edges), so it stays an upper bound on the true distance up to quadrature error, and in
the Euclidean limit it is exact. The segments cost one row of n quadratures per source, so
rows of all pairs cost n^2 segments on top of the graph's Dijkstra runs; the closed matrix
of all pairs (:func:`closed_shortcut_matrix`) prices each pair's segment once and needs no
search.

A long segment needs more nodes than a graph edge: its quadrature uses intervals no longer
than those of the graph's edges (the 90th percentile of the edge lengths over ``n_quad - 1``
intervals), rounded up to a few node counts so that the segments of a block share calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._compute import chunk_rows, progress_bar, row_norms
from .paths import (
    _check_float32,
    mirror_upper_triangle,
    seeded_shortest_paths,
    shortest_paths,
    triangle_closure,
)

__all__ = [
    "SHORTCUT_MAX_COST",
    "SHORTCUT_MAX_NODES",
    "SHORTCUT_STRETCH",
    "SHORTCUT_MAX_OFF_DATA",
    "Shortcuts",
    "StretchSample",
    "chord_spacing",
    "closed_shortcut_matrix",
    "graph_stretch",
]

#: ``shortcuts="auto"`` turns the shortcuts on when the graph's measured median stretch
#: (graph distance over shortcut distance, :func:`graph_stretch`) exceeds this (below 10 %
#: the n^2 segments buy too little: refine the pairs that matter instead) ...
SHORTCUT_STRETCH = 1.10

#: ... a segment needs on average at most this many times ``n_quad`` nodes: where
#: segments are long against the edges (low dimension, many points; the stretch there is a
#: few percent) they would cost far more than the graph ...
SHORTCUT_MAX_NODES = 8

#: ... and at most this fraction of the segments that beat their graph path leave the data
#: (:class:`StretchSample`): else the stretch comes from space without data that only the
#: model prices, not from the graph's zig-zag ...
SHORTCUT_MAX_OFF_DATA = 0.05

#: With shortcuts on, fit warns when a row with them took more than this many times a
#: graph-only row on the sample (the segments' quadrature evaluates the model n times per
#: row: cheap for a closed-form density, hundreds of Dijkstra runs for a large mixture or a
#: flow). A measured time, so it only informs: the choice itself rests on counts.
SHORTCUT_MAX_COST = 30.0

#: Interval counts a segment's quadrature is rounded up to: about four per octave.
_INTERVALS = np.unique(np.round(2.0 ** (np.arange(0, 64) / 4)).astype(np.int64))


def chord_spacing(lengths: np.ndarray, n_quad: int) -> float:
    """The longest quadrature interval of a shortcut: the 90th percentile of the graph's edge
    lengths over ``n_quad - 1`` intervals (0.0 without edges of positive length)."""
    positive = np.asarray(lengths)[np.asarray(lengths) > 0]
    if positive.size == 0:
        return 0.0
    return float(np.quantile(positive, 0.9)) / (n_quad - 1)


@dataclass(frozen=True)
class Shortcuts:
    """Starting labels of :func:`gendist.paths.shortest_paths` (``start=``): the lengths of
    the straight segments from each source to every vertex, in the graph's unit.

    Parameters
    ----------
    metric : gendist.metric.SegmentMetric
    points : ndarray of shape (n, d)
        The graph's vertices (with any joined new points).
    values : ndarray of shape (n,) or None
        ``metric.vertex_values(points)``.
    components : ndarray of shape (n,), int
        Connected-component labels of the graph's vertices: a source gets no segment to
        another component, so the graph's components (and the inf between them) stay.
    log_unit : float
        The graph's ``log_distance_unit_``: labels are ``exp(log length - log_unit)``.
    spacing : float
        Longest quadrature interval (Euclidean); :func:`chord_spacing`.
    device : None, str or torch.device
        Where the quadrature runs (as :meth:`~gendist.metric.SegmentMetric.edge_log_weights`).
    n_jobs : int, optional
        Workers for the quadrature chunks (numpy only).
    """

    metric: object
    points: np.ndarray
    values: np.ndarray | None
    components: np.ndarray
    log_unit: float
    spacing: float
    device: object = None
    n_jobs: int | None = None

    def n_intervals(self, lengths: np.ndarray) -> np.ndarray:
        """Quadrature intervals of segments of these Euclidean lengths (shape kept)."""
        base = self.metric.n_quad - 1
        if not self.spacing > 0:
            return np.full(np.shape(lengths), base, dtype=np.int64)
        with np.errstate(over="ignore"):
            # a length a hair above a multiple of the spacing (1e-9, relative) takes the
            # lower count: on a lattice the lengths are exact multiples, and the count must
            # not depend on how a block's matrix product rounded them
            need = np.ceil(np.asarray(lengths) / self.spacing * (1 - 1e-9))
            need = np.maximum(base, need)
        need = np.minimum(need, _INTERVALS[-1])
        return _INTERVALS[np.searchsorted(_INTERVALS, need)]

    def log_lengths(self, sources, columns=None) -> np.ndarray:
        """Log-lengths (in the metric's own unit) of the segments from each source to every
        vertex (or to the vertices ``columns``), shape (len(sources), n or len(columns));
        -inf for a vertex at the source's position."""
        sources = np.asarray(sources, dtype=np.int64).reshape(-1)
        P = self.points
        d = P.shape[1]
        columns = np.arange(len(P)) if columns is None else np.asarray(columns, np.int64)
        n = len(columns)
        out = np.empty((len(sources), n))
        step = chunk_rows(3 * 8 * n * (d + 2))
        # centred and scaled by a power of two, so that the squares neither overflow nor
        # cancel at any coordinate scale
        C = P - P.mean(axis=0)
        scale = 2.0 ** -np.frexp(max(float(np.abs(C).max()), np.finfo(float).tiny))[1]
        C = C * scale
        squares = np.einsum("ij,ij->i", C, C)
        to, to_squares = C[columns], squares[columns]
        for s in range(0, len(sources), step):
            block = sources[s : s + step]
            rows = np.repeat(block, n)
            cols = np.tile(columns, len(block))
            # node counts only: the matrix-product form of |x - y|^2 is accurate enough here
            # (the quadrature itself takes exact differences)
            gram = squares[block, None] + to_squares[None, :] - 2.0 * (C[block] @ to.T)
            counts = self.n_intervals(np.sqrt(np.maximum(gram, 0.0)).ravel() / scale)
            flat = np.empty(len(rows))
            for c in np.unique(counts):
                pick = np.flatnonzero(counts == c)
                flat[pick] = self.metric.with_nodes(int(c) + 1).edge_log_weights(
                    P, rows[pick], cols[pick], self.values, n_jobs=self.n_jobs, device=self.device
                )
            out[s : s + len(block)] = flat.reshape(len(block), n)
        return out

    def __call__(self, sources, columns=None) -> np.ndarray:
        """Starting labels, shape (len(sources), n or len(columns)): the segment lengths in
        the graph's unit; inf to other components and where a length overflows float64 in
        the graph's unit (such a segment cannot be a shortest path)."""
        sources = np.asarray(sources, dtype=np.int64).reshape(-1)
        with np.errstate(over="ignore"):
            labels = np.exp(self.log_lengths(sources, columns) - self.log_unit)
        to = self.components if columns is None else self.components[columns]
        labels[self.components[sources][:, None] != to[None, :]] = np.inf
        return labels


def closed_shortcut_matrix(
    graph,
    shortcuts: Shortcuts,
    dtype=np.float64,
    n_jobs: int | None = None,
    progress: bool | None = False,
) -> np.ndarray:
    """The shortest chains of straight segments and graph edges between every two vertices.

    The closure (:func:`gendist.paths.triangle_closure`) of the matrix that holds the
    segment between every two vertices of a component, or the edge between them where the
    edge is shorter. The shortcut rows (:func:`gendist.paths.seeded_shortest_paths` with
    ``shortcuts``: a segment, then the graph) are chains of that matrix, and every chain
    of it is a chain of such rows, so this is the closure of the symmetrised rows (up to the
    order of float additions), without their n shortest-path searches; and each segment
    is priced once, from its lower-index end, so the matrix is exactly symmetric.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
        A validated graph (:func:`gendist.paths.validate_graph`) in the shortcuts' unit.
    shortcuts : Shortcuts
        Of the graph's n vertices.
    dtype : {numpy.float64, numpy.float32}
        Of the matrix. Segments are priced in float64; in float32 a link beyond its range
        is left out (a chain through it is as long).
    n_jobs : int, optional
        Workers for the segments' quadrature and threads of the closure.
    progress : bool or None
        Progress bars over the segments and the closure's rounds.

    Returns
    -------
    D : ndarray of shape (n, n)
        Exactly symmetric, 0 on the diagonal, inf between components.

    Raises
    ------
    OverflowError
        In float32, where a distance within a component is beyond its range (it would read
        as inf, disconnected) or a positive link below it (it would read as 0).
    """
    n = graph.shape[0]
    if len(shortcuts.points) != n:
        raise ValueError(
            f"the shortcuts are of {len(shortcuts.points)} vertices, the graph has {n}."
        )
    D = np.empty((n, n), dtype=dtype)
    single = D.dtype == np.float32
    step = min(chunk_rows(2 * 8 * n), -(-n // 64))  # blocks of rows: about half the pairs
    for r0 in progress_bar(range(0, n, step), desc="shortcut segments", progress=progress):
        r1 = min(n, r0 + step)
        block = shortcuts(np.arange(r0, r1), columns=np.arange(r0, n))
        D[r0:r1, r0:] = _as_float32_links(block) if single else block
    mirror_upper_triangle(D)
    rows = np.repeat(np.arange(n), np.diff(graph.indptr))
    weights = graph.data.astype(np.float64)
    weights = _as_float32_links(weights) if single else weights
    np.minimum.at(D, (rows, graph.indices), weights)
    np.minimum.at(D, (graph.indices, rows), weights)
    triangle_closure(D, n_jobs=n_jobs, progress=progress)
    if single:  # a pair whose every chain has a link beyond float32: its distance too
        labels = shortcuts.components
        for r0 in range(0, n, step):
            same = labels[r0 : r0 + step, None] == labels[None, :]
            if np.any(np.isinf(D[r0 : r0 + step]) & same):
                raise OverflowError(
                    "distances within a connected component exceed float32 (largest "
                    f"{np.finfo(np.float32).max:.3g}); they would read as disconnected "
                    "(inf). Use dtype='float64'."
                )
    return D


def _as_float32_links(lengths: np.ndarray) -> np.ndarray:
    """Links (segments, edges) for a float32 closure: one beyond float32's range becomes
    inf, no link (a chain through it is as long, so its pair's distance is beyond float32
    too unless a shorter chain exists: checked after the closure); a positive one below
    its range is refused (it would read as 0, the same point, and so would its pair's
    distance, which is at most that link)."""
    lengths = np.where(lengths > np.finfo(np.float32).max, np.inf, lengths)
    _check_float32(lengths)
    return lengths


@dataclass(frozen=True)
class StretchSample:
    """What :func:`graph_stretch` measured on its sample of sources.

    Attributes
    ----------
    stretch : float
        The median over pairs of the graph distance over the shortcut distance (>= 1);
        pairs at distance 0 and pairs in different components are left out (1.0 when none
        is left).
    nodes : float
        The mean number of quadrature nodes of a segment from these sources.
    cost : float
        Wall time of the rows with shortcuts (segments included) over that of the
        graph-only rows.
    off_data : float
        Of the straight segments that beat their graph path by more than
        :data:`SHORTCUT_STRETCH`, the fraction that leave the data: a node of the segment
        lies farther from its nearest vertex than that vertex's ``reach`` (0.0 when no
        segment beats its path, or without ``nn``).
    """

    stretch: float
    nodes: float
    cost: float
    off_data: float


def graph_stretch(
    graph,
    shortcuts: Shortcuts,
    n_sources: int = 16,
    seed: int = 0,
    nn=None,
    data=None,
    n_neighbors: int = 10,
    radius: float = 0.0,
) -> StretchSample:
    """How much longer the graph alone measures, what the shortcuts cost, and whether the
    segments that make the difference stay on the data, on a sample.

    From ``n_sources`` random sources (seeded), the graph-only rows and the rows with
    shortcuts are compared.

    Why the data test. Where the data fill their space at the graph's scale (locally
    high-dimensional), graph paths zig-zag and a straight segment between two vertices
    runs through data all the way: the stretch is the graph's error. Where the data lie
    on a curved or separated structure (a surface, two shells), a segment that beats the
    graph cuts through space without data, where only the model's extrapolation prices
    it: a density that fills a gap or the inside of a curved sheet makes such segments
    cheap. The stretch alone cannot tell the two apart; the segments' nodes can.

    Parameters
    ----------
    graph : sparse matrix of shape (n, n)
    shortcuts : Shortcuts
    n_sources : int
    seed : int
    nn : NeighbourIndex, optional
        Fitted on ``data``; without it ``off_data`` is 0.0.
    data : ndarray of shape (n_data, d), optional
        The points the graph was built on.
    n_neighbors, radius : int, float
        A data point's reach is the larger of ``radius`` and the distance to its
        ``n_neighbors``-th nearest neighbour (the ball its graph edges span). In volume
        terms a point of uniformly spread data lies outside the reach of its nearest data
        point with probability about 2^-n_neighbors, in any dimension. So the test sees
        gaps and hollows wider than about this reach; narrower ones are below the data's
        resolution. Measured at 10 neighbours (fraction of the beating segments that
        leave the data): 0-0.4 % on uniform points in [0, 1]^d, d = 3-50, 0.2-3 % on
        Gaussian clouds, d = 5-20, n = 500-2000; 7-10 % on two coaxial noisy cylinders
        0.6 apart in 10-D under a mixture that fills the gap (52 % at 1.0 apart).

    Returns
    -------
    StretchSample
    """
    n = graph.shape[0]
    sources = np.random.default_rng(seed).choice(n, size=min(n_sources, n), replace=False)
    start = time.perf_counter()
    plain = shortest_paths(graph, sources)
    middle = time.perf_counter()
    segments = shortcuts(sources)
    seeded = seeded_shortest_paths(graph, segments)
    cost = (time.perf_counter() - middle) / max(middle - start, 1e-9)
    points = shortcuts.points
    lengths = row_norms((points[sources][:, None] - points[None]).reshape(-1, points.shape[1]))
    nodes = float(np.mean(shortcuts.n_intervals(lengths))) + 1.0
    keep = np.isfinite(plain) & (seeded > 0)
    stretch = float(np.median(plain[keep] / seeded[keep])) if keep.any() else 1.0
    off_data = 0.0
    if nn is not None:
        with np.errstate(invalid="ignore"):
            beats = np.isfinite(plain) & (segments * SHORTCUT_STRETCH < plain)
        s, t = np.nonzero(beats)
        if len(s):
            off_data = _off_data_fraction(
                points, sources[s], t, nn, data, n_neighbors, radius, seed
            )
    return StretchSample(stretch, nodes, cost, off_data)


def _off_data_fraction(
    points, sources, targets, nn, data, n_neighbors, radius, seed, n_pairs=512, n_nodes=8
):
    """The fraction of the segments ``sources[i] -> targets[i]`` (at most ``n_pairs`` of
    them, drawn at random) with an interior node, at fraction j / n_nodes, outside the reach
    of its nearest data point (:func:`graph_stretch`)."""
    rng = np.random.default_rng(seed)
    if len(sources) > n_pairs:
        pick = rng.choice(len(sources), size=n_pairs, replace=False)
        sources, targets = sources[pick], targets[pick]
    t = np.arange(1, n_nodes)[:, None, None] / n_nodes
    a, b = points[sources], points[targets]
    nodes = ((1 - t) * a + t * b).reshape(-1, points.shape[1])
    gap, nearest = nn.kneighbors(nodes, 1)
    near, where = np.unique(nearest[:, 0], return_inverse=True)
    k = min(n_neighbors, len(data) - 1)
    # the data point itself comes first among its own neighbours
    reach = nn.kneighbors(data[near], k + 1)[0][:, -1]
    off = (gap[:, 0] > np.maximum(reach, radius)[where]).reshape(n_nodes - 1, len(sources))
    return float(np.mean(off.any(axis=0)))
