"""``python -m fastsoftmax.train``: the training command line, fastsoftmax/cli/train.py."""
import sys

from . import numba_environment_error

if __name__ == "__main__" and numba_environment_error():  # before the command imports Numba, which would raise
    sys.exit(f"python -m fastsoftmax.train: error: {numba_environment_error()}")

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main(exiting=True))
