"""Run the refinement experiment (the same as `gendist experiment refinement ...`).

Usage: python experiments/refinement.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "refinement", *sys.argv[1:]]))
