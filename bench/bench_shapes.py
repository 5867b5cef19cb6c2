"""The shape matrix (bench/shapes.py): the fused gradient and one epoch of batch-256
SGD at four shapes, fastsoftmax against PyTorch (and JAX) in the same run, with
the machine's sgemm rate on each shape in extra_info."""

import functools

import pytest

from bench import shapes
from bench.runner import need


@functools.cache
def _problem(shape):
    return shapes.problem(*shape)


def _bench(benchmark, kind, factories, shape, peer):
    benchmark.group = f"{kind} cpu {shapes.shape_id(*shape)}"
    if peer in shapes.NEEDS:
        need(shapes.NEEDS[peer])
    fn = factories[peer](*_problem(shape))
    fn()  # compile, or load from the cache
    benchmark.extra_info["sgemm_gflops"] = shapes.sgemm_gflops(*shape[:3])
    n, d, k = shape[:3]
    benchmark.extra_info["gflop"] = 4 * n * d * k / 1e9
    rounds = 3 if n * d * k > 1e10 else 7
    benchmark.pedantic(fn, rounds=rounds, iterations=1)


@pytest.mark.parametrize("peer", list(shapes.GRADIENTS))
@pytest.mark.parametrize("shape", shapes.SHAPES, ids=lambda s: shapes.shape_id(*s))
def test_gradient(benchmark, shape, peer):
    _bench(benchmark, "linear_softmax_cross_entropy", shapes.GRADIENTS, shape, peer)


@pytest.mark.parametrize("peer", list(shapes.EPOCHS))
@pytest.mark.parametrize("shape", shapes.SHAPES, ids=lambda s: shapes.shape_id(*s))
def test_epoch(benchmark, shape, peer):
    _bench(benchmark, "train_epoch", shapes.EPOCHS, shape, peer)
