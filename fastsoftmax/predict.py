"""``python -m fastsoftmax.predict``: what a saved model learned, fastsoftmax/cli/predict.py."""
import sys

from . import numba_environment_error

if __name__ == "__main__" and numba_environment_error():  # before the command imports Numba, which would raise
    sys.exit(f"python -m fastsoftmax.predict: error: {numba_environment_error()}")

from .cli.predict import main

if __name__ == "__main__":
    sys.exit(main(exiting=True))
