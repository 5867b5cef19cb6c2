"""``python -m fastsoftmax.train``: the training command line, fastsoftmax/cli/train.py."""
import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
