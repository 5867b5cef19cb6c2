// sparse: the kernels of a CSR X (fastsoftmax.arrays.CSR: data, indices,
// indptr), which is never densified. The host side, with the lazy weight
// decay and the cost of a step, is fastsoftmax/backends/cuda/sparse.py; CPU
// twin: fastsoftmax/backends/cpu/sparse.py; reference: fastsoftmax/reference/
// kernels.py on the dense copy of X (tests/test_cuda_sparse.py).
//
// The weights are V (d, width) row-major, width = groups * k: a sweep's models
// side by side (one model: groups = 1), W = s V per model with a scale s the
// host keeps. A feature's width weights are one run of memory, so a warp's
// lanes, which take every 32nd column, read and update them coalesced. Every
// kernel gives a row a warp (grid-stride, ROWS_PER_WARP_BLOCK rows a block at
// a time), and k may be any size (10^5 classes: the lanes stride over them).
//
// A chunk of rows (an SGD step's batch, or a chunk of a gradient) is three launches:
//  1. sparse_rows_gradient: a row's logits from its non-zeros (row_logits), then
//     warp_row_gradient (warp_softmax.cuh, the large path's formula) turns them
//     into g = w (softmax - onehot) in a (rows, width) buffer, each warp
//     summing its rows' weighted losses and hits;
//  2. sparse_scatter: target[feature] += c * value * g for each non-zero: only
//     the rows of V the chunk's features touch (atomicAdd, as rows sharing a
//     feature add at once: the order of those adds, and so the last bits of
//     V, may differ from run to run on a GPU);
//  3. add_column_sums: the bias target += c' * g's column sums (rows in order),
//     the loss and hit accumulators += the warps' sums (warps in order).
// A batch larger than a chunk steps once its chunks are all done: they scatter
// into dV (d, width), kept zero between steps, and sparse_apply then adds the
// rows of dV the batch touched into V, and db into b, zeroing them again.
//
// A Hessian-vector product (fastsoftmax/backends/cuda/sparse.py) reuses sparse_logits, at the weights and
// the direction side by side, and sparse_scatter, with softmax_rows.cu's hessian_rows in between.
//
// plan: three values per model g, in T: plan[3 g] multiplies a row's sums of
// value * V (x_scale times the model's lazy scale s), plan[3 g + 1] is the
// scatter's c and plan[3 g + 2] the bias's c'.
#include "common.cuh"
#include "warp_softmax.cuh"  // warp_row_gradient

namespace sparse_tile {
constexpr int ROWS = ROWS_PER_WARP_BLOCK;  // rows per block at a time: one per warp (kernels/geometry.py)
}  // namespace sparse_tile

// z[e] = sum over the non-zeros p in [lo, hi) of data[p] * V[indices[p], e], for
// e < width: lane l takes columns l, l + 32, ..., each summing the row's
// non-zeros in their order (repeated features add up). All lanes of the warp call it.
template <typename T, typename I>
__device__ __forceinline__ void row_logits(const T* __restrict__ data, const I* __restrict__ indices, I lo, I hi,
                                           const T* __restrict__ V, int width, int lane, T* __restrict__ z) {
    for (int e = lane; e < width; e += WARP) {
        T acc = T(0);
        for (I p = lo; p < hi; ++p) acc += data[p] * V[(long long)indices[p] * width + e];
        z[e] = acc;
    }
}

// z (n, width) = X @ V, unscaled (linear_softmax and linear_logits: the host
// then applies x_scale and the bias, as the large path does after cuBLAS).
template <typename T, typename I>
__global__ void __launch_bounds__(THREADS)
sparse_logits(const T* __restrict__ data, const I* __restrict__ indices, const I* __restrict__ indptr, long long n,
              const T* __restrict__ V, int width, T* __restrict__ z) {
    using namespace sparse_tile;
    const int lane = threadIdx.x % WARP;
    for (long long row = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; row < n;
         row += (long long)gridDim.x * ROWS)
        row_logits(data, indices, indptr[row], indptr[row + 1], V, width, lane, z + row * width);
}

// X's row of chunk row r: rows[first + r] (the epoch's order), or first + r when rows is null.
__device__ __forceinline__ long long chunk_row(const long long* __restrict__ rows, long long first, long long r) {
    return rows ? rows[first + r] : first + r;
}

// Rows r < count of the chunk: z[r] (width) becomes each model's g = w (softmax(plan[3 g] * x @ V_g +
// b_g) - onehot(y)), w = sample_weight[row] (1 where null); warp j of the grid writes its rows'
// weighted loss and hit sums of model g to part[2 (j groups + g)] and part[2 (j groups + g) + 1].
template <typename T, typename I>
__global__ void __launch_bounds__(THREADS)
sparse_rows_gradient(const T* __restrict__ data, const I* __restrict__ indices, const I* __restrict__ indptr,
                     const long long* __restrict__ rows, long long first, int count, const long long* __restrict__ y,
                     const T* __restrict__ sample_weight, const T* __restrict__ V, const T* __restrict__ b,
                     const T* __restrict__ plan, int k, int groups, T* __restrict__ z, T* __restrict__ part) {
    using namespace sparse_tile;
    const int lane = threadIdx.x % WARP, width = k * groups;
    const long long warp = (long long)blockIdx.x * ROWS + threadIdx.x / WARP;
    T* sums = part + 2 * warp * groups;  // lane 0 alone writes them
    if (lane == 0)
        for (int g = 0; g < 2 * groups; ++g) sums[g] = T(0);
    for (long long r = warp; r < count; r += (long long)gridDim.x * ROWS) {
        const long long row = chunk_row(rows, first, r);
        T* zr = z + r * width;
        row_logits(data, indices, indptr[row], indptr[row + 1], V, width, lane, zr);
        __syncwarp();  // the row's logits, each written by its lane, before every lane reads them all
        const int label = int(y[row]);
        const T w = row_weight(sample_weight, row);
        for (int g = 0; g < groups; ++g) {
            bool hit;
            const T loss = warp_row_gradient(zr + g * k, b + (long long)g * k, plan[3 * g], k, label, w, lane, hit);
            if (lane == 0) {
                sums[2 * g] += loss;
                sums[2 * g + 1] += T(hit);
            }
        }
    }
}

// target (d, width)[indices[p], e] += plan[3 (e / k) + 1] * data[p] * G[r, e] for every non-zero p of
// every chunk row r < count: the weight gradient's share of the rows, into V itself (an SGD step) or
// into a sum (dV). Zero g values (weight 0, or a softmax that underflowed) add nothing and are skipped.
template <typename T, typename I>
__global__ void __launch_bounds__(THREADS)
sparse_scatter(const T* __restrict__ data, const I* __restrict__ indices, const I* __restrict__ indptr,
               const long long* __restrict__ rows, long long first, int count, const T* __restrict__ G,
               const T* __restrict__ plan, int k, int groups, T* target) {
    using namespace sparse_tile;
    const int lane = threadIdx.x % WARP, width = k * groups;
    for (long long r = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; r < count;
         r += (long long)gridDim.x * ROWS) {
        const long long row = chunk_row(rows, first, r);
        const I lo = indptr[row], hi = indptr[row + 1];
        for (int e = lane; e < width; e += WARP) {
            const T ge = plan[3 * (e / k) + 1] * G[r * width + e];
            if (ge != T(0))
                for (I p = lo; p < hi; ++p) atomicAdd(target + (long long)indices[p] * width + e, ge * data[p]);
        }
    }
}

// Thread e (grid-stride) of [0, width + groups): for a column e < width,
// bias[e] += plan[3 (e / k) + 2] * sum of G[r, e] over r < count, in row order;
// for a model g = e - width, loss[g] and hits[g] add the nparts warps' sums of
// it (sparse_rows_gradient's part), in warp order. Hits stay exact as T while
// a chunk counts fewer than 2^24 rows.
template <typename T>
__global__ void __launch_bounds__(THREADS)
add_column_sums(const T* __restrict__ G, int count, const T* __restrict__ plan, int k, int groups,
                const T* __restrict__ part, int nparts, T* __restrict__ bias, T* __restrict__ loss,
                long long* __restrict__ hits) {
    const int width = k * groups;
    for (int e = blockIdx.x * THREADS + threadIdx.x; e < width + groups; e += gridDim.x * THREADS) {
        if (e < width) {
            T s = T(0);
            for (int r = 0; r < count; ++r) s += G[(long long)r * width + e];  // coalesced across threads
            bias[e] += plan[3 * (e / k) + 2] * s;
        } else {
            const int g = e - width;
            T l = T(0), h = T(0);
            for (int p = 0; p < nparts; ++p) {
                l += part[2 * ((long long)p * groups + g)];
                h += part[2 * ((long long)p * groups + g) + 1];
            }
            loss[g] += l;
            hits[g] += (long long)h;
        }
    }
}

// *p, leaving 0 there, atomically: of the warps whose rows share a feature,
// one takes dV's sum and the others take 0.
__device__ __forceinline__ float take(float* p) { return atomicExch(p, 0.0f); }
__device__ __forceinline__ double take(double* p) {
    return __longlong_as_double((long long)atomicExch(reinterpret_cast<unsigned long long*>(p), 0ull));
}

// The deferred step of a batch of count rows: V's rows of the batch's features += dV's (taken, so each
// is added once and dV is zero again), and b += db, db = 0.
template <typename T, typename I>
__global__ void __launch_bounds__(THREADS)
sparse_apply(const I* __restrict__ indices, const I* __restrict__ indptr, const long long* __restrict__ rows,
             long long first, int count, int width, T* dV, T* V, T* __restrict__ db, T* __restrict__ b) {
    using namespace sparse_tile;
    const int lane = threadIdx.x % WARP;
    for (long long r = (long long)blockIdx.x * ROWS + threadIdx.x / WARP; r < count;
         r += (long long)gridDim.x * ROWS) {
        const long long row = chunk_row(rows, first, r);
        for (I p = indptr[row]; p < indptr[row + 1]; ++p) {
            const long long base = (long long)indices[p] * width;
            for (int e = lane; e < width; e += WARP) {
                const T v = take(dV + base + e);
                if (v != T(0)) V[base + e] += v;  // the one thread that took the sum
            }
        }
    }
    for (int e = blockIdx.x * THREADS + threadIdx.x; e < width; e += gridDim.x * THREADS) {
        b[e] += db[e];
        db[e] = T(0);
    }
}
