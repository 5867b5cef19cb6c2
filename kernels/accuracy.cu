// count_correct (the accuracy kernel): how many rows of scores (n, K) have
// their first argmax equal to the label. Reference: accuracy in
// fastsoftmax/reference/kernels.py; CPU twin: count_correct in
// fastsoftmax/backends/cpu/logits.py.
//
// One thread per row, memory bound on the n * K reads. Counts are integers,
// so one atomic add per block gives the same total in any order: a single
// launch, still reproducible. The host zeroes *count first.
#include "common.cuh"

template <typename T, int K>
__global__ void __launch_bounds__(THREADS)
count_correct(const T* __restrict__ scores, const long long* __restrict__ y, int n,
              unsigned long long* __restrict__ count) {
    const long long row = (long long)blockIdx.x * THREADS + threadIdx.x;
    bool hit = false;
    if (row < n) {
        T z[K], best;
#pragma unroll
        for (int c = 0; c < K; ++c) z[c] = scores[row * K + c];
        hit = first_argmax(z, best) == y[row];
    }
    const int hits = __syncthreads_count(hit);
    if (threadIdx.x == 0 && hits) atomicAdd(count, (unsigned long long)hits);
}
