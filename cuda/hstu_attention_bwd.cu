// Backward of the fused jagged HSTU attention (see hstu_attention.cu for the forward and the layouts).
// With a = SiLU(S), A = a·vis/n(q), O = Σ_k A V:
//   dV[k] = Σ_{heads of k's group} Σ_q A[q,k] dO[q]
//   dS[q,k] = (dO[q]·V[k]) · vis/n(q) · SiLU'(S[q,k])
//   dQ[q] = alpha Σ_k dS[q,k] K[k];   dK[k] = alpha Σ_{heads} Σ_q dS[q,k] Q[q];   drab[head, b] = Σ_{bucket = b} dS
// Deterministic: every output element is summed by one thread in a fixed order; no atomics.
//   mtfm_hstu_attention_counts:   counts[row] = n(q) for each query row (grid = query tiles, blockDim 32).
//   mtfm_hstu_attention_bwd_dq:   query tiles × heads (same tiles as the forward); writes dq and, when
//                                 rabPartials ≠ null, per-(tile, head) bucket sums [numTiles, h, 2NB−1]. The
//                                 bucket sums of the current tile live in dynamic shared memory (2NB−1 floats,
//                                 sized by the launch), so any bucket count works with any block size: thread
//                                 tid owns the buckets b ≡ tid (mod blockDim.x) and adds in key order.
//                                 Dynamic shared memory 4·(2·bq·dqk + bk·dqk + bk·dv + bq·dv + 3·bq·bk + 2NB−1)
//                                 bytes: floats sQ, sDQ [bq, dqk], sK [bk, dqk], sV [bk, dv], sDO [bq, dv], sDS, sVis
//                                 [bq, bk], ints sBkt [bq, bk] (time bucket of each visible pair), floats sRab [2NB−1].
//   mtfm_hstu_attention_rab_reduce: drab[h, 2NB−1] (+)= Σ over tiles of rabPartials, in tile order.
//   mtfm_hstu_attention_bwd_dkv:  key tiles × kv heads; keyTiles [n, 4] = (first key token, end key token,
//                                 first query row, end query row of that instance); writes dk, dv for every
//                                 key tile (zeros where no query sees the key).
#include "hstu_mask.cuh"

#define MTFM_ATTN_MAX_TILE 32

MTFM_KERNEL void mtfm_hstu_attention_counts(const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                            const int* tiles, int numTiles, float* counts) {
    for (int tile = blockIdx.x; tile < numTiles; tile += gridDim.x) {
        const int q0 = tiles[4 * tile], q1 = tiles[4 * tile + 1];
        const int k0 = tiles[4 * tile + 2], k1 = tiles[4 * tile + 3];
        for (int r = q0 + threadIdx.x; r < q1; r += blockDim.x) {
            const int tok = queryTokens ? queryTokens[r] : r;
            const mtfm_i64 t = times[tok];
            int n = 0;
            for (int kk = k0; kk < k1; ++kk) n += mtfm_visible(tok, t, kk, kinds[kk], times[kk]);
            counts[r] = (float)n;
        }
    }
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_counts)

MTFM_KERNEL void mtfm_hstu_attention_bwd_dq(const float* q, const float* k, const float* v, const float* rab,
                                            const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                            const int* tiles, int numTiles, const float* counts, const float* dout,
                                            float* dq, float* rabPartials, int numHeads, int numKvHeads, int dqk,
                                            int dv, int numBuckets, mtfm_i64 timeUnit, float alpha, int bq, int bk) {
    MTFM_DYNAMIC_SHARED(float, smem);
    __shared__ mtfm_i64 sQTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sQTok[MTFM_ATTN_MAX_TILE];
    __shared__ float sInvN[MTFM_ATTN_MAX_TILE];
    __shared__ mtfm_i64 sKTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sKKind[MTFM_ATTN_MAX_TILE];

    float* sQ = smem;              // [bq, dqk]
    float* sDQ = sQ + bq * dqk;    // [bq, dqk]
    float* sK = sDQ + bq * dqk;    // [bk, dqk]
    float* sV = sK + bk * dqk;     // [bk, dv]
    float* sDO = sV + bk * dv;     // [bq, dv]
    float* sDS = sDO + bq * dv;    // [bq, bk]
    float* sVis = sDS + bq * bk;   // [bq, bk]
    int* sBkt = reinterpret_cast<int*>(sVis + bq * bk);  // [bq, bk]
    float* sRab = reinterpret_cast<float*>(sBkt + bq * bk);  // [2NB − 1]

    const int head = blockIdx.y;
    const int kvHead = head / (numHeads / numKvHeads);
    const int nb2 = 2 * numBuckets - 1;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const bool buckets = rab || rabPartials;

    for (int tile = blockIdx.x; tile < numTiles; tile += gridDim.x) {
        const int q0 = tiles[4 * tile], q1 = tiles[4 * tile + 1];
        const int k0 = tiles[4 * tile + 2], k1 = tiles[4 * tile + 3];
        const int nq = q1 - q0;
        if (rabPartials)
            for (int b = tid; b < nb2; b += nt) sRab[b] = 0.0f;  // thread tid owns buckets tid, tid + nt, ...
        mtfm_load_head_rows(sQ, q, q0, nq, bq, numHeads, head, dqk);
        for (int e = tid; e < bq * dqk; e += nt) sDQ[e] = 0.0f;
        mtfm_load_head_rows(sDO, dout, q0, nq, bq, numHeads, head, dv);
        for (int i = tid; i < bq; i += nt) {
            const int tok = i < nq ? (queryTokens ? queryTokens[q0 + i] : q0 + i) : -1;
            sQTok[i] = tok;
            sQTime[i] = tok >= 0 ? times[tok] : 0;
            sInvN[i] = i < nq ? 1.0f / fmaxf(counts[q0 + i], 1.0f) : 0.0f;
        }
        __syncthreads();
        for (int kt = k0; kt < k1; kt += bk) {
            const int nk = min(bk, k1 - kt);
            mtfm_stage_key_meta(kinds, times, kt, nk, bk, sKKind, sKTime);
            __syncthreads();
            if (!mtfm_tile_visible(nq, nk, bq, bk, kt, sQTok, sQTime, sKKind, sKTime, sVis)) continue;
            mtfm_load_head_rows(sK, k, kt, nk, bk, numKvHeads, kvHead, dqk);
            mtfm_load_head_rows(sV, v, kt, nk, bk, numKvHeads, kvHead, dv);
            __syncthreads();
            for (int e = tid; e < bq * bk; e += nt) {
                float ds = 0.0f;
                if (sVis[e] != 0.0f) {
                    const int i = e / bk, j = e - i * bk;
                    float dot = 0.0f;
                    for (int c = 0; c < dqk; ++c) dot += sQ[i * dqk + c] * sK[j * dqk + c];
                    float s = alpha * dot;
                    const int bkt = buckets ? mtfm_time_bucket(sQTime[i], sKTime[j], numBuckets, timeUnit) : 0;
                    sBkt[e] = bkt;
                    if (rab) s += rab[head * nb2 + bkt];
                    float da = 0.0f;
                    for (int c = 0; c < dv; ++c) da += sDO[i * dv + c] * sV[j * dv + c];
                    ds = da * sInvN[i] * mtfm_silu_grad(s);
                }
                sDS[e] = ds;
            }
            __syncthreads();
            for (int e = tid; e < bq * dqk; e += nt) {
                const int i = e / dqk, c = e - i * dqk;
                float acc = 0.0f;
                for (int j = 0; j < nk; ++j) acc += sDS[i * bk + j] * sK[j * dqk + c];
                sDQ[e] += alpha * acc;
            }
            if (rabPartials && tid < nb2) {
                for (int e = 0; e < bq * bk; ++e) {
                    if (sVis[e] == 0.0f) continue;
                    const int b = sBkt[e];
                    if (b % nt == tid) sRab[b] += sDS[e];  // per bucket: pairs in (key tile, row, key) order
                }
            }
            __syncthreads();
        }
        for (int e = tid; e < nq * dqk; e += nt) {
            const int i = e / dqk, c = e - i * dqk;
            dq[((mtfm_i64)(q0 + i) * numHeads + head) * dqk + c] = sDQ[e];
        }
        if (rabPartials)
            for (int b = tid; b < nb2; b += nt) rabPartials[((mtfm_i64)tile * numHeads + head) * nb2 + b] = sRab[b];
        __syncthreads();
    }
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_bwd_dq)

// One thread per (head, bucket); tiles summed in order.
MTFM_KERNEL void mtfm_hstu_attention_rab_reduce(const float* rabPartials, int numTiles, int numHeads, int nb2,
                                                float* drab, int accumulate) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= numHeads * nb2) return;
    float s = 0.0f;
    for (int t = 0; t < numTiles; ++t) s += rabPartials[(mtfm_i64)t * numHeads * nb2 + idx];
    drab[idx] = accumulate ? drab[idx] + s : s;
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_rab_reduce)

MTFM_KERNEL void mtfm_hstu_attention_bwd_dkv(const float* q, const float* k, const float* v, const float* rab,
                                             const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                             const int* keyTiles, int numKeyTiles, const float* counts,
                                             const float* dout, float* dk, float* dvOut, int numHeads, int numKvHeads,
                                             int dqk, int dv, int numBuckets, mtfm_i64 timeUnit, float alpha, int bq,
                                             int bk) {
    MTFM_DYNAMIC_SHARED(float, smem);
    __shared__ mtfm_i64 sQTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sQTok[MTFM_ATTN_MAX_TILE];
    __shared__ float sInvN[MTFM_ATTN_MAX_TILE];
    __shared__ mtfm_i64 sKTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sKKind[MTFM_ATTN_MAX_TILE];

    float* sK = smem;              // [bk, dqk]
    float* sDK = sK + bk * dqk;    // [bk, dqk]
    float* sV = sDK + bk * dqk;    // [bk, dv]
    float* sDV = sV + bk * dv;     // [bk, dv]
    float* sQ = sDV + bk * dv;     // [bq, dqk]
    float* sDO = sQ + bq * dqk;    // [bq, dv]
    float* sA = sDO + bq * dv;     // [bq, bk]
    float* sDS = sA + bq * bk;     // [bq, bk]
    float* sVis = sDS + bq * bk;   // [bq, bk]

    const int kvHead = blockIdx.y;
    const int group = numHeads / numKvHeads;
    const int nb2 = 2 * numBuckets - 1;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;

    for (int tile = blockIdx.x; tile < numKeyTiles; tile += gridDim.x) {
        const int k0 = keyTiles[4 * tile], k1 = keyTiles[4 * tile + 1];
        const int qb = keyTiles[4 * tile + 2], qe = keyTiles[4 * tile + 3];
        const int nk = k1 - k0;
        mtfm_load_head_rows(sK, k, k0, nk, bk, numKvHeads, kvHead, dqk);
        for (int e = tid; e < bk * dqk; e += nt) sDK[e] = 0.0f;
        mtfm_load_head_rows(sV, v, k0, nk, bk, numKvHeads, kvHead, dv);
        for (int e = tid; e < bk * dv; e += nt) sDV[e] = 0.0f;
        mtfm_stage_key_meta(kinds, times, k0, nk, bk, sKKind, sKTime);
        __syncthreads();
        for (int hh = 0; hh < group; ++hh) {
            const int head = kvHead * group + hh;
            for (int qt = qb; qt < qe; qt += bq) {
                const int nq = min(bq, qe - qt);
                for (int i = tid; i < bq; i += nt) {
                    const int tok = i < nq ? (queryTokens ? queryTokens[qt + i] : qt + i) : -1;
                    sQTok[i] = tok;
                    sQTime[i] = tok >= 0 ? times[tok] : 0;
                    sInvN[i] = i < nq ? 1.0f / fmaxf(counts[qt + i], 1.0f) : 0.0f;
                }
                __syncthreads();
                if (!mtfm_tile_visible(nq, nk, bq, bk, k0, sQTok, sQTime, sKKind, sKTime, sVis)) continue;
                mtfm_load_head_rows(sQ, q, qt, nq, bq, numHeads, head, dqk);
                mtfm_load_head_rows(sDO, dout, qt, nq, bq, numHeads, head, dv);
                __syncthreads();
                for (int e = tid; e < bq * bk; e += nt) {
                    float a = 0.0f, ds = 0.0f;
                    if (sVis[e] != 0.0f) {
                        const int i = e / bk, j = e - i * bk;
                        float dot = 0.0f;
                        for (int c = 0; c < dqk; ++c) dot += sQ[i * dqk + c] * sK[j * dqk + c];
                        float s = alpha * dot;
                        if (rab)
                            s += rab[head * nb2 + mtfm_time_bucket(sQTime[i], sKTime[j], numBuckets, timeUnit)];
                        float da = 0.0f;
                        for (int c = 0; c < dv; ++c) da += sDO[i * dv + c] * sV[j * dv + c];
                        a = mtfm_silu(s) * sInvN[i];
                        ds = da * sInvN[i] * mtfm_silu_grad(s);
                    }
                    sA[e] = a;
                    sDS[e] = ds;
                }
                __syncthreads();
                for (int e = tid; e < bk * dv; e += nt) {
                    const int j = e / dv, c = e - j * dv;
                    float acc = 0.0f;
                    for (int i = 0; i < nq; ++i) acc += sA[i * bk + j] * sDO[i * dv + c];
                    sDV[e] += acc;
                }
                for (int e = tid; e < bk * dqk; e += nt) {
                    const int j = e / dqk, c = e - j * dqk;
                    float acc = 0.0f;
                    for (int i = 0; i < nq; ++i) acc += sDS[i * bk + j] * sQ[i * dqk + c];
                    sDK[e] += alpha * acc;
                }
                __syncthreads();
            }
        }
        for (int e = tid; e < nk * dqk; e += nt) {
            const int j = e / dqk, c = e - j * dqk;
            dk[((mtfm_i64)(k0 + j) * numKvHeads + kvHead) * dqk + c] = sDK[e];
        }
        for (int e = tid; e < nk * dv; e += nt) {
            const int j = e / dv, c = e - j * dv;
            dvOut[((mtfm_i64)(k0 + j) * numKvHeads + kvHead) * dv + c] = sDV[e];
        }
        __syncthreads();
    }
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_bwd_dkv)
