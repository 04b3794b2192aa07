"""Geodesic interpolation between MNIST / Fashion-MNIST images (paper §3.3, Fig. 9).

For each dataset, three disjoint random subsets of the training split play three roles:

* ``n_components`` images are the means of the density, an isotropic Gaussian mixture with one
  equal-weight component per image (:meth:`GaussianMixtureDensity.isotropic`, a Parzen window);
* ``n_validation`` images choose its variance: ``variance="auto"`` takes the value of
  ``variance_grid`` with the largest mean held-out log-likelihood on them;
* ``n_vertices`` images are the vertices of the graph. They are *not* the component means: a
  vertex sitting on its own component would have the artificial self-likelihood
  ``log(1/K) + log N(0; 0, variance I)`` whatever the image, so every vertex would look
  equally likely, λ (a quantile of p over the vertices) would carry no information, and the
  log-density of a path through vertices would be inflated by construction. Held-out vertices
  have their honest density under the model.

The graph is the adaptive ε-graph: ε is the ``radius_quantile``-quantile over the vertices of
the distance to their ``n_neighbors``-th nearest neighbour, and every vertex keeps at least
``n_neighbors`` neighbours. λ is ``lam`` (a quantile of p over the vertices: log p is in the
hundreds here and spans hundreds of nats, so no absolute λ could be guessed). For the same
reason β = 1 is degenerate here: the length factor ``h = (λ / (p + λ))**β`` falls to
exp(-hundreds) above λ, those edges cost nothing next to one below λ, and shortest paths tie
(searched from either end they differ). ``beta="auto"`` (:func:`choose_beta`) scales β to the
spread of log p so that h = exp(-``contrast``) at the densest vertex; ``--set beta=1`` runs
the paper's metric.

Pairs of vertices, ``n_pairs`` of the same class and ``n_pairs`` of different classes
(seeded), are joined by their graph geodesic and by the straight line. Each path becomes a
strip of ``n_frames`` images: the geodesic polyline resampled at equal Euclidean arc length,
and the linear interpolation at equal steps. Measured per strip: *smoothness*, the largest step
between consecutive frames divided by the strip's total length (``1 / (n_frames - 1)`` for the
linear strip, the lower bound), and for the geodesic also the largest hop between its vertices
over the polyline's length; the Euclidean detour (polyline length over the endpoints'
distance); the log-density of the interior frames (mean and min; the endpoints are shared);
the generative length ``metric_.curve_length`` of the geodesic polyline and of the linear
strip, and the same with every segment split ``subdivide`` times (a check of the quadrature);
the share of the geodesic's interior vertices of neither endpoint's class; and whether the
geodesic searched from the other end is the same path.

Cost. Fitting the graph dominates: the mixture is evaluated at ``n_quad - 2`` interior nodes of
every edge, and each evaluation is a row of an (n, 784) @ (784, n_components) product, so the
work is ``n_edges * (n_quad - 2) * n_components * 784`` multiply-adds: linear in n_edges,
n_quad and n_components. ``n_edges`` grows like ``n_vertices * n_neighbors`` (the kNN part
gives between k/2 and k edges per vertex) plus the ε-balls, whose sizes are heavy-tailed: a
dense class (MNIST's ones) gets many neighbours within ε. With the defaults (6000 components,
4000 vertices, k = 10) MNIST has 63 000 edges and Fashion-MNIST 39 000 (1.6 and 1.0 times
``n_vertices * k``); doubling both the vertices and the components quadruples the work.
Measured on two CPU cores shared with other jobs: the graphs took 157 s (MNIST) and 93 s
(Fashion-MNIST), the full run 5 minutes (7.7 CPU-minutes; 11 minutes under heavier load);
the variance selection costs seconds and the 40 pairs per dataset about 30 s. ``QUICK``
(400 components, 300 vertices) takes about 10 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from gendist import GaussianMixtureDensity, GenerativeDistance
from gendist.metric import resolve_lambda
from gendist.refine import resample_polyline

from ._common import finish, markdown_table, new_figure, strip_figure
from ._data import load_mnist, require_data

DEFAULTS = {
    "datasets": ["mnist", "fashion-mnist"],
    "data_dir": None,  # folder of the IDX files; None: $GENDIST_DATA_DIR or ../shared/data
    "seed": 0,
    "n_components": 6000,  # mixture components (training images)
    "n_validation": 1000,  # held-out images that choose the variance
    "n_vertices": 4000,  # graph vertices (training images disjoint from the above)
    "variance": "auto",  # or a number: the common variance of the components
    "variance_grid": [0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1],
    "n_neighbors": 10,  # every vertex keeps at least k neighbours
    "radius_quantile": 0.25,  # eps = this quantile of the distance to the k-th neighbour
    "lam": "quantile:0.5",  # lambda = median of p over the vertices
    "beta": "auto",  # or a number; auto: contrast / (log p_max - log lambda) over the vertices
    "contrast": 10.0,  # beta="auto": h = exp(-contrast) at the densest vertex
    "n_quad": 8,
    "n_pairs": 20,  # pairs per kind (same class, different classes) and dataset
    "n_frames": 10,  # images per strip, endpoints included
    "subdivide": 4,  # split every segment in this many for the subdivided generative length
    "n_figure_pairs": 3,  # pairs per kind drawn in each dataset's strip figure
}

QUICK = {
    "n_components": 400,
    "n_validation": 200,
    "n_vertices": 300,
    "n_pairs": 4,
    "n_figure_pairs": 2,
}

TYPES = {"data_dir": str | None, "variance": str | float, "lam": str | float, "beta": str | float}

#: the two interpolations every pair is drawn with
PATHS = ("geodesic", "linear")
#: the two kinds of pairs
KINDS = ("same", "different")


def check_requirements(config: dict) -> None:
    """The training images of every dataset must be in the data folder."""
    require_data(config["data_dir"], config["datasets"])


def select_variance(means, validation, grid) -> tuple[float, list[dict]]:
    """The variance of ``grid`` that maximises the mean log-likelihood of ``validation``.

    Returns
    -------
    variance : float
    table : list of dict
        ``variance`` and ``heldout_loglik`` (mean over the validation images) per grid value.
    """
    table = [
        {
            "variance": float(v),
            "heldout_loglik": float(
                GaussianMixtureDensity.isotropic(means, float(v)).log_prob(validation).mean()
            ),
        }
        for v in grid
    ]
    best = max(table, key=lambda r: r["heldout_loglik"])
    return best["variance"], table


def linear_frames(a, b, n_frames: int) -> np.ndarray:
    """The straight line from ``a`` to ``b`` at ``n_frames`` equal steps, ends included."""
    t = np.linspace(0.0, 1.0, n_frames)[:, None]
    frames = a[None, :] + t * (b - a)[None, :]
    frames[-1] = b  # exactly, not a + (b - a)
    return frames


def smoothness(points) -> float:
    """Largest step between consecutive points over the sum of the steps (>= 1 / #steps,
    with equality for equal steps)."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return float(steps.max() / steps.sum())


def subdivide(points, pieces: int) -> np.ndarray:
    """The polyline ``points`` with every segment split into ``pieces`` equal parts."""
    points = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, pieces + 1)[:-1]
    inner = points[:-1, None, :] + t[None, :, None] * np.diff(points, axis=0)[:, None, :]
    return np.vstack([inner.reshape(-1, points.shape[1]), points[-1:]])


def choose_pairs(labels, candidates, n_pairs: int, rng) -> list[tuple[int, int, str]]:
    """``n_pairs`` (a, b) vertex pairs of the same class and ``n_pairs`` of different classes,
    drawn among ``candidates``."""
    pairs = []
    for kind in KINDS:
        for _ in range(n_pairs):
            a = int(rng.choice(candidates))
            same = labels[candidates] == labels[a]
            pool = candidates[same & (candidates != a)] if kind == "same" else candidates[~same]
            pairs.append((a, int(rng.choice(pool)), kind))
    return pairs


def choose_beta(log_p, cfg) -> float:
    """``cfg["beta"]``, or for ``"auto"`` the exponent that gives the densest vertex the length
    factor ``h = exp(-contrast)``: ``beta = contrast / log(1 + p_max / lambda)``.

    In 784 dimensions log p spans hundreds of nats over the vertices, so with beta = 1 the
    factor h = (lambda / (p + lambda))**beta falls to exp(-hundreds) above lambda: such
    edges weigh nothing next to an edge below lambda, path lengths stop resolving them in
    float64, and shortest paths become non-unique (a search from a and one from b return
    different paths of the same length). Scaling beta to the spread of log p keeps the
    metric's contrast over the data at ``exp(contrast)``.
    """
    beta = cfg["beta"]
    if not isinstance(beta, str):
        return float(beta)
    if beta != "auto":
        raise ValueError(f'beta must be a number or "auto", got {beta!r}.')
    log_lam = resolve_lambda(cfg["lam"], log_p)
    spread = float(np.logaddexp(0.0, np.max(log_p) - log_lam))
    return float(cfg["contrast"]) / spread


def split_images(X, cfg, rng):
    """Disjoint random index sets of the components, validation and vertex images."""
    sizes = [cfg["n_components"], cfg["n_validation"], cfg["n_vertices"]]
    if sum(sizes) > len(X):
        raise ValueError(
            f"n_components + n_validation + n_vertices = {sum(sizes)} exceeds the {len(X)} "
            "training images."
        )
    order = rng.permutation(len(X))
    ends = np.cumsum(sizes)
    return order[: ends[0]], order[ends[0] : ends[1]], order[ends[1] : ends[2]]


def fit_dataset(name: str, cfg: dict):
    """Density, variance table and fitted estimator of one dataset.

    Returns
    -------
    details : dict
        ``est``, ``density``, ``variance``, ``variance_table``, ``radius``, ``images``,
        ``labels`` (of the whole training split), ``component_index``, ``validation_index``,
        ``vertex_index`` (into the training split) and ``fit_seconds``.
    """
    X, y = load_mnist(cfg["data_dir"], dataset=name, split="train")
    rng = np.random.default_rng(cfg["seed"])
    comp_idx, val_idx, vert_idx = split_images(X, cfg, rng)
    means, V = X[comp_idx], X[vert_idx]
    if isinstance(cfg["variance"], str):
        if cfg["variance"] != "auto":
            raise ValueError(f'variance must be a number or "auto", got {cfg["variance"]!r}.')
        variance, table = select_variance(means, X[val_idx], cfg["variance_grid"])
    else:
        variance, table = float(cfg["variance"]), []
    density = GaussianMixtureDensity.isotropic(means, variance)
    beta = choose_beta(density.log_prob(V), cfg)
    k = cfg["n_neighbors"]
    kth = NearestNeighbors(n_neighbors=k).fit(V).kneighbors()[0][:, -1]
    radius = float(np.quantile(kth, cfg["radius_quantile"]))
    start = time.perf_counter()
    est = GenerativeDistance(
        density,
        radius=radius,
        n_neighbors=k,
        lam=cfg["lam"],
        beta=beta,
        n_quad=cfg["n_quad"],
        verbose=False,
    ).fit(V)
    return {
        "est": est,
        "density": density,
        "variance": variance,
        "variance_table": table,
        "beta": beta,
        "radius": radius,
        "images": X,
        "labels": y,
        "component_index": comp_idx,
        "validation_index": val_idx,
        "vertex_index": vert_idx,
        "fit_seconds": time.perf_counter() - start,
    }


def measure_pair(est, density, a: int, b: int, cfg: dict, labels) -> dict:
    """Geodesic and linear strips between vertices ``a`` and ``b`` and their measures.

    ``labels`` are the classes of the vertices: ``other_class`` is the share of the
    geodesic's interior vertices whose class is neither endpoint's (NaN for the linear path,
    which has none). ``reverse_agrees`` is 1 when the geodesic from b to a is the same path
    (0 reveals a tie between shortest paths).

    Returns
    -------
    pair : dict
        ``indices`` (the geodesic's vertices), ``geodesic_length`` (Dijkstra), and per path
        ``frames``, ``frame_log_prob`` (interior frames) and ``measures`` (a flat dict).
    """
    n = cfg["n_frames"]
    V = est.vertices_
    g = est.geodesic(a, b, refine=False)  # the graph path through images
    chord = float(np.linalg.norm(V[b] - V[a]))
    polylines = {"geodesic": g.points, "linear": V[[a, b]]}
    frames = {
        "geodesic": resample_polyline(g.points, n),
        "linear": linear_frames(V[a], V[b], n),
    }
    # a unique shortest path is found from either end; different paths mean a tie
    agrees = float(np.array_equal(est.geodesic(b, a, refine=False).indices[::-1], g.indices))
    out = {"indices": g.indices, "geodesic_length": g.length, "paths": {}}
    inner = labels[g.indices[1:-1]]
    other = float(np.mean((inner != labels[a]) & (inner != labels[b]))) if len(inner) else 0.0
    path_vertices = {"geodesic": g.indices, "linear": np.array([a, b])}
    for path in PATHS:
        F = frames[path]
        # the generative length of the geodesic is that of its vertex polyline (the graph
        # path); the linear path is measured on its strip, whose nodes are finer
        curve = g.points if path == "geodesic" else F
        log_p = density.log_prob(F[1:-1])
        steps = np.linalg.norm(np.diff(F, axis=0), axis=1)
        hops = np.linalg.norm(np.diff(polylines[path], axis=0), axis=1)
        out["paths"][path] = {
            "frames": F,
            "frame_log_prob": log_p,
            "measures": {
                "n_vertices": len(polylines[path]),
                "other_class": other if path == "geodesic" else float("nan"),
                "reverse_agrees": agrees if path == "geodesic" else float("nan"),
                "chord": chord,
                "detour": float(hops.sum() / chord),
                "vertex_smoothness": float(hops.max() / hops.sum()),
                "frame_smoothness": smoothness(F),
                "max_frame_step": float(steps.max()),
                "frame_logp_mean": float(log_p.mean()),
                "frame_logp_min": float(log_p.min()),
                "generative_length": est.metric_.curve_length(curve),
                "generative_length_subdivided": est.metric_.curve_length(
                    subdivide(curve, cfg["subdivide"])
                ),
                "vertices": " ".join(str(int(i)) for i in path_vertices[path]),
            },
        }
    return out


def run(out: Path, config: dict | None = None) -> dict:
    """Fit the mixture and the graph on every dataset, draw and measure the geodesic and
    linear interpolations of random pairs; write ``mnist.csv``, ``frames.csv``,
    ``variance.csv``, ``summary.md``, ``strips_DATASET.png`` and ``frame_logp.png`` to
    ``out``.

    Returns
    -------
    results : dict
        ``rows`` (one per pair and path), ``summary`` (Markdown), ``files``, ``seconds``, and
        ``details``: per dataset the fitted estimator, density, index sets and, per pair, the
        geodesic's vertices and both strips (see :func:`fit_dataset`, :func:`measure_pair`).
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, frame_rows, variance_rows, graphs, details = [], [], [], [], {}
    for name in tqdm(cfg["datasets"], desc="mnist", unit="dataset"):
        info = fit_dataset(name, cfg)
        est, density = info["est"], info["density"]
        variance_rows += [{"dataset": name, **r} for r in info["variance_table"]]
        degrees = np.diff(est.graph_.indptr)
        graphs.append(
            [
                name,
                cfg["n_components"],
                cfg["n_vertices"],
                info["variance"],
                info["beta"],
                info["radius"],
                est.graph_.nnz // 2,
                int(degrees.min()),
                float(np.median(degrees)),
                est.n_components_,
                est.log_lam_,
                float(np.median(est.log_prob_)),
                info["fit_seconds"],
            ]
        )
        # pairs within the largest connected component (every geodesic exists)
        comp = est.component_labels_
        candidates = np.flatnonzero(comp == np.bincount(comp).argmax())
        vertex_labels = info["labels"][info["vertex_index"]]
        rng = np.random.default_rng(cfg["seed"] + 1)
        pairs = choose_pairs(vertex_labels, candidates, cfg["n_pairs"], rng)
        info["pairs"] = []
        for p, (a, b, kind) in enumerate(tqdm(pairs, desc=name, unit="pair", leave=False)):
            pair = measure_pair(est, density, a, b, cfg, vertex_labels)
            pair.update(pair=p, a=a, b=b, kind=kind)
            info["pairs"].append(pair)
            for path in PATHS:
                res = pair["paths"][path]
                rows.append(
                    {
                        "dataset": name,
                        "pair": p,
                        "kind": kind,
                        "label_a": int(vertex_labels[a]),
                        "label_b": int(vertex_labels[b]),
                        "vertex_a": a,
                        "vertex_b": b,
                        "path": path,
                        **res["measures"],
                    }
                )
                frame_rows += [
                    {
                        "dataset": name,
                        "pair": p,
                        "kind": kind,
                        "path": path,
                        "frame": f + 1,
                        "log_p": float(v),
                    }
                    for f, v in enumerate(res["frame_log_prob"])
                ]
        details[name] = info
    return finish(
        out,
        start,
        tables={"mnist.csv": rows, "frames.csv": frame_rows, "variance.csv": variance_rows},
        summary=_summary(rows, variance_rows, graphs, cfg, time.perf_counter() - start),
        figures=_figures(details, frame_rows, cfg),
        rows=rows,
        details=details,
    )


def _median(rows, key, **match) -> float:
    values = [r[key] for r in rows if all(r[k] == v for k, v in match.items())]
    return float(np.median(values)) if values else float("nan")


def _mean(rows, key, **match) -> float:
    values = [r[key] for r in rows if all(r[k] == v for k, v in match.items())]
    return float(np.mean(values)) if values else float("nan")


def _fraction(rows, name, kind, key, better) -> float:
    """Fraction of the pairs where ``better(geodesic[key], linear[key])`` holds."""
    values = {
        (r["pair"], r["path"]): r[key] for r in rows if (r["dataset"], r["kind"]) == (name, kind)
    }
    pairs = {p for p, _ in values}
    if not pairs:
        return float("nan")
    return float(np.mean([better(values[p, "geodesic"], values[p, "linear"]) for p in pairs]))


def _summary(rows, variance_rows, graphs, cfg, seconds) -> str:
    sel = []
    for name in cfg["datasets"]:
        table = [r for r in variance_rows if r["dataset"] == name]
        if table:
            best = max(table, key=lambda r: r["heldout_loglik"])
            edge = best["variance"] in (table[0]["variance"], table[-1]["variance"])
            sel.append(
                [name]
                + [r["heldout_loglik"] for r in table]
                + [best["variance"] if not edge else f"{best['variance']} (grid edge!)"]
            )
    body = []
    for name in cfg["datasets"]:
        for kind in KINDS:
            m = {
                (path, key): _median(rows, key, dataset=name, kind=kind, path=path)
                for path in PATHS
                for key in (
                    "n_vertices",
                    "other_class",
                    "detour",
                    "vertex_smoothness",
                    "frame_smoothness",
                    "frame_logp_mean",
                    "frame_logp_min",
                    "generative_length",
                    "generative_length_subdivided",
                )
            }
            body.append(
                [
                    name,
                    kind,
                    m["geodesic", "n_vertices"],
                    m["geodesic", "other_class"],
                    m["geodesic", "detour"],
                    m["geodesic", "vertex_smoothness"],
                    m["geodesic", "frame_smoothness"],
                    m["linear", "frame_smoothness"],
                    m["geodesic", "frame_logp_mean"],
                    m["linear", "frame_logp_mean"],
                    m["geodesic", "frame_logp_min"],
                    m["linear", "frame_logp_min"],
                    m["geodesic", "generative_length"],
                    m["geodesic", "generative_length_subdivided"],
                    m["linear", "generative_length"],
                    _fraction(rows, name, kind, "frame_logp_min", np.greater),
                    _fraction(rows, name, kind, "generative_length", np.less),
                    _mean(rows, "reverse_agrees", dataset=name, kind=kind, path="geodesic"),
                ]
            )
    parts = [
        "# Geodesic vs linear interpolation of MNIST / Fashion-MNIST images",
        f"Isotropic Gaussian mixture with one component per training image "
        f"({cfg['n_components']} images); variance {cfg['variance']!r} "
        f"(grid {cfg['variance_grid']}, chosen on {cfg['n_validation']} held-out images); "
        f"{cfg['n_vertices']} other training images as vertices; adaptive ε-graph "
        f"(k = {cfg['n_neighbors']}, ε = {cfg['radius_quantile']}-quantile of the distance to "
        f"the k-th neighbour), lam={cfg['lam']!r}, beta={cfg['beta']!r} "
        f"(contrast {cfg['contrast']}), n_quad={cfg['n_quad']}; "
        f"{cfg['n_pairs']} pairs of the same class and {cfg['n_pairs']} of different classes "
        f"per dataset, strips of {cfg['n_frames']} frames. Seed {cfg['seed']}.",
    ]
    if sel:
        parts += [
            "Mean held-out log-likelihood per variance, and the chosen variance:",
            markdown_table(
                ["dataset"] + [str(v) for v in cfg["variance_grid"]] + ["chosen"],
                sel,
            ),
        ]
    parts += [
        "Graphs (log λ and the median log p are over the vertices; fit = density and edge "
        "weights):",
        markdown_table(
            [
                "dataset",
                "components",
                "vertices",
                "variance",
                "beta",
                "radius",
                "edges",
                "min degree",
                "median degree",
                "graph components",
                "log lambda",
                "median log p",
                "fit s",
            ],
            graphs,
        ),
        "Medians over the pairs. *hops*: vertices on the geodesic; *other class*: share of "
        "its interior vertices whose class is neither endpoint's; *detour*: Euclidean length "
        "of the geodesic polyline over the endpoints' distance; *smoothness*: largest step over "
        "the total length (vertex path, and strip; the linear strip's is "
        f"1/{cfg['n_frames'] - 1} = {1 / (cfg['n_frames'] - 1):.3g}, the smallest possible); "
        "log p of the interior frames (mean, min); generative length (geodesic: its vertex "
        f"polyline, subdivided: every segment split {cfg['subdivide']} times; linear: its strip); "
        "the last three columns are fractions of the pairs (*unique*: the geodesic from b to "
        "a is the same path; otherwise shortest paths tie).",
        markdown_table(
            [
                "dataset",
                "pairs",
                "hops",
                "other class",
                "detour",
                "vertex smoothness geo",
                "frame smoothness geo",
                "frame smoothness lin",
                "mean log p geo",
                "mean log p lin",
                "min log p geo",
                "min log p lin",
                "length geo",
                "length geo subdivided",
                "length lin",
                "min log p geo > lin",
                "length geo < lin",
                "unique",
            ],
            body,
        ),
        f"Total time: {seconds:.0f} s.",
    ]
    return "\n\n".join(parts) + "\n"


def _of_kind(pairs, kind):
    return [p for p in pairs if p["kind"] == kind]


def _figures(details, frame_rows, cfg):
    figures = {}
    n_show = cfg["n_figure_pairs"]
    for name, info in details.items():
        labels = info["labels"][info["vertex_index"]]
        shown = [p for kind in KINDS for p in _of_kind(info["pairs"], kind)[:n_show]]
        strips, names = [], []
        for p in shown:
            for path in PATHS:
                strips.append(np.clip(p["paths"][path]["frames"], 0.0, 1.0))
                names.append(
                    f"{p['kind']} {labels[p['a']]}→{labels[p['b']]}, {path}"
                    if path == "geodesic"
                    else "linear"
                )
        title = f"{name}: geodesic (upper) vs linear (lower) interpolation"
        figures[f"strips_{name}.png"] = strip_figure(strips, names, title, cfg["n_frames"])

    names = list(details)
    fig = new_figure((4 * len(names), 3.4), dpi=110)
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        groups, ticks = [], []
        for kind in KINDS:
            for path in PATHS:
                match = (name, kind, path)
                groups.append(
                    [
                        r["log_p"]
                        for r in frame_rows
                        if (r["dataset"], r["kind"], r["path"]) == match
                    ]
                )
                ticks.append(f"{kind}\n{path}")
        ax.boxplot(groups, showfliers=False)
        ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=8)
        ax.set_title(f"{name}: log p of the interior frames", fontsize=9)
        ax.set_ylabel("log p")
    fig.tight_layout()
    figures["frame_logp.png"] = fig
    return figures
