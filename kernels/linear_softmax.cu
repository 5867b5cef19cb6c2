// linear_softmax: P = softmax(x_scale * X @ W + b) by rows, fused, so the
// (n, k) logits never reach global memory. Reference: linear_softmax in
// fastsoftmax/reference/kernels.py; CPU twin: linear_softmax in
// fastsoftmax/backends/cpu/fused.py.
//
// Bound: on Fashion-MNIST (d = 784, k = 10) a row is 784 bytes of uint8 read
// once for 7840 FMAs, so the kernel is memory bound only if the FMAs stay
// cheap. W (k x d, 31 KB in fp32) lives in shared memory; 8 lanes share a row
// (a group's loads of a row are contiguous) and each lane carries R = 4 rows,
// so every W value read from shared memory feeds 4 FMAs per column: shared
// memory bandwidth, not the loads of X, would otherwise be the limit.
// X is read straight from global memory: each value is used once, staging it
// would only add a shared-memory round trip.
#include "common.cuh"

namespace linear_softmax_tile {
constexpr int G = FORWARD_GROUP;          // lanes per row group
constexpr int R = FORWARD_ROWS_PER_LANE;  // rows per lane
constexpr int ROWS = THREADS / G * R;     // rows per block iteration
}  // namespace linear_softmax_tile

// X (n, d) TX, coef (K, d) T, b (K,) T -> P (n, K) T. Shared memory: K * pad4(d) T.
// V = 4 when d % 4 == 0 and X is 4-value aligned (vector loads), else 1.
template <typename T, typename TX, int K, int V>
__global__ void __launch_bounds__(THREADS)
linear_softmax(const TX* __restrict__ X, const T* __restrict__ coef, const T* __restrict__ b, T x_scale,
               long long n, int d, int coef_vec16, T* __restrict__ P) {
    using namespace linear_softmax_tile;
    DYNAMIC_SHARED_MEMORY(smem);
    T* W_s = reinterpret_cast<T*>(smem);
    const int dp = pad4(d);
    stage_rows(W_s, coef, nullptr, 0, K, d, coef_vec16);
    zero_padding(W_s, K, d);
    T bias[K];
#pragma unroll
    for (int c = 0; c < K; ++c) bias[c] = b[c];
    __syncthreads();

    const int lane = threadIdx.x % G;
    const int first_row = threadIdx.x / G * R;
    for (long long base = (long long)blockIdx.x * ROWS; base < n; base += (long long)gridDim.x * ROWS) {
        // Rows past n repeat row n - 1: every lane must take part in the shuffles.
        const TX* x[R];
#pragma unroll
        for (int r = 0; r < R; ++r) x[r] = X + min(base + first_row + r, n - 1) * d;
        T z[R][K];
        group_logits<T, TX, K, G, R, V>(x, W_s, dp, d, lane, z);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const long long row = base + first_row + r;
            if (row >= n) break;
#pragma unroll
            for (int c = 0; c < K; ++c) z[r][c] = x_scale * z[r][c] + bias[c];
            const RowSoftmax<T, K> s(z[r]);
            // The group's lanes split the row's K outputs (every lane holds all
            // logits); c stays a compile-time index so z stays in registers.
#pragma unroll
            for (int c = 0; c < K; ++c)
                if (c % G == lane) P[row * K + c] = s.prob(z[r][c]);
        }
    }
}
