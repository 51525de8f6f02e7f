// The MTFM visibility rule and relative-time bucket (MTFM-SPEC §4–5), shared by the attention forward and backward
// kernels so both compute exactly the same mask and buckets (integer arithmetic: host and GPU agree bit for bit).
#pragma once
#include "common.cuh"

// bucket(dt), dt = tq − tk: 0 for dt = 0; m = min(NB−1, 1 + floor(log2(1 + |dt|/unit))) for dt > 0 (key in the past);
// NB−1+m for dt < 0. |dt| is formed in unsigned 64-bit arithmetic, so it is exact for every pair of 64-bit times
// (|dt| up to 2^64 − 1, where a signed difference would overflow), as HstuAttentionTimeBucket.Bucket on the CPU.
__device__ __forceinline__ int mtfm_time_bucket(mtfm_i64 tq, mtfm_i64 tk, int nb, mtfm_i64 unit) {
    if (tq == tk) return 0;
    const bool past = tq > tk;
    const mtfm_u64 mag = past ? (mtfm_u64)tq - (mtfm_u64)tk : (mtfm_u64)tk - (mtfm_u64)tq;
    const mtfm_u64 a = mag / (mtfm_u64)unit;
    const int lg = a == ~0ull ? 64 : 63 - __clzll((mtfm_i64)(a + 1));  // floor(log2(1 + a))
    const int m = min(nb - 1, 1 + lg);
    return past ? m : nb - 1 + m;
}

// visible(q, k): H keys always; R keys if k is q or strictly earlier; T keys only k == q.
__device__ __forceinline__ bool mtfm_visible(int qTok, mtfm_i64 qTime, int kTok, int kKind, mtfm_i64 kTime) {
    if (kKind == 0) return true;
    if (kKind == 1) return kTok == qTok || kTime < qTime;
    return kTok == qTok;
}

// Whether any pair (query row i < nq, key j < nk) of a bq × bk tile is visible, from metadata staged in shared memory:
// query tokens/times sQTok/sQTime[bq], key kinds/times sKKind/sKTime[bk], key j being token k0 + j. With sVis non-null
// the tile's mask (1 visible, 0 not; row-major bq × bk) is written too; without it a thread stops at its first visible
// pair. Block-wide: every thread of the block calls it; it ends with a barrier (__syncthreads_or) after which the
// staged metadata may be overwritten and, when it returns true, sVis read.
__device__ __forceinline__ bool mtfm_tile_visible(int nq, int nk, int bq, int bk, int k0, const int* sQTok,
                                                  const mtfm_i64* sQTime, const int* sKKind, const mtfm_i64* sKTime,
                                                  float* sVis) {
    bool any = false;
    for (int e = threadIdx.x; e < bq * bk; e += blockDim.x) {
        const int i = e / bk, j = e - i * bk;
        const bool vis = i < nq && j < nk && mtfm_visible(sQTok[i], sQTime[i], k0 + j, sKKind[j], sKTime[j]);
        if (sVis) sVis[e] = vis ? 1.0f : 0.0f;
        else if (vis) { any = true; break; }
        any |= vis;
    }
    return __syncthreads_or(any) != 0;
}

// Stages the kinds and times of keys [k0, k0 + nk) into sKKind/sKTime[0, bk) (padding beyond nk: kind 2, time 0, which
// mtfm_tile_visible never reads). Block-wide, no barrier.
__device__ __forceinline__ void mtfm_stage_key_meta(const int* kinds, const mtfm_i64* times, int k0, int nk, int bk,
                                                    int* sKKind, mtfm_i64* sKTime) {
    for (int j = threadIdx.x; j < bk; j += blockDim.x) {
        sKKind[j] = j < nk ? kinds[k0 + j] : 2;
        sKTime[j] = j < nk ? times[k0 + j] : 0;
    }
}

// dst[i][c] = src[r0 + i, head, c] for i < n, 0 for n <= i < rows (src laid out [tokens, heads, d]). Block-wide, no barrier.
__device__ __forceinline__ void mtfm_load_head_rows(float* dst, const float* src, int r0, int n, int rows, int heads,
                                                    int head, int d) {
    for (int e = threadIdx.x; e < rows * d; e += blockDim.x) {
        const int i = e / d, c = e - i * d;
        dst[e] = i < n ? src[((mtfm_i64)(r0 + i) * heads + head) * d + c] : 0.0f;
    }
}
