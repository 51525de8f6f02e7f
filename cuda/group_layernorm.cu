// Fused Group LayerNorm (spec §5): LayerNorm over the d features of each token, whose gamma/beta row
// is chosen by the token's group id. gamma == nullptr gives a plain LayerNorm without affine
// parameters (the LN(O) of the HSTU layer). eps is added to the biased variance.
//   x, y, dx, dy: [n, d]   group: [n]   gamma, beta, dgamma, dbeta: [numGroups, d]   mean, rstd: [n]
// Forward/backward-x: one block per token (grid-stride over tokens); blockDim.x a multiple of 32.
// Parameter gradients: tokens pre-sorted by group (tokenOrder, groupOffsets[numGroups + 1]); grid
// (ceil(d / blockDim.x), numGroups); each thread owns one (group, feature) pair and sums its tokens in
// order: deterministic, no atomics.
#include "common.cuh"

MTFM_KERNEL void mtfm_group_layernorm_fwd(const float* x, const int* group, const float* gamma, const float* beta,
                                          float* y, float* mean, float* rstd, int n, int d, int numGroups,
                                          float eps) {
    __shared__ float scratch[32];
    for (int t = blockIdx.x; t < n; t += gridDim.x) {
        const float* xr = x + (mtfm_i64)t * d;
        float s = 0.0f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) s += xr[c];
        const float mu = mtfm_block_sum(s, scratch) / (float)d;
        float q = 0.0f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float dl = xr[c] - mu;
            q += dl * dl;
        }
        const float var = mtfm_block_sum(q, scratch) / (float)d;
        const float rs = rsqrtf(var + eps);
        float* yr = y + (mtfm_i64)t * d;
        if (gamma) {
            const int g = group ? group[t] : 0;
            if (g < 0 || g >= numGroups) {
                for (int c = threadIdx.x; c < d; c += blockDim.x) yr[c] = mtfm_nan();
            } else {
                const float* ga = gamma + (mtfm_i64)g * d;
                const float* be = beta + (mtfm_i64)g * d;
                for (int c = threadIdx.x; c < d; c += blockDim.x) yr[c] = (xr[c] - mu) * rs * ga[c] + be[c];
            }
        } else {
            for (int c = threadIdx.x; c < d; c += blockDim.x) yr[c] = (xr[c] - mu) * rs;
        }
        if (threadIdx.x == 0) {
            mean[t] = mu;
            rstd[t] = rs;
        }
    }
}
MTFM_REGISTER_KERNEL(mtfm_group_layernorm_fwd)

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma[group]  (g = dy without gamma).
// accumulate != 0 adds into dx.
MTFM_KERNEL void mtfm_group_layernorm_bwd_x(const float* dy, const float* x, const int* group, const float* gamma,
                                            const float* mean, const float* rstd, float* dx, int n, int d,
                                            int numGroups, int accumulate) {
    __shared__ float scratch[32];
    for (int t = blockIdx.x; t < n; t += gridDim.x) {
        const float* xr = x + (mtfm_i64)t * d;
        const float* dyr = dy + (mtfm_i64)t * d;
        float* dxr = dx + (mtfm_i64)t * d;
        const float mu = mean[t];
        const float rs = rstd[t];
        const float* ga = nullptr;
        bool bad = false;
        if (gamma) {
            const int g = group ? group[t] : 0;
            bad = g < 0 || g >= numGroups;
            ga = bad ? nullptr : gamma + (mtfm_i64)g * d;
        }
        float a = 0.0f, b = 0.0f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float xh = (xr[c] - mu) * rs;
            const float gv = ga ? dyr[c] * ga[c] : dyr[c];
            a += gv;
            b += gv * xh;
        }
        const float ma = mtfm_block_sum(a, scratch) / (float)d;
        const float mb = mtfm_block_sum(b, scratch) / (float)d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float xh = (xr[c] - mu) * rs;
            const float gv = ga ? dyr[c] * ga[c] : dyr[c];
            const float v = bad ? mtfm_nan() : rs * (gv - ma - xh * mb);
            dxr[c] = accumulate ? dxr[c] + v : v;
        }
    }
}
MTFM_REGISTER_KERNEL(mtfm_group_layernorm_bwd_x)

// dgamma[g, c] (+)= sum_t dy[t, c] * xhat[t, c];  dbeta[g, c] (+)= sum_t dy[t, c] over tokens t of group g.
MTFM_KERNEL void mtfm_group_layernorm_bwd_params(const float* dy, const float* x, const int* tokenOrder,
                                                 const int* groupOffsets, const float* mean, const float* rstd,
                                                 float* dgamma, float* dbeta, int numGroups, int d, int accumulate) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    for (int g = blockIdx.y; g < numGroups; g += gridDim.y) {
        float sg = 0.0f, sb = 0.0f;
        for (int j = groupOffsets[g]; j < groupOffsets[g + 1]; ++j) {
            const int t = tokenOrder[j];
            const float gy = dy[(mtfm_i64)t * d + c];
            sg += gy * ((x[(mtfm_i64)t * d + c] - mean[t]) * rstd[t]);
            sb += gy;
        }
        const mtfm_i64 o = (mtfm_i64)g * d + c;
        dgamma[o] = accumulate ? dgamma[o] + sg : sg;
        dbeta[o] = accumulate ? dbeta[o] + sb : sb;
    }
}
MTFM_REGISTER_KERNEL(mtfm_group_layernorm_bwd_params)
