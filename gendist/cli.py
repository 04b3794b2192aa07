"""The ``gendist`` command line: ``gendist demo`` runs the main job on built-in data;
``gendist experiment NAME`` runs one of the paper's experiments."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from .config import load_config

__all__ = ["main", "run_demo", "run_experiment", "experiment_config", "DEMO_DEFAULTS"]

#: Parameters of ``gendist demo`` (override with ``--config FILE`` and ``--set key=value``).
DEMO_DEFAULTS = {
    "n_samples": 400,
    "noise": 0.08,
    "seed": 0,
    "n_components": 12,
    "n_neighbors": 10,
    "lam": "quantile:0.1",
    "beta": 1.0,
    "n_quad": 8,
    "relative_taus": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
    "n_jobs": None,
}


def run_demo(out: Path, config: dict | None = None) -> dict:
    """Two moons: fit a mixture, compute generative distances, cluster, draw geodesics.

    Writes ``demo.png`` (geodesics over the density and the clusterings) and ``demo.csv``
    (spectral-clustering NMI of geodesic vs Euclidean affinity over a tau sweep, tau relative
    to the median squared distance of each metric) to ``out``.

    Parameters
    ----------
    out : Path
        Output folder (created).
    config : dict, optional
        Keys of :data:`DEMO_DEFAULTS`; missing keys take their defaults.

    Returns
    -------
    results : dict
        ``rows`` (the table), ``figure`` and ``table`` paths, and timings.
    """
    from scipy.spatial.distance import cdist
    from sklearn.cluster import SpectralClustering
    from sklearn.datasets import make_moons
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

    from .affinity import distance_affinity
    from .estimator import GenerativeDistance

    cfg = {**DEMO_DEFAULTS, **(config or {})}
    seed = cfg["seed"]
    out.mkdir(parents=True, exist_ok=True)
    X, y = make_moons(cfg["n_samples"], noise=cfg["noise"], random_state=seed)
    t0 = time.perf_counter()
    density = GaussianMixture(cfg["n_components"], covariance_type="full", random_state=seed)
    est = GenerativeDistance(
        density,
        n_neighbors=cfg["n_neighbors"],
        lam=cfg["lam"],
        beta=cfg["beta"],
        n_quad=cfg["n_quad"],
        n_jobs=cfg["n_jobs"],
        random_state=seed,
    )
    D_gen = est.fit_transform(X)
    t_dist = time.perf_counter() - t0
    D_euc = cdist(X, X)

    rows = []
    for rel_tau in cfg["relative_taus"]:
        row = {"tau / median(d^2)": rel_tau}
        for name, D in (("geodesic", D_gen), ("euclidean", D_euc)):
            tau = rel_tau * np.median(D[np.isfinite(D)] ** 2)
            sc = SpectralClustering(2, affinity="precomputed", random_state=seed)
            labels = sc.fit_predict(distance_affinity(D, tau))
            row[f"NMI {name}"] = normalized_mutual_info_score(y, labels)
        rows.append(row)

    # geodesics: two pairs on the same moon, one across
    rng = np.random.default_rng(seed)
    upper, lower = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    ends = [
        (upper[np.argmin(X[upper, 0])], upper[np.argmax(X[upper, 0])]),
        (lower[np.argmin(X[lower, 0])], lower[np.argmax(X[lower, 0])]),
        (rng.choice(upper), rng.choice(lower)),
    ]
    geodesics = [est.geodesic(int(a), int(b)) for a, b in ends]

    table = out / "demo.csv"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    figure = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .plotting import plot_geodesics

        best = max(rows, key=lambda r: r["NMI geodesic"])
        tau = best["tau / median(d^2)"] * np.median(D_gen[np.isfinite(D_gen)] ** 2)
        labels = SpectralClustering(2, affinity="precomputed", random_state=seed).fit_predict(
            distance_affinity(D_gen, tau)
        )
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        plot_geodesics(
            est.density_,
            X,
            geodesics,
            ax=axes[0],
            title="generative geodesics (solid) vs straight lines (dashed)",
        )
        plot_geodesics(
            est.density_,
            X,
            (),
            ax=axes[1],
            labels=labels,
            title=f"spectral clustering, geodesic affinity (NMI {best['NMI geodesic']:.2f})",
        )
        fig.tight_layout()
        figure = out / "demo.png"
        fig.savefig(figure, dpi=120)
        plt.close(fig)
    except ImportError:
        print('matplotlib is not installed: no figure (pip install "gendist[plot]")')

    return {
        "rows": rows,
        "table": table,
        "figure": figure,
        "seconds": t_dist,
        "geodesics": geodesics,
        "n_edges": est.graph_.nnz // 2,
    }


def _print_table(rows):
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |")


def experiment_config(name: str, config_path=None, overrides=(), quick=False) -> dict:
    """Parameters of experiment ``name``: its defaults (``QUICK`` on top when ``quick``), then
    the YAML file ``config_path``, then ``key=value`` overrides."""
    from .experiments import experiment_module

    module = experiment_module(name)
    defaults = {**module.DEFAULTS, **(module.QUICK if quick else {})}
    return load_config(defaults, config_path, overrides)


def run_experiment(
    name: str, out: Path | None = None, config_path=None, overrides=(), quick=False, config=None
):
    """Run experiment ``name`` with the parameters of :func:`experiment_config` (or ``config``
    when given). Outputs go to ``out`` (default ``gendist-output/NAME``). Returns the
    experiment's results."""
    from .experiments import experiment_module

    if config is None:
        config = experiment_config(name, config_path, overrides, quick)
    out = Path(out) if out is not None else Path("gendist-output") / name
    return experiment_module(name).run(out, config)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="gendist",
        description="Distances and geodesics between data points according to a density model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="two moons: distances, clustering NMI and a figure")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("gendist-output/demo"),
        help="output folder (default: gendist-output/demo)",
    )
    demo.add_argument("--config", type=Path, help="YAML file of parameters (configs/demo.yaml)")
    demo.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a parameter; keys: {', '.join(DEMO_DEFAULTS)}",
    )
    demo.add_argument("--quick", action="store_true", help="200 points (n_samples=200)")
    from .experiments import EXPERIMENTS

    experiment = sub.add_parser(
        "experiment", help="run one of the paper's experiments: " + ", ".join(EXPERIMENTS)
    )
    experiment.add_argument("name", choices=sorted(EXPERIMENTS))
    experiment.add_argument("--out", type=Path, help="output folder (default: gendist-output/NAME)")
    experiment.add_argument(
        "--config", type=Path, help="YAML file of parameters (configs/NAME.yaml)"
    )
    experiment.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter"
    )
    experiment.add_argument(
        "--quick", action="store_true", help="small smoke-run settings (the ones CI runs)"
    )
    args = parser.parse_args(argv)

    if args.command == "experiment":
        try:  # parameter errors are usage errors; errors inside a run keep their traceback
            config = experiment_config(args.name, args.config, args.set, args.quick)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        res = run_experiment(args.name, args.out, config=config)
        print(res["summary"])
        print(f"{res['seconds']:.1f} s; files:")
        for path in res["files"]:
            print(f"  {path}")
        return 0

    if args.command == "demo":
        overrides = (["n_samples=200"] if args.quick else []) + args.set
        try:
            config = load_config(DEMO_DEFAULTS, args.config, overrides)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        n = config["n_samples"]
        res = run_demo(args.out, config)
        print(
            f"two moons, n = {n}: generative distances ({res['n_edges']} edges) "
            f"in {res['seconds']:.2f} s\n"
        )
        print("Spectral clustering NMI, geodesic vs Euclidean affinity exp(-d^2/tau):\n")
        _print_table(res["rows"])
        print()
        for i, g in enumerate(res["geodesics"], 1):
            chord = float(np.linalg.norm(g.points[-1] - g.points[0]))
            print(
                f"geodesic {i}: {len(g.points)} vertices, generative length {g.length:.4f}, "
                f"Euclidean chord {chord:.4f}"
            )
        print(f"\ntable:  {res['table']}")
        if res["figure"] is not None:
            print(f"figure: {res['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
