// The MTFM visibility rule and relative-time bucket (MTFM-SPEC §4–5), shared by the attention forward and backward
// kernels so both compute exactly the same mask and buckets (integer arithmetic: host and GPU agree bit for bit).
#pragma once
#include "common.cuh"

// bucket(dt): 0 for dt = 0; m = min(NB−1, 1 + floor(log2(1 + |dt|/unit))) for dt > 0 (key in the past); NB−1+m for dt < 0.
__device__ __forceinline__ int mtfm_time_bucket(mtfm_i64 dt, int nb, mtfm_i64 unit) {
    if (dt == 0) return 0;
    const mtfm_i64 a = (dt < 0 ? -dt : dt) / unit;
    const int lg = 63 - __clzll(a + 1);  // floor(log2(1 + a))
    const int m = min(nb - 1, 1 + lg);
    return dt > 0 ? m : nb - 1 + m;
}

// visible(q, k): H keys always; R keys if k is q or strictly earlier; T keys only k == q.
__device__ __forceinline__ bool mtfm_visible(int qTok, mtfm_i64 qTime, int kTok, int kKind, mtfm_i64 kTime) {
    if (kKind == 0) return true;
    if (kKind == 1) return kTok == qTok || kTime < qTime;
    return kTok == qTok;
}
