// Portability header for every cuda/*.cu kernel file: the same source compiles with NVRTC (GPU) and
// with g++ against the host emulation in cuda/emu/ (tests). Kernels include nothing from CUDA.
#pragma once

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
// ---- NVRTC / nvcc -------------------------------------------------------------------------------
#define MTFM_REGISTER_KERNEL(name)
#define MTFM_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#else
// ---- host emulation ----------------------------------------------------------------------------
#include "emu/cuda_emu.h"
#endif

#define MTFM_KERNEL extern "C" __global__

// Full unrolling on the GPU (register arrays indexed by the loop variable stay in registers); nothing on the host.
#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#define MTFM_UNROLL _Pragma("unroll")
#else
#define MTFM_UNROLL
#endif

#define MTFM_FULL_MASK 0xffffffffu

typedef long long mtfm_i64;
typedef unsigned long long mtfm_u64;

__device__ __forceinline__ float mtfm_nan() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ float mtfm_inf() { return __int_as_float(0x7f800000); }

__device__ __forceinline__ float mtfm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float mtfm_silu(float x) { return x / (1.0f + expf(-x)); }
// d silu / dx = s + x s (1 - s), s = sigmoid(x)
__device__ __forceinline__ float mtfm_silu_grad(float x) {
    float s = mtfm_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

// Sum over the 32 lanes of a (full) warp; every lane gets the total.
__device__ __forceinline__ float mtfm_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(MTFM_FULL_MASK, v, o);
    return v;
}

// Sum over the block; blockDim.x must be a multiple of 32 and at most 1024. `scratch` is 32 floats of
// shared memory. Every thread gets the total. Fixed reduction order: deterministic.
__device__ __forceinline__ float mtfm_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = mtfm_warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    return mtfm_warp_sum(t);
}

// ---- bf16 and tensor-core primitives ------------------------------------------------------------
// bf16 values are raw 16-bit patterns (the upper half of an fp32); two of them packed in a 32-bit register hold the
// lower-index element in the lower 16 bits (the PTX .bf16x2 convention). The conversions are bit operations, so the
// GPU and the host emulation give identical bits.

// fp32 -> bf16, round to nearest even; NaN stays NaN (quietened, sign kept); overflow rounds to ±inf as IEEE does.
__device__ __forceinline__ unsigned mtfm_f32_to_bf16(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
__device__ __forceinline__ float mtfm_bf16_to_f32(unsigned b) { return __uint_as_float((b & 0xffffu) << 16); }
// Two fp32 values as one .bf16x2 register: lo in bits 0-15, hi in bits 16-31.
__device__ __forceinline__ unsigned mtfm_pack_bf16x2(float lo, float hi) {
    return mtfm_f32_to_bf16(lo) | (mtfm_f32_to_bf16(hi) << 16);
}

// D += A·B on the tensor cores, one warp (all 32 lanes, converged): m16n8k16, A 16×16 row-major bf16, B 16×8
// column-major bf16, fp32 accumulate. Fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"), g = lane >> 2, t = lane & 3:
//   a[0] = A[g][2t, 2t+1]    a[1] = A[g+8][2t, 2t+1]    a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]    b[1] = B[2t+8, 2t+9][g]
//   d[0], d[1] = D[g][2t, 2t+1]                          d[2], d[3] = D[g+8][2t, 2t+1]
#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
__device__ __forceinline__ void mtfm_mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
// Host: a warp collective of the emulation (cuda/emu): every lane of the warp must arrive at the same call; the runtime
// gathers all fragments, computes the 16×8 product (exact products, each D element rounded once to fp32) and writes
// every lane's d. Partial warps and divergent lanes are reported as launch errors.
inline void mtfm_mma_bf16_16816(float d[4], const unsigned a[4], const unsigned b[2],
                                const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    mtfm_emu_mma_bf16_16816(d, a, b, file, line);
}
#endif
