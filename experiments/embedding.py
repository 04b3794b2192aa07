"""Run the embedding experiment (the same as `gendist experiment embedding ...`).

Usage: python experiments/embedding.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "embedding", *sys.argv[1:]]))
