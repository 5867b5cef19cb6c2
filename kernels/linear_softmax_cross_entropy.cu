// linear_softmax_cross_entropy: the fused training kernel. For the rows of a
// batch it computes, reading X once and never writing the (n, k) logits, the
// mean cross-entropy of softmax(x_scale * X @ W + b), the number of rows whose
// argmax is the label, and the gradients dW, db. A second kernel adds the
// blocks' partial sums in a fixed order (bit-reproducible, unlike atomics) and
// either returns the gradient or takes the SGD step, so one training step is
// two launches and no host round trip. Reference: linear_softmax_cross_entropy
// and train_epoch in fastsoftmax/reference.py; CPU twins: _part_gradients
// (this kernel) and _reduce_parts (reduce_partials) in fastsoftmax/cpu.py.
//
// Block = 256 threads, one tile of TR = 256 / G rows at a time:
//  1. the tile's rows (gathered through the epoch's order) are staged in
//     shared memory: the gradient pass needs them again after the softmax;
//  2. row pass: a group of G lanes per row computes its K logits from W in
//     shared memory, then the softmax, loss, argmax and g = softmax - onehot;
//  3. gradient pass: each thread owns 4 columns and adds g[r][c] * x[r][j]
//     over the tile's rows into the block's dW in shared memory.
// G is chosen by the host: 8 for many rows (fewer shuffles per row), 32 for a
// minibatch (a batch of 256 rows spreads over 32 blocks, because at that
// size the step is latency bound and more blocks finish sooner).
#include "common.cuh"

// Shared memory, in this order: W (K x dp, T), dW (K x dp, T), the X tile
// (TR x dp, TX), per-row values (TR x (K + PART_EXTRA), T): g while a tile is
// in flight, then the groups' db, loss and hits. dp = pad4(d). The host
// computes the same size (fastsoftmax/cuda.py); the CPU emulator of the tests
// gives a launch exactly that much, so a kernel reaching past it faults there.
//
// Writes one row of partial sums per block to part: dW (K x d, unscaled:
// sum of g x), db (K), loss (1), hits (1). Rows first .. first + nrows of the
// batch are rows[first + i] of X, or first + i when rows is null.
template <typename T, typename TX, int K, int G>
__global__ void __launch_bounds__(THREADS)
linear_softmax_cross_entropy(const TX* __restrict__ X, const long long* __restrict__ rows, long long first, int nrows,
                             const long long* __restrict__ y, const T* __restrict__ coef, const T* __restrict__ b,
                             T x_scale, int d, int x_vec16, int coef_vec16, T* __restrict__ part) {
    constexpr int TR = THREADS / G;
    constexpr int KV = K + PART_EXTRA;  // per-row values: K gradients (or db), loss, hits
    DYNAMIC_SHARED_MEMORY(smem);
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
            const int label = int(y[rows ? rows[tile_first + row] : tile_first + row]);
            T zy = T(0);
#pragma unroll
            for (int c = 0; c < K; ++c) {
                z[0][c] = x_scale * z[0][c] + bias[c];
                if (c == label) zy = z[0][c];  // compile-time c keeps z in registers
            }
            const RowSoftmax<T, K> s(z[0]);
            loss += s.loss(zy);
            hits += T(s.top == label);
#pragma unroll
            for (int c = 0; c < K; ++c) {
                const T g = s.prob(z[0][c]) - T(c == label);
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

    T* out = part + (long long)blockIdx.x * (K * d + KV);
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

// Adds the nparts partial rows in part order; thread e owns element e of a row
// (dW, db, loss, hits). step < 0: writes the mean gradient to w, b, the mean
// loss and the hits. step >= 0: step `step` of an epoch, in place,
// w -= rate * (dW + weight_decay * w), b -= rate * db, and adds the batch's
// loss sum and hits to the epoch's (step 0 starts them). The rate is that of
// the run's step *first_step + step: fastsoftmax/schedules.py's learning_rate
// (kind 0, cosine: peak * 0.5 * (1 + cos(pi * t / total_steps)); else peak),
// in double and rounded once to T, as the CPU epoch does. The first step is
// read from device memory, so one captured graph serves every epoch of a run.
template <typename T>
__global__ void __launch_bounds__(THREADS)
reduce_partials(const T* __restrict__ part, int nparts, int k, int d, int nrows, T x_scale, T* __restrict__ w,
                T* __restrict__ b, int kind, double peak, long long total_steps,
                const long long* __restrict__ first_step, int step, T weight_decay, T* __restrict__ loss,
                long long* __restrict__ hits) {
    const int kd = k * d, stride = kd + k + PART_EXTRA;
    const int e = blockIdx.x * THREADS + threadIdx.x;
    if (e >= stride) return;
    T total = T(0);
#pragma unroll 8
    for (int p = 0; p < nparts; ++p) total += part[(long long)p * stride + e];  // coalesced across threads

    const T inv_n = T(1) / T(nrows);
    if (e < kd + k) {
        const bool is_w = e < kd;
        const T grad = (is_w ? x_scale : T(1)) * total * inv_n;
        T* param = is_w ? w + e : b + (e - kd);
        if (step < 0) {
            *param = grad;
        } else {
            const double t = double(*first_step + step);
            const T rate = T(kind == 0 ? peak * 0.5 * (1.0 + cos(3.141592653589793 * t / double(total_steps))) : peak);
            *param -= rate * (is_w ? grad + weight_decay * *param : grad);
        }
    } else if (e == kd + k) {
        *loss = step < 0 ? total * inv_n : (step > 0 ? *loss : T(0)) + total;
    } else {
        *hits = (step > 0 ? *hits : 0) + (long long)total;
    }
}
