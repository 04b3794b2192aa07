"""Pendulum images: IWAE latent geodesics against straight interpolation (Chen et al. 2018).

``n_samples`` images of a pendulum (:func:`gendist.datasets.make_pendulum`: ``size x size``
pixels, angle uniform in [0, 360°), Gaussian pixel noise ``noise``) train an IWAE with a 2-D
latent space, tanh layers and a Gaussian decoder (:mod:`gendist.vae`). ``n_codes`` training
images are encoded to their posterior means, the vertices of a latent ``n_neighbors``-NN
graph (:class:`gendist.LatentDistance` on the decoder's mean). Between ``n_pairs`` random
pairs of codes the geodesic (graph path, then polyline refinement) is measured against the
straight latent interpolation, under the pullback metric of the decoder's mean.

Along each curve, ``n_track`` images are decoded (the geodesic at constant speed in the
metric, the straight line at constant latent speed, i.e. linear interpolation) and the angle
of each is read off the nearest of ``n_templates`` noise-free renderings
(:func:`gendist.datasets.render_pendulum`); the *angle error* is the deviation of that
angle from a uniform rotation between the two ends (in the direction the curve turns), the
*template residual* the RMS pixel distance to that template (large for blurred images that
show no single pendulum). On ``n_compare`` pairs the graph path, the polyline refinement
and the neural curve (:func:`gendist.curves.neural_curve`) compete in length and time.

Figures: the codes over the magnification factor coloured by angle, with geodesics, straight
lines, a geodesic of the smoothed metric and a neural curve; decoded strips; the estimated
angle along the curves; velocity profiles ``phi(t)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from gendist.datasets import make_pendulum, render_pendulum

from ._common import finish, markdown_table, new_figure, require, strip_figure
from ._latent_pairs import (
    CURVE_DEFAULTS,
    compare_curves,
    constant_speed,
    curve_table,
    latent_figure,
    latent_study,
    quartiles,
    smoothed_estimator,
    velocity_figure,
)

DEFAULTS = {
    **CURVE_DEFAULTS,
    "n_samples": 15000,
    "size": 16,
    "noise": 0.05,
    # the paper trains with K = 50, batch 20, lr 1e-4; that costs ~10 min per epoch on
    # two CPU cores, so the full run takes K = 5 and batch 100 at lr 1e-3 (the same work
    # per epoch falls by 10x) for 8 epochs
    "epochs": 8,
    "iwae_samples": 5,  # K of the IWAE bound
    "batch_size": 100,
    "lr": 1e-3,
    "n_track": 32,  # decoded images along each curve whose angle is estimated
    "n_templates": 720,  # noise-free renderings (every 0.5 degrees) that read off an angle
    "n_frames": 10,  # images per strip
}

QUICK = {
    "n_samples": 1500,
    "epochs": 2,
    "iwae_samples": 5,
    "batch_size": 50,
    "lr": 1e-3,
    "hidden": [64, 64],
    "n_codes": 200,
    "n_pairs": 4,
    "n_compare": 1,
    "neural_hidden": 32,
    "neural_samples": 100,
    "neural_iter": 50,
    "grid": 20,
}

TYPES: dict = {}

#: the paper's numbers (Chen et al. 2018, pendulum): one pair
PAPER = {"straight": 0.827, "geodesic": 0.538}


def check_requirements(config: dict) -> None:
    """The IWAE needs torch."""
    require("torch")


def angle_track(model, points, templates, template_angles):
    """Angles (radians, unwrapped) and template residuals of the images decoded at
    ``points`` (n, 2), read off the nearest template."""
    images = model.decode(points)
    dist, idx = NearestNeighbors(n_neighbors=1).fit(templates).kneighbors(images)
    angles = np.unwrap(template_angles[idx[:, 0]])
    return angles, dist[:, 0] / np.sqrt(images.shape[1])


def rotation_error(angles) -> float:
    """Mean absolute deviation (degrees) of an unwrapped angle track from the uniform
    rotation between its two ends."""
    uniform = np.linspace(angles[0], angles[-1], len(angles))
    return float(np.degrees(np.abs(angles - uniform).mean()))


def run(out: Path, config: dict | None = None) -> dict:
    """Train, measure, draw; write ``pairs.csv``, ``curves.csv``, ``summary.md`` and the
    figures ``latent_pendulum.png``, ``strips_pendulum.png``, ``rotation_pendulum.png``,
    ``velocity_pendulum.png`` to ``out``.

    Returns
    -------
    results : dict
        ``summary``, ``files``, ``seconds``, ``pairs`` (a dict per pair, with the geodesic's
        ``points`` and the straight ``line``), ``curves`` (the curve comparison, the neural
        curve's ``points`` with it), ``codes``, ``angles``, ``model``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    X, angles = make_pendulum(
        cfg["n_samples"], size=cfg["size"], noise=cfg["noise"], random_state=cfg["seed"]
    )
    study = latent_study(X, cfg)
    model, training, Z, est, a, b, pairs = (
        study.model, study.training, study.Z, study.est, study.a, study.b, study.pairs
    )
    graph_seconds, pair_seconds = study.graph_seconds, study.pair_seconds
    code_angles = angles[study.codes_index]

    template_angles = np.linspace(0, 2 * np.pi, cfg["n_templates"], endpoint=False)
    templates = render_pendulum(template_angles, size=cfg["size"])
    for p in pairs:
        for kind, track in (
            ("geodesic", constant_speed(est.metric_, p["points"], cfg["n_track"])),
            ("straight", np.linspace(p["line"][0], p["line"][-1], cfg["n_track"])),
        ):
            theta, residual = angle_track(model, track, templates, template_angles)
            p[f"{kind}_track"] = theta - theta[0]
            p[f"{kind}_angle_error_deg"] = rotation_error(theta)
            p[f"{kind}_residual"] = float(residual.mean())
            p[f"{kind}_rotation_deg"] = float(np.degrees(theta[-1] - theta[0]))

    n = min(cfg["n_compare"], len(a))
    curves = compare_curves(est, Z, a[:n], b[:n], cfg)
    smooth, lam = smoothed_estimator(model.decoder_, Z, cfg)
    smooth_geodesic = smooth.geodesic(a[0], b[0], refine=True)
    neural_points = next(r["points"] for r in curves if "points" in r)

    pair_rows = [{k: v for k, v in p.items() if not isinstance(v, np.ndarray)} for p in pairs]
    curve_rows = [{k: v for k, v in r.items() if k != "points"} for r in curves]
    seconds = time.perf_counter() - start
    summary = _summary(
        cfg,
        training,
        pairs,
        curve_rows,
        smooth,
        smooth_geodesic,
        est,
        lam,
        graph_seconds,
        pair_seconds,
        seconds,
    )
    figures = _figures(
        cfg, model, est, Z, code_angles, pairs, smooth, smooth_geodesic, neural_points
    )
    return finish(
        out,
        start,
        tables={"pairs.csv": pair_rows, "curves.csv": curve_rows},
        summary=summary,
        figures=figures,
        pairs=pairs,
        curves=curves,
        codes=Z,
        angles=code_angles,
        model=model,
    )


def _summary(
    cfg,
    training,
    pairs,
    curve_rows,
    smooth,
    smooth_geodesic,
    est,
    lam,
    graph_seconds,
    pair_seconds,
    seconds,
):
    col = {
        k: np.array([p[k] for p in pairs])
        for k in pairs[0]
        if not k.endswith(("track", "points", "line"))
    }
    lines = [
        "# Pendulum: IWAE latent geodesics against straight interpolation",
        "",
        f"{cfg['n_samples']} images of {cfg['size']}×{cfg['size']} pixels, noise "
        f"{cfg['noise']}; IWAE (2-D latent, tanh {cfg['hidden']}, Gaussian decoder, K = "
        f"{cfg['iwae_samples']}, batch {cfg['batch_size']}, lr {cfg['lr']:g}, "
        f"{cfg['epochs']} epochs: {training['seconds']:.0f} s, final bound "
        f"{training['final_bound']:.1f} nats per image). Latent graph on {len(est.vertices_)} "
        f"codes ({cfg['n_neighbors']}-NN, {cfg['n_quad']} decoded nodes per edge, "
        f"{graph_seconds:.0f} s); {len(pairs)} random pairs ({pair_seconds:.0f} s for the "
        f"graph paths and their batch refinement). Run time {seconds:.0f} s.",
        "",
        "## Geodesic against straight interpolation, median (quartiles) over the pairs",
        "",
        markdown_table(
            ["", "straight line", "geodesic", "geodesic / straight"],
            [
                [
                    "length",
                    quartiles(col["straight_length"]),
                    quartiles(col["geodesic_length"]),
                    quartiles(col["ratio"]),
                ],
                [
                    "angle error (degrees)",
                    quartiles(col["straight_angle_error_deg"]),
                    quartiles(col["geodesic_angle_error_deg"]),
                    "",
                ],
                [
                    "template residual (RMS)",
                    quartiles(col["straight_residual"]),
                    quartiles(col["geodesic_residual"]),
                    "",
                ],
                [
                    "paper, one pair",
                    PAPER["straight"],
                    PAPER["geodesic"],
                    PAPER["geodesic"] / PAPER["straight"],
                ],
            ],
        ),
        "",
        f"The geodesic is shorter than the straight line on "
        f"{int(np.sum(col['ratio'] < 1))} of {len(pairs)} pairs; the graph path is "
        f"{quartiles(col['graph_length'] / col['geodesic_length'])} times the refined "
        "geodesic.",
        "",
        "## Curve optimisers",
        "",
        curve_table(curve_rows),
        "",
        "## Smoothed metric",
        "",
        f"lam_s = {lam:.3g} ({cfg['smoothing_lam']:g} × the median smallest squared singular "
        f"value at the codes). Pair {pairs[0]['a']}→{pairs[0]['b']}: geodesic of the smoothed "
        f"metric {smooth_geodesic.length:.3g} under it and "
        f"{est.metric_.curve_length(smooth_geodesic.points):.3g} under the plain metric, "
        f"against {pairs[0]['geodesic_length']:.3g} for the plain metric's geodesic.",
    ]
    return "\n".join(lines) + "\n"


def _figures(cfg, model, est, Z, code_angles, pairs, smooth, smooth_geodesic, neural_points):
    shown = pairs[: min(4, len(pairs))]
    curves = [(p["points"], "-", "geodesic") for p in shown]
    curves += [(p["line"], "--", "straight line") for p in shown]
    curves += [
        (smooth_geodesic.points, ":", "geodesic, smoothed metric"),
        (neural_points, "-.", "neural curve"),
    ]
    figures = {
        "latent_pendulum.png": latent_figure(
            est,
            Z,
            np.degrees(code_angles),
            "angle (degrees)",
            "hsv",
            curves,
            "pendulum IWAE: codes by angle over the magnification factor",
            cfg,
        )
    }
    strips, names = [], []
    for p in pairs[: min(2, len(pairs))]:
        for kind, frames in (
            ("geodesic", constant_speed(est.metric_, p["points"], cfg["n_frames"])),
            ("straight", np.linspace(p["line"][0], p["line"][-1], cfg["n_frames"])),
        ):
            strips.append(model.decode(frames))
            names.append(f"{p['a']}→{p['b']} {kind}")
    figures["strips_pendulum.png"] = strip_figure(
        strips,
        names,
        "decoded along the geodesic (constant speed) and the straight line",
        cfg["n_frames"],
    )
    fig = new_figure((6.0, 3.4), dpi=100)
    ax = fig.subplots()
    u = np.linspace(0, 1, cfg["n_track"])
    for i, p in enumerate(shown):
        colour = f"C{i}"
        ax.plot(
            u,
            np.degrees(p["geodesic_track"]),
            "-",
            color=colour,
            label=f"{p['a']}→{p['b']} geodesic",
        )
        ax.plot(u, np.degrees(p["straight_track"]), "--", color=colour, label="straight")
    ax.set_xlabel("t (geodesic: constant metric speed; straight: linear interpolation)")
    ax.set_ylabel("rotation from the start (degrees)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("pendulum angle read off the decoded images", fontsize=9)
    fig.tight_layout()
    figures["rotation_pendulum.png"] = fig
    p = pairs[0]
    profiles = [
        (*est.velocity(p["line"]), "straight line", "--"),
        (*est.velocity(p["points"], parametrization="length"), "geodesic", "-"),
        (*est.velocity(neural_points[::10], parametrization="length"), "neural curve", "-."),
        (
            *smooth.velocity(smooth_geodesic.points, parametrization="length"),
            "geodesic of the smoothed metric (its own velocity)",
            ":",
        ),
    ]
    figures["velocity_pendulum.png"] = velocity_figure(
        profiles, f"velocity along pair {p['a']}→{p['b']}"
    )
    return figures
