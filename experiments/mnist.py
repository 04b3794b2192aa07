"""Run the mnist experiment (the same as `gendist experiment mnist ...`).

Usage: python experiments/mnist.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "mnist", *sys.argv[1:]]))
