"""``python -m fastsoftmax.warmup``: the CPU kernels compiled ahead of use, fastsoftmax/cli/warmup.py."""
import sys

from . import numba_environment_error

if __name__ == "__main__" and numba_environment_error():  # before the command imports Numba, which would raise
    sys.exit(f"python -m fastsoftmax.warmup: error: {numba_environment_error()}")

from .cli.warmup import main

if __name__ == "__main__":
    sys.exit(main(exiting=True))
