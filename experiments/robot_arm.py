"""Robot arm: IWAE latent geodesics of joint angles against straight interpolation (Chen et al.).

The joint angles of a 6-DOF arm whose end effector traces a circle
(:func:`gendist.datasets.make_robot_arm`: the UR5's published Denavit–Hartenberg parameters,
a vertical circle of radius ``radius`` in ``n_steps`` time steps, joint angles by inverse
kinematics, Gaussian noise ``noise`` on every angle) train an IWAE with a 2-D latent space,
tanh layers and a Gaussian decoder. ``n_codes`` of the time steps are encoded to their
posterior means, the vertices of a latent ``n_neighbors``-NN graph
(:class:`gendist.LatentDistance` on the decoder's mean, whose output is the six joint
angles). Between ``n_pairs`` random pairs of codes the geodesic (graph path, then polyline
refinement) is measured against the straight latent interpolation.

Both curves are decoded at ``n_track`` points (the geodesic at constant metric speed, the
straight line linearly) and the joint angles taken through the arm's forward kinematics
(:func:`gendist.datasets.ur5_forward_kinematics`): the *circle deviation* is the mean
distance of the end effector from the traced circle along the curve. On ``n_compare`` pairs
the graph path, the polyline refinement and the neural curve compete in length and time.

Figures: the codes over the magnification factor coloured by their phase on the circle, with
geodesics, straight lines, a geodesic of the smoothed metric and a neural curve; the
end-effector paths of both interpolations; velocity profiles ``phi(t)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gendist.datasets import make_robot_arm, ur5_forward_kinematics

from ._common import finish, markdown_table, new_figure, require
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
    "n_steps": 6284,
    "radius": 0.4,
    "centre": [0.0, 0.4, 0.4],
    "noise": 0.03,
    "epochs": 25,
    "iwae_samples": 15,  # K of the IWAE bound
    "batch_size": 150,
    "lr": 1e-3,
    "n_track": 64,  # decoded joint angles along each curve taken through the kinematics
}

QUICK = {
    "n_steps": 1000,
    "epochs": 5,
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

#: the paper's numbers (Chen et al. 2018, robot arm): one pair
PAPER = {"straight": 1.48, "geodesic": 0.54}


def check_requirements(config: dict) -> None:
    """The IWAE needs torch."""
    require("torch")


def end_effector(model, points) -> np.ndarray:
    """Flange positions (n, 3), metres, of the joint angles decoded at ``points`` (n, 2)."""
    return ur5_forward_kinematics(model.decode(points))[:, :3, 3]


def circle_deviation(P, centre, radius: float) -> np.ndarray:
    """Distance of each position ``P`` (n, 3) from the circle of ``radius`` about ``centre``
    in the plane ``y = centre[1]`` (the circle of :func:`gendist.datasets.make_robot_arm`)."""
    in_plane = np.hypot(P[:, 0] - centre[0], P[:, 2] - centre[2]) - radius
    return np.hypot(in_plane, P[:, 1] - centre[1])


def run(out: Path, config: dict | None = None) -> dict:
    """Train, measure, draw; write ``pairs.csv``, ``curves.csv``, ``summary.md`` and the
    figures ``latent_robot_arm.png``, ``end_effector_robot_arm.png``,
    ``velocity_robot_arm.png`` to ``out``.

    Returns
    -------
    results : dict
        ``summary``, ``files``, ``seconds``, ``pairs`` (a dict per pair, with the geodesic's
        ``points`` and the straight ``line``), ``curves`` (the curve comparison, the neural
        curve's ``points`` with it), ``codes``, ``phase``, ``model``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    centre = np.asarray(cfg["centre"], dtype=np.float64)
    Q, phase = make_robot_arm(
        cfg["n_steps"],
        radius=cfg["radius"],
        centre=centre,
        noise=cfg["noise"],
        random_state=cfg["seed"],
    )
    study = latent_study(Q, cfg)
    model, training, Z, est, a, b, pairs = (
        study.model, study.training, study.Z, study.est, study.a, study.b, study.pairs
    )
    graph_seconds, pair_seconds = study.graph_seconds, study.pair_seconds
    code_phase = phase[study.codes_index]
    data_deviation = circle_deviation(ur5_forward_kinematics(Q)[:, :3, 3], centre, cfg["radius"])
    for p in pairs:
        for kind, track in (
            ("geodesic", constant_speed(est.metric_, p["points"], cfg["n_track"])),
            ("straight", np.linspace(p["line"][0], p["line"][-1], cfg["n_track"])),
        ):
            P = end_effector(model, track)
            p[f"{kind}_end_effector"] = P
            p[f"{kind}_circle_deviation"] = float(circle_deviation(P, centre, cfg["radius"]).mean())

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
        smooth_geodesic,
        est,
        lam,
        data_deviation,
        graph_seconds,
        pair_seconds,
        seconds,
    )
    figures = _figures(
        cfg, model, est, Z, code_phase, Q, pairs, smooth, smooth_geodesic, neural_points, centre
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
        phase=code_phase,
        model=model,
    )


def _summary(
    cfg,
    training,
    pairs,
    curve_rows,
    smooth_geodesic,
    est,
    lam,
    data_deviation,
    graph_seconds,
    pair_seconds,
    seconds,
):
    col = {
        k: np.array([p[k] for p in pairs])
        for k in pairs[0]
        if not isinstance(pairs[0][k], np.ndarray)
    }
    lines = [
        "# Robot arm: IWAE latent geodesics against straight interpolation",
        "",
        f"{cfg['n_steps']} time steps of a UR5 (standard DH parameters) whose flange traces a "
        f"circle of radius {cfg['radius']} m, joint-angle noise {cfg['noise']} rad; IWAE (2-D "
        f"latent, tanh {cfg['hidden']}, Gaussian decoder, K = {cfg['iwae_samples']}, batch "
        f"{cfg['batch_size']}, lr {cfg['lr']:g}, {cfg['epochs']} epochs: "
        f"{training['seconds']:.0f} s, final bound {training['final_bound']:.2f} nats per "
        f"point). Latent graph on {len(est.vertices_)} codes ({cfg['n_neighbors']}-NN, "
        f"{cfg['n_quad']} decoded nodes per edge, {graph_seconds:.0f} s); {len(pairs)} random "
        f"pairs ({pair_seconds:.0f} s for the graph paths and their batch refinement). Run "
        f"time {seconds:.0f} s.",
        "",
        "## Geodesic against straight interpolation, median (quartiles) over the pairs",
        "",
        "Lengths in radians of joint angle (the decoder's output).",
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
                    "end effector's distance from the circle (m)",
                    quartiles(col["straight_circle_deviation"]),
                    quartiles(col["geodesic_circle_deviation"]),
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
        f"The geodesic is shorter than the straight line on {int(np.sum(col['ratio'] < 1))} "
        f"of {len(pairs)} pairs; the graph path is "
        f"{quartiles(col['graph_length'] / col['geodesic_length'])} times the refined "
        f"geodesic. The training data's own end effector lies "
        f"{np.median(data_deviation):.3g} m (median) from the circle (the joint-angle noise).",
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


def _figures(
    cfg, model, est, Z, code_phase, Q, pairs, smooth, smooth_geodesic, neural_points, centre
):
    shown = pairs[: min(3, len(pairs))]
    curves = [(p["points"], "-", "geodesic") for p in shown]
    curves += [(p["line"], "--", "straight line") for p in shown]
    curves += [
        (smooth_geodesic.points, ":", "geodesic, smoothed metric"),
        (neural_points, "-.", "neural curve"),
    ]
    figures = {
        "latent_robot_arm.png": latent_figure(
            est,
            Z,
            np.degrees(code_phase),
            "phase on the circle (degrees)",
            "hsv",
            curves,
            "robot arm IWAE: codes by phase over the magnification factor",
            cfg,
        )
    }
    fig = new_figure((5.6, 5.2), dpi=100)
    ax = fig.subplots()
    data = ur5_forward_kinematics(Q[:: max(1, len(Q) // 2000)])[:, :3, 3]
    ax.scatter(data[:, 0], data[:, 2], s=2, color="0.8", label="training data (noisy)")
    phi = np.linspace(0, 2 * np.pi, 200)
    ax.plot(
        centre[0] + cfg["radius"] * np.cos(phi),
        centre[2] + cfg["radius"] * np.sin(phi),
        color="0.4",
        lw=0.8,
        label="the circle",
    )
    for i, p in enumerate(shown):
        colour = f"C{i}"
        G, S = p["geodesic_end_effector"], p["straight_end_effector"]
        ax.plot(G[:, 0], G[:, 2], "-", color=colour, lw=1.6, label=f"{p['a']}→{p['b']} geodesic")
        ax.plot(S[:, 0], S[:, 2], "--", color=colour, lw=1.2, label="straight")
        ax.plot(*G[[0, -1]][:, [0, 2]].T, "o", color=colour, ms=4)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("end effector (forward kinematics of the decoded joint angles)", fontsize=9)
    fig.tight_layout()
    figures["end_effector_robot_arm.png"] = fig
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
    figures["velocity_robot_arm.png"] = velocity_figure(
        profiles, f"velocity along pair {p['a']}→{p['b']}"
    )
    return figures
