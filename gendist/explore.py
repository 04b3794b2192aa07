"""An interactive explorer of a fitted estimator: one self-contained HTML page (bokeh).

:func:`explorer_html` draws the graph's vertices (2-D data as they are; higher-dimensional data
through a t-SNE or landmark-MDS embedding of the generative distances) over the density, shows a
point's index, log p, label and image on hover, and draws the geodesic between two clicked points
with its generative length and the Euclidean distance of its ends. Everything the page needs
(bokeh's JavaScript, the data, the shortest-path trees) is written into the file, so it opens
from disk without a server or a network. Needs bokeh (the ``explore`` extra).
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import numpy as np

from ._optional import import_optional
from ._validation import check_int
from .densities import evaluate_log_density
from .paths import shortest_path_tree

__all__ = ["explorer_html", "png_data_uri"]

_EMBEDDINGS = ("auto", "tsne", "mds")


def png_data_uri(image) -> str:
    """A grayscale image (h, w) as a PNG ``data:`` URI (scaled from its min..max to 0..255)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"an image must be 2-D (h, w), got shape {image.shape}.")
    lo, hi = np.nanmin(image), np.nanmax(image)
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    pixels = np.nan_to_num(np.round(255 * scaled)).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_shape(images, n_data: int, image_shape):
    images = np.asarray(images)
    if images.ndim == 3:
        image_shape = image_shape or images.shape[1:]
        images = images.reshape(len(images), -1)
    if images.ndim != 2:
        raise ValueError(f"images must be (n, h*w) or (n, h, w), got shape {images.shape}.")
    if images.shape[0] != n_data:
        raise ValueError(
            f"images has {images.shape[0]} rows, but the estimator has {n_data} points."
        )
    if image_shape is None:
        side = int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(
                f"images of {images.shape[1]} pixels are not square; give image_shape=(h, w)."
            )
        image_shape = (side, side)
    image_shape = tuple(int(s) for s in image_shape)
    if int(np.prod(image_shape)) != images.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not hold {images.shape[1:]} pixels.")
    return images.reshape(n_data, *image_shape)


def _trees(graph, sources):
    """Distances (float64) and predecessors (int64, -1 for none) from each source."""
    dist = np.empty((len(sources), graph.shape[0]))
    pred = np.empty((len(sources), graph.shape[0]), dtype=np.int64)
    for row, source in enumerate(sources):
        dist[row], pred[row] = shortest_path_tree(graph, int(source))
    pred[pred < 0] = -1
    return dist, pred


def _compact_indices(a, n: int):
    """Vertex indices as uint16 (65535 for none) when n < 65535, else int32 (-1)."""
    if n < 65535:
        return np.where(a < 0, 65535, a).astype(np.uint16), 65535
    return a.astype(np.int32), -1


def _euclidean_coordinates(X, max_values: int):
    """Coordinates whose distances are the Euclidean ones: X itself (float32) when it fits in
    ``max_values`` numbers, else its leading principal components (a lower bound)."""
    n, d = X.shape
    if n * d <= max_values:
        return X.astype(np.float32), False
    k = max(1, min(d, max_values // n))
    centred = X - X.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:k].T).astype(np.float32), True


_CALLBACK = """
const sel = points.selected.indices;
if (sel.length === 0) { return; }
const i = sel[sel.length - 1];
const px = points.data.x, py = points.data.y;
let picks = ends.data.index.slice();
picks = picks.length === 1 ? [picks[0], i] : [i];
ends.data = {x: picks.map(k => px[k]), y: picks.map(k => py[k]), index: picks};
if (picks.length === 1) {
    line.data = {x: [], y: []};
    text.text = `from ${i}: click a second point`;
    return;
}
const a = picks[0], b = picks[1];
function walk(row, v) {  // v, pred(v), ... up to the root of tree ``row``
    const out = [v];
    while (pred[row * n + v] !== none) {
        v = pred[row * n + v];
        out.push(v);
        if (out.length > n) { break; }
    }
    return out;
}
let path = null, via = "";
if (mode === "full") {
    const up = walk(a, b);  // b ... a in the tree of a
    if (up[up.length - 1] === a) { path = up.reverse(); }
} else {
    let best = -1, bestLen = Infinity;
    for (let l = 0; l < n_trees; l++) {
        const s = tree_dist[l * n + a] + tree_dist[l * n + b];
        if (s < bestLen) { bestLen = s; best = l; }
    }
    if (best >= 0 && isFinite(bestLen)) {
        const fa = walk(best, a), fb = walk(best, b);  // both end at the landmark
        const inB = new Map(fb.map((v, k) => [v, k]));
        let k = 0;
        while (!inB.has(fa[k])) { k++; }  // the lowest common ancestor
        path = fa.slice(0, k + 1).concat(fb.slice(0, inB.get(fa[k])).reverse());
        via = ` (through the tree of landmark ${landmarks[best]}: an upper bound)`;
    }
}
if (path === null) {
    line.data = {x: [], y: []};
    text.text = `${a} and ${b} lie in different components: no geodesic`;
    return;
}
function weight(u, v) {
    for (let e = indptr[u]; e < indptr[u + 1]; e++) {
        if (indices[e] === v) { return weights[e]; }
    }
    return NaN;
}
let length = 0;
for (let k = 1; k < path.length; k++) { length += weight(path[k - 1], path[k]); }
let sq = 0;
for (let j = 0; j < dim; j++) {
    const t = coords[a * dim + j] - coords[b * dim + j];
    sq += t * t;
}
const euc = Math.sqrt(sq);
line.data = {x: path.map(k => px[k]), y: path.map(k => py[k])};
text.text = `geodesic ${a} \\u2192 ${b}: length ${length.toPrecision(5)}, `
    + `${path.length} vertices${via}; Euclidean ${approx}${euc.toPrecision(5)}; `
    + `ratio ${(length / euc).toPrecision(4)}`;
"""


def explorer_html(
    estimator,
    path,
    *,
    labels=None,
    images=None,
    image_shape=None,
    n_landmarks: int = 32,
    max_full: int = 600,
    embedding: str = "auto",
    max_tsne: int = 2000,
    grid_size: int = 150,
    max_coordinate_values: int = 250_000,
    title: str | None = None,
    random_state=0,
) -> Path:
    """Write one self-contained HTML page to explore a fitted estimator's geodesics.

    The page shows every graph vertex (the training points first): 2-D data at its
    coordinates over an image of log p on a grid; higher-dimensional data at an embedding,
    coloured by log p with a colour bar. Hovering shows a point's index, log p, label and
    (for image data) the image. Clicking a point, then another, draws the graph path between
    them and writes its length under the metric and the Euclidean distance of its ends; a
    third click starts again. The page runs from disk (bokeh's JavaScript is inlined,
    ``bokeh.resources.INLINE``), without a server or a network.

    Paths come from shortest-path trees computed here and stored in the page:

    * n vertices <= ``max_full``: the tree of every vertex, so every path is the exact graph
      geodesic (n^2 predecessors, 2 bytes each for n < 65535);
    * above: the trees of ``n_landmarks`` landmarks (farthest-point sampling); the path
      between a and b runs in the tree of the landmark l minimising d(a, l) + d(l, b),
      shortcut at the lowest common ancestor of a and b. It is an approximation, a graph
      path that is never shorter than the geodesic (the text says so), and exact when a or
      b is on a shortest path through l.

    The page therefore holds bokeh (about 1.5 MB), O(n) point data, the graph's edges
    (index and float32 weight per stored edge), ``min(n, n_landmarks)`` trees of n entries at
    most, ``grid_size**2`` log p values for 2-D data, the points' coordinates for the
    Euclidean distance (at most ``max_coordinate_values`` float32 numbers: beyond that, the
    leading principal components, and the Euclidean distance shown is marked as approximate)
    and one PNG per point when images are given. Its size is bounded by
    ``max_full**2`` for small graphs and grows linearly in n above.

    Parameters
    ----------
    estimator : fitted GenerativeDistance (or another fitted graph-distance estimator)
        Needs ``vertices_``, ``graph_``, ``log_prob_``; ``density_`` for the 2-D image.
    path : path-like
        The HTML file to write.
    labels : array-like of shape (n_samples,), optional
        A label per training point, shown on hover (and colouring 2-D points).
    images : array-like of shape (n_samples, h*w) or (n_samples, h, w), optional
        An image per training point, shown on hover as a PNG.
    image_shape : (h, w), optional
        Shape of an image for non-square images given as rows.
    n_landmarks : int, default=32
        Trees stored above ``max_full`` vertices (and landmarks of the MDS embedding).
    max_full : int, default=600
        Largest number of vertices for which every vertex's tree is stored.
    embedding : {"auto", "tsne", "mds"}, default="auto"
        For more than 2 features: t-SNE of the generative distances (all pairs, so
        n <= ``max_tsne`` with "auto") or landmark MDS (:func:`gendist.landmarks.landmark_mds`).
    max_tsne : int, default=2000
        Most vertices for which "auto" chooses t-SNE.
    grid_size : int, default=150
        Cells per side of the log p image (2-D data).
    max_coordinate_values : int, default=250000
        See above.
    title : str, optional
    random_state : int or None, default=0
        Seeds the landmarks and t-SNE.

    Returns
    -------
    path : Path
        The file written.
    """
    bokeh_plotting = import_optional("bokeh.plotting")
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        HoverTool,
        LinearColorMapper,
        TapTool,
    )
    from bokeh.palettes import Category10, Greys256, Viridis256
    from bokeh.resources import INLINE

    for attribute in ("vertices_", "graph_", "log_prob_"):
        if not hasattr(estimator, attribute):
            raise ValueError(
                f"the estimator is not fitted (it has no {attribute}); call fit first."
            )
    if embedding not in _EMBEDDINGS:
        raise ValueError(f"embedding must be one of {_EMBEDDINGS}, got {embedding!r}.")
    n_landmarks = check_int(n_landmarks, "n_landmarks")
    max_full = check_int(max_full, "max_full", minimum=0)
    grid_size = check_int(grid_size, "grid_size", minimum=2)
    V = np.asarray(estimator.vertices_, dtype=np.float64)
    graph = estimator.graph_.tocsr()
    n, d = V.shape
    n_data = len(getattr(estimator, "data_index_", np.arange(n)))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n_data,):
            raise ValueError(f"labels must have shape ({n_data},), got {labels.shape}.")
    if images is not None:
        images = _image_shape(images, n_data, image_shape)
    log_p = np.asarray(estimator.log_prob_, dtype=np.float64)

    # shortest-path trees
    rng = np.random.default_rng(random_state)
    if n <= max_full:
        mode, sources = "full", np.arange(n)
    else:
        from .landmarks import choose_landmarks

        mode = "landmarks"
        L = min(n_landmarks, n)
        sources, _ = choose_landmarks(graph, L, random_state=int(rng.integers(2**31)))
    tree_dist, tree_pred = _trees(graph, sources)

    # the plane
    if d == 2:
        xy = V
    else:
        method = embedding
        if method == "auto":
            method = "tsne" if n <= max_tsne else "mds"
        if method == "mds":
            from .landmarks import choose_landmarks, landmark_mds

            if mode == "full" or len(sources) < 3:
                marks, dist = choose_landmarks(
                    graph, min(max(n_landmarks, 3), n), random_state=random_state
                )
            else:
                marks, dist = sources, tree_dist
            if not np.isfinite(dist).all():
                raise ValueError(
                    "the graph is disconnected: landmark MDS needs one component; use "
                    'embedding="tsne".'
                )
            xy = landmark_mds(dist, marks, 2)
        else:
            from .embed import tsne_embedding

            D = tree_dist if mode == "full" else estimator.distances()
            xy = tsne_embedding(D, 2, random_state=random_state)
    xy = np.asarray(xy, dtype=np.float64)

    # the page
    index = np.arange(n)
    label_text = np.full(n, "", dtype=object)
    kind = np.where(index < n_data, "training point", "sampled vertex")
    if labels is not None:
        label_text[:n_data] = [str(v) for v in labels]
    data = {
        "x": xy[:, 0],
        "y": xy[:, 1],
        "index": index,
        "log_p": log_p,
        "label": label_text,
        "kind": kind,
    }
    tooltip = '<div style="font-size:12px">@kind <b>@index</b><br>log p = @log_p{0.000}' + (
        "<br>label: @label" if labels is not None else ""
    )
    if images is not None:
        data["image"] = [png_data_uri(image) for image in images] + [""] * (n - n_data)
        h, w = images.shape[1:]
        scale = max(1, 96 // max(h, w))
        tooltip += (
            f'<br><img src="@image" width="{w * scale}" height="{h * scale}" '
            'style="image-rendering:pixelated;border:1px solid #888">'
        )
    tooltip += "</div>"
    finite = log_p[np.isfinite(log_p)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if d == 2 and labels is not None:
        classes = sorted(set(label_text[:n_data]))
        palette = Category10[10]
        lookup = {c: palette[k % 10] for k, c in enumerate(classes)}
        data["color"] = [lookup.get(v, "#999999") if v else "#999999" for v in label_text]
    elif d == 2:
        data["color"] = ["#1f77b4"] * n
    points = ColumnDataSource(data, name="points")

    fig = bokeh_plotting.figure(
        title=title or f"gendist explorer: {n} vertices, {d} features",
        width=760,
        height=620,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        match_aspect=d == 2,
        name="plot",
    )
    if d == 2:
        lo, hi = V.min(0), V.max(0)
        pad = 0.08 * np.maximum(hi - lo, 1e-12)
        xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid_size)
        ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid_size)
        gx, gy = np.meshgrid(xs, ys)
        grid = evaluate_log_density(
            estimator.density_, np.column_stack([gx.ravel(), gy.ravel()])
        ).reshape(gx.shape)
        floor = np.quantile(grid[np.isfinite(grid)], 0.2)
        grid = np.maximum(np.nan_to_num(grid, nan=floor, neginf=floor), floor)
        mapper = LinearColorMapper(
            palette=list(reversed(Greys256))[:170],  # white (low) to grey (high)
            low=float(grid.min()),
            high=float(grid.max()),
        )
        fig.image(
            image=[grid.astype(np.float32)],
            x=xs[0],
            y=ys[0],
            dw=xs[-1] - xs[0],
            dh=ys[-1] - ys[0],
            color_mapper=mapper,
            level="image",
        )
        fig.x_range.range_padding = fig.y_range.range_padding = 0
        renderer = fig.scatter("x", "y", source=points, size=6, color="color", alpha=0.8)
    else:
        mapper = LinearColorMapper(palette=Viridis256, low=low, high=high)
        renderer = fig.scatter(
            "x",
            "y",
            source=points,
            size=6,
            alpha=0.85,
            color={"field": "log_p", "transform": mapper},
        )
    fig.add_layout(ColorBar(color_mapper=mapper, title="log p(x)", width=12), "right")
    renderer.nonselection_glyph = None
    renderer.selection_glyph = None

    line = ColumnDataSource({"x": [], "y": []}, name="geodesic")
    ends = ColumnDataSource({"x": [], "y": [], "index": []}, name="ends")
    fig.line("x", "y", source=line, line_width=3, color="#d62728")
    fig.scatter(
        "x", "y", source=ends, size=12, fill_color="#d62728", line_color="white", line_width=2
    )
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=tooltip))
    fig.add_tools(TapTool(renderers=[renderer]))
    text = Div(
        text="click a point, then another: their geodesic is drawn",
        name="geodesic_text",
        width=760,
        styles={"font-family": "sans-serif", "font-size": "14px"},
    )

    node, none = _compact_indices(tree_pred, n)
    ind, _ = _compact_indices(graph.indices.astype(np.int64), n)
    coords, approx = _euclidean_coordinates(V, max_coordinate_values)
    callback = CustomJS(
        args={
            "points": points,
            "ends": ends,
            "line": line,
            "text": text,
            "mode": mode,
            "n": n,
            "n_trees": len(sources),
            "none": none,
            "pred": node.ravel(),
            "tree_dist": tree_dist.astype(np.float32).ravel() if mode != "full" else [],
            "landmarks": [int(s) for s in sources] if mode != "full" else [],
            "indptr": graph.indptr.astype(np.int32),
            "indices": ind,
            "weights": graph.data.astype(np.float32),
            "coords": coords.ravel(),
            "dim": coords.shape[1],
            "approx": f"(first {coords.shape[1]} principal components) " if approx else "",
        },
        code=_CALLBACK,
    )
    points.selected.js_on_change("indices", callback)
    layout = column(fig, text)
    html = file_html(layout, INLINE, title=title or "gendist explorer")
    path = Path(path)
    path.write_text(html, encoding="utf-8")
    return path
