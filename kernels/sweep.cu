// sweep: the SGD step of the large-shape path, for m >= 1 models at once. The
// m models of k classes are stacked as one (m k, d) weight matrix, so a
// batch's logits for every model are one cuBLAS product and its weight
// gradients one more; softmax_rows_gradient (softmax_rows.cu) finishes each
// model's k columns of a row in between. This kernel then steps every model,
// each with its own rate and decay: one launch a step whatever m is
// (fastsoftmax/backends/cuda/large.py's step, for a sweep (sweep.py) and for
// a single model on the large path, m = 1). Reference: each model trained
// alone, fastsoftmax/reference/kernels.py's train_epoch; tested against the
// CPU sweep and single fits in tests/test_sweep.py and tests/test_cuda_large.py.
//
// Memory bound: it reads W and the summed gradient and writes W, 12 bytes a
// weight in fp32; the m rates are computed once per block (a double cos each
// for the cosine schedule) into shared memory, not once per weight.
#include "common.cuh"
#include "schedules.cuh"  // learning_rate, as sgd_epoch computes it

// Thread e (grid-stride) owns element e of [coef (m k d) | b (m k) | the m
// models' (loss, hits)]. dsum (m k, d) and dbsum (m k) are the batch's
// unscaled gradient sums, stats (m x 2) its loss sums and hits per model.
// Model i = row / k steps as reduce_partials' rule (linear_softmax_cross_
// entropy.cu) with rate learning_rate(kind, lrs[i], total_steps, step) and
// decay weight_decays[i]: coef -= rate * (x_scale * dsum / nrows +
// decay * coef), b -= rate * dbsum / nrows; loss[i] and hits[i] add the batch's.
// Dynamic shared memory: m rates and m decays, in T.
template <typename T>
__global__ void __launch_bounds__(THREADS)
sgd_step_many(T* __restrict__ coef, T* __restrict__ b, const T* __restrict__ dsum, const T* __restrict__ dbsum,
              const T* __restrict__ stats, const double* __restrict__ lrs, const double* __restrict__ weight_decays,
              int kind, long long total_steps, long long step, int m, int k, int d, int nrows, T x_scale,
              T* __restrict__ loss, long long* __restrict__ hits) {
    DYNAMIC_SHARED_MEMORY(smem);
    T* rate = reinterpret_cast<T*>(smem);
    T* decay = rate + m;
    for (int i = threadIdx.x; i < m; i += THREADS) {
        rate[i] = learning_rate<T>(kind, lrs[i], total_steps, step);
        decay[i] = T(weight_decays[i]);
    }
    __syncthreads();
    const long long kd = (long long)k * d, weights = m * kd, biases = (long long)m * k;
    const T inv_n = T(1) / T(nrows);
    for (long long e = (long long)blockIdx.x * THREADS + threadIdx.x; e < weights + biases + m;
         e += (long long)gridDim.x * THREADS) {
        if (e < weights) {
            const int i = int(e / kd);
            coef[e] -= rate[i] * (x_scale * dsum[e] * inv_n + decay[i] * coef[e]);
        } else if (e < weights + biases) {
            const long long j = e - weights;
            b[j] -= rate[j / k] * (dbsum[j] * inv_n);
        } else {
            const long long i = e - weights - biases;
            loss[i] += stats[2 * i];
            hits[i] += (long long)stats[2 * i + 1];
        }
    }
}
