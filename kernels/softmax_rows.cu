// softmax_rows: the fused half of the large-shape path. Where W (k x d) does
// not fit in shared memory, fastsoftmax/backends/cuda/large.py computes a chunk of logits
// with cuBLAS (cupy.matmul: X_chunk @ W^T, unscaled) and these kernels finish
// each row in place, with x_scale and the bias applied as the row is read (so
// z = x_scale * (X @ W^T) + b costs no pass of its own):
//  - softmax_rows: z -> softmax(z)                       (linear_softmax)
//  - softmax_rows_gradient: z -> g = softmax(z) - onehot(y), and each warp's
//    loss sum and argmax hits into its slot of `part`    (the gradient; the
//    host then takes dW = G^T @ X_chunk with cuBLAS and db = sum of G's rows),
//    by segments of k columns: a sweep's models side by side (kernels/sweep.cu)
// Reference: linear_softmax and linear_softmax_cross_entropy in
// fastsoftmax/reference/kernels.py; the whole path is tested against them in
// tests/test_cuda_large.py. CPU twin: fastsoftmax/backends/cpu/large.py, with
// sgemm for the products and the same fused pass in Numba.
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

// z (nrows, groups * k) T, in place: each row holds `groups` segments of k
// logits (the models of a sweep, stacked: fastsoftmax/backends/cuda/sweep.py; one for
// a single model), and segment g of row r becomes
// softmax(x_scale * z[r, g k ..] + b[g k ..]) - onehot(label), label =
// y[rows[first + r]] (y[first + r] when rows is null: the epoch's order
// gathers its batch). Warp w of the grid (blockIdx.x * ROWS + its index) sums
// its rows' loss and argmax hits per segment into part[2 (w groups + g)] and
// part[2 (w groups + g) + 1], zeros if it had no row: the host adds the
// grid * ROWS slots of each segment in a fixed order. Hits stay exact as T
// while a warp counts fewer than 2^24 rows.
template <typename T>
__global__ void __launch_bounds__(THREADS)
softmax_rows_gradient(T* __restrict__ z, const T* __restrict__ b, T x_scale, int k, int groups, int nrows,
                      const long long* __restrict__ rows, long long first, const long long* __restrict__ y,
                      T* __restrict__ part) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    const long long warp = (long long)blockIdx.x * ROWS + threadIdx.x / WARP;
    T* sums = part + 2 * warp * groups;  // this warp's (loss, hits) per segment: lane 0 alone writes them
    if (lane == 0)
        for (int g = 0; g < 2 * groups; ++g) sums[g] = T(0);
    for (long long row = warp; row < nrows; row += (long long)gridDim.x * ROWS) {
        const int label = int(y[rows ? rows[first + row] : first + row]);
        for (int g = 0; g < groups; ++g) {
            T* zr = z + (row * groups + g) * k;
            const T* bg = b + (long long)g * k;
            const T zy = x_scale * zr[label] + bg[label];
            const WarpRowSoftmax<T> s(zr, bg, x_scale, k, lane);
            __syncwarp();  // every lane has read columns 0 and label before their owners overwrite them
            for (int c = lane; c < k; c += WARP) zr[c] = s.prob(x_scale * zr[c] + bg[c]) - T(c == label);
            if (lane == 0) {
                sums[2 * g] += s.loss(zy);
                sums[2 * g + 1] += T(s.top == label);
            }
        }
    }
}
