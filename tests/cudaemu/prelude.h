// CUDA on the CPU: the built-ins the kernels of kernels/*.cu use, for g++ -std=c++20.
//
// tests/cudaemu/compiler.py pastes this file in front of a kernel source (the
// exact text NVRTC would compile) and compiles the result as a shared library.
// Every CUDA thread of a block runs as its own OS thread (runtime.h), so
// __syncthreads is a real barrier and warp shuffles really exchange values.

#include <atomic>
#include <cmath>
#include <math.h>  // the float overloads of exp, log, ... in the global namespace
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>
#include <utility>

// We compile like NVRTC: only the name expressions asked for are instantiated.
#define __CUDACC_RTC__ 1
#define __CUDAEMU__ 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static
// Static shared memory: one object per process (one block runs at a time),
// filled with 0xFF before every block (compiler.py finds these function-local
// statics by their symbols; namespace-scope __shared__ is not supported).
// A cooperative launch (all blocks at once) refuses a module that has any.
#define __shared__ static __attribute__((used))
// Dynamic shared memory: the current block's buffer of exactly the launch's
// shared_mem bytes, followed by a PROT_NONE page (kernels/common.cuh); each
// block of a cooperative launch has its own.
#define DYNAMIC_SHARED_MEMORY(name) unsigned char* const name = ::cudaemu::dynamic_shared()

// ---- vector types, with CUDA's alignment ----
#define CUDAEMU_VEC1(N, T, A) \
    struct __attribute__((aligned(A))) N { T x; }; \
    inline constexpr N make_##N(T x) { return N{x}; }
#define CUDAEMU_VEC2(N, T, A) \
    struct __attribute__((aligned(A))) N { T x, y; }; \
    inline constexpr N make_##N(T x, T y) { return N{x, y}; }
#define CUDAEMU_VEC3(N, T) \
    struct N { T x, y, z; }; \
    inline constexpr N make_##N(T x, T y, T z) { return N{x, y, z}; }
#define CUDAEMU_VEC4(N, T, A) \
    struct __attribute__((aligned(A))) N { T x, y, z, w; }; \
    inline constexpr N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
#define CUDAEMU_VECS(N, T, A1, A2, A4) \
    CUDAEMU_VEC1(N##1, T, A1) CUDAEMU_VEC2(N##2, T, A2) CUDAEMU_VEC3(N##3, T) CUDAEMU_VEC4(N##4, T, A4)
CUDAEMU_VECS(char, signed char, 1, 2, 4)
CUDAEMU_VECS(uchar, unsigned char, 1, 2, 4)
CUDAEMU_VECS(short, short, 2, 4, 8)
CUDAEMU_VECS(ushort, unsigned short, 2, 4, 8)
CUDAEMU_VECS(int, int, 4, 8, 16)
CUDAEMU_VECS(uint, unsigned, 4, 8, 16)
CUDAEMU_VECS(longlong, long long, 8, 16, 16)
CUDAEMU_VECS(ulonglong, unsigned long long, 8, 16, 16)
CUDAEMU_VECS(float, float, 4, 8, 16)
CUDAEMU_VECS(double, double, 8, 16, 16)
#undef CUDAEMU_VEC1
#undef CUDAEMU_VEC2
#undef CUDAEMU_VEC3
#undef CUDAEMU_VEC4
#undef CUDAEMU_VECS

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The current thread's coordinates: each CUDA thread is an OS thread.
static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static thread_local dim3 blockDim;
static thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---- bit casts and integer intrinsics ----
inline float __uint_as_float(unsigned u) { return __builtin_bit_cast(float, u); }
inline unsigned __float_as_uint(float f) { return __builtin_bit_cast(unsigned, f); }
inline float __int_as_float(int i) { return __builtin_bit_cast(float, i); }
inline int __float_as_int(float f) { return __builtin_bit_cast(int, f); }
inline long long __double_as_longlong(double d) { return __builtin_bit_cast(long long, d); }
inline double __longlong_as_double(long long i) { return __builtin_bit_cast(double, i); }
inline int __double2hiint(double d) { return int(__builtin_bit_cast(unsigned long long, d) >> 32); }
inline int __double2loint(double d) { return int(__builtin_bit_cast(unsigned long long, d)); }

// PTX prmt.b32, default mode: bytes 0-3 are x's, 4-7 are y's; selector nibble
// n picks result byte n (its low 3 bits), bit 3 replicates the picked byte's sign.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; ++n) {
        const unsigned sel = (s >> (4 * n)) & 0xFu;
        unsigned byte = static_cast<unsigned>(v >> (8 * (sel & 7u))) & 0xFFu;
        if (sel & 8u) byte = (byte & 0x80u) ? 0xFFu : 0u;
        r |= byte << (8 * n);
    }
    return r;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz(static_cast<unsigned>(x)) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll(static_cast<unsigned long long>(x)) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}

// ---- math: the float and double overloads come from <math.h>; CUDA extras ----
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// min / max as CUDA overloads them: mixed integer types by the usual arithmetic
// conversions (int and unsigned -> unsigned, ...), floating point as fmin/fmax.
template <typename A, typename B,
          std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
    else return C(b) < C(a) ? C(b) : C(a);
}
template <typename A, typename B,
          std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
    else return C(a) < C(b) ? C(b) : C(a);
}

// ---- memory ----
template <typename T>
inline T __ldg(const T* p) { return *p; }

// ---- atomics: std::atomic_ref on the device word ----
#define CUDAEMU_ATOMIC(NAME, EXPR)                                                   \
    template <typename T>                                                           \
    inline std::enable_if_t<std::is_arithmetic_v<T>, T> NAME(T* address, T val) {   \
        std::atomic_ref<T> a(*address);                                             \
        return EXPR;                                                                \
    }
CUDAEMU_ATOMIC(atomicAdd, a.fetch_add(val))
CUDAEMU_ATOMIC(atomicSub, a.fetch_sub(val))
CUDAEMU_ATOMIC(atomicExch, a.exchange(val))
CUDAEMU_ATOMIC(atomicAnd, a.fetch_and(val))
CUDAEMU_ATOMIC(atomicOr, a.fetch_or(val))
CUDAEMU_ATOMIC(atomicXor, a.fetch_xor(val))
#undef CUDAEMU_ATOMIC
// Stores val where replaces(old, val), atomically; returns the old value.
template <typename T, typename Replaces>
inline T cudaemu_atomic_replace(T* address, T val, Replaces replaces) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (replaces(old, val) && !a.compare_exchange_weak(old, val)) {}
    return old;
}
template <typename T>
inline T atomicMax(T* address, T val) { return cudaemu_atomic_replace(address, val, [](T o, T v) { return o < v; }); }
template <typename T>
inline T atomicMin(T* address, T val) { return cudaemu_atomic_replace(address, val, [](T o, T v) { return v < o; }); }
template <typename T>
inline T atomicCAS(T* address, T compare, T val) {
    std::atomic_ref<T> a(*address);
    a.compare_exchange_strong(compare, val);
    return compare;
}
template <typename T>
inline T atomicAdd_block(T* address, T val) { return atomicAdd(address, val); }
// ((old >= val) ? 0 : old + 1) and ((old == 0 || old > val) ? val : old - 1), atomically.
inline unsigned atomicInc(unsigned* address, unsigned val) {
    std::atomic_ref<unsigned> a(*address);
    unsigned old = a.load();
    while (!a.compare_exchange_weak(old, old >= val ? 0u : old + 1u)) {}
    return old;
}
inline unsigned atomicDec(unsigned* address, unsigned val) {
    std::atomic_ref<unsigned> a(*address);
    unsigned old = a.load();
    while (!a.compare_exchange_weak(old, old == 0u || old > val ? val : old - 1u)) {}
    return old;
}

#include "runtime.h"

// ---- fences and sleeps: where a kernel spins waiting for other blocks ----
// Volatile reads of device memory are plain loads g++ does not hoist out of a
// loop; with the seq_cst atomics above and these fences (x86: TSO) a spin on a
// flag another block sets sees it. The fences and __nanosleep also stop the
// thread once the launch has failed, so a spinning thread cannot outlive it.
inline void __threadfence() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    ::cudaemu::poll_fault();
}
inline void __threadfence_block() { __threadfence(); }
// The SM's cycle counter; the emulator's clock runs at 1 GHz (nanoseconds of CLOCK_MONOTONIC).
inline long long clock64() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
inline void __threadfence_system() { __threadfence(); }
// Really sleeps (1 us doubling to 1 ms while the thread keeps calling it), so
// spinners leave the CPU to the threads they wait for (runtime.h, nanosleep_).
inline void __nanosleep(unsigned ns, std::source_location loc = std::source_location::current()) {
    ::cudaemu::nanosleep_(ns, loc.line());
}

// ---- synchronisation: real barriers (runtime.h); call sites tagged by line:column ----
inline void __syncthreads(std::source_location loc = std::source_location::current()) {
    ::cudaemu::block_barrier(::cudaemu::SYNCTHREADS, loc.line(), loc.column(), 0);
}
inline int __syncthreads_count(int pred, std::source_location loc = std::source_location::current()) {
    return int(::cudaemu::block_barrier(::cudaemu::SYNCTHREADS, loc.line(), loc.column(), pred != 0));
}
inline int __syncthreads_and(int pred, std::source_location loc = std::source_location::current()) {
    return ::cudaemu::block_barrier(::cudaemu::SYNCTHREADS, loc.line(), loc.column(), pred != 0) ==
           static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z;
}
inline int __syncthreads_or(int pred, std::source_location loc = std::source_location::current()) {
    return ::cudaemu::block_barrier(::cudaemu::SYNCTHREADS, loc.line(), loc.column(), pred != 0) != 0;
}
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__syncwarp");
    ::cudaemu::warp_exchange(0, loc.line(), loc.column());
}

// ---- warp shuffles and votes: full masks only ----
template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__shfl_sync");
    const int lane = ::cudaemu::lane_id(), base = lane & ~(width - 1);
    return ::cudaemu::shuffle(var, base + (srcLane & (width - 1)), loc.line(), loc.column());
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                         std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__shfl_xor_sync");
    const int lane = ::cudaemu::lane_id(), src = lane ^ laneMask;
    return ::cudaemu::shuffle(var, (src | (width - 1)) > (lane | (width - 1)) ? lane : src, loc.line(), loc.column());
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__shfl_down_sync");
    const int lane = ::cudaemu::lane_id(), src = lane + int(delta);
    return ::cudaemu::shuffle(var, (src | (width - 1)) > (lane | (width - 1)) ? lane : src, loc.line(), loc.column());
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__shfl_up_sync");
    const int lane = ::cudaemu::lane_id(), src = lane - int(delta);
    return ::cudaemu::shuffle(var, src < (lane & ~(width - 1)) ? lane : src, loc.line(), loc.column());
}
inline unsigned __ballot_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__ballot_sync");
    return ::cudaemu::ballot(pred != 0, loc.line(), loc.column());
}
inline int __all_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__all_sync");
    return ::cudaemu::ballot(pred != 0, loc.line(), loc.column()) == ::cudaemu::warp_lanes_mask();
}
inline int __any_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    ::cudaemu::check_mask(mask, "__any_sync");
    return ::cudaemu::ballot(pred != 0, loc.line(), loc.column()) != 0;
}
inline unsigned __activemask() { return ::cudaemu::warp_lanes_mask(); }
