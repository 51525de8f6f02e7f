// Optimizer kernels of the CUDA trainer step, all without host synchronisation:
//   mtfm_adamw_multi: AdamW over many tensors in one launch. tensors[k*4 + 0..3] = device pointers to
//     param, grad, m, v of tensor k; offsets[k] = first flat element of tensor k (offsets[numTensors] =
//     total). bc1 = 1 - beta1^step, bc2 = 1 - beta2^step (computed on the host). gradScale (nullable,
//     device scalar) multiplies every gradient (the clip factor decided on the device). Update (PyTorch
//     AdamW): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
//   mtfm_sumsq_partials: partials[blockIdx.x] = sum of x^2 over a grid-stride slice (blockDim.x a multiple of 32);
//     launched once per gradient tensor into consecutive slots of one partials buffer.
//   mtfm_clip_scale: one block; norm = sqrt(sum of all partials, in a fixed order); scale[0] = min(1, maxNorm /
//     (norm + 1e-6)) (NaN when the norm is not finite, so the step poisons the weights and the next loss check
//     fails loudly), scale[1] = norm. The optimizer kernels multiply every gradient by scale[0].
//   mtfm_adam_rows_lazy: lazy Adam on the unique rows rowIds of an embedding table with a step count per row
//     (t = rowSteps[row] + 1; bias corrections per row in double, rounded once), the same formulation as the
//     CPU's RowSparseAdam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = p*decay - (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps).
//   mtfm_row_steps_increment: rowSteps[rowIds[r]] += 1 (after the update; ids unique).
#include "common.cuh"

__device__ __forceinline__ void mtfm_adamw_step(float* p, float* m, float* v, float g, float lr, float beta1,
                                                float beta2, float eps, float weightDecay, float bc1, float bc2) {
    const float mn = beta1 * *m + (1.0f - beta1) * g;
    const float vn = beta2 * *v + (1.0f - beta2) * g * g;
    *m = mn;
    *v = vn;
    float pv = *p * (1.0f - lr * weightDecay);
    pv -= lr * (mn / bc1) / (sqrtf(vn / bc2) + eps);
    *p = pv;
}

MTFM_KERNEL void mtfm_adamw_multi(const mtfm_u64* tensors, const mtfm_i64* offsets, int numTensors, float lr,
                                  float beta1, float beta2, float eps, float weightDecay, float bc1, float bc2,
                                  const float* gradScale) {
    const mtfm_i64 total = offsets[numTensors];
    const float scale = gradScale ? *gradScale : 1.0f;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (mtfm_i64)gridDim.x * blockDim.x) {
        int lo = 0, hi = numTensors - 1;  // last k with offsets[k] <= i (skips empty tensors)
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (offsets[mid] <= i) lo = mid;
            else hi = mid - 1;
        }
        const mtfm_i64 j = i - offsets[lo];
        float* p = reinterpret_cast<float*>(tensors[4 * lo]);
        const float* g = reinterpret_cast<const float*>(tensors[4 * lo + 1]);
        float* m = reinterpret_cast<float*>(tensors[4 * lo + 2]);
        float* v = reinterpret_cast<float*>(tensors[4 * lo + 3]);
        mtfm_adamw_step(p + j, m + j, v + j, g[j] * scale, lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }
}
MTFM_REGISTER_KERNEL(mtfm_adamw_multi)

MTFM_KERNEL void mtfm_sumsq_partials(const float* x, mtfm_i64 n, float* partials) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        s = fmaf(x[i], x[i], s);
    const float t = mtfm_block_sum(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}
MTFM_REGISTER_KERNEL(mtfm_sumsq_partials)

MTFM_KERNEL void mtfm_clip_scale(const float* partials, int numPartials, float maxNorm, float* scale) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < numPartials; i += blockDim.x) s += partials[i];
    const float t = mtfm_block_sum(s, scratch);
    if (threadIdx.x == 0) {
        const float norm = sqrtf(t);
        float f;
        if (!(norm <= 3.0e38f)) f = mtfm_nan();  // NaN or infinite norm
        else {
            f = maxNorm / (norm + 1e-6f);
            if (f >= 1.0f) f = 1.0f;
        }
        scale[0] = f;
        scale[1] = norm;
    }
}
MTFM_REGISTER_KERNEL(mtfm_clip_scale)

MTFM_KERNEL void mtfm_adam_rows_lazy(float* table, float* m, float* v, const int* rowSteps, const int* rowIds,
                                     const float* gradRows, int numRows, int dim, float lr, float beta1, float beta2,
                                     float eps, float weightDecay, const float* gradScale) {
    const float scale = gradScale ? gradScale[0] : 1.0f;
    const mtfm_i64 total = (mtfm_i64)numRows * dim;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 r = i / dim;
        const int c = (int)(i - r * dim);
        const int row = rowIds[r];
        const double t = (double)rowSteps[row] + 1.0;
        const double bc1 = 1.0 - pow((double)beta1, t);
        const double bc2 = 1.0 - pow((double)beta2, t);
        const float stepSize = (float)((double)lr / bc1);
        const float invSqrtBc2 = (float)(1.0 / sqrt(bc2));
        const float decay = (float)(1.0 - (double)lr * (double)weightDecay);
        const mtfm_i64 o = (mtfm_i64)row * dim + c;
        const float g = gradRows[i] * scale;
        const float mn = fmaf(beta1, m[o], (1.0f - beta1) * g);
        const float vn = fmaf(beta2, v[o], ((1.0f - beta2) * g) * g);
        const float den = fmaf(sqrtf(vn), invSqrtBc2, eps);
        m[o] = mn;
        v[o] = vn;
        table[o] = fmaf(-stepSize, mn / den, table[o] * decay);
    }
}
MTFM_REGISTER_KERNEL(mtfm_adam_rows_lazy)

MTFM_KERNEL void mtfm_row_steps_increment(int* rowSteps, const int* rowIds, int numRows) {
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < numRows; r += gridDim.x * blockDim.x) rowSteps[rowIds[r]] += 1;
}
MTFM_REGISTER_KERNEL(mtfm_row_steps_increment)
