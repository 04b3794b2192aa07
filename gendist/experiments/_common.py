"""Shared steps of the experiments: distances on a dataset, tables, figures."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from ..datasets import make_dataset
from ..estimator import GenerativeDistance

#: density and graph parameters shared by the clustering and embedding experiments
DISTANCE_DEFAULTS = {
    "datasets": ["narrow_mog", "circles", "spirals", "moons"],
    "n_samples": 300,
    "seeds": [0, 1, 2],
    "n_components": 16,  # GaussianMixture (full covariances) fitted on the points
    "radius": "auto",  # smallest radius that connects the graph
    "n_neighbors": None,
    "lam": "quantile:0.1",
    "beta": 1.0,
    "n_quad": 8,
}


def dataset_distances(name: str, seed: int, cfg: dict):
    """Points, labels, generative and Euclidean distances of one dataset draw.

    The density is a GaussianMixture with ``cfg["n_components"]`` full-covariance components
    fitted on the points; the graph and metric parameters come from ``cfg``.

    Returns
    -------
    X : ndarray (n, 2)
    y : ndarray (n,)
    D_geo, D_euc : ndarray (n, n)
    n_graph_components : int
    """
    X, y = make_dataset(name, cfg["n_samples"], random_state=seed)
    est = GenerativeDistance(
        GaussianMixture(cfg["n_components"], covariance_type="full", random_state=seed),
        lam=cfg["lam"],
        beta=cfg["beta"],
        radius=cfg["radius"],
        n_neighbors=cfg["n_neighbors"],
        n_quad=cfg["n_quad"],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the graph has")
        D_geo = est.fit_transform(X)
    return X, y, D_geo, pairwise_distances(X), est.n_components_


#: the two distances every dataset draw is compared with
METRICS = ("geodesic", "euclidean")


def dataset_draws(cfg: dict, desc: str):
    """Every (dataset, seed) of ``cfg`` with its distances, under a progress bar.

    Yields
    ------
    name, seed, X, y, distances, n_graph_components
        ``distances`` maps each of :data:`METRICS` to its (n, n) matrix.
    """
    jobs = [(name, seed) for name in cfg["datasets"] for seed in cfg["seeds"]]
    for name, seed in tqdm(jobs, desc=desc, unit="draw"):
        X, y, D_geo, D_euc, n_comp = dataset_distances(name, seed, cfg)
        yield name, seed, X, y, dict(zip(METRICS, (D_geo, D_euc))), n_comp


def output_folder(out) -> Path:
    """``out`` as a Path, created with its parents."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(rows: list[dict], path: Path) -> Path:
    """Write a list of flat dicts as CSV (header from the first row)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats are printed with 3 significant digits."""

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            'matplotlib is missing, no figures are drawn; pip install "gendist[plot]"',
            UserWarning,
            stacklevel=2,
        )
        return None
    return plt


def image_mosaic(strips, gap: int = 2, pair_gap: int = 10):
    """Stack strips ((n_frames, 784) arrays, two per pair) into one image, dark ink on white,
    with ``gap`` pixels between frames and rows and ``pair_gap`` between pairs; returns the
    image and the vertical centre of every row."""
    n = strips[0].shape[0]
    width = n * 28 + (n - 1) * gap
    rows, centres, y = [], [], 0
    for r, F in enumerate(strips):
        row = np.ones((28, width))
        for f in range(n):
            row[:, f * (28 + gap) : f * (28 + gap) + 28] = 1.0 - F[f].reshape(28, 28)
        space = gap if r % 2 == 0 else pair_gap
        rows += [row, np.ones((space, width))]
        centres.append(y + 14)
        y += 28 + space
    return np.vstack(rows[:-1]), centres


def save_strips(plt, strips, names, title: str, path: Path, n_frames: int) -> Path:
    """Draw image strips (see :func:`image_mosaic`) with a label per row and save the figure."""
    img, centres = image_mosaic(strips)
    fig, ax = plt.subplots(figsize=(0.75 * n_frames + 1.6, 0.62 * len(strips) + 0.4))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(centres, names, fontsize=7)
    ax.set_xticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
