"""Shared steps of the pendulum and robot-arm experiments (Chen et al. 2018): an IWAE with a
2-D latent space, geodesics between random pairs of codes against straight interpolation, the
curve optimisers compared (graph path, polyline refinement, neural curve), the latent figure
over the magnification factor and the velocity profiles along the curves."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from gendist import IWAE, LatentDistance, PullbackMetric
from gendist.curves import neural_curve

from ._common import markdown_table, new_figure

__all__ = [
    "CURVE_DEFAULTS",
    "LatentStudy",
    "latent_study",
    "quartiles",
    "compare_curves",
    "constant_speed",
    "curve_table",
    "latent_figure",
    "pair_geodesics",
    "random_pairs",
    "smoothed_estimator",
    "train_iwae",
    "velocity_figure",
]

#: parameters shared by both experiments
CURVE_DEFAULTS = {
    "seed": 0,
    "hidden": [512, 512],  # encoder tanh layers; the decoder mirrors them
    "n_codes": 2000,  # encoded training points: the latent graph's vertices
    "n_neighbors": 10,
    "n_quad": 8,  # decoded nodes per latent segment
    "n_pairs": 50,  # random pairs of codes: geodesic against straight interpolation
    "n_line": 64,  # points of the straight interpolation's polyline
    "refine_rounds": 3,  # rounds of the batch refinement of the n_pairs graph paths
    "refine_iter": 10,  # L-BFGS iterations per round
    "n_compare": 1,  # pairs on which graph path, polyline refinement and neural curve compete
    "neural_hidden": 150,
    "neural_samples": 500,
    "neural_iter": 300,
    "neural_lr": 0.01,
    "smoothing_lam": 1.0,  # lam_s of the smoothed metric, relative to the median s_min^2
    "grid": 120,  # magnification-factor grid points per axis
}


def train_iwae(X, cfg: dict):
    """An IWAE with a 2-D latent space, tanh layers and a Gaussian decoder, trained on ``X``.

    Returns
    -------
    model : gendist.IWAE
    info : dict
        ``seconds``, ``final_bound`` (nats per point), ``epochs``.
    """
    start = time.perf_counter()
    model = IWAE(
        latent_dim=2,
        hidden=tuple(cfg["hidden"]),
        n_importance_samples=cfg["iwae_samples"],
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        activation="tanh",
        likelihood="gaussian",
        random_state=cfg["seed"],
        verbose=True,
    ).fit(X)
    info = {
        "seconds": time.perf_counter() - start,
        "final_bound": model.history_[-1],
        "epochs": cfg["epochs"],
    }
    return model, info


def random_pairs(labels, n_pairs: int, seed: int):
    """``n_pairs`` pairs of distinct codes in the largest component of the latent graph."""
    rng = np.random.default_rng(seed)
    largest = np.flatnonzero(labels == np.bincount(labels).argmax())
    pairs = np.array([rng.choice(largest, 2, replace=False) for _ in range(n_pairs)])
    return pairs[:, 0], pairs[:, 1]


def constant_speed(metric, points, n: int) -> np.ndarray:
    """``n`` points along a latent polyline, equally spaced in its length under ``metric``
    (linearly within each segment): the polyline traversed at constant speed."""
    seg = np.exp(metric.log_segment_lengths(points[:-1], points[1:]))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, arc[-1], n)
    return np.column_stack([np.interp(targets, arc, points[:, j]) for j in range(points.shape[1])])


def pair_geodesics(est, Z, a, b, cfg: dict) -> list[dict]:
    """For each pair: the straight interpolation's length, the graph path and the refined
    geodesic (polyline refinement of all pairs in one batch, ``refine_rounds`` rounds of
    ``refine_iter`` iterations: a cap on the time, not convergence), with their points."""
    graphs = est.geodesics(a, b, refine=False)
    options = {"n_rounds": cfg["refine_rounds"], "max_iter": cfg["refine_iter"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the cap, said in the summary
        refined = est.geodesics(a, b, refine=options)
    rows = []
    for i, (g, r) in enumerate(zip(graphs, refined)):
        line = np.linspace(Z[a[i]], Z[b[i]], cfg["n_line"])
        rows.append(
            {
                "a": int(a[i]),
                "b": int(b[i]),
                "straight_length": est.metric_.curve_length(line),
                "graph_length": g.length,
                "geodesic_length": r.length,
                "ratio": r.length / est.metric_.curve_length(line),
                "points": r.points,
                "line": line,
            }
        )
    return rows


def compare_curves(est, Z, a, b, cfg: dict) -> list[dict]:
    """Graph path, polyline refinement and neural curve on the pairs ``a[i] -> b[i]``: each
    length under the estimator's metric, and the seconds each took (the refinement's
    include its graph path, the neural curve starts from nothing but the end points)."""
    rows = []
    for i, j in zip(a, b):
        t0 = time.perf_counter()
        graph = est.geodesic(i, j, refine=False)
        t1 = time.perf_counter()
        polyline = est.geodesic(i, j, refine=True)
        t2 = time.perf_counter()
        points, length, info = neural_curve(
            est.metric_,
            Z[i],
            Z[j],
            hidden=cfg["neural_hidden"],
            n_samples=cfg["neural_samples"],
            n_iter=cfg["neural_iter"],
            lr=cfg["neural_lr"],
            random_state=cfg["seed"],
            return_info=True,
        )
        t3 = time.perf_counter()
        straight = est.metric_.curve_length(np.linspace(Z[i], Z[j], cfg["n_line"]))
        for method, value, seconds, extra in (
            ("straight line", straight, float("nan"), ""),
            ("graph path (A*)", graph.length, t1 - t0, f"{len(graph.points)} vertices"),
            ("polyline refinement", polyline.length, t2 - t1, f"{len(polyline.points)} points"),
            (
                "neural curve",
                length,
                t3 - t2,
                f"{info['n_iter']} Adam steps, pre-trained length {info['pretrain_length']:.3g}",
            ),
        ):
            rows.append(
                {
                    "a": int(i),
                    "b": int(j),
                    "method": method,
                    "length": float(value),
                    "relative_to_polyline": float(value / polyline.length),
                    "seconds": float(seconds),
                    "note": extra,
                    **({"points": points} if method == "neural curve" else {}),
                }
            )
    return rows


def curve_table(rows: list[dict]) -> str:
    """The rows of :func:`compare_curves` as a Markdown table."""
    return markdown_table(
        ["pair", "method", "length", "/ polyline", "seconds", ""],
        [
            [
                f"{r['a']}→{r['b']}",
                r["method"],
                r["length"],
                r["relative_to_polyline"],
                r["seconds"],
                r["note"],
            ]
            for r in rows
        ],
    )


def smoothed_estimator(decoder, Z, cfg: dict):
    """A :class:`LatentDistance` on the codes ``Z`` with the smoothed metric of Chen et al.:
    ``lam_s = smoothing_lam`` times the median over the codes of the smallest squared
    singular value of the Jacobian. Returns the fitted estimator and ``lam_s``."""
    s_min = np.linalg.svd(PullbackMetric(decoder).jacobian(Z), compute_uv=False)[:, -1]
    lam = float(cfg["smoothing_lam"] * np.median(s_min**2))
    est = LatentDistance(
        decoder, n_neighbors=cfg["n_neighbors"], n_quad=cfg["n_quad"], smoothing={"lam": lam}
    )
    return est.fit(Z), lam


def latent_figure(est, Z, colour, colour_label: str, cmap: str, curves, title: str, cfg):
    """The codes coloured by ``colour`` over the log magnification factor, with ``curves``:
    a list of ``(points, line style, label)`` drawn in black."""
    lo, hi = Z.min(0) - 0.3, Z.max(0) + 0.3
    gx, gy = np.meshgrid(
        np.linspace(lo[0], hi[0], cfg["grid"]), np.linspace(lo[1], hi[1], cfg["grid"])
    )
    log_mf = est.metric_.log_magnification_factor(np.column_stack([gx.ravel(), gy.ravel()]))
    fig = new_figure((6.8, 5.6), dpi=100)
    ax = fig.subplots()
    im = ax.imshow(
        log_mf.reshape(gx.shape) / np.log(10),
        origin="lower",
        extent=(lo[0], hi[0], lo[1], hi[1]),
        cmap="Greys",
        aspect="auto",
    )
    fig.colorbar(im, ax=ax, label="log10 magnification factor sqrt(det G)")
    sc = ax.scatter(Z[:, 0], Z[:, 1], c=colour, cmap=cmap, s=3, alpha=0.8)
    fig.colorbar(sc, ax=ax, label=colour_label)
    labelled = set()
    for points, style, label in curves:
        ax.plot(*points.T, style, color="black", lw=1.6, label=None if label in labelled else label)
        labelled.add(label)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def velocity_figure(profiles, title: str):
    """Velocity profiles ``phi(t)``: ``profiles`` is a list of ``(t, phi, label, style)``."""
    fig = new_figure((6.0, 3.2), dpi=100)
    ax = fig.subplots()
    for t, phi, label, style in profiles:
        ax.plot(t, phi, style, lw=1.3, label=label)
    ax.set_xlabel("t")
    ax.set_ylabel("velocity |J(z(t)) z'(t)|")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


@dataclass
class LatentStudy:
    """What both experiments measure before their own readings (:func:`latent_study`)."""

    model: IWAE
    training: dict
    codes_index: np.ndarray  # training rows encoded as the graph's vertices, sorted
    Z: np.ndarray  # their codes, shape (n_codes, 2)
    est: LatentDistance
    graph_seconds: float
    a: np.ndarray  # the pairs' vertex indices
    b: np.ndarray
    pairs: list  # pair_geodesics
    pair_seconds: float


def latent_study(X: np.ndarray, cfg: dict) -> LatentStudy:
    """Train the IWAE on ``X``, build the latent graph on ``n_codes`` encoded rows, draw
    ``n_pairs`` random pairs and find their geodesics (:func:`pair_geodesics`)."""
    model, training = train_iwae(X, cfg)
    rng = np.random.default_rng(cfg["seed"])
    idx = np.sort(rng.choice(len(X), min(cfg["n_codes"], len(X)), replace=False))
    Z = model.encode(X[idx])
    t0 = time.perf_counter()
    est = LatentDistance(model.decoder_, n_neighbors=cfg["n_neighbors"], n_quad=cfg["n_quad"])
    est.fit(Z)
    graph_seconds = time.perf_counter() - t0
    a, b = random_pairs(est.component_labels_, cfg["n_pairs"], cfg["seed"] + 1)
    t0 = time.perf_counter()
    pairs = pair_geodesics(est, Z, a, b, cfg)
    return LatentStudy(
        model, training, idx, Z, est, graph_seconds, a, b, pairs, time.perf_counter() - t0
    )


def quartiles(values) -> str:
    """``median (25th–75th percentile)`` to 3 significant digits."""
    q = np.percentile(values, [25, 50, 75])
    return f"{q[1]:.3g} ({q[0]:.3g}–{q[2]:.3g})"
