// Optimisers.
//  mtfm_adamw_multi: AdamW over many tensors in one launch. tensors[k*4 + 0..3] = device pointers to
//    param, grad, m, v of tensor k; offsets[k] = first flat element of tensor k (offsets[numTensors] =
//    total). bc1 = 1 - beta1^step, bc2 = 1 - beta2^step (computed on the host: no synchronisation).
//    gradScale (nullable, device scalar) multiplies every gradient (loss scaling / clipping decided on
//    the device). Update (PyTorch AdamW): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//    p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
//  mtfm_adam_sparse_rows: the same update applied only to the rows named in rowIds (unique) of an
//    embedding table, with gradients gradRows [numRows, dim] (lazy Adam for row-sparse gradients).
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

MTFM_KERNEL void mtfm_adam_sparse_rows(float* table, float* m, float* v, const int* rowIds, const float* gradRows,
                                       int numRows, int dim, float lr, float beta1, float beta2, float eps,
                                       float weightDecay, float bc1, float bc2) {
    const mtfm_i64 total = (mtfm_i64)numRows * dim;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 r = i / dim;
        const int c = (int)(i - r * dim);
        const mtfm_i64 o = (mtfm_i64)rowIds[r] * dim + c;
        mtfm_adamw_step(table + o, m + o, v + o, gradRows[i], lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }
}
MTFM_REGISTER_KERNEL(mtfm_adam_sparse_rows)
