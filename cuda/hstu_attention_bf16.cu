// Fused jagged HSTU attention forward on the bf16 tensor cores (mma.sync m16n8k16, fp32 accumulation). Same function,
// arguments and layouts as mtfm_hstu_attention_fwd (hstu_attention.cu: spec §4-5, GQA, full or target layer, rab,
// visibility from token metadata, n(q) normalisation); only the two products run in bf16:
//
//   S = alpha · Q·Kᵀ     Q and K rounded to bf16 (round to nearest even) when staged; fp32 accumulation
//   A = SiLU(S + rab[head, bucket]) · visible / n(q)     in fp32 on the accumulator fragments
//   O = A·V              A and V rounded to bf16; fp32 accumulation; O written as fp32
//
// Storage stays fp32 (q, k, v, rab, out). Block = 4 warps; a block owns one tile of at most bq = 64 query rows of one
// instance (HstuAttentionPlan with tile size 64), warp w owns rows 16w..16w+15. Key tiles of bk ∈ {32, 64} tokens: the
// tile's visibility is decided from metadata first, and an invisible tile is skipped before K/V are loaded. Per key
// tile: K → shared as bf16 [bk][dqk padded to 16 (+8 pad: conflict-free fragment loads)], V → shared transposed as bf16
// [dv chunk][bk (+8)], so that both B operands are single 32-bit shared loads. Q fragments are read once per query tile
// straight from global memory into registers; S, P and O never leave registers (the S accumulator layout is the P
// operand layout). Head widths: dqk zero-padded to a multiple of 16, any dv: blockIdx.z selects a chunk of output
// channels (zero-padded to a multiple of 8); S is recomputed per chunk. Two entry points differ only in register
// budget: mtfm_hstu_attention_fwd_bf16 (dqk ≤ 256, chunks of 128 channels) and mtfm_hstu_attention_fwd_bf16_d64
// (dqk ≤ 64, chunks of 64). Register arrays are indexed by compile-time constants only (fully unrolled loops;
// run-time widths are predicates).
//
// Grid (numTiles (grid-stride), h, ceil(dv / chunk)); blockDim.x = 128; bq = 64; bk ∈ {32, 64};
// dynamic shared memory = 4 · (bk · (dqkPad/2 + 4) + dvcPad · (bk/2 + 4)) bytes with dqkPad = round16(dqk),
// dvcPad = round8(min(dv, chunk)) (see CudaOps.HstuAttentionBf16SharedBytes).
#include "hstu_mask.cuh"

#define MTFM_BF16_BQ 64       // query rows per block (4 warps × 16)
#define MTFM_BF16_BK_MAX 64   // keys per tile (S n-tiles: 8)

// KS: k-steps of 16 over dqk held in registers (dqk ≤ 16·KS); NV: output n-tiles of 8 per block (channel chunk 8·NV).
template <int KS, int NV>
__device__ __forceinline__ void mtfm_hstu_attention_bf16_body(
    const float* q, const float* k, const float* v, const float* rab, const int* kinds, const mtfm_i64* times,
    const int* queryTokens, const int* tiles, int numTiles, float* out, int numHeads, int numKvHeads, int dqk, int dv,
    int numBuckets, mtfm_i64 timeUnit, float alpha, int bq, int bk) {
    MTFM_DYNAMIC_SHARED(unsigned, smem);
    __shared__ mtfm_i64 sQTime[MTFM_BF16_BQ];
    __shared__ int sQTok[MTFM_BF16_BQ];
    __shared__ mtfm_i64 sKTime[MTFM_BF16_BK_MAX];
    __shared__ int sKKind[MTFM_BF16_BK_MAX];

    const int dqkPad = (dqk + 15) & ~15;
    const int nks = dqkPad >> 4;                  // k-steps of S
    const int c0 = blockIdx.z * (8 * NV);         // first output channel of this block
    const int dvc = min(8 * NV, dv - c0);         // channels of this chunk
    const int dvcPad = (dvc + 7) & ~7;
    const int nnv = dvcPad >> 3;                  // n-tiles of O
    const int skw = (dqkPad >> 1) + 4;            // sK row stride in words (≡ 4 mod 8: conflict-free)
    const int svw = (bk >> 1) + 4;                // sVt row stride in words
    unsigned* sK = smem;                          // [bk][skw]   bf16x2: keys × channels
    unsigned* sVt = smem + bk * skw;              // [dvcPad][svw] bf16x2: channels × keys

    const int head = blockIdx.y;
    const int kvHead = head / (numHeads / numKvHeads);
    const int nb2 = 2 * numBuckets - 1;
    const int tid = threadIdx.x;
    const int nt = blockDim.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int r0 = warp * 16;                     // first query row of this warp in the tile
    const float* rabHead = rab ? rab + (mtfm_i64)head * nb2 : nullptr;

    for (int tile = blockIdx.x; tile < numTiles; tile += gridDim.x) {
        const int q0 = tiles[4 * tile], q1 = tiles[4 * tile + 1];
        const int k0 = tiles[4 * tile + 2], k1 = tiles[4 * tile + 3];
        const int nq = q1 - q0;

        for (int i = tid; i < bq; i += nt) {
            const int tok = i < nq ? (queryTokens ? queryTokens[q0 + i] : q0 + i) : -1;
            sQTok[i] = tok;
            sQTime[i] = tok >= 0 ? times[tok] : 0;
        }
        __syncthreads();

        const bool active = r0 < nq;  // warp-uniform: this warp has query rows
        const int rowA = r0 + g, rowB = r0 + g + 8;
        const int qTokA = sQTok[rowA], qTokB = sQTok[rowB];
        const mtfm_i64 qTimeA = sQTime[rowA], qTimeB = sQTime[rowB];

        // Q fragments (A operand of S), rows ≥ nq and channels ≥ dqk are zero.
        unsigned qf[KS][4];
MTFM_UNROLL
        for (int ks = 0; ks < KS; ++ks) {
MTFM_UNROLL
            for (int r = 0; r < 4; ++r) {
                const int row = (r & 1) ? rowB : rowA;
                const int col = ks * 16 + 2 * t4 + (r >> 1) * 8;
                float x0 = 0.0f, x1 = 0.0f;
                if (active && ks < nks && row < nq) {
                    const float* src = q + ((mtfm_i64)(q0 + row) * numHeads + head) * dqk;
                    if (col < dqk) x0 = src[col];
                    if (col + 1 < dqk) x1 = src[col + 1];
                }
                qf[ks][r] = mtfm_pack_bf16x2(x0, x1);
            }
        }
        float o[NV][4];
MTFM_UNROLL
        for (int j = 0; j < NV; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
        int cntA = 0, cntB = 0;  // visible keys of rows rowA / rowB among this lane's columns

        for (int kt = k0; kt < k1; kt += bk) {
            const int nk = min(bk, k1 - kt);
            mtfm_stage_key_meta(kinds, times, kt, nk, bk, sKKind, sKTime);
            __syncthreads();
            // invisible tile: K/V never loaded
            if (!mtfm_tile_visible(nq, nk, bq, bk, kt, sQTok, sQTime, sKKind, sKTime, nullptr)) continue;
            const int nkr8 = (nk + 7) & ~7;    // key rows used by the S n-tiles
            const int nkr16 = (nk + 15) & ~15; // keys used by the O k-steps
            // K tile → sK (bf16), zero outside [nk) × [dqk)
            const int kwords = dqkPad >> 1;
            for (int e = tid; e < nkr8 * kwords; e += nt) {
                const int j = e / kwords, w = e - j * kwords, c = 2 * w;
                float x0 = 0.0f, x1 = 0.0f;
                if (j < nk) {
                    const float* src = k + ((mtfm_i64)(kt + j) * numKvHeads + kvHead) * dqk;
                    if (c < dqk) x0 = src[c];
                    if (c + 1 < dqk) x1 = src[c + 1];
                }
                sK[j * skw + w] = mtfm_pack_bf16x2(x0, x1);
            }
            // V tile (this chunk's channels) → sVt transposed (bf16), zero outside [nk) × [dvc)
            for (int e = tid; e < (nkr16 >> 1) * dvcPad; e += nt) {
                const int w = e / dvcPad, c = e - w * dvcPad, j = 2 * w;
                float x0 = 0.0f, x1 = 0.0f;
                if (c < dvc) {
                    if (j < nk) x0 = v[((mtfm_i64)(kt + j) * numKvHeads + kvHead) * dv + c0 + c];
                    if (j + 1 < nk) x1 = v[((mtfm_i64)(kt + j + 1) * numKvHeads + kvHead) * dv + c0 + c];
                }
                sVt[c * svw + w] = mtfm_pack_bf16x2(x0, x1);
            }
            __syncthreads();

            if (active) {
                // S = Q·Kᵀ: 16 rows × bk keys, n-tiles of 8 keys
                float s[MTFM_BF16_BK_MAX / 8][4];
MTFM_UNROLL
                for (int n = 0; n < MTFM_BF16_BK_MAX / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
MTFM_UNROLL
                for (int ks = 0; ks < KS; ++ks) {
                    if (ks < nks) {
MTFM_UNROLL
                        for (int n = 0; n < MTFM_BF16_BK_MAX / 8; ++n) {
                            if (n * 8 < nk) {
                                const unsigned* kr = sK + (n * 8 + g) * skw + ks * 8 + t4;
                                const unsigned b[2] = {kr[0], kr[4]};
                                mtfm_mma_bf16_16816(s[n], qf[ks], b);
                            }
                        }
                    }
                }
                // bias, SiLU, visibility (fp32), counts; then P as bf16 A fragments: k-step j covers n-tiles 2j, 2j+1
MTFM_UNROLL
                for (int n = 0; n < MTFM_BF16_BK_MAX / 8; ++n) {
MTFM_UNROLL
                    for (int r = 0; r < 4; ++r) {
                        const int jj = n * 8 + 2 * t4 + (r & 1);
                        const bool hi = r >= 2;
                        const int row = hi ? rowB : rowA;
                        float a = 0.0f;
                        if (row < nq && jj < nk &&
                            mtfm_visible(hi ? qTokB : qTokA, hi ? qTimeB : qTimeA, kt + jj, sKKind[jj], sKTime[jj])) {
                            float x = alpha * s[n][r];
                            if (rabHead)
                                x += rabHead[mtfm_time_bucket((hi ? qTimeB : qTimeA), sKTime[jj], numBuckets, timeUnit)];
                            a = __fdividef(x, 1.0f + __expf(-x));
                            if (hi) ++cntB;
                            else ++cntA;
                        }
                        s[n][r] = a;
                    }
                }
MTFM_UNROLL
                for (int kv = 0; kv < MTFM_BF16_BK_MAX / 16; ++kv) {
                    if (kv * 16 < nk) {
                        const unsigned pa[4] = {mtfm_pack_bf16x2(s[2 * kv][0], s[2 * kv][1]),
                                                mtfm_pack_bf16x2(s[2 * kv][2], s[2 * kv][3]),
                                                mtfm_pack_bf16x2(s[2 * kv + 1][0], s[2 * kv + 1][1]),
                                                mtfm_pack_bf16x2(s[2 * kv + 1][2], s[2 * kv + 1][3])};
MTFM_UNROLL
                        for (int j = 0; j < NV; ++j) {
                            if (j < nnv) {
                                const unsigned* vr = sVt + (j * 8 + g) * svw + kv * 8 + t4;
                                const unsigned b[2] = {vr[0], vr[4]};
                                mtfm_mma_bf16_16816(o[j], pa, b);
                            }
                        }
                    }
                }
            }
            __syncthreads();  // sK/sVt/key metadata are overwritten by the next key tile
        }

        if (active) {
            // n(q): the four lanes of a quad hold all columns of rows rowA / rowB
            cntA += __shfl_xor_sync(MTFM_FULL_MASK, cntA, 1);
            cntA += __shfl_xor_sync(MTFM_FULL_MASK, cntA, 2);
            cntB += __shfl_xor_sync(MTFM_FULL_MASK, cntB, 1);
            cntB += __shfl_xor_sync(MTFM_FULL_MASK, cntB, 2);
            const float invA = 1.0f / (float)max(cntA, 1), invB = 1.0f / (float)max(cntB, 1);
MTFM_UNROLL
            for (int j = 0; j < NV; ++j) {
                if (j < nnv) {
MTFM_UNROLL
                    for (int r = 0; r < 4; ++r) {
                        const int row = r >= 2 ? rowB : rowA;
                        const int c = j * 8 + 2 * t4 + (r & 1);
                        if (row < nq && c < dvc)
                            out[((mtfm_i64)(q0 + row) * numHeads + head) * dv + c0 + c] = o[j][r] * (r >= 2 ? invB : invA);
                    }
                }
            }
        }
        __syncthreads();  // query metadata is overwritten by the next tile of this block
    }
}

// dqk ≤ 256, output channels in chunks of 128 (grid.z = ceil(dv / 128)).
MTFM_KERNEL void mtfm_hstu_attention_fwd_bf16(const float* q, const float* k, const float* v, const float* rab,
                                              const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                              const int* tiles, int numTiles, float* out, int numHeads, int numKvHeads,
                                              int dqk, int dv, int numBuckets, mtfm_i64 timeUnit, float alpha, int bq,
                                              int bk) {
    mtfm_hstu_attention_bf16_body<16, 16>(q, k, v, rab, kinds, times, queryTokens, tiles, numTiles, out, numHeads,
                                          numKvHeads, dqk, dv, numBuckets, timeUnit, alpha, bq, bk);
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_fwd_bf16)

// Small heads: dqk ≤ 64, output channels in chunks of 64 (fewer registers: higher occupancy).
MTFM_KERNEL void mtfm_hstu_attention_fwd_bf16_d64(const float* q, const float* k, const float* v, const float* rab,
                                                  const int* kinds, const mtfm_i64* times, const int* queryTokens,
                                                  const int* tiles, int numTiles, float* out, int numHeads,
                                                  int numKvHeads, int dqk, int dv, int numBuckets, mtfm_i64 timeUnit,
                                                  float alpha, int bq, int bk) {
    mtfm_hstu_attention_bf16_body<4, 8>(q, k, v, rab, kinds, times, queryTokens, tiles, numTiles, out, numHeads,
                                        numKvHeads, dqk, dv, numBuckets, timeUnit, alpha, bq, bk);
}
MTFM_REGISTER_KERNEL(mtfm_hstu_attention_fwd_bf16_d64)
