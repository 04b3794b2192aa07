"""t-SNE of generative vs Euclidean distances and their linear separability (paper Fig. 7).

For each dataset and seed, t-SNE (scikit-learn, ``metric="precomputed"``) embeds the points
in 2-D from their generative and from their Euclidean distances; a logistic regression,
cross-validated, measures how linearly separable the two classes are in each embedding.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gendist.embed import tsne_embedding

from ._common import (
    DISTANCE_DEFAULTS,
    DISTANCE_TYPES,
    METRICS,
    dataset_draws,
    finish,
    markdown_table,
    new_figure,
    require,
)

DEFAULTS = {
    **DISTANCE_DEFAULTS,
    "perplexity": 30.0,
    "tsne_method": "sklearn",  # or "opentsne"
    "cv_folds": 5,
}

QUICK = {"n_samples": 120, "seeds": [0], "perplexity": 20.0}

TYPES = DISTANCE_TYPES


def check_requirements(config: dict) -> None:
    """openTSNE's t-SNE needs the ``embed`` extra."""
    if config["tsne_method"] == "opentsne":
        require("openTSNE", extra="embed")


def linear_accuracy(Y, y, folds: int, seed: int) -> float:
    """Mean cross-validated accuracy of a logistic regression on the embedding ``Y``."""
    model = make_pipeline(StandardScaler(), LogisticRegression())
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, Y, y, cv=cv).mean())


def run(out: Path, config: dict | None = None) -> dict:
    """Embed every dataset draw both ways; write ``embedding.csv``, ``summary.md`` and
    ``embeddings.png`` to ``out``.

    Returns
    -------
    results : dict
        ``rows``, ``summary`` (Markdown), ``files`` and ``seconds``.
    """
    cfg = {**DEFAULTS, **(config or {})}
    start = time.perf_counter()
    rows, examples = [], {}
    for name, seed, _, y, distances, n_comp in dataset_draws(cfg, "embedding"):
        for metric, D in distances.items():
            Y = tsne_embedding(
                D, perplexity=cfg["perplexity"], method=cfg["tsne_method"], random_state=seed
            )
            accuracy = linear_accuracy(Y, y, cfg["cv_folds"], seed)
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "metric": metric,
                    "linear_accuracy": accuracy,
                    "graph_components": n_comp,
                }
            )
            if seed == cfg["seeds"][0]:
                examples[name, metric] = (Y, y, accuracy)
    return finish(
        out,
        start,
        tables={"embedding.csv": rows},
        summary=_summary(rows, cfg),
        figures={"embeddings.png": _figure(examples, cfg)},
        rows=rows,
    )


def _summary(rows, cfg) -> str:
    body = []
    for name in cfg["datasets"]:
        line = [name]
        for metric in METRICS:
            acc = np.array(
                [
                    r["linear_accuracy"]
                    for r in rows
                    if (r["dataset"], r["metric"]) == (name, metric)
                ]
            )
            line += [float(acc.mean()), float(acc.min())]
        body.append(line)
    return (
        "\n\n".join(
            [
                "# t-SNE embedding: generative vs Euclidean distances",
                f"{cfg['n_samples']} points per dataset, seeds {cfg['seeds']}, GaussianMixture("
                f"{cfg['n_components']}, full) density, radius={cfg['radius']!r}, "
                f"lam={cfg['lam']!r}, beta={cfg['beta']}; t-SNE perplexity {cfg['perplexity']}. "
                "Accuracy of a logistic "
                f"regression on the 2-D embedding, {cfg['cv_folds']}-fold cross-validated "
                "(mean and worst over seeds).",
                markdown_table(
                    [
                        "dataset",
                        "geodesic mean",
                        "geodesic worst",
                        "Euclidean mean",
                        "Euclidean worst",
                    ],
                    body,
                ),
            ]
        )
        + "\n"
    )


def _figure(examples, cfg):
    names = cfg["datasets"]
    fig = new_figure((3 * len(names), 6))
    axes = fig.subplots(2, len(names), squeeze=False)
    for i, metric in enumerate(METRICS):
        for j, name in enumerate(names):
            Y, y, accuracy = examples[name, metric]
            ax = axes[i, j]
            ax.scatter(Y[:, 0], Y[:, 1], c=y, s=5, cmap="coolwarm")
            ax.set_title(f"{name}, {metric}\nlinear accuracy {accuracy:.2f}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
