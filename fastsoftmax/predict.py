"""``python -m fastsoftmax.predict``: what a saved model learned, fastsoftmax/cli/predict.py."""
import sys

from .cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
