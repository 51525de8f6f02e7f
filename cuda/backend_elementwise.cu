// Element-wise kernels of the CUDA backend (IBackend): fill, add, mul, mul-accumulate, scale, axpy,
// add-scalar (the backward of a sum) and the accumulating SiLU backward. fp32; 1-D grid-stride loops
// (any grid, any block). Outputs may alias inputs element for element.
#include "common.cuh"

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
