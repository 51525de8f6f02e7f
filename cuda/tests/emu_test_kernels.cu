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

// __syncthreads_or: threads >= active exit first (count as arrived with 0); of the others only thread `who` (if any,
// i.e. who < active) passes 1. Every remaining thread writes the result, twice in a row with different predicates.
MTFM_KERNEL void mtfm_test_syncthreads_or(float* out, int active, int who) {
    if ((int)threadIdx.x >= active) return;
    const int first = __syncthreads_or((int)threadIdx.x == who);
    const int second = __syncthreads_or(0);
    out[threadIdx.x] = (float)(first * 2 + second);
}
MTFM_REGISTER_KERNEL(mtfm_test_syncthreads_or)

// ---- bf16 tensor-core primitive --------------------------------------------------------------------------------------
// Each warp w multiplies its own A (16×16, row-major fp32, rounded to bf16), B (16×8, row-major fp32 [k][n], rounded
// to bf16) and adds C (16×8 fp32): D = A·B + C, `reps` times in a row (D feeds back as C). The fragments are built
// here from the PTX ISA's element formulas (ai, i = 0..7; bi, i = 0..3; ci, i = 0..3), written independently of the
// emulation's gather.
MTFM_KERNEL void mtfm_test_mma_bf16(const float* a, const float* b, const float* c, float* d, int reps) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int groupID = lane >> 2, tig = lane % 4;
    const float* A = a + w * 256;
    const float* B = b + w * 128;
    float ae[8], be[4];
    for (int i = 0; i < 8; ++i) {
        const int row = (i < 2 || (i >= 4 && i < 6)) ? groupID : groupID + 8;
        const int col = i < 4 ? tig * 2 + (i & 1) : tig * 2 + (i & 1) + 8;
        ae[i] = A[row * 16 + col];
    }
    for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? tig * 2 + (i & 1) : tig * 2 + (i & 1) + 8;
        be[i] = B[row * 8 + groupID];
    }
    unsigned ar[4], br[2];
    for (int r = 0; r < 4; ++r) ar[r] = mtfm_pack_bf16x2(ae[2 * r], ae[2 * r + 1]);  // low half = lower index
    for (int r = 0; r < 2; ++r) br[r] = mtfm_pack_bf16x2(be[2 * r], be[2 * r + 1]);
    float acc[4];
    for (int i = 0; i < 4; ++i) acc[i] = c[w * 128 + (i < 2 ? groupID : groupID + 8) * 8 + tig * 2 + (i & 1)];
    for (int r = 0; r < reps; ++r) mtfm_mma_bf16_16816(acc, ar, br);
    for (int i = 0; i < 4; ++i) d[w * 128 + (i < 2 ? groupID : groupID + 8) * 8 + tig * 2 + (i & 1)] = acc[i];
}
MTFM_REGISTER_KERNEL(mtfm_test_mma_bf16)

// bf16 conversions of in[i]: out[2i] = bits of mtfm_f32_to_bf16, out[2i+1] = bits of the value converted back.
MTFM_KERNEL void mtfm_test_bf16_convert(const float* in, unsigned* out, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned h = mtfm_f32_to_bf16(in[i]);
        out[2 * i] = h;
        out[2 * i + 1] = __float_as_uint(mtfm_bf16_to_f32(h));
    }
}
MTFM_REGISTER_KERNEL(mtfm_test_bf16_convert)

// Full-warp mma in a block of 48 threads: the second warp is partial -> reported.
MTFM_KERNEL void mtfm_test_mma_partial(float* out) {
    float acc[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0x3f803f80u, 0, 0, 0}, b[2] = {0x3f803f80u, 0};
    mtfm_mma_bf16_16816(acc, a, b);
    out[threadIdx.x] = acc[0];
}
MTFM_REGISTER_KERNEL(mtfm_test_mma_partial)

// Half the warp issues the mma from another call site: divergent, reported.
MTFM_KERNEL void mtfm_test_mma_divergent(float* out) {
    float acc[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0x3f803f80u, 0, 0, 0}, b[2] = {0x3f803f80u, 0};
    if (threadIdx.x & 16) {
        mtfm_mma_bf16_16816(acc, a, b);
    } else {
        mtfm_mma_bf16_16816(acc, a, b);
    }
    out[threadIdx.x] = acc[0];
}
MTFM_REGISTER_KERNEL(mtfm_test_mma_divergent)

// Lanes ≥ 8 leave before the mma: the collective names lanes that exited -> reported.
MTFM_KERNEL void mtfm_test_mma_exited(float* out) {
    if ((threadIdx.x & 31) >= 8) return;
    float acc[4] = {0, 0, 0, 0};
    const unsigned a[4] = {0x3f803f80u, 0, 0, 0}, b[2] = {0x3f803f80u, 0};
    mtfm_mma_bf16_16816(acc, a, b);
    out[threadIdx.x] = acc[0];
}
MTFM_REGISTER_KERNEL(mtfm_test_mma_exited)
