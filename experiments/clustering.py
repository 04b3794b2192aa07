"""Run the clustering experiment (the same as `gendist experiment clustering ...`).

Usage: python experiments/clustering.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "clustering", *sys.argv[1:]]))
