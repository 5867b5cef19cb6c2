// The rate of step t of a run: fastsoftmax/reference/schedules.py's learning_rate (kind
// 0, cosine: peak * 0.5 * (1 + cos(pi * t / total_steps)); else peak), in
// double and rounded once to T, as the CPU epoch does. Shared by sgd_epoch
// (linear_softmax_cross_entropy.cu) and sgd_step_many (sweep.cu).
#pragma once

template <typename T>
__device__ __forceinline__ T learning_rate(int kind, double peak, long long total_steps, long long t) {
    return T(kind == 0 ? peak * 0.5 * (1.0 + cos(3.141592653589793 * double(t) / double(total_steps))) : peak);
}
