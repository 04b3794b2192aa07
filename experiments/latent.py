"""Run the latent experiment (the same as `gendist experiment latent ...`).

Usage: python experiments/latent.py [--config FILE] [--set key=value] [--quick]

See experiments/README.md.
"""

import sys

from gendist.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "latent", *sys.argv[1:]]))
