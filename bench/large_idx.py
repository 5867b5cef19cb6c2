"""Write a large Fashion-MNIST-like data set as raw idx files, for the out-of-core Dask benchmark.

    python -m bench.large_idx --rows 10000000 --out /data/fashion-10m

Each training image is a random Fashion-MNIST training image with its label,
shifted by up to 2 pixels and with noise added, so a model has something to
learn; the test split is Fashion-MNIST's own. Written chunk by chunk (memory
stays small whatever --rows is), each file atomically.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from fastsoftmax.io.atomic import atomic_write
from fastsoftmax.io.datasets import FILES, load_dataset

CHUNK = 100_000  # rows generated at a time


def header(shape) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_dataset("fashion-mnist")
    images = data.x_train.reshape(-1, 28, 28)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / FILES[0]) as xf, atomic_write(args.out / FILES[1]) as yf:
        xf.write(header((args.rows, 28, 28)))
        yf.write(header((args.rows,)))
        for lo in range(0, args.rows, CHUNK):
            pick = rng.integers(0, len(images), min(CHUNK, args.rows - lo))
            dx, dy = rng.integers(-2, 3, 2)
            shifted = np.roll(images[pick], (dy, dx), axis=(1, 2)).astype(np.int16)
            noisy = shifted + rng.integers(-20, 21, shifted.shape, dtype=np.int16)
            xf.write(np.clip(noisy, 0, 255).astype(np.uint8).tobytes())
            yf.write(data.y_train[pick].tobytes())
    for stem in FILES[2:]:
        shutil.copyfile(data.source / f"{stem}.gz", args.out / f"{stem}.gz")


if __name__ == "__main__":
    main()
