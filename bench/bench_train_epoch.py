"""One epoch of Fashion-MNIST training (60000 images, batch 256, lr 0.1, one
shuffled order for every peer): fastsoftmax against its peers."""

import numpy as np

from bench import peers
from bench.runner import BATCH, peer_benchmarks


def _epoch(data):
    order = np.random.default_rng(0).permutation(len(data[0]))
    return (*data, order, BATCH)


test_cpu, test_gpu = peer_benchmarks("train_epoch", [(f"batch={BATCH}", _epoch)], peers.CPU_EPOCHS, peers.GPU_EPOCHS)
