"""Run the moons experiment (the same as `gendist experiment moons ...`).

Usage: python experiments/moons.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "moons", *sys.argv[1:]]))
