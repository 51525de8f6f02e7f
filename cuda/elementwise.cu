// Element-wise kernels: SiLU forward/backward, bias add, bias gradient (deterministic column sums).
// fp32 storage and accumulation. Launch: 1-D grid-stride kernels take any grid; bias_grad takes a
// 1-D grid over columns.
#include "common.cuh"

// y[i] = silu(x[i]) for i < n. y may alias x.
MTFM_KERNEL void mtfm_silu_fwd(const float* x, float* y, mtfm_i64 n) {
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        y[i] = mtfm_silu(x[i]);
}
MTFM_REGISTER_KERNEL(mtfm_silu_fwd)

// dx[i] = dy[i] * silu'(x[i]). dx may alias dy.
MTFM_KERNEL void mtfm_silu_bwd(const float* x, const float* dy, float* dx, mtfm_i64 n) {
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        dx[i] = dy[i] * mtfm_silu_grad(x[i]);
}
MTFM_REGISTER_KERNEL(mtfm_silu_bwd)

// y[r, c] = x[r, c] + bias[c] for a row-major [rows, cols] matrix. y may alias x.
MTFM_KERNEL void mtfm_bias_add(const float* x, const float* bias, float* y, int rows, int cols) {
    const mtfm_i64 n = (mtfm_i64)rows * cols;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        y[i] = x[i] + bias[i % cols];
}
MTFM_REGISTER_KERNEL(mtfm_bias_add)

// dbias[c] (+)= sum over r of dy[r, c], rows in order (deterministic). accumulate != 0 adds to dbias.
MTFM_KERNEL void mtfm_bias_grad(const float* dy, float* dbias, int rows, int cols, int accumulate) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < rows; ++r) s += dy[(mtfm_i64)r * cols + c];
    dbias[c] = accumulate ? dbias[c] + s : s;
}
MTFM_REGISTER_KERNEL(mtfm_bias_grad)
