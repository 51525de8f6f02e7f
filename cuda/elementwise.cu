// Element-wise kernels (IBackend and the model's fused pieces). fp32 storage and accumulation; 1-D
// grid-stride loops (any grid, any block) unless noted; outputs may alias inputs element for element.
//   mtfm_silu_fwd / mtfm_silu_bwd / mtfm_silu_bwd_acc: SiLU and its gradient (the _acc form adds into dx);
//   mtfm_silu_columns / mtfm_silu_columns_bwd_acc: the same on a column range of row-major matrices (a fused split);
//   mtfm_bias_add; mtfm_bias_grad (deterministic column sums; a 1-D grid over columns);
//   mtfm_fill, mtfm_add, mtfm_mul, mtfm_mul_acc, mtfm_scale, mtfm_axpy, mtfm_add_scalar (the backward of a sum).
#include "common.cuh"

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

// y[r, yCol + c] = silu(x[r, xCol + c]) for r < rows, c < cols (row strides xStride, yStride; y is not x).
MTFM_KERNEL void mtfm_silu_columns(const float* x, int xStride, int xCol, float* y, int yStride, int yCol, int rows, int cols) {
    const mtfm_i64 n = (mtfm_i64)rows * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 r = e / cols, c = e - r * cols;
        y[r * yStride + yCol + c] = mtfm_silu(x[r * xStride + xCol + c]);
    }
}
MTFM_REGISTER_KERNEL(mtfm_silu_columns)

// dx[r, dxCol + c] (+)= dy[r, dyCol + c] * silu'(x[r, xCol + c]) (accumulate == 0: overwritten).
MTFM_KERNEL void mtfm_silu_columns_bwd_acc(const float* x, int xStride, int xCol, const float* dy, int dyStride, int dyCol,
                                           float* dx, int dxStride, int dxCol, int rows, int cols, int accumulate) {
    const mtfm_i64 n = (mtfm_i64)rows * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 r = e / cols, c = e - r * cols;
        float* d = dx + r * dxStride + dxCol + c;
        *d = fmaf(dy[r * dyStride + dyCol + c], mtfm_silu_grad(x[r * xStride + xCol + c]), accumulate ? *d : 0.0f);
    }
}
MTFM_REGISTER_KERNEL(mtfm_silu_columns_bwd_acc)

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

#define MTFM_GRID_STRIDE(i, n) \
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (mtfm_i64)gridDim.x * blockDim.x)

// y[i] = value.
MTFM_KERNEL void mtfm_fill(float* y, mtfm_i64 n, float value) {
    MTFM_GRID_STRIDE(i, n) y[i] = value;
}
MTFM_REGISTER_KERNEL(mtfm_fill)

// y[i] = a[i] + b[i].
MTFM_KERNEL void mtfm_add(const float* a, const float* b, float* y, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
MTFM_REGISTER_KERNEL(mtfm_add)

// y[i] = a[i] * b[i].
MTFM_KERNEL void mtfm_mul(const float* a, const float* b, float* y, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}
MTFM_REGISTER_KERNEL(mtfm_mul)

// y[i] += a[i] * b[i].
MTFM_KERNEL void mtfm_mul_acc(const float* a, const float* b, float* y, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) y[i] = fmaf(a[i], b[i], y[i]);
}
MTFM_REGISTER_KERNEL(mtfm_mul_acc)

// y[i] = alpha * x[i].
MTFM_KERNEL void mtfm_scale(const float* x, float alpha, float* y, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) y[i] = alpha * x[i];
}
MTFM_REGISTER_KERNEL(mtfm_scale)

// y[i] += alpha * x[i].
MTFM_KERNEL void mtfm_axpy(float alpha, const float* x, float* y, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) y[i] = fmaf(alpha, x[i], y[i]);
}
MTFM_REGISTER_KERNEL(mtfm_axpy)

// dx[i] += alpha * dy[0] (dy is a one-element device scalar: no host round trip).
MTFM_KERNEL void mtfm_add_scalar(const float* dy, float alpha, float* dx, mtfm_i64 n) {
    const float s = alpha * dy[0];
    MTFM_GRID_STRIDE(i, n) dx[i] += s;
}
MTFM_REGISTER_KERNEL(mtfm_add_scalar)

// dx[i] += dy[i] * silu'(x[i]).
MTFM_KERNEL void mtfm_silu_bwd_acc(const float* x, const float* dy, float* dx, mtfm_i64 n) {
    MTFM_GRID_STRIDE(i, n) dx[i] = fmaf(dy[i], mtfm_silu_grad(x[i]), dx[i]);
}
MTFM_REGISTER_KERNEL(mtfm_silu_bwd_acc)
