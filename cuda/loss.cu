// Binary cross-entropy on logits with a mask, on the device without host synchronisation:
//   1. mtfm_bce_fwd:      per-block partial (loss sum, count) pairs           partials [gridDim.x, 2]
//   2. mtfm_bce_finalize: one block sums the partials in a fixed order into stats[0..1] = (loss sum,
//                         count) of this batch and adds them to accum[0..1] (running totals; may be null)
//   3. mtfm_bce_mean:     loss[0] = count > 0 ? sum / count : 0                         (one thread)
//   4. mtfm_bce_bwd_acc:  dlogits[i] += dloss[0] * mask[i] * (sigmoid(z[i]) - t[i]) / count   (count > 0)
// loss_i = max(x, 0) - x y + log1p(exp(-|x|)). mask == nullptr means every element counts (fwd); a mask
// entry is a weight in [0, 1] (0 = label absent). blockDim.x a multiple of 32. Nothing is read back by the host.
#include "common.cuh"

MTFM_KERNEL void mtfm_bce_fwd(const float* logits, const float* labels, const float* mask, float* partials, int n) {
    __shared__ float scratch[32];
    float loss = 0.0f, count = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float w = mask ? mask[i] : 1.0f;
        if (w == 0.0f) continue;
        const float x = logits[i];
        const float y = labels[i];
        loss += w * (fmaxf(x, 0.0f) - x * y + log1pf(expf(-fabsf(x))));
        count += w;
    }
    const float ls = mtfm_block_sum(loss, scratch);
    const float cs = mtfm_block_sum(count, scratch);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = ls;
        partials[2 * blockIdx.x + 1] = cs;
    }
}
MTFM_REGISTER_KERNEL(mtfm_bce_fwd)

// Launch with one block.
MTFM_KERNEL void mtfm_bce_finalize(const float* partials, int numPartials, float* stats, float* accum) {
    __shared__ float scratch[32];
    float l = 0.0f, c = 0.0f;
    for (int i = threadIdx.x; i < numPartials; i += blockDim.x) {
        l += partials[2 * i];
        c += partials[2 * i + 1];
    }
    const float ls = mtfm_block_sum(l, scratch);
    const float cs = mtfm_block_sum(c, scratch);
    if (threadIdx.x == 0) {
        stats[0] = ls;
        stats[1] = cs;
        if (accum) {
            accum[0] += ls;
            accum[1] += cs;
        }
    }
}
MTFM_REGISTER_KERNEL(mtfm_bce_finalize)

MTFM_KERNEL void mtfm_bce_mean(const float* stats, float* loss) {
    if (blockIdx.x == 0 && threadIdx.x == 0) loss[0] = stats[1] > 0.0f ? stats[0] / stats[1] : 0.0f;
}
MTFM_REGISTER_KERNEL(mtfm_bce_mean)

MTFM_KERNEL void mtfm_bce_bwd_acc(const float* logits, const float* labels, const float* mask, const float* stats,
                                  const float* dloss, float* dlogits, int n) {
    const float count = stats[1];
    if (!(count > 0.0f)) return;
    const float scale = dloss[0] / count;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float w = mask[i];
        if (w == 0.0f) continue;
        dlogits[i] += w * scale * (mtfm_sigmoid(logits[i]) - labels[i]);
    }
}
MTFM_REGISTER_KERNEL(mtfm_bce_bwd_acc)
