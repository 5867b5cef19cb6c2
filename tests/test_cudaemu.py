"""The CPU emulator of CUDA kernels (tests/cudaemu): small kernels of its own,
each showing one thing the emulator must do (or catch), and one real kernel
of the project.

All test kernels live in one source (one g++ compile, ~1 s, cached on disk).
"""

import contextlib
import re
import time
from pathlib import Path

import numpy as np
import pytest
from cudaemu import KernelFault, allocate, compiler, load_module, standin_cupy

SOURCE = r"""
constexpr int N = 256;

// thread i writes s[i], then reads s[(i + 1) % N]: racy without the barrier
template <bool SYNC>
__global__ void rotate(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float s[N];
    s[threadIdx.x] = x[blockIdx.x * N + threadIdx.x];
    if (SYNC) __syncthreads();
    out[blockIdx.x * N + threadIdx.x] = s[(threadIdx.x + 1) % N];
}

// reads shared memory nobody wrote (static, then dynamic)
__global__ void unwritten(float* out) {
    __shared__ float s[N];
    DYNAMIC_SHARED_MEMORY(dyn);
    out[threadIdx.x] = s[threadIdx.x];
    out[N + threadIdx.x] = reinterpret_cast<float*>(dyn)[threadIdx.x];
}

// writes out[0..n] (one past the end) or reads x[far]
__global__ void one_past(float* out, int n) {
    if (threadIdx.x <= n) out[threadIdx.x] = 1.0f;
}
__global__ void read_far(const float* x, long long far, float* out) { out[threadIdx.x] = x[far + threadIdx.x]; }

// touches `bytes` bytes of dynamic shared memory
__global__ void use_shared(int bytes, float* out) {
    DYNAMIC_SHARED_MEMORY(dyn);
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) dyn[i] = 0;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// half the block returns before the barrier
__global__ void half_barrier(float* out) {
    if (threadIdx.x >= 128) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
// two barrier call sites
__global__ void two_sites(float* out) {
    if (threadIdx.x % 2) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1.0f;
}
// half of each warp shuffles, the other half waits at __syncthreads: a deadlock
__global__ void shuffle_vs_barrier(float* out) {
    float v = threadIdx.x;
    if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else __syncthreads();
    out[threadIdx.x] = v;
}
__global__ void partial_mask(float* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffu, 1.0f, 1); }

// warp sums by xor shuffles over offsets 16..1, and the other shuffles
template <typename T>
__global__ void warp_sum(const T* __restrict__ x, T* __restrict__ sum, T* __restrict__ down, T* __restrict__ bcast) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    T v = x[i];
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(FULL, v, off);
    sum[i] = v;
    down[i] = __shfl_down_sync(FULL, x[i], 1);
    bcast[i] = __shfl_sync(FULL, x[i], 3);
}

__global__ void count(const int* __restrict__ pred, int* __restrict__ out) {
    const int c = __syncthreads_count(pred[blockIdx.x * blockDim.x + threadIdx.x]);
    out[blockIdx.x * blockDim.x + threadIdx.x] = c;
}

__global__ void add_all(const float* __restrict__ x, unsigned long long* n, float* fsum, double* dsum, int* isum) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(n, 1ull);
    atomicAdd(fsum, x[i]);
    atomicAdd(dsum, double(x[i]));
    atomicAdd(isum, int(x[i]));
}

__global__ void byte_perm(const unsigned* __restrict__ x, const unsigned* __restrict__ y,
                          const unsigned* __restrict__ s, unsigned* __restrict__ r, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) r[i] = __byte_perm(x[i], y[i], s[i]);
}

__global__ void params(const double* p, long long a, unsigned b, float c, int d) {}
"""
SOURCE = SOURCE.replace("FULL", "0xffffffffu")
EXPRS = [
    "rotate<false>",
    "rotate<true>",
    "unwritten",
    "one_past",
    "read_far",
    "use_shared",
    "half_barrier",
    "two_sites",
    "shuffle_vs_barrier",
    "partial_mask",
    "warp_sum<float>",
    "warp_sum<double>",
    "count",
    "add_all",
    "byte_perm",
    "params",
]


@pytest.fixture(scope="module")
def mod():
    return load_module(SOURCE, EXPRS, name="test_cudaemu")


def device(a):
    a = np.ascontiguousarray(a)
    buf = allocate(a.nbytes)
    buf.view(a.dtype, a.shape)[...] = a
    return buf


def run(mod, expr, grid, block, args, shared=0):
    mod.get_function(expr).launch((grid, 1, 1), (block, 1, 1), shared, args)


def test_fault_is_not_a_runtime_or_value_error():
    assert not issubclass(KernelFault, (RuntimeError, ValueError))


def test_allocations_are_poisoned_aligned_and_unique():
    bufs = [allocate(n) for n in (0, 0, 1, 1000, 4096, 5000)]
    assert len({b.ptr for b in bufs}) == len(bufs)
    for b in bufs:
        assert b.ptr % 256 == 0 and b.array.size == b.nbytes
        assert np.all(b.array == 0xFF)
        b.check()
    assert np.isnan(allocate(16).view(np.float32)).all()


def test_race_without_barrier_reads_poison(mod):
    x = np.arange(2 * 256, dtype=np.float32)
    expected = np.roll(x.reshape(2, 256), -1, axis=1).ravel()
    bx = device(x)
    for sync in (False, True):
        out = allocate(x.nbytes)
        run(mod, f"rotate<{str(sync).lower()}>", 2, 256, [bx.ptr, out.ptr])
        got = out.view(np.float32)
        if sync:
            np.testing.assert_array_equal(got, expected)
        else:
            assert np.isnan(got).any(), "the racy kernel should have read the 0xFF poison somewhere"


def test_unwritten_shared_memory_is_nan(mod):
    out = allocate(2 * 256 * 4)
    run(mod, "unwritten", 1, 256, [out.ptr], shared=256 * 4)
    assert np.isnan(out.view(np.float32)).all()


def test_write_one_past_the_end_is_caught(mod):
    out = allocate(100 * 4)
    run(mod, "one_past", 1, 128, [out.ptr, np.int32(99)])  # in bounds
    with pytest.raises(KernelFault, match="past the end"):
        run(mod, "one_past", 1, 128, [out.ptr, np.int32(100)])


def test_read_far_past_the_end_is_caught_and_the_process_survives(mod):
    x, out = device(np.zeros(1000, np.float32)), allocate(32 * 4)
    with pytest.raises(KernelFault, match=r"read_far \(block 0, thread \d+\) touched address 0x[0-9a-f]+: outside"):
        run(mod, "read_far", 1, 32, [x.ptr, np.int64(1024), out.ptr])  # the guard page after the data
    run(mod, "read_far", 1, 32, [x.ptr, np.int64(0), out.ptr])  # the next launch works
    np.testing.assert_array_equal(out.view(np.float32), 0)


def test_shared_memory_beyond_the_launch_is_caught(mod):
    out = allocate(64 * 4)
    run(mod, "use_shared", 1, 64, [np.int32(1000), out.ptr], shared=1000)
    with pytest.raises(KernelFault, match="dynamic shared memory"):
        run(mod, "use_shared", 1, 64, [np.int32(1001), out.ptr], shared=1000)  # slack canary
    with pytest.raises(KernelFault, match="dynamic shared memory"):
        run(mod, "use_shared", 1, 64, [np.int32(5000), out.ptr], shared=1000)  # guard page


@pytest.mark.parametrize(
    "expr, match",
    [
        ("half_barrier", "barrier divergence"),
        ("two_sites", "barrier divergence: .*__syncthreads at line"),
        ("shuffle_vs_barrier", "deadlock"),
        ("partial_mask", "unsupported mask"),
    ],
)
def test_divergent_barriers_fail_fast(mod, expr, match):
    out = allocate(256 * 4)
    start = time.monotonic()
    with pytest.raises(KernelFault, match=match):
        run(mod, expr, 3, 256, [out.ptr])
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shuffles(mod, dtype):
    x = np.random.default_rng(0).integers(-100, 100, 2 * 64).astype(dtype)
    bx, s, d, b = device(x), allocate(x.nbytes), allocate(x.nbytes), allocate(x.nbytes)
    run(mod, f"warp_sum<{np.dtype(dtype).name.replace('float32', 'float').replace('float64', 'double')}>",
        2, 64, [bx.ptr, s.ptr, d.ptr, b.ptr])
    warps = x.reshape(-1, 32)
    np.testing.assert_array_equal(s.view(dtype).reshape(-1, 32), warps.sum(1, keepdims=True).repeat(32, 1))
    down = np.concatenate([warps[:, 1:], warps[:, -1:]], axis=1)  # the last lane keeps its own
    np.testing.assert_array_equal(d.view(dtype).reshape(-1, 32), down)
    np.testing.assert_array_equal(b.view(dtype).reshape(-1, 32), warps[:, 3:4].repeat(32, 1))


def test_syncthreads_count(mod):
    pred = np.random.default_rng(1).integers(0, 2, 3 * 128).astype(np.int32)
    bp, out = device(pred), allocate(pred.nbytes)
    run(mod, "count", 3, 128, [bp.ptr, out.ptr])
    np.testing.assert_array_equal(out.view(np.int32).reshape(3, 128), pred.reshape(3, 128).sum(1, keepdims=True).repeat(128, 1))


def test_atomic_add_over_blocks(mod):
    x = np.arange(4 * 256, dtype=np.float32) % 7
    bx = device(x)
    n, f, d, i = (device(np.zeros(1, t)) for t in (np.uint64, np.float32, np.float64, np.int32))
    run(mod, "add_all", 4, 256, [bx.ptr, n.ptr, f.ptr, d.ptr, i.ptr])
    assert n.view(np.uint64)[0] == x.size
    assert f.view(np.float32)[0] == d.view(np.float64)[0] == i.view(np.int32)[0] == x.sum()


def prmt(x, y, s):
    """PTX prmt.b32, default mode."""
    data = int(x) | int(y) << 32
    r = 0
    for n in range(4):
        sel = (int(s) >> 4 * n) & 0xF
        byte = (data >> 8 * (sel & 7)) & 0xFF
        if sel & 8:
            byte = 0xFF if byte & 0x80 else 0
        r |= byte << 8 * n
    return r


def test_byte_perm(mod):
    rng = np.random.default_rng(2)
    n = 300
    x, y, s = (rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) for _ in range(3))
    s[:16] = 0x7440 + np.arange(16) % 4  # the selectors of kernels/common.cuh's load4
    r, bufs = allocate(n * 4), [device(a) for a in (x, y, s)]  # kept alive: a freed buffer faults
    run(mod, "byte_perm", 2, 256, [*(b.ptr for b in bufs), r.ptr, np.int32(n)])
    np.testing.assert_array_equal(r.view(np.uint32), [prmt(*v) for v in zip(x, y, s)])


def test_argument_checks(mod):
    f = mod.get_function("params")
    assert [(p.kind, p.size) for p in f.params] == [("pointer", 8), ("int", 8), ("uint", 4), ("float", 4), ("int", 4)]
    assert f.params[0].pointee == np.float64
    good = [np.uint64(0), np.int64(1), np.uint32(2), np.float32(3), np.int32(4)]
    f.launch((1, 1, 1), (32, 1, 1), 0, good)
    for i, bad in [(1, np.int32(1)), (2, np.int32(2)), (3, np.float64(3)), (4, 4), (0, 1.0)]:
        with pytest.raises(TypeError):
            f.launch((1, 1, 1), (32, 1, 1), 0, good[:i] + [bad] + good[i + 1 :])
    with pytest.raises(TypeError):
        f.launch((1, 1, 1), (32, 1, 1), 0, good[:-1])
    with pytest.raises(ValueError):
        f.launch((1, 1, 1), (1025, 1, 1), 0, good)
    with pytest.raises(ValueError):
        f.launch((0, 1, 1), (32, 1, 1), 0, good)


def kernel_source(family):
    """kernels/<family>.cu with its headers pasted in (as fastsoftmax.kernels.source does)."""
    folder, pasted = Path(__file__).parent.parent / "kernels", set()
    include = re.compile(r'^#include "(\w+\.cuh)".*$', re.MULTILINE)

    def paste(name):
        if name in pasted:
            return ""
        pasted.add(name)
        return include.sub(lambda m: paste(m.group(1)), (folder / name).read_text())

    return paste(f"{family}.cu")


def test_project_count_correct():
    expr = "count_correct<float, 10>"
    f = load_module(kernel_source("accuracy"), [expr], name="accuracy").get_function(expr)
    rng = np.random.default_rng(3)
    n = 600
    scores = rng.standard_normal((n, 10)).astype(np.float32)
    scores[:5] = 0  # ties: the first maximum wins
    y = rng.integers(0, 10, n).astype(np.int64)
    y[: n // 3] = scores[: n // 3].argmax(1)
    count, bs, by = device(np.zeros(1, np.uint64)), device(scores), device(y)
    f.launch((-(-n // 256), 1, 1), (256, 1, 1), 0, [bs.ptr, by.ptr, np.int32(n), count.ptr])
    assert count.view(np.uint64)[0] == (scores.argmax(1) == y).sum()


# ---- cooperative launches: every block resident at once, grid barriers ----

COOP_SOURCE = r"""
// The reference grid barrier for cooperative launches (the project's own goes in
// kernels/common.cuh). counter: a device word zeroed before the launch (or left
// by a previous launch of the same grid: a multiple of the block count). It
// counts arrivals over the whole launch, so barrier k completes at k * blocks.
__device__ void grid_barrier(unsigned* counter) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
        __threadfence();  // this block's writes before its arrival
        const unsigned goal = (atomicAdd(counter, 1u) / blocks + 1) * blocks;
        while (*static_cast<volatile unsigned*>(counter) < goal) __nanosleep(100);
        __threadfence();  // the other blocks' writes after their arrival
    }
    __syncthreads();
}

// `rounds` times: block b writes slot (b, t), all blocks meet, each thread sums
// slot (j, t) of every block j, all meet again before the next round overwrites.
template <bool SYNC>
__global__ void exchange(unsigned* slots, unsigned* out, unsigned* counter, int rounds) {
    const unsigned t = threadIdx.x, b = blockIdx.x;
    unsigned acc = 0;
    for (int r = 0; r < rounds; ++r) {
        slots[b * blockDim.x + t] = (r + 1) * (b + 1) + t;
        if (SYNC) grid_barrier(counter);
        for (unsigned j = 0; j < gridDim.x; ++j) acc += slots[j * blockDim.x + t];
        if (SYNC) grid_barrier(counter);
    }
    out[b * blockDim.x + t] = acc;
}

// Each block writes its index into its dynamic shared memory, meets the others
// and reads it back (+1000 if that memory was not the poison at first).
__global__ void own_shared(unsigned* out, unsigned* counter) {
    DYNAMIC_SHARED_MEMORY(smem);
    unsigned* s = reinterpret_cast<unsigned*>(smem);
    const unsigned before = s[threadIdx.x];
    s[threadIdx.x] = blockIdx.x;
    grid_barrier(counter);
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x] + (before == 0xFFFFFFFFu ? 0 : 1000);
}

// block `quitter` returns while the others wait for it at the grid barrier
__global__ void early_return(unsigned* counter, int quitter) {
    if (int(blockIdx.x) == quitter) return;
    grid_barrier(counter);
}

// thread 0 of block `slow` computes for `ns` nanoseconds (no sleep, no barrier) while the others wait for it
__global__ void slow_block(unsigned* counter, int slow, long long ns) {
    if (int(blockIdx.x) == slow && threadIdx.x == 0) {
        const long long start = clock64();
        while (clock64() - start < ns) {}
    }
    grid_barrier(counter);
}

// block 1 reads far past x while the others wait at the grid barrier
__global__ void fault_while_waiting(const float* x, long long far, unsigned* counter, float* out) {
    if (blockIdx.x == 1) out[threadIdx.x] = x[far + threadIdx.x];
    grid_barrier(counter);
}

// after the grid barrier, half of block 2 returns before a __syncthreads
__global__ void coop_half_barrier(unsigned* counter) {
    grid_barrier(counter);
    if (blockIdx.x == 2 && threadIdx.x >= 32) return;
    __syncthreads();
}

// block barriers and warp shuffles of blocks that run at once stay apart
__global__ void block_counts(const int* __restrict__ pred, int* __restrict__ out, unsigned* counter) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    grid_barrier(counter);
    const int c = __syncthreads_count(pred[i]);
    int v = pred[i];
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    out[2 * i] = c;
    out[2 * i + 1] = v;
}

// block 1 writes `bytes` bytes of its dynamic shared memory after the grid barrier
__global__ void fill_shared(int bytes, unsigned* counter) {
    DYNAMIC_SHARED_MEMORY(dyn);
    grid_barrier(counter);
    if (blockIdx.x == 1)
        for (int i = threadIdx.x; i < bytes; i += blockDim.x) dyn[i] = 0;
}
"""
COOP_EXPRS = [
    "exchange<true>",
    "exchange<false>",
    "own_shared",
    "early_return",
    "slow_block",
    "fault_while_waiting",
    "coop_half_barrier",
    "block_counts",
    "fill_shared",
]
BLOCKS, THREADS = 4, 64


@pytest.fixture(scope="module")
def coop():
    """The cooperative kernels: a module without static shared memory (named as
    standin_cupy.RawModule names it, so the stand-in's tests share the compile)."""
    return load_module(COOP_SOURCE, COOP_EXPRS, name=COOP_EXPRS[0].split("<")[0])


@pytest.fixture
def quick_watchdog(monkeypatch):
    """A hang fails after 0.5 s of spinning (the default is 2 s)."""
    monkeypatch.setattr(compiler, "SPIN_TIMEOUT_S", 0.5)


def coop_run(mod, expr, args, shared=0, grid=BLOCKS, block=THREADS, cooperative=True):
    mod.get_function(expr).launch((grid, 1, 1), (block, 1, 1), shared, args, cooperative=cooperative)


def counter():
    return device(np.zeros(1, np.uint32))


def exchange_expected(rounds, blocks=BLOCKS, threads=THREADS):
    t = np.arange(threads, dtype=np.uint64)
    per_thread = sum((r + 1) * (j + 1) + t for r in range(rounds) for j in range(blocks))
    return np.tile(per_thread, blocks).astype(np.uint32)


def test_cooperative_grid_barrier_exchanges_between_blocks(coop):
    slots, out, c = allocate(BLOCKS * THREADS * 4), allocate(BLOCKS * THREADS * 4), counter()
    coop_run(coop, "exchange<true>", [slots.ptr, out.ptr, c.ptr, np.int32(3)])
    np.testing.assert_array_equal(out.view(np.uint32), exchange_expected(3))
    assert c.view(np.uint32)[0] == 2 * 3 * BLOCKS  # every block passed 6 barriers
    # the counter left by a launch (a multiple of the grid) serves the next one
    coop_run(coop, "exchange<true>", [slots.ptr, out.ptr, c.ptr, np.int32(1)])
    np.testing.assert_array_equal(out.view(np.uint32), exchange_expected(1))


def test_cooperative_without_grid_barrier_reads_poison(coop):
    """Blocks start last first, each alone until it returns or sleeps: the
    last block reads the others' slots before they write them, every time."""
    slots, out, c = allocate(BLOCKS * THREADS * 4), allocate(BLOCKS * THREADS * 4), counter()
    for _ in range(3):
        slots.array[:] = 0xFF
        coop_run(coop, "exchange<false>", [slots.ptr, out.ptr, c.ptr, np.int32(1)])
        got = out.view(np.uint32).reshape(BLOCKS, THREADS)
        expected = exchange_expected(1).reshape(BLOCKS, THREADS)
        assert (got[-1] != expected[-1]).all()


def test_cooperative_blocks_have_their_own_dynamic_shared_memory(coop):
    out, c = allocate(BLOCKS * THREADS * 4), counter()
    coop_run(coop, "own_shared", [out.ptr, c.ptr], shared=THREADS * 4)
    np.testing.assert_array_equal(out.view(np.uint32).reshape(BLOCKS, THREADS), np.arange(BLOCKS)[:, None].repeat(THREADS, 1))


def test_cooperative_block_barriers_and_shuffles_per_block(coop):
    pred = np.random.default_rng(4).integers(0, 2, BLOCKS * THREADS).astype(np.int32)
    bp, out, c = device(pred), allocate(2 * pred.nbytes), counter()
    coop_run(coop, "block_counts", [bp.ptr, out.ptr, c.ptr])
    got = out.view(np.int32).reshape(BLOCKS, THREADS, 2)
    np.testing.assert_array_equal(got[..., 0], pred.reshape(BLOCKS, THREADS).sum(1, keepdims=True).repeat(THREADS, 1))
    warps = pred.reshape(-1, 32).sum(1, keepdims=True).repeat(32, 1)
    np.testing.assert_array_equal(got[..., 1].reshape(-1, 32), warps)


def test_grid_barrier_some_block_never_reaches_fails_without_burning_cpu(coop, quick_watchdog):
    c = counter()
    wall, cpu = time.monotonic(), time.process_time()
    with pytest.raises(KernelFault, match=r"early_return: hang: .*block 0 spins at line \d+ .*block 2 returned"):
        coop_run(coop, "early_return", [c.ptr, np.int32(2)])
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert 0.5 <= wall < 5
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s: the spinners should sleep"
    c.view(np.uint32)[0] = 0
    coop_run(coop, "early_return", [c.ptr, np.int32(BLOCKS)])  # nobody quits: fine, and the process survives


def test_grid_barrier_in_a_launch_that_is_not_cooperative_fails(coop, quick_watchdog):
    slots, out, c = allocate(BLOCKS * THREADS * 4), allocate(BLOCKS * THREADS * 4), counter()
    start = time.monotonic()
    with pytest.raises(KernelFault, match="hang: .*not cooperative.*block 0 spins"):
        coop_run(coop, "exchange<true>", [slots.ptr, out.ptr, c.ptr, np.int32(1)], cooperative=False)
    assert time.monotonic() - start < 5


def test_a_slow_block_is_not_a_hang(coop, quick_watchdog):
    """Thread 0 of block 0 computes for 1 s (twice the watchdog's limit) while the others spin for it."""
    c = counter()
    coop_run(coop, "slow_block", [c.ptr, np.int32(0), np.int64(1_000_000_000)])
    assert c.view(np.uint32)[0] == BLOCKS


def test_cooperative_faults_stop_every_block(coop):
    x, out, c = device(np.zeros(1000, np.float32)), allocate(THREADS * 4), counter()
    start = time.monotonic()
    with pytest.raises(KernelFault, match=r"fault_while_waiting \(block 1, thread \d+\) touched address .*outside"):
        coop_run(coop, "fault_while_waiting", [x.ptr, np.int64(1024), c.ptr, out.ptr])
    with pytest.raises(KernelFault, match=r"coop_half_barrier \(block 2, thread \d+\).*barrier divergence"):
        coop_run(coop, "coop_half_barrier", [c.ptr])
    assert time.monotonic() - start < 5


def test_cooperative_shared_memory_overruns_are_caught(coop):
    for bytes_, match in [
        (1000, None),
        (1001, r"\(block 1\): wrote 1 byte\(s\) past the end of its 1000 bytes of dynamic shared memory"),  # canary
        (5000, r"\(block 1, thread \d+\) .* past the end of its 1000 bytes of dynamic shared memory"),  # guard page
    ]:
        c = counter()
        with pytest.raises(KernelFault, match=match) if match else contextlib.nullcontext():
            coop_run(coop, "fill_shared", [np.int32(bytes_), c.ptr], shared=1000)


def test_cooperative_launch_limits(mod, coop):
    out, c = allocate(64 * 4), counter()
    with pytest.raises(ValueError, match="cooperative kernels must use dynamic shared memory only in the emulator"):
        mod.get_function("use_shared").launch((2, 1, 1), (64, 1, 1), 0, [np.int32(0), out.ptr], cooperative=True)
    with pytest.raises(ValueError, match="at most 4096"):
        coop_run(coop, "early_return", [c.ptr, np.int32(-1)], grid=65)
    coop_run(coop, "early_return", [c.ptr, np.int32(-1)], grid=64)  # 4096 threads
    assert c.view(np.uint32)[0] == 64


# ---- cooperative launches through the stand-in cupy ----


def test_standin_cooperative_kernel_call_and_graph(coop):
    cp = standin_cupy
    kernel = cp.RawModule(code=COOP_SOURCE, name_expressions=COOP_EXPRS).get_function("exchange<true>")
    slots, out = cp.empty(BLOCKS * THREADS, np.uint32), cp.empty(BLOCKS * THREADS, np.uint32)
    c = cp.zeros(1, np.uint32)
    cp.counters.reset()
    kernel((BLOCKS,), (THREADS,), (slots, out, c, np.int32(2)), enable_cooperative_groups=True)
    assert cp.counters.launches == 1
    np.testing.assert_array_equal(out.get(), exchange_expected(2))
    with pytest.raises(KernelFault, match="not cooperative"), pytest.MonkeyPatch.context() as m:
        m.setattr(compiler, "SPIN_TIMEOUT_S", 0.5)
        kernel((BLOCKS,), (THREADS,), (slots, out, c, np.int32(1)))  # without the keyword: a plain launch

    c[...] = 0
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        kernel((BLOCKS,), (THREADS,), (slots, out, c, np.int32(1)), enable_cooperative_groups=True)
        graph = stream.end_capture()
    cp.counters.reset()
    graph.launch()
    graph.launch()
    assert cp.counters.launches == 2 and cp.counters.graph_launches == 2
    np.testing.assert_array_equal(out.get(), exchange_expected(1))
    assert int(c[0]) == 2 * 2 * BLOCKS


def test_standin_refuses_cooperative_grids_larger_than_the_device_holds(coop):
    cp = standin_cupy
    sms = cp.device_attributes["MultiProcessorCount"]
    module = cp.RawModule(code=COOP_SOURCE, name_expressions=COOP_EXPRS)
    kernel = module.get_function("early_return")
    most = sms * (2048 // THREADS)  # by threads: 32 blocks of 64 per SM (test_cooperative_launch_limits runs them)
    assert kernel.max_coresident_blocks((THREADS, 1, 1), 0) == most
    with pytest.raises(RuntimeError, match="cudaErrorCooperativeLaunchTooLarge"):
        kernel((most + 1,), (THREADS,), (cp.zeros(1, np.uint32), np.int32(-1)), enable_cooperative_groups=True)
    # by shared memory: 233472 // 100000 = 2 blocks of 100000 bytes per SM
    shared = cp.RawModule(code=COOP_SOURCE, name_expressions=COOP_EXPRS).get_function("own_shared")
    shared.max_dynamic_shared_size_bytes = cp.device_attributes["MaxSharedMemoryPerBlockOptin"]
    out = cp.empty(2 * sms * THREADS, np.uint32)
    shared((2 * sms,), (THREADS,), (out, cp.zeros(1, np.uint32)), shared_mem=100000, enable_cooperative_groups=True)
    np.testing.assert_array_equal(out.get().reshape(2 * sms, THREADS), np.arange(2 * sms)[:, None].repeat(THREADS, 1))
    with pytest.raises(RuntimeError, match="cudaErrorCooperativeLaunchTooLarge"):
        shared((2 * sms + 1,), (THREADS,), (out, cp.zeros(1, np.uint32)), shared_mem=100000,
               enable_cooperative_groups=True)


def test_standin_reports_cooperative_launch_support():
    rt = standin_cupy.cuda.runtime
    assert rt.deviceGetAttribute(rt.cudaDevAttrCooperativeLaunch, 0) == 1
    assert rt.deviceGetAttribute(rt.cudaDevAttrMaxSharedMemoryPerMultiprocessor, 0) == 233472


def test_standin_without_cooperative_launch_support_refuses_one(coop, monkeypatch):
    cp = standin_cupy
    monkeypatch.setitem(cp.device_attributes, "CooperativeLaunch", 0)
    kernel = cp.RawModule(code=COOP_SOURCE, name_expressions=COOP_EXPRS).get_function("early_return")
    with pytest.raises(RuntimeError, match="cudaErrorNotSupported"):
        kernel((BLOCKS,), (THREADS,), (cp.zeros(1, np.uint32), np.int32(-1)), enable_cooperative_groups=True)


def test_standin_in_place_operators_update_the_device_array():
    """As in CuPy, a -= x changes a itself (a new array bound to a would hide a missed update)."""
    a = standin_cupy.asarray(np.arange(4.0))
    alias = a
    a -= standin_cupy.asarray(np.ones(4))
    a *= 2
    assert a is alias
    np.testing.assert_array_equal(alias.get(), [-2.0, 0.0, 2.0, 4.0])
