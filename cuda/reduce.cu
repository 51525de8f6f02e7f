// Reductions and softmax (IBackend). fp32 storage, fp32 accumulation, fixed
// reduction order for a fixed launch configuration (deterministic, no atomics).
//   mtfm_sum_partials / mtfm_sum_finalize: y[0] = alpha * sum(x); grid-stride partial per block, then
//     one block sums the partials in a fixed order. blockDim.x a multiple of 32.
//   mtfm_row_sum: y[r] = alpha * sum_c x[r, c]; one warp per row (blockDim.x a multiple of 32).
//   mtfm_row_sum_bwd: dx[r, c] += alpha * dy[r]; grid-stride.
//   mtfm_softmax_fwd / _bwd: one warp per row; forward subtracts the row max.
#include "common.cuh"

MTFM_KERNEL void mtfm_sum_partials(const float* x, mtfm_i64 n, float* partials) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        s += x[i];
    const float t = mtfm_block_sum(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}
MTFM_REGISTER_KERNEL(mtfm_sum_partials)

// Launch with one block.
MTFM_KERNEL void mtfm_sum_finalize(const float* partials, int numPartials, float alpha, float* y) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < numPartials; i += blockDim.x) s += partials[i];
    const float t = mtfm_block_sum(s, scratch);
    if (threadIdx.x == 0) y[0] = alpha * t;
}
MTFM_REGISTER_KERNEL(mtfm_sum_finalize)

MTFM_KERNEL void mtfm_row_sum(const float* x, int rows, int cols, float alpha, float* y) {
    const int lane = threadIdx.x & 31;
    const int warpsPerBlock = blockDim.x >> 5;
    for (int r = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5); r < rows; r += gridDim.x * warpsPerBlock) {
        const float* xr = x + (mtfm_i64)r * cols;
        float s = 0.0f;
        for (int c = lane; c < cols; c += 32) s += xr[c];
        s = mtfm_warp_sum(s);
        if (lane == 0) y[r] = alpha * s;
    }
}
MTFM_REGISTER_KERNEL(mtfm_row_sum)

MTFM_KERNEL void mtfm_row_sum_bwd(const float* dy, int rows, int cols, float alpha, float* dx) {
    const mtfm_i64 n = (mtfm_i64)rows * cols;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        dx[i] = fmaf(alpha, dy[i / cols], dx[i]);
}
MTFM_REGISTER_KERNEL(mtfm_row_sum_bwd)

__device__ __forceinline__ float mtfm_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(MTFM_FULL_MASK, v, o));
    return v;
}

MTFM_KERNEL void mtfm_softmax_fwd(const float* x, float* y, int rows, int cols) {
    const int lane = threadIdx.x & 31;
    const int warpsPerBlock = blockDim.x >> 5;
    for (int r = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5); r < rows; r += gridDim.x * warpsPerBlock) {
        const float* xr = x + (mtfm_i64)r * cols;
        float* yr = y + (mtfm_i64)r * cols;
        float m = -mtfm_inf();
        for (int c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
        m = mtfm_warp_max(m);
        float s = 0.0f;
        for (int c = lane; c < cols; c += 32) {
            const float e = expf(xr[c] - m);
            yr[c] = e;
            s += e;
        }
        s = mtfm_warp_sum(s);
        const float inv = 1.0f / s;
        for (int c = lane; c < cols; c += 32) yr[c] *= inv;
    }
}
MTFM_REGISTER_KERNEL(mtfm_softmax_fwd)

// dx[r, c] += y[r, c] * (dy[r, c] - sum_j dy[r, j] y[r, j]).
MTFM_KERNEL void mtfm_softmax_bwd(const float* y, const float* dy, float* dx, int rows, int cols) {
    const int lane = threadIdx.x & 31;
    const int warpsPerBlock = blockDim.x >> 5;
    for (int r = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5); r < rows; r += gridDim.x * warpsPerBlock) {
        const mtfm_i64 o = (mtfm_i64)r * cols;
        float d = 0.0f;
        for (int c = lane; c < cols; c += 32) d = fmaf(dy[o + c], y[o + c], d);
        d = mtfm_warp_sum(d);
        for (int c = lane; c < cols; c += 32) dx[o + c] = fmaf(y[o + c], dy[o + c] - d, dx[o + c]);
    }
}
MTFM_REGISTER_KERNEL(mtfm_softmax_bwd)
