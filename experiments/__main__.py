"""Run one of the paper's experiments from the checkout's root folder::

    python -m experiments NAME [--config FILE] [--set key=value ...] [--quick] [--out DIR]

``python -m experiments --help`` lists the experiments and their parameters,
``python -m experiments NAME --help`` one experiment's parameters with their types and defaults.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from . import EXPERIMENTS, check_requirements, experiment_config, experiment_module
from ._common import describe_parameters, prepare_output

__all__ = ["build_parser", "main"]


def _headline(module) -> str:
    """The first line of a module's docstring."""
    return module.__doc__.strip().splitlines()[0]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser and, by experiment name, the parser of each experiment."""
    modules = {name: experiment_module(name) for name in EXPERIMENTS}
    listing = "\n".join(
        f"  {name}: {_headline(module)}\n"
        + textwrap.fill(
            "--set keys: " + ", ".join(module.DEFAULTS),
            width=96,
            initial_indent="    ",
            subsequent_indent="      ",
        )
        for name, module in modules.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Run one of the paper's experiments: tables (CSV), summary.md and figures.",
        epilog="experiments (NAME --help lists the types and defaults of the keys):\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    parsers = {}
    for name, module in modules.items():
        experiment = sub.add_parser(
            name,
            help=_headline(module),
            description=_headline(module),
            epilog="parameters (--set KEY=VALUE, or keys of the --config file), type, default:\n"
            + describe_parameters(module.DEFAULTS, module.TYPES),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        experiment.add_argument(
            "--config", type=Path, help=f"YAML file of parameters (configs/{name}.yaml)"
        )
        experiment.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a parameter (listed below)",
        )
        experiment.add_argument(
            "--quick", action="store_true", help="small smoke-run settings (the ones CI runs)"
        )
        experiment.add_argument(
            "--out", type=Path, help=f"output folder (default: gendist-output/{name})"
        )
        parsers[name] = experiment
    return parser, parsers


def main(argv=None) -> int:
    """Run the experiment named in ``argv`` (default ``sys.argv[1:]``) and print its summary.

    Every bad input (an unknown parameter, a value of the wrong type, a missing or malformed
    config file, an output folder that cannot be written, a missing optional dependency or
    data file) is a one-line usage error, exit status 2, raised before anything is computed.
    """
    parser, parsers = build_parser()
    args = parser.parse_args(argv)
    try:
        config = experiment_config(args.name, args.config, args.set, args.quick)
        check_requirements(args.name, config)
        out = prepare_output(args.out or Path("gendist-output") / args.name)
    except (ValueError, OSError, ImportError) as exc:
        parsers[args.name].error(str(exc))
    res = experiment_module(args.name).run(out, config)
    print(res["summary"])
    print(f"{res['seconds']:.1f} s; files:")
    for path in res["files"]:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
