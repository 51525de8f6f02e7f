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
//   The non-finite step guard (the trainer's check without host synchronisation):
//   mtfm_step_guard: one block; partials holds blocksPerSlot sums of squares per slot (one slot per parameter);
//     scale[1] = norm over all slots (slot sums, then slots, in a fixed order), scale[2] = 1 when the loss or any
//     slot is not finite (the step is skipped) else 0, scale[3] = the first non-finite slot (-1: none; the loss alone).
//   mtfm_clip_from_guard: one thread; scale[0] = 0 on a skipped step, else min(1, maxNorm / (norm + 1e-6)) (1 when
//     maxNorm <= 0). A zero factor marks a skipped step: mtfm_adamw_multi, mtfm_adam_rows_lazy and
//     mtfm_row_steps_increment then change nothing (parameters, moments and row steps stay as they were).
//   mtfm_loss_accumulate: one thread; acc[0] += loss unless the step was skipped (scale may be null: no guard), acc[1] += skipped, acc[2] = the
//     current run of consecutive skipped steps, acc[3] = its longest value in this window, acc[4] = the first
//     non-finite slot of the latest skipped step. mtfm_loss_window_reset: acc[0] = acc[1] = 0, acc[3] = acc[2]
//     (a run carries into the next window), acc[4] = -1.
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
    if (scale == 0.0f) return;  // a step the guard skipped
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
    if (scale == 0.0f) return;  // a step the guard skipped
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

MTFM_KERNEL void mtfm_row_steps_increment(int* rowSteps, const int* rowIds, int numRows, const float* gradScale) {
    if (gradScale && gradScale[0] == 0.0f) return;  // a step the guard skipped
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < numRows; r += gridDim.x * blockDim.x) rowSteps[rowIds[r]] += 1;
}
MTFM_REGISTER_KERNEL(mtfm_row_steps_increment)

MTFM_KERNEL void mtfm_step_guard(float* partials, int numSlots, int blocksPerSlot, const float* loss, float* scale) {
    for (int slot = threadIdx.x; slot < numSlots; slot += blockDim.x) {
        float s = 0.0f;
        for (int b = 0; b < blocksPerSlot; ++b) s += partials[(mtfm_i64)slot * blocksPerSlot + b];
        partials[(mtfm_i64)slot * blocksPerSlot] = s;  // the slot's sum, read by thread 0 below
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        int firstBad = -1;
        for (int slot = 0; slot < numSlots; ++slot) {
            const float s = partials[(mtfm_i64)slot * blocksPerSlot];
            if (firstBad < 0 && !(s <= 3.0e38f)) firstBad = slot;  // NaN or infinite
            total += s;
        }
        const float norm = sqrtf(total);
        const bool skip = firstBad >= 0 || !(norm <= 3.0e38f) || !(fabsf(loss[0]) <= 3.0e38f);
        scale[1] = norm;
        scale[2] = skip ? 1.0f : 0.0f;
        scale[3] = (float)firstBad;
    }
}
MTFM_REGISTER_KERNEL(mtfm_step_guard)

MTFM_KERNEL void mtfm_clip_from_guard(float* scale, float maxNorm) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    float f = 1.0f;
    if (scale[2] != 0.0f) f = 0.0f;
    else if (maxNorm > 0.0f) {
        f = maxNorm / (scale[1] + 1e-6f);
        if (f >= 1.0f) f = 1.0f;
    }
    scale[0] = f;
}
MTFM_REGISTER_KERNEL(mtfm_clip_from_guard)

MTFM_KERNEL void mtfm_loss_accumulate(const float* loss, const float* scale, float* acc) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const bool skip = scale && scale[2] != 0.0f;  // no guard: every loss counts
    if (skip) {
        acc[1] += 1.0f;
        acc[2] += 1.0f;
        acc[3] = fmaxf(acc[3], acc[2]);
        acc[4] = scale[3];
    } else {
        acc[0] += loss[0];
        acc[2] = 0.0f;
    }
}
MTFM_REGISTER_KERNEL(mtfm_loss_accumulate)

MTFM_KERNEL void mtfm_loss_window_reset(float* acc) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    acc[0] = 0.0f;
    acc[1] = 0.0f;
    acc[3] = acc[2];
    acc[4] = -1.0f;
}
MTFM_REGISTER_KERNEL(mtfm_loss_window_reset)
