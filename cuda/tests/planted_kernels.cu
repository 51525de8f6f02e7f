// Deliberately broken kernels: each one reads or writes out of bounds in a different kind of memory.
// Built only into mtfm_planted_oob (sanitized); ctest expects ASan to report each of them.
#include "../common.cuh"

// global memory: the last thread writes out[n] (one past the end)
MTFM_KERNEL void mtfm_planted_global_oob(float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f;
}
MTFM_REGISTER_KERNEL(mtfm_planted_global_oob)

// dynamic shared memory: reads one element past the launch's sharedBytes
MTFM_KERNEL void mtfm_planted_shared_oob(float* out, int n) {
    MTFM_DYNAMIC_SHARED(float, sm);
    sm[threadIdx.x] = 1.0f;
    __syncthreads();
    if ((int)threadIdx.x < n) out[threadIdx.x] = sm[threadIdx.x + 1];
}
MTFM_REGISTER_KERNEL(mtfm_planted_shared_oob)

// a thread-local array indexed out of range after a barrier (fiber stacks must stay instrumented)
MTFM_KERNEL void mtfm_planted_local_oob(float* out, int n) {
    float local[8];
    for (int k = 0; k < 8; ++k) local[k] = (float)k;
    __syncthreads();
    const float* p = local;  // through a pointer: ASan's territory (a direct index is UBSan's, below)
    out[threadIdx.x] = p[n + (int)threadIdx.x % 2];
}
MTFM_REGISTER_KERNEL(mtfm_planted_local_oob)

MTFM_KERNEL void mtfm_planted_local_index_oob(float* out, int n) {
    float local[8];
    for (int k = 0; k < 8; ++k) local[k] = (float)k;
    __syncthreads();
    out[threadIdx.x] = local[n + (int)threadIdx.x % 2];
}
MTFM_REGISTER_KERNEL(mtfm_planted_local_index_oob)

// static __shared__ array indexed past its end
MTFM_KERNEL void mtfm_planted_static_shared_oob(float* out, int n) {
    __shared__ float s[32];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    const float* p = s;
    out[threadIdx.x] = p[threadIdx.x + n];
}
MTFM_REGISTER_KERNEL(mtfm_planted_static_shared_oob)
