"""The ``gendist`` command line: ``gendist demo`` runs the main job on built-in data;
``gendist explore`` writes an interactive HTML page of its geodesics.

A job's parameters are a mapping of defaults, overridden by a YAML file (``--config``) and by
``--set key=value`` pairs. :func:`load_config` merges them and checks every key and the type of
every value; :func:`describe_parameters` lists them for ``--help``; :func:`prepare_output`
checks the output folder. The experiments of the source checkout (``python -m experiments``)
read their parameters with the same helpers.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import functools
import operator
import re
import sys
import tempfile
import time
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType

import numpy as np
import yaml

from . import __version__
from ._optional import import_optional

__all__ = [
    "main",
    "run_demo",
    "run_explore",
    "DEMO_DEFAULTS",
    "DEMO_TYPES",
    "EXPLORE_DEFAULTS",
    "EXPLORE_TYPES",
]

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

#: Accepted types of the demo's parameters whose default does not say (see :func:`load_config`).
DEMO_TYPES = {"lam": str | float, "n_jobs": int | None}

#: Parameters of ``gendist explore``.
EXPLORE_DEFAULTS = {
    "n_samples": 400,
    "noise": 0.08,
    "seed": 0,
    "n_components": 12,
    "n_neighbors": 10,
    "lam": "quantile:0.1",
    "beta": 1.0,
    "n_landmarks": 32,
    "max_full": 600,
}

#: Accepted types of the explorer's parameters whose default does not say.
EXPLORE_TYPES = {"lam": str | float}

# PyYAML reads a number in exponent notation without a dot (1e-3) as a string
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _default_type(default):
    """The type a parameter's default value stands for: its own; for a list, a non-empty list
    of its items' types; for None, any value (declare the type of such a parameter)."""
    if default is None:
        return object
    if isinstance(default, list) and default:
        item_types = sorted({type(item) for item in default}, key=lambda t: t.__name__)
        return list[functools.reduce(operator.or_, item_types)]
    return type(default)


def parameter_types(defaults: Mapping, declared: Mapping | None = None) -> dict:
    """The accepted type of every parameter.

    Parameters
    ----------
    defaults : mapping
        Every parameter with its default value.
    declared : mapping, optional
        Accepted types of the parameters whose default does not say, as type expressions
        (``int | None``, ``str | float``). A parameter whose default is None takes any value
        unless its type is declared.

    Returns
    -------
    types : dict
        ``declared[key]`` where given, else the type of the default. An int default takes
        ints, a float default ints and floats, a str default strings, and a list default a
        non-empty list of values of its items' types.
    """
    declared = dict(declared or {})
    unknown = sorted(set(declared) - set(defaults))
    if unknown:
        raise TypeError(f"types declared for unknown parameter(s) {unknown}.")
    return {
        key: declared[key] if key in declared else _default_type(value)
        for key, value in defaults.items()
    }


def _matches(value, expected) -> bool:
    if expected is object:
        return True
    if isinstance(expected, UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is list or typing.get_origin(expected) is list:
        item_types = typing.get_args(expected)
        return (
            isinstance(value, list)
            and len(value) > 0
            and all(_matches(item, item_types[0]) for item in value if item_types)
        )
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def type_name(expected) -> str:
    """How a parameter type reads in messages and help: ``int or None``,
    ``non-empty list of float``."""
    if isinstance(expected, UnionType):
        return " or ".join(type_name(option) for option in typing.get_args(expected))
    if expected is object:
        return "any"
    if expected is type(None):
        return "None"
    if expected is list or typing.get_origin(expected) is list:
        item_types = typing.get_args(expected)
        return "non-empty list" + (f" of {type_name(item_types[0])}" if item_types else "")
    return expected.__name__


def _format_value(value) -> str:
    """A parameter value as it is written after ``--set key=``."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    return str(value)


def _yaml_numbers(value):
    """``value`` with strings in exponent notation (``1e-3``) read as floats, in lists too."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):
        return float(value)
    if isinstance(value, list):
        return [_yaml_numbers(item) for item in value]
    return value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong in a YAML text, and where."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _read_mapping(path: Path) -> dict:
    """The mapping of parameters in the YAML file ``path``."""
    if not path.exists():
        raise ValueError(f"config file {path} does not exist.")
    if not path.is_file():
        raise ValueError(f"config file {path} is not a file.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read config file {path}: {exc}.") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}.") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(
            f"config file {path} must hold a mapping of parameters, got {type(loaded).__name__}."
        )
    return {key: _yaml_numbers(value) for key, value in loaded.items()}


def _parse_override(item: str) -> tuple[str, object]:
    """``key`` and the value of a ``key=value`` string (the value read as YAML)."""
    key, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"--set expects key=value, got {item!r}.")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ValueError(f"--set {item}: the value is not valid YAML: {problem}.") from exc
    return key.strip(), _yaml_numbers(value)


def load_config(
    defaults: Mapping,
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    types: Mapping | None = None,
) -> dict:
    """Merge ``defaults``, the YAML mapping in ``path`` and ``key=value`` overrides.

    Values of overrides are read as YAML (``n_quad=16`` gives an int, ``lam=quantile:0.05`` a
    string, ``seeds=[0, 1]`` a list; ``1e-3`` a float). Every key must be one of the
    defaults' and every value of the type :func:`parameter_types` accepts for it, so that a
    typo or a malformed value stops the job before it computes anything.

    Parameters
    ----------
    defaults : mapping
        Every allowed key with its default value.
    path : path-like, optional
        YAML file with a mapping of some of those keys.
    overrides : iterable of str
        ``key=value`` strings, applied last.
    types : mapping, optional
        Accepted types of the parameters whose default does not say (see
        :func:`parameter_types`).

    Returns
    -------
    config : dict

    Raises
    ------
    ValueError
        With a one-line message: a config file that is missing, unreadable, not YAML or not a
        mapping; an override without ``=``; an unknown key; a value of the wrong type.
    """
    expected = parameter_types(defaults, types)
    updates = []
    if path is not None:
        updates += [(key, value, str(path)) for key, value in _read_mapping(Path(path)).items()]
    for item in overrides:
        key, value = _parse_override(item)
        updates.append((key, value, f"--set {item}"))
    config = dict(defaults)
    for key, value, source in updates:
        if key not in expected:
            close = difflib.get_close_matches(str(key), list(expected), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{source}: unknown parameter {key!r}{hint}; known: {', '.join(expected)}."
            )
        if not _matches(value, expected[key]):
            wants_list = typing.get_origin(expected[key]) is list
            hint = f", e.g. {key}=[{_format_value(value)}]" if wants_list and value != [] else ""
            name = type_name(expected[key])
            article = "a " if name.startswith("non-empty") else ""
            raise ValueError(f"{source}: {key} must be {article}{name}{hint}, got {value!r}.")
        config[key] = value
    return config


def describe_parameters(defaults: Mapping, types: Mapping | None = None) -> str:
    """The parameters as a help text: one line per key with its type and default."""
    expected = parameter_types(defaults, types)
    names = {key: type_name(t) for key, t in expected.items()}
    key_width = max(map(len, expected))
    type_width = max(map(len, names.values()))
    return "\n".join(
        f"  {key:<{key_width}}  {names[key]:<{type_width}}  {_format_value(defaults[key])}"
        for key in expected
    )


def prepare_output(out: str | Path) -> Path:
    """Create the output folder ``out`` (with its parents) and check that it takes files.

    Raises
    ------
    ValueError
        With a one-line message when the folder cannot be created or written to.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} exists and is not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise ValueError(f"cannot write to the output folder {out}: {reason}.") from exc
    return out


def run_demo(out: Path, config: dict | None = None) -> dict:
    """Two moons: fit a mixture, compute generative distances, cluster, draw geodesics.

    Writes ``demo.png`` (geodesics over the density and the clusterings) and ``demo.csv``
    (spectral-clustering NMI of geodesic vs Euclidean affinity over a tau sweep, tau relative
    to the median squared distance of each metric) to ``out``. Needs matplotlib (the ``plot``
    extra); without it, the ImportError comes before any computation.

    Parameters
    ----------
    out : Path
        Output folder (created).
    config : dict, optional
        Keys of :data:`DEMO_DEFAULTS`; missing keys take their defaults.

    Returns
    -------
    results : dict
        ``rows`` (the table), ``figure`` and ``table`` paths, ``seconds`` (distances),
        ``geodesics`` and ``n_edges``.
    """
    from scipy.spatial.distance import cdist
    from sklearn.cluster import SpectralClustering
    from sklearn.datasets import make_moons
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.mixture import GaussianMixture

    from .affinity import distance_affinity
    from .estimator import GenerativeDistance
    from .plotting import plot_geodesics

    Figure = import_optional("matplotlib.figure").Figure
    cfg = {**DEMO_DEFAULTS, **(config or {})}
    seed = cfg["seed"]
    out = Path(out)
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

    best = max(rows, key=lambda r: r["NMI geodesic"])
    tau = best["tau / median(d^2)"] * np.median(D_gen[np.isfinite(D_gen)] ** 2)
    labels = SpectralClustering(2, affinity="precomputed", random_state=seed).fit_predict(
        distance_affinity(D_gen, tau)
    )
    fig = Figure(figsize=(13, 5))
    axes = fig.subplots(1, 2)
    plot_geodesics(
        est.density_,
        X,
        geodesics,
        ax=axes[0],
        title="generative geodesics (solid)\nvs straight lines (dashed)",
    )
    plot_geodesics(
        est.density_,
        X,
        (),
        ax=axes[1],
        labels=labels,
        title=(
            f"spectral clustering, geodesic affinity exp(-d²/τ), NMI "
            f"{best['NMI geodesic']:.2f}\nτ = {tau:.3g} ({best['tau / median(d^2)']:g} × median d²)"
        ),
    )
    fig.tight_layout()
    figure = out / "demo.png"
    fig.savefig(figure, dpi=120)

    return {
        "rows": rows,
        "table": table,
        "figure": figure,
        "seconds": t_dist,
        "geodesics": geodesics,
        "n_edges": est.graph_.nnz // 2,
    }


def run_explore(out: Path, config: dict | None = None) -> dict:
    """Two moons: fit a mixture and write the explorer page (:func:`gendist.explore.explorer_html`).

    Parameters
    ----------
    out : Path
        The HTML file to write.
    config : dict, optional
        Keys of :data:`EXPLORE_DEFAULTS`; missing keys take their defaults.

    Returns
    -------
    results : dict
        ``path``, ``bytes`` (its size), ``n_vertices`` and ``seconds``.
    """
    from sklearn.datasets import make_moons
    from sklearn.mixture import GaussianMixture

    from .estimator import GenerativeDistance
    from .explore import explorer_html

    cfg = {**EXPLORE_DEFAULTS, **(config or {})}
    seed = cfg["seed"]
    t0 = time.perf_counter()
    X, y = make_moons(cfg["n_samples"], noise=cfg["noise"], random_state=seed)
    density = GaussianMixture(cfg["n_components"], covariance_type="full", random_state=seed)
    est = GenerativeDistance(
        density,
        n_neighbors=cfg["n_neighbors"],
        lam=cfg["lam"],
        beta=cfg["beta"],
        random_state=seed,
    ).fit(X)
    path = explorer_html(
        est,
        out,
        labels=y,
        n_landmarks=cfg["n_landmarks"],
        max_full=cfg["max_full"],
        title=f"gendist explorer: two moons, n = {cfg['n_samples']}",
        random_state=seed,
    )
    return {
        "path": path,
        "bytes": path.stat().st_size,
        "n_vertices": est.graph_.shape[0],
        "seconds": time.perf_counter() - t0,
    }


def _print_table(rows):
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |")


def _add_parameter_arguments(parser, config_help: str) -> None:
    """The ``--config FILE`` and repeatable ``--set KEY=VALUE`` options of a job."""
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (listed below)",
    )


def main(argv=None) -> int:
    """Run the ``gendist`` command with the arguments ``argv`` (default ``sys.argv[1:]``).

    Every bad input (an unknown parameter, a value of the wrong type, a missing or malformed
    config file, an output folder that cannot be written, a missing optional dependency) is
    a one-line usage error, exit status 2, raised before anything is computed.
    """
    parser = argparse.ArgumentParser(
        prog="gendist",
        description="Distances and geodesics between data points according to a density model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="two moons: distances, clustering NMI and a figure",
        description="Two moons: generative distances under a fitted GaussianMixture, spectral\n"
        "clustering NMI of geodesic vs Euclidean affinity, geodesics drawn over the density.",
        epilog="parameters (--set KEY=VALUE, or keys of the --config file), type, default:\n"
        + describe_parameters(DEMO_DEFAULTS, DEMO_TYPES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("gendist-output/demo"),
        help="output folder (default: gendist-output/demo)",
    )
    _add_parameter_arguments(demo, "YAML file of parameters (configs/demo.yaml)")
    demo.add_argument("--quick", action="store_true", help="200 points (n_samples=200)")
    explore = sub.add_parser(
        "explore",
        help="two moons: an interactive HTML page of geodesics (needs bokeh)",
        description="Two moons: fit a GaussianMixture and write one self-contained HTML page:\n"
        "the points over log p, hover for a point, click two points for their geodesic.",
        epilog="parameters (--set KEY=VALUE, or keys of the --config file), type, default:\n"
        + describe_parameters(EXPLORE_DEFAULTS, EXPLORE_TYPES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explore.add_argument(
        "--out",
        type=Path,
        default=Path("gendist-output/explore.html"),
        help="the HTML file to write (default: gendist-output/explore.html)",
    )
    _add_parameter_arguments(explore, "YAML file of parameters")
    args = parser.parse_args(argv)
    if args.command == "explore":
        return _main_explore(explore, args)

    overrides = (["n_samples=200"] if args.quick else []) + args.set
    try:
        config = load_config(DEMO_DEFAULTS, args.config, overrides, DEMO_TYPES)
        import_optional("matplotlib")
        out = prepare_output(args.out)
    except (ValueError, ImportError) as exc:
        demo.error(str(exc))
    res = run_demo(out, config)
    print(
        f"two moons, n = {config['n_samples']}: generative distances ({res['n_edges']} edges) "
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
    print(f"figure: {res['figure']}")
    return 0


def _main_explore(parser, args) -> int:
    try:
        config = load_config(EXPLORE_DEFAULTS, args.config, args.set, EXPLORE_TYPES)
        for key in ("n_samples", "n_components", "n_neighbors", "n_landmarks"):
            if config[key] < 1:
                raise ValueError(f"{key} must be at least 1, got {config[key]}.")
        if config["n_samples"] < 2 * config["n_components"]:
            raise ValueError(
                f"n_samples={config['n_samples']} is too few for n_components="
                f"{config['n_components']} (at least 2 points per component)."
            )
        if args.out.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"--out must name an .html file, got {args.out}.")
        import_optional("bokeh")
        prepare_output(args.out.parent)
        if args.out.is_dir():
            raise ValueError(f"--out {args.out} is a folder.")
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    res = run_explore(args.out, config)
    print(
        f"two moons, n = {config['n_samples']}: {res['n_vertices']} vertices in "
        f"{res['seconds']:.1f} s\npage:   {res['path']} ({res['bytes'] / 1e6:.2f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
