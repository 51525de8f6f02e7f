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
