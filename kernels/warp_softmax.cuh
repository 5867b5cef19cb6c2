// One row of k logits (k a runtime value of any size) taken by one warp: its
// softmax statistics, and the one formula of a row's weighted gradient
// g = w (softmax - onehot) with its loss and argmax hit. Shared by the
// large-shape path (softmax_rows.cu, after cuBLAS wrote the logits) and the
// sparse path (sparse.cu, after the warp summed the logits from X's non-zeros).
//
// Each lane takes every 32nd column, so a warp's loads of a row are contiguous
// (coalesced), and the lanes' partial results are combined by xor shuffles in
// a fixed order, so the result is bit-reproducible and every lane ends with the
// same bits (the combination is commutative, and the two lanes of each
// exchange add the same two terms). One pass for max and sum: the online
// normalizer recurrence of Milakov & Gimelshein, "Online normalizer
// calculation for softmax" (2018).
#pragma once

#include "common.cuh"

// A row's softmax state from the warp's lanes: max logit m, sum of exp(z - m),
// first argmax (numpy's: the lowest index among equal maxima), of the row
// x_scale * z + b. Every lane starts from column 0's logit with an empty sum
// (lane 0 counts column 0 itself), so no lane needs an infinity and every max
// is a real logit. All 32 lanes of the warp must construct it (full-mask shuffles).
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

// The row zr of k logits, in place: zr[c] becomes
// w * (softmax(x_scale * zr + b)[c] - (c == label)), the gradient of the row's
// weighted loss. Returns that loss, w * -log softmax[label], and sets hit to
// whether the row's first argmax is its label (unweighted); every lane gets
// the same values. The warp's lanes must have written zr before (a __syncwarp
// between), and all 32 lanes call it.
template <typename T>
__device__ __forceinline__ T warp_row_gradient(T* zr, const T* __restrict__ b, T x_scale, int k, int label, T w,
                                               int lane, bool& hit) {
    const T zy = x_scale * zr[label] + b[label];
    const WarpRowSoftmax<T> s(zr, b, x_scale, k, lane);
    __syncwarp();  // every lane has read columns 0 and label before their owners overwrite them
    for (int c = lane; c < k; c += WARP) zr[c] = w * (s.prob(x_scale * zr[c] + b[c]) - T(c == label));
    hit = s.top == label;
    return w * s.loss(zy);
}
