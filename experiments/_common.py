"""Shared steps of the experiments: parameters, requirements, distances on a dataset, tables,
figures, and the one epilogue that writes an experiment's outputs."""

from __future__ import annotations

import csv
import importlib
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from gendist import GenerativeDistance
from gendist.cli import describe_parameters, load_config, prepare_output
from gendist.datasets import make_dataset

__all__ = [
    "DISTANCE_DEFAULTS",
    "DISTANCE_TYPES",
    "METRICS",
    "dataset_distances",
    "dataset_draws",
    "describe_parameters",
    "finish",
    "image_mosaic",
    "load_config",
    "markdown_table",
    "new_figure",
    "prepare_output",
    "require",
    "strip_figure",
    "write_csv",
]

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

#: accepted types of the parameters of :data:`DISTANCE_DEFAULTS` whose default does not say
DISTANCE_TYPES = {"radius": str | float | None, "n_neighbors": int | None, "lam": str | float}


def require(module: str, extra: str = "experiments"):
    """Import ``module``, or raise an ImportError naming the command that installs it.

    Parameters
    ----------
    module : str
        Module name, e.g. ``"skfmm"``.
    extra : str, default="experiments"
        The gendist extra that provides it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is required by this experiment; install it with: "
            f'pip install "gendist[{extra}]"'
        ) from exc


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


def new_figure(figsize: tuple[float, float], dpi: int = 120):
    """A matplotlib :class:`~matplotlib.figure.Figure` (no pyplot state, no backend to pick),
    saved by :func:`finish` at ``dpi``."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def image_mosaic(strips, gap: int = 2, pair_gap: int = 10):
    """Stack strips ((n_frames, side**2) arrays of square images, 28 x 28 for MNIST, two
    per pair) into one image, dark ink on white, with ``gap`` pixels between frames and rows
    and ``pair_gap`` between pairs; returns the image and the vertical centre of every row."""
    n = strips[0].shape[0]
    side = int(round(np.sqrt(strips[0].shape[1])))
    width = n * side + (n - 1) * gap
    rows, centres, y = [], [], 0
    for r, F in enumerate(strips):
        row = np.ones((side, width))
        for f in range(n):
            row[:, f * (side + gap) : f * (side + gap) + side] = 1.0 - F[f].reshape(side, side)
        space = gap if r % 2 == 0 else pair_gap
        rows += [row, np.ones((space, width))]
        centres.append(y + side // 2)
        y += side + space
    return np.vstack(rows[:-1]), centres


def strip_figure(strips, names, title: str, n_frames: int):
    """Image strips (see :func:`image_mosaic`) with a label per row, as a figure."""
    img, centres = image_mosaic(strips)
    fig = new_figure((0.75 * n_frames + 1.6, 0.62 * len(strips) + 0.4), dpi=110)
    ax = fig.subplots()
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(centres, names, fontsize=7)
    ax.set_xticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def finish(
    out, start: float, *, tables: dict[str, list[dict]], summary: str, figures: dict, **results
) -> dict:
    """Write an experiment's outputs to ``out`` and return its results.

    Parameters
    ----------
    out : path-like
        Output folder (created with its parents).
    start : float
        ``time.perf_counter()`` when the experiment started.
    tables : dict
        File name -> rows (flat dicts); each non-empty table is written as CSV.
    summary : str
        Markdown, written as ``summary.md``.
    figures : dict
        File name -> matplotlib Figure, each saved as PNG at the figure's dpi.
    **results
        Further entries of the returned results.

    Returns
    -------
    results : dict
        ``summary``, ``files`` (the written paths: tables, summary, figures), ``seconds``
        (since ``start``) and ``results``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows, out / name) for name, rows in tables.items() if rows]
    (out / "summary.md").write_text(summary)
    files.append(out / "summary.md")
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=fig.dpi)
        files.append(out / name)
    return {
        **results,
        "summary": summary,
        "files": files,
        "seconds": time.perf_counter() - start,
    }
