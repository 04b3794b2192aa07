"""Latent pullback geometry of a VAE and an IWAE against gendist's data-space distance.

A VAE and an IWAE (:mod:`gendist.vae`) with a 2-D latent space are trained on ``n_train``
training images of MNIST (or Fashion-MNIST). ``n_codes`` other training images (the same
number per class) are encoded to their posterior means, and these distances are computed among
them:

* **latent Euclidean**: ``|z_a - z_b|`` between the codes;
* **latent pullback**, per model: the graph distance of :class:`gendist.latent.LatentDistance`,
  a ``n_neighbors``-NN graph on the codes whose edges weigh the length of their decoded image
  (``n_quad`` decoded nodes per edge); for the IWAE also with the decoder's Bernoulli standard
  deviation (``IWAE + std``: the expected metric of the stochastic decoder);
* **data-space generative**: gendist's own distance on the images themselves, with the density
  of the MNIST experiment (an isotropic Gaussian mixture with one component per image on
  ``n_components`` of the VAE's training images, its variance chosen on held-out images, the
  adaptive epsilon-graph and ``beta="auto"``; see :mod:`experiments.mnist`);
* **pixel Euclidean**, as a baseline.

Outputs: each model's latent codes drawn over its magnification factor ``sqrt(det G(z))``
(log scale) with geodesics (A* graph path, then optimised as a curve) and straight lines
between ``n_geodesics`` pairs of codes; decoded image strips along both; the 10 x 10 matrices
of the mean distance between classes under every distance (each divided by its mean over
all pairs, so that they share a scale); and for each distance how well it separates the
classes (leave-one-out k-NN accuracy, ratio of between- to within-class mean distance) and
how it agrees with the others (Spearman correlation of the 55 class-pair means).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from gendist import IWAE, VAE, GaussianMixtureDensity, GenerativeDistance, LatentDistance
from gendist.refine import resample_polyline

from ._common import finish, markdown_table, new_figure, require, strip_figure
from ._data import load_mnist, require_data
from .mnist import choose_beta, select_variance

DEFAULTS = {
    "dataset": "mnist",
    "data_dir": None,  # folder of the IDX files; None: $GENDIST_DATA_DIR or ../shared/data
    "seed": 0,
    "n_train": 10000,  # VAE / IWAE training images
    "epochs": 30,
    "hidden": [512, 256],
    "iwae_samples": 5,  # K of the IWAE bound
    "n_codes": 2000,  # encoded images (graph vertices), the same number per class
    "n_neighbors": 10,  # latent kNN graph
    "n_quad": 8,  # decoded nodes per latent edge
    "n_components": 6000,  # data-space mixture components (VAE training images)
    "n_validation": 1000,  # held-out images that choose the mixture's variance
    "variance_grid": [0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06, 0.1],
    "radius_quantile": 0.25,  # data-space adaptive epsilon, as in the MNIST experiment
    "lam": "quantile:0.5",
    "beta": "auto",
    "contrast": 10.0,
    "n_geodesics": 6,  # pairs drawn on the latent figures and strips
    "n_frames": 10,  # images per strip
    "grid": 150,  # magnification-factor grid points per axis
    "knn": 5,  # k of the leave-one-out k-NN accuracy
}

QUICK = {
    "n_train": 1500,
    "epochs": 3,
    "hidden": [128, 64],
    "n_codes": 200,
    "n_components": 400,
    "n_validation": 200,
    "n_geodesics": 2,
    "grid": 40,
}

TYPES = {"data_dir": str | None, "lam": str | float, "beta": str | float}

DISTANCES = (
    "latent Euclidean",
    "pullback VAE",
    "pullback IWAE",
    "pullback IWAE + std",
    "data-space generative",
    "pixel",
)


def check_requirements(config: dict) -> None:
    """The VAE and the IWAE need torch; the training images must be in the data folder."""
    require("torch")
    require_data(config["data_dir"], [config["dataset"]])


def balanced_indices(labels, n_total: int, exclude, rng) -> np.ndarray:
    """``n_total`` indices, the same number per class, none in ``exclude``."""
    classes = np.unique(labels)
    per_class = n_total // len(classes)
    allowed = np.setdiff1d(np.arange(len(labels)), exclude)
    chosen = []
    for c in classes:
        pool = allowed[labels[allowed] == c]
        if len(pool) < per_class:
            raise ValueError(f"class {c} has only {len(pool)} free images; lower n_codes.")
        chosen.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def class_means(D, labels) -> np.ndarray:
    """(C, C) mean of the finite distances between classes (self-pairs left out)."""
    classes = np.unique(labels)
    M = np.full((len(classes), len(classes)), np.nan)
    off_diagonal = ~np.eye(len(D), dtype=bool)
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            block = D[np.ix_(labels == a, labels == b)]
            keep = np.isfinite(block) & off_diagonal[np.ix_(labels == a, labels == b)]
            M[i, j] = block[keep].mean() if keep.any() else np.nan
    return M


def knn_accuracy(D, labels, k: int) -> float:
    """Leave-one-out k-NN accuracy on a distance matrix (majority vote; a tied vote goes
    to the smallest label, as in scikit-learn)."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    nearest = np.argsort(D, axis=1)[:, :k]
    votes = labels[nearest]
    predicted = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    return float(np.mean(predicted == labels))


def separation(D, labels) -> float:
    """Mean between-class distance over mean within-class distance (finite pairs)."""
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(D), dtype=bool)
    finite = np.isfinite(D)
    return float(D[~same & finite].mean() / D[same & off & finite].mean())


def train_models(X_train, cfg, rng):
    models, history = {}, []
    for name, cls, extra in (
        ("VAE", VAE, {}),
        ("IWAE", IWAE, {"n_importance_samples": cfg["iwae_samples"]}),
    ):
        start = time.perf_counter()
        model = cls(
            latent_dim=2,
            hidden=tuple(cfg["hidden"]),
            epochs=cfg["epochs"],
            random_state=int(rng.integers(2**31 - 1)),
            verbose=True,
            **extra,
        ).fit(X_train)
        models[name] = model
        history.append(
            {
                "model": name,
                "seconds": time.perf_counter() - start,
                "final_bound": model.history_[-1],
            }
        )
    return models, history


def data_space_distances(images, components, validation, cfg):
    """gendist's distance among ``images`` under the isotropic mixture on ``components``."""
    variance, table = select_variance(components, validation, cfg["variance_grid"])
    density = GaussianMixtureDensity.isotropic(components, variance)
    beta = choose_beta(density.log_prob(images), cfg)
    k = cfg["n_neighbors"]
    kth = NearestNeighbors(n_neighbors=k).fit(images).kneighbors()[0][:, -1]
    radius = float(np.quantile(kth, cfg["radius_quantile"]))
    est = GenerativeDistance(  # the graph's distances, as the pullback matrices compared
        density, radius=radius, n_neighbors=k, lam=cfg["lam"], beta=beta, n_quad=cfg["n_quad"],
        refine=False,
    )
    return est.fit_transform(images), {
        "variance": variance,
        "beta": beta,
        "radius": radius,
        "edges": est.graph_.nnz // 2,
        "components": est.n_components_,
    }


def geodesic_pairs(labels, component_labels, n_pairs: int, rng):
    """Pairs of codes of different classes in the largest component of the latent graph."""
    largest = np.flatnonzero(component_labels == np.bincount(component_labels).argmax())
    pairs = []
    while len(pairs) < n_pairs:
        a, b = rng.choice(largest, 2, replace=False)
        if labels[a] != labels[b]:
            pairs.append((int(a), int(b)))
    return pairs


def run(out: Path, config: dict | None = None) -> dict:
    """Train the models, compute the four distances, draw and tabulate; write ``latent.csv``
    (class-pair means), ``measures.csv``, ``geodesics.csv``, ``summary.md`` and the figures
    ``latent_MODEL.png``, ``strips_MODEL.png``, ``class_distances.png`` to ``out``.

    Returns
    -------
    results : dict
        ``summary``, ``files``, ``seconds``, ``distances`` (name -> (n_codes, n_codes)),
        ``labels``, ``codes`` (model -> (n_codes, 2)), ``class_means``, ``measures``,
        ``geodesics``, ``agreement`` (Spearman matrix), ``models`` (the trained VAE / IWAE).
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rng = np.random.default_rng(cfg["seed"])
    X, y = load_mnist(cfg["data_dir"], dataset=cfg["dataset"], split="train")
    order = rng.permutation(len(X))
    train_idx = order[: cfg["n_train"]]
    validation_idx = order[cfg["n_train"] : cfg["n_train"] + cfg["n_validation"]]
    if cfg["n_components"] > cfg["n_train"]:
        raise ValueError("n_components must not exceed n_train (components are VAE images).")
    code_idx = balanced_indices(y, cfg["n_codes"], np.concatenate([train_idx, validation_idx]), rng)
    images, labels = X[code_idx], y[code_idx]

    models, training = train_models(X[train_idx], cfg, rng)
    distances, codes, latent, geodesics, timings = {}, {}, {}, [], {}
    distances["pixel"] = cdist(images, images)
    variants = [(name, name, model.decoder_) for name, model in models.items()]
    variants.append(("IWAE", "IWAE + std", models["IWAE"].stochastic_decoder()))
    for name, metric_name, decoder in tqdm(variants, desc="latent", unit="metric"):
        Z = codes.setdefault(name, models[name].encode(images))
        if name == "VAE":
            distances["latent Euclidean"] = cdist(Z, Z)
        t0 = time.perf_counter()
        # the matrices compared are the graph's (with shortcuts where auto takes them); the
        # geodesics below are refined one by one
        est = LatentDistance(decoder, n_neighbors=cfg["n_neighbors"], n_quad=cfg["n_quad"],
                             refine=False)
        distances[f"pullback {metric_name}"] = est.fit_transform(Z)
        timings[f"pullback {metric_name}"] = time.perf_counter() - t0
        latent[metric_name] = est
        pair_rng = np.random.default_rng(cfg["seed"] + 1)
        for a, b in geodesic_pairs(labels, est.component_labels_, cfg["n_geodesics"], pair_rng):
            graph = est.geodesic(a, b, refine=False)
            refined = est.geodesic(a, b, refine=True)
            line = np.linspace(Z[a], Z[b], 32)
            geodesics.append(
                {
                    "model": name,
                    "metric": metric_name,
                    "a": a,
                    "b": b,
                    "label_a": int(labels[a]),
                    "label_b": int(labels[b]),
                    "graph_length": graph.length,
                    "refined_length": refined.length,
                    "straight_length": est.metric_.curve_length(line),
                    "latent_chord": float(np.linalg.norm(Z[b] - Z[a])),
                    "points": refined.points,
                    "graph_points": graph.points,
                    "line": line,
                }
            )
    t0 = time.perf_counter()
    comp_idx = train_idx[: cfg["n_components"]]
    distances["data-space generative"], data_info = data_space_distances(
        images, X[comp_idx], X[validation_idx], cfg
    )
    timings["data-space generative"] = time.perf_counter() - t0

    means, measures = {}, []
    for name in DISTANCES:
        D = distances[name]
        means[name] = class_means(D, labels)
        measures.append(
            {
                "distance": name,
                "knn_accuracy": knn_accuracy(D, labels, cfg["knn"]),
                "between_over_within": separation(D, labels),
                "infinite_pairs": float(np.mean(~np.isfinite(D))),
                "seconds": timings.get(name, float("nan")),
            }
        )
    upper = np.triu_indices(10)
    agreement = np.array(
        [
            [spearmanr(means[a][upper], means[b][upper]).statistic for b in DISTANCES]
            for a in DISTANCES
        ]
    )
    rows = [
        {
            "distance": name,
            "class_a": int(i),
            "class_b": int(j),
            "mean": float(means[name][i, j]),
            "relative": float(means[name][i, j] / np.nanmean(means[name])),
        }
        for name in DISTANCES
        for i in range(10)
        for j in range(10)
    ]
    geodesic_rows = [
        {k: v for k, v in g.items() if not isinstance(v, np.ndarray)} for g in geodesics
    ]
    return finish(
        out,
        start,
        tables={"latent.csv": rows, "measures.csv": measures, "geodesics.csv": geodesic_rows},
        summary=_summary(
            cfg,
            training,
            data_info,
            measures,
            agreement,
            means,
            geodesics,
            time.perf_counter() - start,
        ),
        figures=_figures(models, latent, codes, labels, geodesics, means, cfg),
        distances=distances,
        labels=labels,
        codes=codes,
        class_means=means,
        measures=measures,
        geodesics=geodesics,
        agreement=agreement,
        models=models,
    )


def _summary(cfg, training, data_info, measures, agreement, means, geodesics, seconds):
    lines = [
        f"# Latent pullback vs data-space geometry ({cfg['dataset']})",
        "",
        f"{cfg['n_train']} training images, {cfg['epochs']} epochs, 2-D latent space; "
        f"{cfg['n_codes']} encoded images ({cfg['n_codes'] // 10} per class); latent "
        f"{cfg['n_neighbors']}-NN graph, {cfg['n_quad']} decoded nodes per edge. Data-space "
        f"mixture: {cfg['n_components']} components, variance {data_info['variance']:.3g}, "
        f"beta {data_info['beta']:.3g}, {data_info['edges']} edges, "
        f"{data_info['components']} graph component(s). Run time {seconds:.0f} s.",
        "",
        "## Training",
        "",
        markdown_table(
            ["model", "seconds", "final training bound (nats)"],
            [[t["model"], t["seconds"], t["final_bound"]] for t in training],
        ),
        "",
        "## How each distance separates the classes",
        "",
        markdown_table(
            [
                "distance",
                f"{cfg['knn']}-NN accuracy (leave-one-out)",
                "between / within",
                "infinite pairs",
                "seconds",
            ],
            [
                [
                    m["distance"],
                    m["knn_accuracy"],
                    m["between_over_within"],
                    m["infinite_pairs"],
                    m["seconds"],
                ]
                for m in measures
            ],
        ),
        "",
        "## Agreement between the class-pair means (Spearman, 55 pairs incl. diagonal)",
        "",
        markdown_table(["", *DISTANCES], [[a, *agreement[i]] for i, a in enumerate(DISTANCES)]),
        "",
        "## Nearest other class of each class",
        "",
    ]
    nearest_rows = []
    for c in range(10):
        row = [c]
        for name in DISTANCES:
            m = means[name][c].copy()
            m[c] = np.inf
            row.append(int(np.nanargmin(m)))
        nearest_rows.append(row)
    lines += [markdown_table(["class", *DISTANCES], nearest_rows), "", "## Geodesics", ""]
    lines.append(
        markdown_table(
            ["metric", "pair", "latent chord", "straight line", "graph path", "optimised curve"],
            [
                [
                    g["metric"],
                    f"{g['label_a']}→{g['label_b']}",
                    g["latent_chord"],
                    g["straight_length"],
                    g["graph_length"],
                    g["refined_length"],
                ]
                for g in geodesics
            ],
        )
    )
    return "\n".join(lines) + "\n"


def _figures(models, latent, codes, labels, geodesics, means, cfg):
    figures = {}
    for name in models:
        Z, est = codes[name], latent[name]
        lo, hi = Z.min(0) - 0.5, Z.max(0) + 0.5
        gx, gy = np.meshgrid(
            np.linspace(lo[0], hi[0], cfg["grid"]), np.linspace(lo[1], hi[1], cfg["grid"])
        )
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        log_mf = est.metric_.log_magnification_factor(grid).reshape(gx.shape)
        fig = new_figure((7.2, 6), dpi=110)
        ax = fig.subplots()
        im = ax.imshow(
            log_mf / np.log(10),
            origin="lower",
            extent=(lo[0], hi[0], lo[1], hi[1]),
            cmap="Greys",
            aspect="auto",
        )
        fig.colorbar(im, ax=ax, label="log10 magnification factor sqrt(det G)")
        sc = ax.scatter(Z[:, 0], Z[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
        for g in (g for g in geodesics if g["model"] == name):
            stochastic = g["metric"] != name
            # paths in black line styles: no clash with the ten class colours of the codes
            ax.plot(*g["points"].T, ":" if stochastic else "-", color="black", lw=2)
            if not stochastic:
                ax.plot(*g["line"].T, "--", color="black", lw=1.0)
        ax.legend(*sc.legend_elements(), fontsize=7, loc="upper right", ncol=2, title="digit")
        title = f"{name}: codes over the magnification factor\ngeodesics (solid"
        title += "; dotted: with the decoder's std" if name + " + std" in latent else ""
        ax.set_title(title + "), straight lines (dashed)", fontsize=9)
        fig.tight_layout()
        figures[f"latent_{name}.png"] = fig

        strips, names = [], []
        for g in (g for g in geodesics if g["metric"] == name):
            for kind, curve in (("geodesic", g["points"]), ("straight", g["line"])):
                frames = (
                    resample_polyline(curve, cfg["n_frames"])
                    if kind == "geodesic"
                    else np.linspace(curve[0], curve[-1], cfg["n_frames"])
                )
                strips.append(models[name].decode(frames))
                names.append(f"{g['label_a']}→{g['label_b']} {kind}")
        title = f"{name}: decoded along the geodesic and the straight line"
        figures[f"strips_{name}.png"] = strip_figure(strips, names, title, cfg["n_frames"])

    fig = new_figure((3.3 * len(DISTANCES), 3.2), dpi=110)
    axes = fig.subplots(1, len(DISTANCES))
    for ax, name in zip(axes, DISTANCES):
        M = means[name] / np.nanmean(means[name])
        ax.imshow(M, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=7)
    fig.suptitle("mean distance between classes (each divided by its mean)", fontsize=10)
    fig.tight_layout()
    figures["class_distances.png"] = fig
    return figures
