"""Run the convergence experiment (the same as `gendist experiment convergence ...`).

Usage: python experiments/convergence.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "convergence", *sys.argv[1:]]))
