"""``python -m fastsoftmax.warmup``: the CPU kernels compiled ahead of use, fastsoftmax/cli/warmup.py."""
import sys

from .cli.warmup import main

if __name__ == "__main__":
    sys.exit(main())
