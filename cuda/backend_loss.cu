// BCE-with-logits pieces of the CUDA backend on top of bce.cu (whose mtfm_bce_fwd/_finalize give
// stats = (masked loss sum, mask count) on the device):
//   mtfm_bce_mean:    loss[0] = count > 0 ? sum / count : 0                         (one thread)
//   mtfm_bce_bwd_acc: dlogits[i] += dloss[0] * mask[i] * (sigmoid(z[i]) - t[i]) / count   (count > 0)
// Nothing is read back by the host.
#include "common.cuh"

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
