// Fused jagged HSTU attention forward (spec §4-5), FlashAttention-style: the N×N score matrix and the mask are
// never materialised; invisible key tiles are skipped.
//
//   S[q,k] = alpha · Q[q]·K[k] + rab[head, bucket(time(q) − time(k))]
//   A[q,k] = SiLU(S[q,k]) · visible(q,k) / n(q)           n(q) = number of keys visible to q (itself included)
//   O[q, head] = Σ_k A[q,k] · V[k, head / (h/g)]           (GQA: g kv heads shared by h/g query heads each)
//
// visible(q,k): key kind H (0) → true; R (1) → k == q or time(k) < time(q); T (2) → k == q.
// bucket(dt) = 0 if dt == 0; m(dt) if dt > 0; NB − 1 + m(dt) if dt < 0, with
// m(dt) = min(NB − 1, 1 + floor(log2(1 + |dt| / unit))) in integer arithmetic (times and unit in whole seconds),
// so GPU and host agree exactly. rab: [h, 2·NB − 1] (nullable = no bias).
//
// Layouts: q [numQueries, h, dqk]; k [tokens, g, dqk]; v [tokens, g, dv]; out [numQueries, h, dv];
// kinds [tokens], times [tokens]. Full layer: queryTokens = nullptr and query row i is token i. Target layer:
// queryTokens[i] = the token of query row i (the T tokens only; keys are still all tokens of the instance).
// tiles [numTiles, 4] = (first query row, end query row, first key token, end key token): query rows of one
// instance (at most bq of them) and that instance's token range. Grid (numTiles, h), blockDim.x a multiple of 32;
// bq, bk ≤ 32; dynamic shared memory = 4 · (bq·dqk + bk·dqk + bk·dv + bq·dv + 2·bq·bk) bytes.
#include "hstu_mask.cuh"

#define MTFM_ATTN_MAX_TILE 32

MTFM_KERNEL void mtfm_hstu_attention_fwd(const float* q, const float* k, const float* v, const float* rab,
                                         const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                         const int* tiles, int numTiles, float* out, int numHeads, int numKvHeads,
                                         int dqk, int dv, int numBuckets, mtfm_i64 timeUnit, float alpha, int bq,
                                         int bk) {
    MTFM_DYNAMIC_SHARED(float, smem);
    __shared__ mtfm_i64 sQTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sQTok[MTFM_ATTN_MAX_TILE];
    __shared__ mtfm_i64 sKTime[MTFM_ATTN_MAX_TILE];
    __shared__ int sKKind[MTFM_ATTN_MAX_TILE];
    __shared__ int sCnt[MTFM_ATTN_MAX_TILE];

    float* sQ = smem;             // [bq, dqk]
    float* sK = sQ + bq * dqk;    // [bk, dqk]
    float* sV = sK + bk * dqk;    // [bk, dv]
    float* sO = sV + bk * dv;     // [bq, dv]
    float* sA = sO + bq * dv;     // [bq, bk] attention weights (before 1/n)
    float* sVis = sA + bq * bk;   // [bq, bk] 1 where visible

    const int head = blockIdx.y;
    const int kvHead = head / (numHeads / numKvHeads);
    const int nb2 = 2 * numBuckets - 1;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;

    for (int tile = blockIdx.x; tile < numTiles; tile += gridDim.x) {
        const int q0 = tiles[4 * tile], q1 = tiles[4 * tile + 1];
        const int k0 = tiles[4 * tile + 2], k1 = tiles[4 * tile + 3];
        const int nq = q1 - q0;

        mtfm_load_head_rows(sQ, q, q0, nq, bq, numHeads, head, dqk);
        for (int e = tid; e < bq * dv; e += nt) sO[e] = 0.0f;
        for (int i = tid; i < bq; i += nt) {
            const int tok = i < nq ? (queryTokens ? queryTokens[q0 + i] : q0 + i) : -1;
            sQTok[i] = tok;
            sQTime[i] = tok >= 0 ? times[tok] : 0;
            sCnt[i] = 0;
        }
        __syncthreads();

        for (int kt = k0; kt < k1; kt += bk) {
            const int nk = min(bk, k1 - kt);
            mtfm_stage_key_meta(kinds, times, kt, nk, bk, sKKind, sKTime);
            __syncthreads();
            // visibility of the tile, from metadata only; an invisible tile: K/V never loaded
            if (!mtfm_tile_visible(nq, nk, bq, bk, kt, sQTok, sQTime, sKKind, sKTime, sVis)) continue;
            mtfm_load_head_rows(sK, k, kt, nk, bk, numKvHeads, kvHead, dqk);
            mtfm_load_head_rows(sV, v, kt, nk, bk, numKvHeads, kvHead, dv);
            __syncthreads();
            for (int e = tid; e < bq * bk; e += nt) {
                float a = 0.0f;
                if (sVis[e] != 0.0f) {
                    const int i = e / bk, j = e - i * bk;
                    float dot = 0.0f;
                    for (int c = 0; c < dqk; ++c) dot += sQ[i * dqk + c] * sK[j * dqk + c];
                    float s = alpha * dot;
                    if (rab) s += rab[head * nb2 + mtfm_time_bucket(sQTime[i], sKTime[j], numBuckets, timeUnit)];
                    a = mtfm_silu(s);
                }
                sA[e] = a;
            }
            __syncthreads();
            for (int e = tid; e < bq * dv; e += nt) {
                const int i = e / dv, c = e - i * dv;
                float acc = sO[e];
                for (int j = 0; j < nk; ++j) acc += sA[i * bk + j] * sV[j * dv + c];
                sO[e] = acc;
            }
            for (int i = tid; i < bq; i += nt) {
                int cnt = 0;
                for (int j = 0; j < nk; ++j) cnt += sVis[i * bk + j] != 0.0f;
                sCnt[i] += cnt;
            }
            __syncthreads();
        }
        for (int e = tid; e < nq * dv; e += nt) {
            const int i = e / dv, c = e - i * dv;
            out[((mtfm_i64)(q0 + i) * numHeads + head) * dv + c] = sO[e] / (float)max(sCnt[i], 1);
        }
        __syncthreads();  // shared tiles are reused by the next tile of this block
    }
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_fwd)
