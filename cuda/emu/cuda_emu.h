// Host emulation of the small CUDA subset the kernels in cuda/*.cu use (see docs/cuda.md).
// Threads of a block run as fibers on one OS thread, blocks run one after another. Every
// collective (__syncthreads, warp shuffles/votes, __syncwarp) is a runtime call that yields;
// collectives are identified by source line so divergent barriers are reported precisely.
// Never included by NVRTC: cuda/common.cuh selects this header only when __CUDACC_RTC__ is unset.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)

// __shared__ variables become statics (blocks run sequentially). Outside ASan builds they live in
// one linker section so the runtime can poison all of them with NaN bytes before every block; the
// ASan build leaves them as ordinary statics so that ASan puts red zones around each of them.
#if defined(MTFM_EMU_ASAN)
#define __shared__ static
#else
#define __shared__ static __attribute__((section("mtfm_emu_shared"), aligned(16)))
#endif

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
    constexpr dim3() = default;
    constexpr dim3(unsigned int x_, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern "C" {
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
}
constexpr int warpSize = 32;

extern "C" void mtfm_emu_syncthreads(const char* file, int line);
extern "C" int mtfm_emu_syncthreads_or(int predicate, const char* file, int line);
extern "C" unsigned long long mtfm_emu_warp_collective(int op, unsigned mask, unsigned long long value, int arg,
                                                       int width, const char* file, int line);
extern "C" void* mtfm_emu_dynamic_shared(void);
// Warp-wide m16n8k16 bf16 tensor-core product (see mtfm_mma_bf16_16816 in cuda/common.cuh): a collective with the full
// mask; the runtime reads every lane's a[4], b[2], d[4] and writes every lane's d.
extern "C" void mtfm_emu_mma_bf16_16816(float* d, const unsigned* a, const unsigned* b, const char* file, int line);

namespace mtfm_emu {

enum WarpOp : int {
    kShflIdx = 0,
    kShflUp = 1,
    kShflDown = 2,
    kShflXor = 3,
    kBallot = 4,
    kAny = 5,
    kAll = 6,
    kSyncWarp = 7,
    kMmaBf16 = 8,
};

// What a lane deposits for kMmaBf16 (pointers into its own stack frame, valid while it waits).
struct MmaOperands {
    float* d;
    const unsigned* a;
    const unsigned* b;
};


using Invoker = void (*)(void (*)(), void**);
}  // namespace mtfm_emu
extern "C" void mtfm_emu_register_kernel(const char* name, void (*fn)(), mtfm_emu::Invoker invoker);
namespace mtfm_emu {

template <typename... A, std::size_t... I>
inline void invoke_impl(void (*f)(A...), void** params, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
}
// Unpacks the void** parameter array of cuLaunchKernel into a call with the kernel's own types.
template <typename... A>
inline void invoke(void (*f)(), void** params) {
    invoke_impl(reinterpret_cast<void (*)(A...)>(f), params, std::index_sequence_for<A...>{});
}
struct Registrar {
    template <typename... A>
    Registrar(const char* name, void (*f)(A...)) {
        mtfm_emu_register_kernel(name, reinterpret_cast<void (*)()>(f), &invoke<A...>);
    }
};

template <typename T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp collectives move values of at most 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

}  // namespace mtfm_emu

#define MTFM_EMU_CAT2(a, b) a##b
#define MTFM_EMU_CAT(a, b) MTFM_EMU_CAT2(a, b)
// Makes a kernel launchable by name (like cuModuleGetFunction). Empty under NVRTC.
#define MTFM_REGISTER_KERNEL(name) \
    static ::mtfm_emu::Registrar MTFM_EMU_CAT(mtfm_emu_registrar_, __LINE__)(#name, &name);
// Dynamic shared memory: exactly the launch's sharedBytes, NaN-filled, fresh per block.
#define MTFM_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(mtfm_emu_dynamic_shared())

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    mtfm_emu_syncthreads(file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return mtfm_emu_syncthreads_or(predicate, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    mtfm_emu_warp_collective(mtfm_emu::kSyncWarp, mask, 0, 0, 32, file, line);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
    return mtfm_emu::from_bits<T>(
        mtfm_emu_warp_collective(mtfm_emu::kShflIdx, mask, mtfm_emu::to_bits(v), src, width, file, line));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
    return mtfm_emu::from_bits<T>(mtfm_emu_warp_collective(mtfm_emu::kShflUp, mask, mtfm_emu::to_bits(v),
                                                                     (int)delta, width, file, line));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
    return mtfm_emu::from_bits<T>(mtfm_emu_warp_collective(mtfm_emu::kShflDown, mask, mtfm_emu::to_bits(v),
                                                                     (int)delta, width, file, line));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
    return mtfm_emu::from_bits<T>(mtfm_emu_warp_collective(mtfm_emu::kShflXor, mask, mtfm_emu::to_bits(v),
                                                                     laneMask, width, file, line));
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (unsigned)mtfm_emu_warp_collective(mtfm_emu::kBallot, mask, pred ? 1 : 0, 0, 32, file, line);
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (int)mtfm_emu_warp_collective(mtfm_emu::kAny, mask, pred ? 1 : 0, 0, 32, file, line);
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return (int)mtfm_emu_warp_collective(mtfm_emu::kAll, mask, pred ? 1 : 0, 0, 32, file, line);
}

// Atomics: fibers never yield inside them, so a plain read-modify-write is atomic here.
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline int atomicAdd(int* p, int v) { int o = *p; *p = (int)((unsigned)o + (unsigned)v); return o; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long o = *p; *p = o + v; return o;
}
inline int atomicMax(int* p, int v) { int o = *p; if (v > o) *p = v; return o; }
inline unsigned atomicMax(unsigned* p, unsigned v) { unsigned o = *p; if (v > o) *p = v; return o; }
inline int atomicMin(int* p, int v) { int o = *p; if (v < o) *p = v; return o; }
inline int atomicCAS(int* p, int cmp, int v) { int o = *p; if (o == cmp) *p = v; return o; }
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) { unsigned o = *p; if (o == cmp) *p = v; return o; }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
    unsigned long long o = *p; if (o == cmp) *p = v; return o;
}
inline int atomicExch(int* p, int v) { int o = *p; *p = v; return o; }
inline float atomicExch(float* p, float v) { float o = *p; *p = v; return o; }

// Math intrinsics: computed exactly on the host (the GPU's fast versions differ in the last bits).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, 4); return x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
