// shuffle_rows: the order in which an epoch visits the rows, written on the
// device so that no permutation crosses from the host.
// fastsoftmax/reference/permutation.py defines it (a keyed Feistel
// permutation with cycle walking) and is its reference; the CPU twin is
// _permutation in fastsoftmax/backends/cpu/rows.py, which compiles that very
// Python. The host computes the round keys from
// (seed, epoch): launch arguments, not a copy.
//
// One thread per position, grid-stride: a position's row is computed alone,
// a few dozen integer operations, so the kernel is bound by writing order.
#include "common.cuh"

// splitmix64's finaliser (permutation.mix64).
__device__ __forceinline__ unsigned long long mix64(unsigned long long x) {
    unsigned long long z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// permutation.permute: the row that position i (< n) visits.
__device__ __forceinline__ unsigned long long permute(unsigned long long i, unsigned long long n, unsigned half,
                                                      unsigned long long mask, const unsigned long long (&k)[4]) {
    unsigned long long x = i;
    do {
        unsigned long long left = x >> half, right = x & mask;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const unsigned long long next = left ^ (mix64(right ^ k[r]) & mask);
            left = right;
            right = next;
        }
        x = (left << half) | right;
    } while (x >= n);
    return x;
}

__global__ void __launch_bounds__(THREADS)
shuffle_rows(long long* __restrict__ order, unsigned long long n, unsigned half, unsigned long long mask,
             unsigned long long k0, unsigned long long k1, unsigned long long k2, unsigned long long k3) {
    const unsigned long long keys[4] = {k0, k1, k2, k3};
    for (unsigned long long i = blockIdx.x * (unsigned long long)THREADS + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * THREADS)
        order[i] = (long long)permute(i, n, half, mask, keys);
}
