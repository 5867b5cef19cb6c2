// softmax_rows: the fused half of the large-shape path. Where W (k x d) does
// not fit in shared memory, fastsoftmax/cuda.py computes a chunk of logits
// with cuBLAS (cupy.matmul: X_chunk @ W^T, unscaled) and these kernels finish
// each row in place, with x_scale and the bias applied as the row is read (so
// z = x_scale * (X @ W^T) + b costs no pass of its own):
//  - softmax_rows: z -> softmax(z)                       (linear_softmax)
//  - softmax_rows_gradient: z -> g = softmax(z) - onehot(y), and each warp's
//    loss sum and argmax hits into its slot of `part`    (the gradient; the
//    host then takes dW = G^T @ X_chunk with cuBLAS and db = sum of G's rows)
// Reference: linear_softmax and linear_softmax_cross_entropy in
// fastsoftmax/reference.py; the whole path is tested against them in
// tests/test_cuda_large.py (the CPU backend has no large-shape path: it keeps
// W in cache, not in a fixed-size shared memory).
//
// One warp per row, k a runtime argument of any size: each lane takes every
// 32nd column, so a warp's loads of a row are contiguous (coalesced), and the
// lanes' partial results are combined by xor shuffles in a fixed order, so the
// result is bit-reproducible and every lane ends with the same bits (the
// combination is commutative, and the two lanes of each exchange add the same
// two terms). The row is read twice (statistics, then the write pass, the
// second read mostly from L1/L2) and written once: memory bound, ~12 bytes per
// logit in fp32. One pass for max and sum: the online normalizer recurrence
// of Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018).
#include "common.cuh"

namespace softmax_rows_tile {
constexpr int ROWS = ROWS_PER_WARP_BLOCK;  // rows per block at a time: one per warp (kernels/geometry.py)
}  // namespace softmax_rows_tile

// A row's softmax state from the warp's lanes: max logit m, sum of exp(z - m),
// first argmax (numpy's: the lowest index among equal maxima). Every lane
// starts from column 0's logit with an empty sum (lane 0 counts column 0
// itself), so no lane needs an infinity and every max is a real logit.
// All 32 lanes of the warp must construct it (full-mask shuffles).
template <typename T>
struct WarpRowSoftmax {
    T m, sum;
    int top;
    __device__ __forceinline__ WarpRowSoftmax(const T* z, const T* __restrict__ b, T x_scale, int k, int lane) {
        m = x_scale * z[0] + b[0];
        sum = T(lane == 0);
        top = 0;
        for (int c = lane == 0 ? WARP : lane; c < k; c += WARP) {
            const T v = x_scale * z[c] + b[c];
            if (v > m) {  // strict: a later equal value does not take the argmax
                sum = sum * exp(m - v) + T(1);
                m = v;
                top = c;
            } else {
                sum += exp(v - m);
            }
        }
#pragma unroll
        for (int off = WARP / 2; off > 0; off /= 2) {
            const T om = __shfl_xor_sync(FULL_MASK, m, off);
            const T osum = __shfl_xor_sync(FULL_MASK, sum, off);
            const int otop = __shfl_xor_sync(FULL_MASK, top, off);
            const T nm = max(m, om);
            sum = sum * exp(m - nm) + osum * exp(om - nm);
            if (om > m || (om == m && otop < top)) top = otop;
            m = nm;
        }
    }
    __device__ __forceinline__ T prob(T zc) const { return exp(zc - m) / sum; }
    // -log softmax(z)[y] = log(sum) + m - z[y]
    __device__ __forceinline__ T loss(T zy) const { return log(sum) + m - zy; }
};

// z (nrows, k) T, in place: row r becomes softmax(x_scale * z[r] + b).
template <typename T>
__global__ void __launch_bounds__(THREADS)
softmax_rows(T* __restrict__ z, const T* __restrict__ b, T x_scale, int k, int nrows) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    for (long long row = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; row < nrows;
         row += (long long)gridDim.x * ROWS) {
        T* zr = z + row * k;
        const WarpRowSoftmax<T> s(zr, b, x_scale, k, lane);
        __syncwarp();  // every lane has read column 0 before lane 0 overwrites it
        for (int c = lane; c < k; c += WARP) zr[c] = s.prob(x_scale * zr[c] + b[c]);
    }
}

// z (nrows, k) T, in place: row r becomes softmax(x_scale * z[r] + b) - onehot(label),
// label = y[rows[first + r]] (y[first + r] when rows is null: the epoch's order
// gathers its batch). Warp w of the grid (blockIdx.x * ROWS + its index) writes
// its rows' loss sum and argmax hits to part[2w], part[2w + 1], zeros if it had
// no row: the host adds the grid * ROWS pairs in a fixed order. Hits stay exact
// as T while a warp counts fewer than 2^24 rows.
template <typename T>
__global__ void __launch_bounds__(THREADS)
softmax_rows_gradient(T* __restrict__ z, const T* __restrict__ b, T x_scale, int k, int nrows,
                      const long long* __restrict__ rows, long long first, const long long* __restrict__ y,
                      T* __restrict__ part) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    const long long warp = (long long)blockIdx.x * ROWS + threadIdx.x / WARP;
    T loss = T(0), hits = T(0);
    for (long long row = warp; row < nrows; row += (long long)gridDim.x * ROWS) {
        T* zr = z + row * k;
        const int label = int(y[rows ? rows[first + row] : first + row]);
        const T zy = x_scale * zr[label] + b[label];
        const WarpRowSoftmax<T> s(zr, b, x_scale, k, lane);
        __syncwarp();  // every lane has read columns 0 and label before their owners overwrite them
        for (int c = lane; c < k; c += WARP) zr[c] = s.prob(x_scale * zr[c] + b[c]) - T(c == label);
        loss += s.loss(zy);
        hits += T(s.top == label);
    }
    if (lane == 0) {
        part[2 * warp] = loss;
        part[2 * warp + 1] = hits;
    }
}
