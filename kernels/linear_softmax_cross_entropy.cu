// linear_softmax_cross_entropy: the fused training kernel. For the rows of a
// batch it computes, reading X once and never writing the (n, k) logits, the
// mean cross-entropy of softmax(x_scale * X @ W + b) (each row's term times its
// sample weight, where there are weights), the number of rows whose argmax is
// the label (unweighted), and the gradients dW, db. The blocks' partial sums are
// then added in a fixed order (bit-reproducible, unlike atomics), giving the
// gradient or taking the SGD step: reduce_partials after a launch of
// linear_softmax_cross_entropy (one call), or, for a whole epoch, sgd_epoch: a
// persistent kernel whose blocks step through every minibatch together, one
// launch per epoch. Reference: linear_softmax_cross_entropy and train_epoch in
// fastsoftmax/reference/kernels.py; CPU twins: _rows_part (block_partials) and
// _class_mean (reduce_element) in fastsoftmax/backends/cpu/fused.py.
//
// Block = 256 threads, one tile of TR = 256 / G rows at a time:
//  1. the tile's rows (gathered through the epoch's order) are staged in
//     shared memory: the gradient pass needs them again after the softmax;
//  2. row pass: a group of G lanes per row computes its K logits from W in
//     shared memory, then the softmax, loss, argmax and g = w (softmax - onehot),
//     w the row's sample weight (common.cuh's row_weight: 1 without weights);
//  3. gradient pass: each thread owns 4 columns and adds g[r][c] * x[r][j]
//     over the tile's rows into the block's dW in shared memory.
// G is chosen by the host: 8 for many rows (fewer shuffles per row), 32 for a
// minibatch (a batch of 256 rows spreads over 32 blocks, because at that
// size the step is latency bound and more blocks finish sooner).
#include "common.cuh"
#include "schedules.cuh"  // learning_rate: the schedule of sgd_epoch's steps

// Shared memory, in this order: W (K x dp, T), dW (K x dp, T), the X tile
// (TR x dp, TX), per-row values (TR x (K + PART_EXTRA), T): g while a tile is
// in flight, then the groups' db, loss and hits. dp = pad4(d). The host
// computes the same size (fastsoftmax/backends/cuda/fused.py); the CPU emulator of the tests
// gives a launch exactly that much, so a kernel reaching past it faults there.
//
// Writes this block's row of partial sums to out: dW (K x d, unscaled: sum of
// g x), db (K), loss (1, the sum of w * loss), hits (1), over the tiles
// blockIdx.x, blockIdx.x + gridDim.x, ... of the batch. Rows first .. first +
// nrows of the batch are rows[first + i] of X, or first + i when rows is null;
// sample_weight (null: every row weighs 1) is indexed, as y, by X's row. coef and b are read
// without __restrict__: sgd_epoch writes them between calls, and a restrict
// const pointer may be read through the non-coherent cache.
template <typename T, typename TX, int K, int G>
__device__ void block_partials(const TX* __restrict__ X, const long long* __restrict__ rows, long long first,
                               int nrows, const long long* __restrict__ y, const T* __restrict__ sample_weight,
                               const T* coef, const T* b, T x_scale, int d, int x_vec16, int coef_vec16,
                               unsigned char* smem, T* __restrict__ out) {
    constexpr int TR = THREADS / G;
    constexpr int KV = K + PART_EXTRA;  // per-row values: K gradients (or db), loss, hits
    const int dp = pad4(d);
    T* W_s = reinterpret_cast<T*>(smem);
    T* dW_s = W_s + K * dp;
    TX* X_s = reinterpret_cast<TX*>(dW_s + K * dp);
    T* v_s = reinterpret_cast<T*>(X_s + TR * dp);  // TR * dp * sizeof(TX) is a multiple of 32 bytes

    stage_rows(W_s, coef, nullptr, 0, K, d, coef_vec16);
    zero_padding(W_s, K, d);
    zero_padding(X_s, TR, d);
    for (int i = threadIdx.x; i < K * dp; i += THREADS) dW_s[i] = T(0);
    T bias[K], db[K];
#pragma unroll
    for (int c = 0; c < K; ++c) bias[c] = b[c], db[c] = T(0);
    T loss = T(0), hits = T(0);  // this group's sums (every lane of the group holds them)
    __syncthreads();  // a block with no tile of this batch (sgd_epoch's last step) reads dW_s as zeroed

    const int lane = threadIdx.x % G, row = threadIdx.x / G;  // the group takes one row of each tile
    const int tiles = (nrows + TR - 1) / TR;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const long long tile_first = first + (long long)t * TR;
        const int count = min(TR, nrows - t * TR);
        stage_rows(X_s, X, rows, tile_first, count, d, x_vec16);
        __syncthreads();

        const TX* x[1] = {X_s + row * dp};
        T z[1][K];
        group_logits<T, TX, K, G, 1, 4>(x, W_s, dp, dp, lane, z);
        if (row < count) {
            const long long xrow = rows ? rows[tile_first + row] : tile_first + row;
            const int label = int(y[xrow]);
            const T w = row_weight(sample_weight, xrow);
            T zy = T(0);
#pragma unroll
            for (int c = 0; c < K; ++c) {
                z[0][c] = x_scale * z[0][c] + bias[c];
                if (c == label) zy = z[0][c];  // compile-time c keeps z in registers
            }
            const RowSoftmax<T, K> s(z[0]);
            loss += w * s.loss(zy);
            hits += T(s.top == label);
#pragma unroll
            for (int c = 0; c < K; ++c) {
                const T g = w * (s.prob(z[0][c]) - T(c == label));
                db[c] += g;
                if (c % G == lane) v_s[row * KV + c] = g;
            }
        }
        __syncthreads();

        // Thread owns columns 4q..4q+3: its dW values are its own, no atomics,
        // and the sum over rows runs in row order.
        for (int q = threadIdx.x; q < dp / 4; q += THREADS) {
            T acc[K][4] = {};
            for (int r = 0; r < count; ++r) {
                T xv[4];
                load4(X_s + r * dp + 4 * q, xv);
#pragma unroll
                for (int c = 0; c < K; ++c) {
                    const T g = v_s[r * KV + c];  // same address across the warp: a broadcast
#pragma unroll
                    for (int i = 0; i < 4; ++i) acc[c][i] += g * xv[i];
                }
            }
#pragma unroll
            for (int c = 0; c < K; ++c)
#pragma unroll
                for (int i = 0; i < 4; ++i) dW_s[c * dp + 4 * q + i] += acc[c][i];
        }
        __syncthreads();  // the next tile overwrites X_s and v_s
    }

    for (int i = threadIdx.x; i < K * d; i += THREADS) out[i] = dW_s[(i / d) * dp + i % d];
    if (lane == 0) {
#pragma unroll
        for (int c = 0; c < K; ++c) v_s[row * KV + c] = db[c];
        v_s[row * KV + K] = loss;
        v_s[row * KV + K + 1] = hits;
    }
    __syncthreads();
    // hits stay exact as T while a block counts fewer than 2^24 rows
    for (int e = threadIdx.x; e < KV; e += THREADS) {
        T s = T(0);
        for (int g = 0; g < TR; ++g) s += v_s[g * KV + e];
        out[K * d + e] = s;
    }
}

template <typename T, typename TX, int K, int G>
__global__ void __launch_bounds__(THREADS)
linear_softmax_cross_entropy(const TX* __restrict__ X, const long long* __restrict__ rows, long long first, int nrows,
                             const long long* __restrict__ y, const T* __restrict__ sample_weight,
                             const T* __restrict__ coef, const T* __restrict__ b, T x_scale, int d, int x_vec16,
                             int coef_vec16, T* __restrict__ part) {
    DYNAMIC_SHARED_MEMORY(smem);
    block_partials<T, TX, K, G>(X, rows, first, nrows, y, sample_weight, coef, b, x_scale, d, x_vec16, coef_vec16,
                                smem, part + (long long)blockIdx.x * (K * d + K + PART_EXTRA));
}

// Element e of a row of partial sums (dW, db, loss, hits), added over the
// nparts rows in part order. step < 0: writes the mean gradient to w, b, the
// mean loss and the hits. step >= 0: step `step` of an epoch, in place,
// w -= rate * (dW + weight_decay * w), b -= rate * db, and adds the batch's
// loss sum and hits to the epoch's (step 0 starts them).
template <typename T>
__device__ __forceinline__ void reduce_element(int e, const T* __restrict__ part, int nparts, int k, int d,
                                               int nrows, T x_scale, T* w, T* b, int step, T rate, T weight_decay,
                                               T* loss, long long* hits) {
    const int kd = k * d, stride = kd + k + PART_EXTRA;
    T total = T(0);
#pragma unroll 8
    for (int p = 0; p < nparts; ++p) total += part[(long long)p * stride + e];  // coalesced across threads

    const T inv_n = T(1) / T(nrows);
    if (e < kd + k) {
        const bool is_w = e < kd;
        const T grad = (is_w ? x_scale : T(1)) * total * inv_n;
        T* param = is_w ? w + e : b + (e - kd);
        if (step < 0) *param = grad;
        else *param -= rate * (is_w ? grad + weight_decay * *param : grad);
    } else if (e == kd + k) {
        *loss = step < 0 ? total * inv_n : (step > 0 ? *loss : T(0)) + total;
    } else {
        *hits = (step > 0 ? *hits : 0) + (long long)total;
    }
}

// The mean gradient of the nparts partial rows (linear_softmax_cross_entropy's
// one call): thread e owns element e of a row, dW, db, loss or hits.
template <typename T>
__global__ void __launch_bounds__(THREADS)
reduce_partials(const T* __restrict__ part, int nparts, int k, int d, int nrows, T x_scale, T* __restrict__ w,
                T* __restrict__ b, T* __restrict__ loss, long long* __restrict__ hits) {
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e < k * d + k + PART_EXTRA)
        reduce_element(e, part, nparts, k, d, nrows, x_scale, w, b, -1, T(0), T(0), loss, hits);
}

// One epoch of minibatch SGD in one launch: a persistent kernel, launched
// cooperatively (every block resident), whose blocks step through the epoch's
// batches together. Per step s (rows s * batch .. of the visiting order
// `rows`): each block writes its partial sums of the batch (block_partials),
// the grid meets, each block reduces a slice of the elements and takes the
// SGD step on it (reduce_element; rate of the run's step start_step + s),
// and the grid meets again before the next step stages the new W. So a step
// is two grid barriers instead of two dependent launches.
//
// start_step is the run's step at which this epoch starts (the cosine
// schedule's position); the host passes it with the launch. The barrier words
// are left as they were found (grid_barrier), so the next epoch of the run
// launches with the same buffers and nothing else. Expected per step on an
// H100 at batch 256, d = 784, k = 10 with 32 blocks (not measured): staging W
// (31 KB from L2) ~0.3 us, a block's 8 rows ~0.5 us, reducing 32 x 7852
// partial sums (1 MB over 32 blocks) ~0.3 us, two grid barriers ~1-2 us:
// about 3 us a step, 0.7 ms an epoch of 235 steps.
template <typename T, typename TX, int K, int G>
__global__ void __launch_bounds__(THREADS)
sgd_epoch(const TX* __restrict__ X, const long long* __restrict__ y, const T* __restrict__ sample_weight,
          const long long* __restrict__ rows, long long n, int batch_size, T* coef, T* b, T x_scale, int d,
          int x_vec16, int coef_vec16,
          T weight_decay, int kind, double peak, long long total_steps, long long start_step,
          T* __restrict__ part, T* loss, long long* hits, unsigned* barrier) {
    DYNAMIC_SHARED_MEMORY(smem);
    const long long steps = (n + batch_size - 1) / batch_size;
    const int stride = K * d + K + PART_EXTRA;
    for (long long s = 0; s < steps; ++s) {
        const long long first = s * batch_size;
        const int nrows = int(min((long long)batch_size, n - first));
        block_partials<T, TX, K, G>(X, rows, first, nrows, y, sample_weight, coef, b, x_scale, d, x_vec16,
                                    coef_vec16, smem, part + (long long)blockIdx.x * stride);
        grid_barrier(barrier);
        const T rate = learning_rate<T>(kind, peak, total_steps, start_step + s);
        for (int e = blockIdx.x * THREADS + threadIdx.x; e < stride; e += gridDim.x * THREADS)
            reduce_element(e, part, int(gridDim.x), K, d, nrows, x_scale, coef, b, int(s), rate, weight_decay,
                           loss, hits);
        grid_barrier(barrier);
    }
}
