// softmax_cross_entropy: mean cross-entropy of logits (n, K) against labels y,
// and its gradient dlogits = (softmax - onehot) / n. Reference:
// softmax_cross_entropy in fastsoftmax/reference/kernels.py; CPU twin:
// softmax_cross_entropy in fastsoftmax/backends/cpu/logits.py.
//
// One thread per row: a row is K contiguous values (40 bytes for k = 10), so
// a warp reads 32 consecutive rows, a contiguous span; the kernel is memory
// bound on the n * K reads and writes. The loss is summed per block in a fixed
// tree order, then over blocks in block order by mean_of_partials, so the
// result is bit-reproducible (float atomics would not be).
#include "common.cuh"

template <typename T, int K>
__global__ void __launch_bounds__(THREADS)
softmax_cross_entropy(const T* __restrict__ logits, const long long* __restrict__ y, int n,
                      T* __restrict__ dlogits, T* __restrict__ part) {
    __shared__ T red[THREADS];
    const long long row = (long long)blockIdx.x * THREADS + threadIdx.x;
    T loss = T(0);
    if (row < n) {
        T z[K];
#pragma unroll
        for (int c = 0; c < K; ++c) z[c] = logits[row * K + c];
        const int label = int(y[row]);
        const RowSoftmax<T, K> s(z);
        const T inv_n = T(1) / T(n);
#pragma unroll
        for (int c = 0; c < K; ++c) {
            if (c == label) loss = s.loss(z[c]);  // compile-time c keeps z in registers
            dlogits[row * K + c] = (s.prob(z[c]) - T(c == label)) * inv_n;
        }
    }
    const T total = block_sum(loss, red);
    if (threadIdx.x == 0) part[blockIdx.x] = total;
}

// One block: loss = (sum of the nparts block sums) / n, in a fixed order.
template <typename T>
__global__ void __launch_bounds__(THREADS)
mean_of_partials(const T* __restrict__ part, int nparts, int n, T* __restrict__ loss) {
    __shared__ T red[THREADS];
    T s = T(0);
    for (int p = threadIdx.x; p < nparts; p += THREADS) s += part[p];
    const T total = block_sum(s, red);
    if (threadIdx.x == 0) *loss = total / T(n);
}
