// softmax_rows: the fused half of the large-shape path. Where W (k x d) does
// not fit in shared memory, fastsoftmax/backends/cuda/large.py computes a chunk of logits
// with cuBLAS (cupy.matmul: X_chunk @ W^T, unscaled) and these kernels finish
// each row in place, with x_scale and the bias applied as the row is read (so
// z = x_scale * (X @ W^T) + b costs no pass of its own):
//  - softmax_rows: z -> softmax(z)                       (linear_softmax)
//  - softmax_rows_gradient: z -> g = w (softmax(z) - onehot(y)), w the row's
//    sample weight, and each warp's weighted loss sum and argmax hits into its
//    slot of `part`                                      (the gradient; the
//    host then takes dW = G^T @ X_chunk with cuBLAS and db = sum of G's rows),
//    by segments of k columns: a sweep's models side by side (kernels/sweep.cu)
//  - hessian_rows: [z | u] (the logits at W and along a direction V, both from
//    one cuBLAS product) -> r = w (p * u - p (p . u)), p = softmax(z): the rows
//    of a Hessian-vector product (fastsoftmax/backends/cuda/hessian.py, and
//    sparse.py's, which sums [z | u] from X's non-zeros)
//  - cross_entropy_rows: z -> each row's cross-entropy with label smoothing,
//    and g = s (softmax(z) - q), q the smoothed one-hot target: the classifier
//    head of fastsoftmax/backends/cuda/cross_entropy.py (PyTorch's and JAX's
//    fused linear cross-entropy)
// Reference: linear_softmax, linear_softmax_cross_entropy, linear_softmax_hessian_product and
// linear_cross_entropy in
// fastsoftmax/reference/kernels.py; the whole path is tested against them in
// tests/test_cuda_large.py. CPU twin: fastsoftmax/backends/cpu/large.py, with
// sgemm for the products and the same fused pass in Numba.
//
// One warp per row, k a runtime argument of any size (warp_softmax.cuh: the
// row's statistics, and the gradient's one formula). The row is read twice
// (statistics, then the write pass, the second read mostly from L1/L2) and
// written once: memory bound, ~12 bytes per logit in fp32.
#include "common.cuh"
#include "warp_softmax.cuh"  // WarpRowSoftmax, warp_row_gradient

namespace softmax_rows_tile {
constexpr int ROWS = ROWS_PER_WARP_BLOCK;  // rows per block at a time: one per warp (kernels/geometry.py)
}  // namespace softmax_rows_tile

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
// w * (softmax(x_scale * z[r, g k ..] + b[g k ..]) - onehot(label)), where
// X's row is rows[first + r] (first + r when rows is null: the epoch's order
// gathers its batch), label = y[that row] and w = sample_weight[that row]
// (1 when sample_weight is null). Warp w of the grid (blockIdx.x * ROWS + its
// index) sums its rows' weighted losses and (unweighted) argmax hits per
// segment into part[2 (w groups + g)] and part[2 (w groups + g) + 1], zeros if
// it had no row: the host adds the grid * ROWS slots of each segment in a
// fixed order. Hits stay exact as T while a warp counts fewer than 2^24 rows.
template <typename T>
__global__ void __launch_bounds__(THREADS)
softmax_rows_gradient(T* __restrict__ z, const T* __restrict__ b, T x_scale, int k, int groups, int nrows,
                      const long long* __restrict__ rows, long long first, const long long* __restrict__ y,
                      const T* __restrict__ sample_weight, T* __restrict__ part) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    const long long warp = (long long)blockIdx.x * ROWS + threadIdx.x / WARP;
    T* sums = part + 2 * warp * groups;  // this warp's (loss, hits) per segment: lane 0 alone writes them
    if (lane == 0)
        for (int g = 0; g < 2 * groups; ++g) sums[g] = T(0);
    for (long long row = warp; row < nrows; row += (long long)gridDim.x * ROWS) {
        const long long xrow = rows ? rows[first + row] : first + row;
        const int label = int(y[xrow]);
        const T w = row_weight(sample_weight, xrow);
        for (int g = 0; g < groups; ++g) {
            bool hit;
            const T loss = warp_row_gradient(z + (row * groups + g) * k, b + (long long)g * k, x_scale, k, label, w,
                                             lane, hit);
            if (lane == 0) {
                sums[2 * g] += loss;
                sums[2 * g + 1] += T(hit);
            }
        }
    }
}

// zu (nrows, 2k) T: row r holds the unscaled logits z at W and u along the
// direction; g (nrows, k) gets g[r] = w (p * v - p (p . v)), p = softmax(x_scale
// z + b), v = x_scale u + vb, w = sample_weight[first + r] (1 when null): the
// logits' Hessian of the row's weighted loss times v. p . v is summed by the
// lanes, then combined by xor shuffles in a fixed order (every lane the same bits).
template <typename T>
__global__ void __launch_bounds__(THREADS)
hessian_rows(const T* __restrict__ zu, const T* __restrict__ b, const T* __restrict__ vb, T x_scale, int k,
             int nrows, const T* __restrict__ sample_weight, long long first, T* __restrict__ g) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    for (long long row = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; row < nrows;
         row += (long long)gridDim.x * ROWS) {
        const T* zr = zu + row * 2 * k;
        const T* ur = zr + k;
        const WarpRowSoftmax<T> s(zr, b, x_scale, k, lane);
        T pv = T(0);
        for (int c = lane; c < k; c += WARP) pv += s.prob(x_scale * zr[c] + b[c]) * (x_scale * ur[c] + vb[c]);
#pragma unroll
        for (int off = WARP / 2; off > 0; off /= 2) pv += __shfl_xor_sync(FULL_MASK, pv, off);
        const T w = row_weight(sample_weight, first + row);
        T* gr = g + row * k;
        for (int c = lane; c < k; c += WARP) {
            const T v = x_scale * ur[c] + vb[c];
            gr[c] = w * s.prob(x_scale * zr[c] + b[c]) * (v - pv);
        }
    }
}

// z (nrows, k) T, a chunk's logits without the bias, whose rows are rows first.. of the input: losses[first + r]
// = row r's cross-entropy against y[first + r] with label smoothing e, (1 - e)(lse - z_y) + e (lse - mean z),
// lse the log-sum-exp of z[r] + b; and, where scale is not null, z[r] becomes in place
// scale[first + r] (softmax(z[r] + b) - q), q = e / k everywhere plus 1 - e on the label: the gradient
// of the row's scaled loss in its logits. The logits' sum is combined by xor shuffles as the softmax's.
template <typename T>
__global__ void __launch_bounds__(THREADS)
cross_entropy_rows(T* __restrict__ z, const T* __restrict__ b, int k, int nrows, const long long* __restrict__ y,
                   long long first, T smoothing, const T* __restrict__ scale, T* __restrict__ losses) {
    using namespace softmax_rows_tile;
    const int lane = threadIdx.x % WARP;
    for (long long row = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; row < nrows;
         row += (long long)gridDim.x * ROWS) {
        T* zr = z + row * k;
        const int label = int(y[first + row]);
        const T zy = zr[label] + b[label];
        const WarpRowSoftmax<T> s(zr, b, T(1), k, lane);
        T total = T(0);
        for (int c = lane; c < k; c += WARP) total += zr[c] + b[c];
#pragma unroll
        for (int off = WARP / 2; off > 0; off /= 2) total += __shfl_xor_sync(FULL_MASK, total, off);
        const T lse = log(s.sum) + s.m;
        if (lane == 0) losses[first + row] = (T(1) - smoothing) * (lse - zy) + smoothing * (lse - total / T(k));
        if (!scale) continue;
        const T w = scale[first + row], off_target = smoothing / T(k);
        __syncwarp();  // every lane has read its columns and the label's before their owners overwrite them
        for (int c = lane; c < k; c += WARP)
            zr[c] = w * (s.prob(zr[c] + b[c]) - off_target - (c == label ? T(1) - smoothing : T(0)));
    }
}
