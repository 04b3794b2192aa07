"""Graph geodesics vs latent interpolation under a normalizing flow (paper Fig. 8).

For each seed, a RealNVP flow (:class:`gendist.RealNVPDensity`) is trained on two moons and
:class:`gendist.GenerativeDistance` builds its graph on the same points under the flow's
density. For random pairs of points on the same moon, three paths join the two points:

* ``geodesic``: the graph geodesic (``est.geodesic(i, j)``, a polyline through data points);
* ``refined``: the same, refined (``est.geodesic(i, j, refine=...)``: ``refine_points``
  evenly spaced points moved off the data points to shorten the path under the metric);
* ``latent``: linear interpolation between the two latent codes (``to_latent``), with
  ``n_frames`` equally spaced latent points mapped back by ``from_latent``;
* ``straight``: the straight segment, as a reference.

Each path is measured by its Euclidean length (also relative to the straight segment), its
length under the generative metric (``est.metric_.curve_length``), and the mean and minimum
flow log-likelihood over ``n_eval`` points resampled at equal arc length (the same count for
every path, so that long and short paths are compared on the same footing), and how far that
minimum dips below the lower of the two endpoints' log-likelihoods. The endpoints are drawn
among the points whose log-likelihood is above the ``endpoint_quantile`` of the data's, so
that the minimum along a path is not simply that of an outlying endpoint.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gendist import GenerativeDistance, RealNVPDensity
from gendist.datasets import make_moons
from gendist.refine import resample_polyline

from ._common import finish, markdown_table, new_figure, require

DEFAULTS = {
    "n_samples": 1500,  # two moons per seed (gendist.datasets.make_moons)
    "noise": 0.08,
    "seeds": [0, 1, 2],  # one dataset draw, flow and graph per seed
    # RealNVP flow (gendist.RealNVPDensity), early stopping on a 10 % validation split
    "n_transforms": 8,
    "hidden_features": [64, 64],
    "epochs": 300,
    "batch_size": 256,
    "lr": 0.002,
    "patience": 40,
    # graph and metric of GenerativeDistance under the flow's density
    "n_neighbors": 15,  # symmetrised kNN graph; it may leave the two moons apart
    "radius": None,
    "lam": "quantile:0.1",  # lambda = 10 % quantile of p over the points
    "beta": 1.0,
    "n_quad": 8,
    # pairs and paths
    "n_pairs": 60,  # per seed, both points on the same moon
    "min_separation": 1.0,  # Euclidean distance between the two points, at least
    "endpoint_quantile": 0.5,  # endpoints among the points with log p above this quantile
    "dip_threshold": 1.0,  # a path "leaves the data" when log p falls this far (nats) below
    "refine_points": 32,  # points of the refined geodesic
    "n_frames": 100,  # latent interpolation: equally spaced latent points, mapped back
    "n_eval": 200,  # points of equal arc length where log p is evaluated along each path
    "n_show": 5,  # pairs drawn in the figure
}

QUICK = {
    "n_samples": 600,
    "seeds": [0],
    "n_transforms": 6,
    "hidden_features": [32, 32],
    "epochs": 150,
    "batch_size": 128,
    "patience": 20,
    "n_neighbors": 10,
    "n_pairs": 20,
    "n_frames": 50,
    "n_eval": 100,
    "n_show": 3,
}

TYPES = {"n_neighbors": int | None, "radius": str | float | None, "lam": str | float}

#: the three paths between the two points of a pair
PATHS = ("geodesic", "refined", "latent", "straight")

#: the two geodesics, each compared with the latent path
GEODESICS = ("geodesic", "refined")

#: per-path statistics, in the order of the summary table
STATS = (
    ("euclidean_length", "Euclidean length"),
    ("relative_length", "length / straight"),
    ("generative_length", "generative length"),
    ("mean_log_p", "mean log p"),
    ("min_log_p", "min log p"),
    ("dip", "min log p - lower endpoint's"),
)


def check_requirements(config: dict) -> None:
    """The RealNVP flow needs torch and zuko."""
    require("torch")
    require("zuko")


def latent_path(flow: RealNVPDensity, a: np.ndarray, b: np.ndarray, n_frames: int) -> np.ndarray:
    """Linear interpolation between the latent codes of ``a`` and ``b``, mapped back."""
    za, zb = flow.to_latent(np.vstack([a, b]))
    t = np.linspace(0.0, 1.0, n_frames)[:, None]
    return flow.from_latent((1 - t) * za + t * zb)


def same_moon_pairs(
    X, y, n_pairs: int, min_separation: float, rng, candidates=None
) -> list[tuple[int, int]]:
    """``n_pairs`` random pairs (i, j) with ``y[i] == y[j]`` and ``|X[i] - X[j]| >=
    min_separation``, without repeats, both among ``candidates`` (indices; default all)."""
    candidates = np.arange(len(X)) if candidates is None else np.asarray(candidates)
    pairs, seen = [], set()
    for _ in range(1000 * n_pairs):
        if len(pairs) == n_pairs:
            break
        i = int(rng.choice(candidates))
        same = candidates[y[candidates] == y[i]]
        j = int(rng.choice(same))
        key = (min(i, j), max(i, j))
        if key in seen or np.linalg.norm(X[i] - X[j]) < min_separation:
            continue
        seen.add(key)
        pairs.append((i, j))
    if len(pairs) < n_pairs:
        raise ValueError(
            f"found only {len(pairs)} pairs on the same moon at least min_separation="
            f"{min_separation} apart; lower min_separation or n_pairs."
        )
    return pairs


def path_stats(points, flow, metric, n_eval: int) -> dict:
    """Lengths and log-likelihoods of one path (a polyline (k, d) from a to b)."""
    straight = float(np.linalg.norm(points[-1] - points[0]))
    length = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    log_p = flow.log_prob(resample_polyline(points, n_eval))
    return {
        "euclidean_length": length,
        "relative_length": length / straight,
        "generative_length": metric.curve_length(points),
        "mean_log_p": float(log_p.mean()),
        "min_log_p": float(log_p.min()),
        "dip": float(log_p.min() - min(log_p[0], log_p[-1])),
        "n_points": len(points),
    }


def _fit(X, seed, cfg):
    flow = RealNVPDensity(
        n_transforms=cfg["n_transforms"],
        hidden_features=tuple(cfg["hidden_features"]),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        patience=cfg["patience"],
        random_state=seed,
    ).fit(X)
    est = GenerativeDistance(
        density=flow,
        lam=cfg["lam"],
        beta=cfg["beta"],
        radius=cfg["radius"],
        n_neighbors=cfg["n_neighbors"],
        n_quad=cfg["n_quad"],
    )
    with warnings.catch_warnings():  # a kNN graph may keep the two moons apart: fine here
        warnings.filterwarnings("ignore", message="the graph has")
        est.fit(X)
    return flow, est


def run(out: Path, config: dict | None = None) -> dict:
    """Train the flow, compare the three paths over same-moon pairs; write ``moons.csv``,
    ``summary.md`` and ``moons.png`` to ``out``.

    Returns
    -------
    results : dict
        ``rows`` (one per seed, pair and path), ``summary`` (Markdown), ``files``,
        ``seconds``, and ``flows`` (per seed: test NLL, epochs, training seconds).
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, flows, example = [], [], None
    for seed in cfg["seeds"]:
        X, y = make_moons(cfg["n_samples"], noise=cfg["noise"], random_state=seed)
        X_test, _ = make_moons(cfg["n_samples"], noise=cfg["noise"], random_state=10_000 + seed)
        t0 = time.perf_counter()
        flow, est = _fit(X, seed, cfg)
        flows.append(
            {
                "seed": seed,
                "test_nll": -flow.score(X_test),
                "epochs": flow.n_epochs_,
                "best_epoch": flow.best_epoch_,
                "fit_seconds": time.perf_counter() - t0,
                "graph_components": est.n_components_,
            }
        )
        # endpoints in the body of the moons, so that the lowest density along a path is
        # not simply that of an outlying endpoint
        log_p = est.log_prob_[est.data_index_]
        core = np.flatnonzero(log_p >= np.quantile(log_p, cfg["endpoint_quantile"]))
        rng = np.random.default_rng(seed)
        pairs = same_moon_pairs(X, y, cfg["n_pairs"], cfg["min_separation"], rng, core)
        paths_of_seed = []
        for p, (i, j) in enumerate(tqdm(pairs, desc=f"moons seed {seed}", unit="pair")):
            paths = {
                "geodesic": est.geodesic(i, j, refine=False).points,
                "refined": est.geodesic(i, j, refine={"n_points": cfg["refine_points"]}).points,
                "latent": latent_path(flow, X[i], X[j], cfg["n_frames"]),
                "straight": X[[i, j]],
            }
            paths_of_seed.append(paths)
            for kind in PATHS:
                stats = path_stats(paths[kind], flow, est.metric_, cfg["n_eval"])
                rows.append({"seed": seed, "pair": p, "i": i, "j": j, "path": kind, **stats})
        if example is None:
            example = (X, y, flow, paths_of_seed)
    return finish(
        out,
        start,
        tables={"moons.csv": rows},
        summary=_summary(rows, flows, cfg),
        figures={"moons.png": _figure(example, rows, cfg)},
        rows=rows,
        flows=flows,
    )


def paired(rows, stat: str, kind: str) -> np.ndarray:
    """Values of ``stat`` for path ``kind``, one per (seed, pair), in a fixed order."""
    sel = sorted((r["seed"], r["pair"], r[stat]) for r in rows if r["path"] == kind)
    return np.array([v for _, _, v in sel])


def comparisons(rows, dip_threshold: float = 1.0, kind: str = "geodesic") -> dict:
    """Fractions of pairs where path ``kind`` (a geodesic) beats the latent path, per
    criterion, and of pairs where each path leaves the data (``dip_<path>``: its log p falls
    more than ``dip_threshold`` nats below the lower endpoint's)."""
    g, lat = {}, {}
    for stat in ("min_log_p", "mean_log_p", "euclidean_length", "generative_length"):
        g[stat], lat[stat] = paired(rows, stat, kind), paired(rows, stat, "latent")
    leaves = {
        f"dip_{kind}": float(np.mean(paired(rows, "dip", kind) < -dip_threshold)) for kind in PATHS
    }
    return {
        **leaves,
        "higher_min_log_p": float(np.mean(g["min_log_p"] > lat["min_log_p"])),
        "higher_mean_log_p": float(np.mean(g["mean_log_p"] > lat["mean_log_p"])),
        "shorter": float(np.mean(g["euclidean_length"] < lat["euclidean_length"])),
        "shorter_generative": float(np.mean(g["generative_length"] < lat["generative_length"])),
        "higher_min_log_p_and_shorter": float(
            np.mean(
                (g["min_log_p"] > lat["min_log_p"])
                & (g["euclidean_length"] < lat["euclidean_length"])
            )
        ),
    }


def _summary(rows, flows, cfg) -> str:
    body = []
    for stat, label in STATS:
        for kind in PATHS:
            v = paired(rows, stat, kind)
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            body.append([label, kind, float(med), float(q1), float(q3)])
    c = comparisons(rows, cfg["dip_threshold"])
    cr = comparisons(rows, cfg["dip_threshold"], "refined")
    n = len(paired(rows, "min_log_p", "geodesic"))
    data_q = np.median([f["test_nll"] for f in flows])
    fr = [
        [
            f["seed"],
            float(f["test_nll"]),
            f["epochs"],
            f["best_epoch"],
            float(f["fit_seconds"]),
            f["graph_components"],
        ]
        for f in flows
    ]
    verdict = _verdict(rows, cr, cfg["dip_threshold"], "refined")
    return (
        "\n\n".join(
            [
                "# Two moons: graph geodesics vs latent interpolation under a RealNVP flow",
                f"{cfg['n_samples']} points (noise {cfg['noise']}) per seed, seeds "
                f"{cfg['seeds']}; RealNVP with {cfg['n_transforms']} affine couplings, hidden "
                f"{list(cfg['hidden_features'])}, Adam lr {cfg['lr']}, batch {cfg['batch_size']}, "
                f"at most {cfg['epochs']} epochs, early stopping (patience {cfg['patience']}) "
                f"on a 10 % validation split. Graph: n_neighbors={cfg['n_neighbors']}, "
                f"radius={cfg['radius']!r}, lam={cfg['lam']!r}, beta={cfg['beta']}, "
                f"n_quad={cfg['n_quad']}. {n} pairs on the same moon, at least "
                f"{cfg['min_separation']} apart, both with log p above the "
                f"{cfg['endpoint_quantile']:.0%} quantile of the data's; latent paths decoded at "
                f"{cfg['n_frames']} "
                f"points; log p along every path at {cfg['n_eval']} points of equal arc length.",
                "Flows (NLL in nats per point on a fresh draw of the same size; median "
                f"{data_q:.3g}):",
                markdown_table(
                    ["seed", "test NLL", "epochs", "best epoch", "fit s", "graph components"], fr
                ),
                "Per-path statistics over all pairs (median and quartiles):",
                markdown_table(["statistic", "path", "median", "25 %", "75 %"], body),
                "Fraction of pairs where the geodesic (graph path, and refined) beats the latent "
                "path:",
                markdown_table(
                    ["criterion", "graph geodesic", "refined geodesic"],
                    [
                        [label, c[key], cr[key]]
                        for label, key in (
                            ("higher minimum log p", "higher_min_log_p"),
                            ("higher mean log p", "higher_mean_log_p"),
                            ("shorter (Euclidean)", "shorter"),
                            ("shorter (generative metric)", "shorter_generative"),
                            ("higher minimum log p and shorter", "higher_min_log_p_and_shorter"),
                        )
                    ],
                ),
                f"Fraction of pairs where the path leaves the data (its log p falls more than "
                f"{cfg['dip_threshold']} nats below the lower endpoint's):",
                markdown_table(["path", "fraction"], [[kind, c[f"dip_{kind}"]] for kind in PATHS]),
                verdict,
            ]
        )
        + "\n"
    )


def _verdict(rows, c, dip_threshold, kind) -> str:
    """One paragraph saying what the numbers say about the paper's claim, for geodesic
    ``kind``."""
    g_rel = float(np.median(paired(rows, "relative_length", kind)))
    l_rel = float(np.median(paired(rows, "relative_length", "latent")))
    gap = float(np.median(paired(rows, "min_log_p", kind) - paired(rows, "min_log_p", "latent")))
    dip_g, dip_l, dip_s = c[f"dip_{kind}"], c["dip_latent"], c["dip_straight"]
    if dip_l >= dip_g + 0.25:
        leaves = "holds"
    elif dip_l <= dip_g + 0.1:
        leaves = "does not hold: the latent paths stay on the data as often as the geodesics"
    else:
        leaves = "holds only weakly"
    if l_rel >= g_rel + 0.1:
        convoluted = "holds"
    elif l_rel <= g_rel + 0.02:
        convoluted = "does not hold: the latent paths are no longer than the geodesics"
    else:
        convoluted = "holds only weakly"
    return (
        f"**Verdict** ({kind} geodesics). The paper says latent interpolation gives "
        "convoluted paths that leave the data while geodesics follow the manifold. Leaving "
        "the data (log p more than "
        f"{dip_threshold} nats below the lower endpoint's): latent paths in {dip_l:.0%} of "
        f"the pairs, geodesics in {dip_g:.0%}, straight segments in {dip_s:.0%}; the geodesic "
        f"has the higher minimum log p in {c['higher_min_log_p']:.0%} of the pairs, by a "
        f"median {gap:.2g} nats. So that half of the claim {leaves}. Median length relative "
        f"to the straight segment: latent {l_rel:.3g}, geodesic {g_rel:.3g} (the geodesic is "
        f"the shorter in {c['shorter']:.0%} of the pairs), so the 'convoluted' half "
        f"{convoluted}."
    )


def _figure(example, rows, cfg):
    from matplotlib import colormaps

    X, y, flow, paths = example
    fig = new_figure((20, 4.8), dpi=110)
    axes = fig.subplots(1, 4)
    ax = axes[0]
    lo, hi = X.min(0) - 0.5, X.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 220), np.linspace(lo[1], hi[1], 160))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    log_p = flow.log_prob(grid).reshape(gx.shape)
    floor = np.percentile(flow.log_prob(X), 1) - 4.0
    ax.contourf(gx, gy, np.maximum(log_p, floor), levels=30, cmap="viridis")
    ax.scatter(X[:, 0], X[:, 1], s=1, c="white", alpha=0.35)
    colors = colormaps["tab10"].colors
    for k, p in enumerate(paths[: cfg["n_show"]]):
        col = colors[k % len(colors)]
        ax.plot(*p["geodesic"].T, "-", color=col, lw=0.8, alpha=0.7)
        ax.plot(*p["refined"].T, "-", color=col, lw=2)
        ax.plot(*p["latent"].T, "--", color=col, lw=2)
        ax.plot(*p["straight"].T, ":", color="0.85", lw=1)
        ax.plot(*p["geodesic"][[0, -1]].T, "o", color=col, ms=5, mec="k")
    ax.set_title(
        "flow log-density; refined geodesic (solid; thin: graph path),\n"
        "latent interpolation (dashed), straight segment (dotted)",
        fontsize=9,
    )
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])

    ax = axes[1]  # the same pairs in latent space
    Z = flow.to_latent(X)
    ax.scatter(Z[:, 0], Z[:, 1], s=1, c=y, cmap="coolwarm", alpha=0.5)
    for k, p in enumerate(paths[: cfg["n_show"]]):
        col = colors[k % len(colors)]
        ax.plot(*flow.to_latent(resample_polyline(p["refined"], 200)).T, "-", color=col, lw=2)
        ax.plot(*flow.to_latent(p["latent"]).T, "--", color=col, lw=2)
    ax.set_title("the same paths in the flow's latent space", fontsize=9)
    ax.set_aspect("equal")

    for ax, stat, label in (
        (axes[2], "min_log_p", "minimum log p along the path"),
        (axes[3], "relative_length", "Euclidean length / straight segment"),
    ):
        lat = paired(rows, stat, "latent")
        g, r = paired(rows, stat, "geodesic"), paired(rows, stat, "refined")
        ax.scatter(lat, g, s=8, alpha=0.5, label="graph geodesic")
        ax.scatter(lat, r, s=8, alpha=0.7, label="refined geodesic")
        ax.legend(fontsize=8)
        both = np.concatenate([g, r, lat])
        lim = [both.min(), both.max()]
        pad = 0.05 * (lim[1] - lim[0] or 1.0)
        lim = [lim[0] - pad, lim[1] + pad]
        ax.plot(lim, lim, "k:", lw=1)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel(f"latent interpolation: {label}", fontsize=8)
        ax.set_ylabel(f"geodesic: {label}", fontsize=8)
        ax.set_title(f"{label}, one dot per pair (all seeds)", fontsize=9)
    fig.tight_layout()
    return fig
