"""Start to exit: ``python -m fastsoftmax.train`` as whole processes, against a PyTorch process.

Each round is a fresh process, timed from its start to its exit:

- fastsoftmax, empty cache: the first run after installing without ``make setup``
  (a new empty NUMBA_CACHE_DIR per round: every kernel it runs compiles);
- fastsoftmax, warm cache: every later run (the kernels load from the cache);
- torch: ``import torch``, the same four idx files read, and the 15 epochs of
  bench/peers.py's PyTorch peer (nn.Linear, F.cross_entropy, optim.SGD, batch
  256 in a shuffled order; the test accuracy after each epoch, as the trainer
  reports it), written out below so that its process imports torch and NumPy
  alone, not fastsoftmax's scikit-learn.

Run with ``python -m pytest bench -o python_files='bench_*.py' -k startup``;
the report gives fastsoftmax / torch per group. No timed assertions.
"""

import os
import subprocess
import sys

import pytest

from bench.peers import THREADS
from bench.runner import need

ROUNDS = 5
EPOCHS = 15  # the trainer's default, and the peer's here

TORCH = """
import gzip, sys
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[2]))


def idx(name):
    data = gzip.open(f"{sys.argv[1]}/{name}-ubyte.gz").read()
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


X, y, X_test, y_test = (torch.as_tensor(idx(n)) for n in ("train-images-idx3", "train-labels-idx1",
                                                         "t10k-images-idx3", "t10k-labels-idx1"))
X, X_test = (a.reshape(len(a), -1).float() / 255 for a in (X, X_test))
y, y_test = y.long(), y_test.long()
model = torch.nn.Linear(X.shape[1], 10)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
order = torch.Generator().manual_seed(0)
for epoch in range(int(sys.argv[3])):
    for rows in torch.randperm(len(X), generator=order).split(256):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(X[rows]), y[rows])
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(X_test).argmax(1) == y_test).float().mean().item()
    print(f"epoch {epoch + 1}  loss {loss.item():.4f}  test acc {accuracy:.4f}")
"""


@pytest.fixture(scope="module")
def data_dir():
    import fastsoftmax as fs

    try:
        return fs.load_dataset("fashion-mnist").source
    except (fs.DatasetNotFoundError, OSError) as e:
        pytest.skip(f"Fashion-MNIST is not available ({e}); run `make data`")


def run(command, **env):
    subprocess.run(command, check=True, capture_output=True, timeout=600, env={**os.environ, **env})


def trainer(data_dir):
    return [sys.executable, "-m", "fastsoftmax.train", "--data-dir", str(data_dir), "--epochs", str(EPOCHS)]


@pytest.mark.parametrize("peer", ["fastsoftmax", "torch"])
@pytest.mark.parametrize("cache", ["empty", "warm"])
def test_startup(benchmark, data_dir, tmp_path_factory, peer, cache):
    benchmark.group = f"startup cpu python -m fastsoftmax.train, {cache} cache"
    benchmark.extra_info.update(threads=THREADS, rounds=ROUNDS)
    if peer == "torch":
        need("torch")
        command = [sys.executable, "-c", TORCH, str(data_dir), str(THREADS), str(EPOCHS)]
        benchmark.pedantic(run, args=(command,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
        return
    if cache == "warm":
        folder = tmp_path_factory.mktemp("numba")
        benchmark.pedantic(run, args=(trainer(data_dir),), kwargs={"NUMBA_CACHE_DIR": str(folder)}, rounds=ROUNDS,
                           iterations=1, warmup_rounds=1)  # the warm-up round fills the cache
        return

    def empty_cache():  # a new folder per round: every kernel compiles
        return (trainer(data_dir),), {"NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba"))}

    benchmark.pedantic(run, setup=empty_cache, rounds=ROUNDS)
