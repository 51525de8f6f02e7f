// Kernels that exercise the emulation itself (not part of the product).
#include "../common.cuh"

// out[block] = sum of in over the block's slice, via shared memory tree (needs every barrier).
MTFM_KERNEL void mtfm_test_block_tree_sum(const float* in, float* out, int n) {
    __shared__ float s[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}
MTFM_REGISTER_KERNEL(mtfm_test_block_tree_sum)

// Same, but the barrier after the shared-memory store is missing: must give wrong sums.
MTFM_KERNEL void mtfm_test_block_tree_sum_racy(const float* in, float* out, int n) {
    __shared__ float s[256];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? in[i] : 0.0f;
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}
MTFM_REGISTER_KERNEL(mtfm_test_block_tree_sum_racy)

// out[t*8 + k]: results of shuffles/votes for each thread t.
MTFM_KERNEL void mtfm_test_warp_ops(const int* in, int* out) {
    const int t = threadIdx.x;
    const int v = in[t];
    out[t * 8 + 0] = __shfl_sync(MTFM_FULL_MASK, v, 5);
    out[t * 8 + 1] = __shfl_up_sync(MTFM_FULL_MASK, v, 3);
    out[t * 8 + 2] = __shfl_down_sync(MTFM_FULL_MASK, v, 2, 8);
    out[t * 8 + 3] = __shfl_xor_sync(MTFM_FULL_MASK, v, 9);
    out[t * 8 + 4] = (int)__ballot_sync(MTFM_FULL_MASK, v & 1);
    out[t * 8 + 5] = __any_sync(MTFM_FULL_MASK, v > 1000);
    out[t * 8 + 6] = __all_sync(MTFM_FULL_MASK, v >= 0);
    __syncwarp();
    float f = (float)v;
    out[t * 8 + 7] = (int)mtfm_warp_sum(f);
}
MTFM_REGISTER_KERNEL(mtfm_test_warp_ops)

// out[i] = dynamic shared memory round trip through a neighbour (needs the barrier).
MTFM_KERNEL void mtfm_test_dynamic_shared(const float* in, float* out) {
    MTFM_DYNAMIC_SHARED(float, sm);
    sm[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = sm[(threadIdx.x + 1) % blockDim.x];
}
MTFM_REGISTER_KERNEL(mtfm_test_dynamic_shared)

// Odd threads wait at a different barrier: must be reported as divergent.
MTFM_KERNEL void mtfm_test_divergent_barrier(float* out) {
    if (threadIdx.x & 1) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}
MTFM_REGISTER_KERNEL(mtfm_test_divergent_barrier)

// A full-mask shuffle in a block of 48 threads: the second warp is partial -> reported.
MTFM_KERNEL void mtfm_test_partial_warp(float* out) { out[threadIdx.x] = mtfm_warp_sum(1.0f); }
MTFM_REGISTER_KERNEL(mtfm_test_partial_warp)

// Half the warp shuffles while the other half waits at __syncthreads: deadlock, reported.
MTFM_KERNEL void mtfm_test_deadlock(float* out) {
    float v = 1.0f;
    if (threadIdx.x < 16) v = __shfl_xor_sync(MTFM_FULL_MASK, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}
MTFM_REGISTER_KERNEL(mtfm_test_deadlock)

// Threads that exit early count as arrived at later barriers (as on Volta and later).
MTFM_KERNEL void mtfm_test_early_exit(float* out, int active) {
    __shared__ float s[64];
    if ((int)threadIdx.x >= active) return;
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % active];
}
MTFM_REGISTER_KERNEL(mtfm_test_early_exit)
