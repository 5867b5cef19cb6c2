// Pieces shared by the kernel families: vector loads of X and W, staging rows
// into shared memory, the per-row logits of a lane group, the softmax of one
// row, and a fixed-order block sum.
//
// Compiled by NVRTC through CuPy (fastsoftmax.kernels.source pastes this header
// into each source), and by nvcc and the CPU emulator in the tests: so no
// standard headers, only CUDA built-ins. T is the compute type (float or double, the dtype of W); TX the
// type of X (unsigned char, float or double). K, the number of classes, is a
// template parameter so that per-row logits live in registers.
#pragma once

#include "geometry.cuh"  // THREADS and the other launch numbers, from kernels/geometry.py

constexpr unsigned FULL_MASK = 0xffffffffu;

// A kernel's dynamic shared memory (the launch's shared_mem bytes). A macro so
// that the CPU emulator of the tests (tests/cudaemu) can supply its own.
#ifndef DYNAMIC_SHARED_MEMORY
#define DYNAMIC_SHARED_MEMORY(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Rows are staged with a padded stride: d rounded up to 4 columns, the zero
// padding lets every inner loop run on whole 4-column quads.
__device__ __forceinline__ int pad4(int d) { return (d + 3) & ~3; }

// ---- loads of V consecutive values as the compute type T ----
// V = 4 reads one uchar4/float4/2 x double2 (the caller guarantees alignment);
// V = 1 is the scalar fallback for rows that are not 4-value aligned.
// Bytes to float without I2F (a quarter-rate conversion on sm_80/sm_90, as
// costly here as the FMAs it feeds): byte i moved under the exponent of 2^23
// gives the float 2^23 + byte exactly (one PRMT), minus 2^23 (one FADD).
template <typename T>
__device__ __forceinline__ void load4(const unsigned char* p, T (&v)[4]) {
    const unsigned u = *reinterpret_cast<const unsigned*>(p);
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = T(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440 + i)) - 8388608.0f);
}
template <typename T>
__device__ __forceinline__ void load4(const float* p, T (&v)[4]) {
    const float4 u = *reinterpret_cast<const float4*>(p);
    v[0] = T(u.x); v[1] = T(u.y); v[2] = T(u.z); v[3] = T(u.w);
}
template <typename T>
__device__ __forceinline__ void load4(const double* p, T (&v)[4]) {
    const double2 u = reinterpret_cast<const double2*>(p)[0];
    const double2 w = reinterpret_cast<const double2*>(p)[1];
    v[0] = T(u.x); v[1] = T(u.y); v[2] = T(w.x); v[3] = T(w.y);
}
template <int V, typename T, typename TX>
__device__ __forceinline__ void load(const TX* p, T (&v)[V]) {
    if constexpr (V == 4) load4(p, v);
    else v[0] = T(*p);
}

// ---- staging rows into shared memory ----
// Copies `count` rows of d values, src row i being rows[first + i] (or
// first + i when rows is null: the order of an epoch gathers its batch),
// into dst with row stride pad4(d). With vec16 (the host checked that every
// source row starts 16-byte aligned) it moves 16-byte chunks: one LDG.128 per
// thread per chunk, coalesced along each row. Columns >= d are left as they
// are: the caller zeroes them once.
template <typename E>
__device__ void stage_rows(E* __restrict__ dst, const E* __restrict__ src, const long long* __restrict__ rows,
                           long long first, int count, int d, bool vec16) {
    const int dp = pad4(d);
    if (vec16) {
        constexpr int PER = 16 / sizeof(E);
        const int chunks = d / PER;
#pragma unroll 4
        for (int i = threadIdx.x; i < count * chunks; i += THREADS) {
            const int r = i / chunks, c = i - r * chunks;
            const long long row = rows ? rows[first + r] : first + r;
            reinterpret_cast<uint4*>(dst + r * dp)[c] = reinterpret_cast<const uint4*>(src + row * d)[c];
        }
    } else {
        for (int i = threadIdx.x; i < count * d; i += THREADS) {
            const int r = i / d, j = i - r * d;
            const long long row = rows ? rows[first + r] : first + r;
            dst[r * dp + j] = src[row * d + j];
        }
    }
}

// Zero columns [d, pad4(d)) of `count` staged rows (the quads' padding).
template <typename E>
__device__ void zero_padding(E* dst, int count, int d) {
    const int dp = pad4(d), pad = dp - d;
    for (int i = threadIdx.x; i < count * pad; i += THREADS) dst[(i / pad) * dp + d + i % pad] = E(0);
}

// ---- logits of R rows by a group of G lanes ----
// z[r][c] = sum_j x[r][j] * W_s[c][j] over j < ncols: each lane takes every
// G-th group of V columns (so the group's loads of a row are contiguous), then
// the G partial sums are added with xor shuffles, leaving the full sums in
// every lane of the group. Each W value read from shared memory serves R rows:
// W reads, not FLOPs, bound this loop, so R > 1 is what makes it fast.
// All 32 lanes of the warp must call it (full-mask shuffles).
template <typename T, typename TX, int K, int G, int R, int V>
__device__ __forceinline__ void group_logits(const TX* const (&x)[R], const T* __restrict__ W_s, int dp, int ncols,
                                             int lane, T (&z)[R][K]) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < K; ++c) z[r][c] = T(0);
    for (int j = V * lane; j < ncols; j += V * G) {
        T xv[R][V];
#pragma unroll
        for (int r = 0; r < R; ++r) load<V>(x[r] + j, xv[r]);
#pragma unroll
        for (int c = 0; c < K; ++c) {
            T w[V];
            load<V>(W_s + c * dp + j, w);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int i = 0; i < V; ++i) z[r][c] += w[i] * xv[r][i];
        }
    }
#pragma unroll
    for (int off = G / 2; off > 0; off /= 2)
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int c = 0; c < K; ++c) z[r][c] += __shfl_xor_sync(FULL_MASK, z[r][c], off);
}

// ---- row weights ----
// Row `row` of X's sample weight: sample_weight[row], or 1 where the pointer is
// null (no weights). Kernels multiply a row's loss and its g = softmax - onehot
// by it, so with no weights every product is by exactly 1: the same bits.
template <typename T>
__device__ __forceinline__ T row_weight(const T* __restrict__ sample_weight, long long row) {
    return sample_weight ? sample_weight[row] : T(1);
}

// ---- one row of K scores ----
// Index of the first maximum (strict >, as numpy's argmax); m gets the max.
template <typename T, int K>
__device__ __forceinline__ int first_argmax(const T (&z)[K], T& m) {
    int top = 0;
    m = z[0];
#pragma unroll
    for (int c = 1; c < K; ++c)
        if (z[c] > m) m = z[c], top = c;
    return top;
}

// Max-subtracted ("safe") softmax: with m = max z, exp(z - m) <= 1 never
// overflows, so logits of 1e4 stay finite.
template <typename T, int K>
struct RowSoftmax {
    T m, sum;  // max logit, sum of exp(z - m)
    int top;   // first argmax
    __device__ __forceinline__ explicit RowSoftmax(const T (&z)[K]) : sum(0) {
        top = first_argmax(z, m);
#pragma unroll
        for (int c = 0; c < K; ++c) sum += exp(z[c] - m);
    }
    __device__ __forceinline__ T prob(T zc) const { return exp(zc - m) / sum; }
    // -log softmax(z)[y] = log(sum) + m - z[y]
    __device__ __forceinline__ T loss(T zy) const { return log(sum) + m - zy; }
};

// Sum of one value per thread over the block, in a fixed tree order (so the
// result is bit-reproducible); every thread gets the total. red: THREADS values.
template <typename T>
__device__ T block_sum(T v, T* red) {
    red[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int s = THREADS / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    const T total = red[0];
    __syncthreads();  // red may be reused right after
    return total;
}

// All blocks of a cooperative launch (every block resident) meet here: the
// pattern of cooperative_groups' grid.sync(), written out because NVRTC builds
// these sources without the CUDA headers. barrier[0] counts the arrivals,
// barrier[1] is the generation; the host zeroes both once, and they are left
// ready for the next use. Thread 0 of a block arrives for it: its fence before
// the arrival publishes the block's writes, its fence after the wait makes the
// other blocks' writes visible (it also invalidates the SM's L1), and the
// block barriers around pass that on to the block's other threads.
__device__ void grid_barrier(unsigned* barrier) {
    __syncthreads();
    if (threadIdx.x == 0) {
        volatile unsigned* generation = barrier + 1;
        const unsigned seen = *generation;
        __threadfence();
        if (atomicAdd(barrier, 1u) == gridDim.x - 1) {  // the last to arrive opens the next generation
            atomicExch(barrier, 0u);
            __threadfence();
            atomicAdd(barrier + 1, 1u);
        } else {
            while (*generation == seen) __nanosleep(64);
        }
        __threadfence();
    }
    __syncthreads();
}

