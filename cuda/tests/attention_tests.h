// Test of the fused jagged HSTU attention forward against a direct O(N²) reference (included by kernel_tests.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <cstdint>
#include <vector>

#include "harness.h"

namespace attn_test {
using ll = long long;

struct Batch {
    std::vector<int> offsets;  // [B + 1]
    std::vector<int> kinds;    // 0 H, 1 R, 2 T
    std::vector<ll> times;
};

// Instances: H events before the window, R and T inside it (ties on purpose), one empty instance.
inline Batch make_batch(harness::Rng& rng, const std::vector<std::array<int, 3>>& counts) {
    Batch b;
    b.offsets.push_back(0);
    for (auto& c : counts) {
        std::vector<ll> th, tr, tt;
        for (int i = 0; i < c[0]; ++i) th.push_back(1000000 - rng.below(900000));
        for (int i = 0; i < c[1]; ++i) tr.push_back(1000000 + rng.below(50));
        for (int i = 0; i < c[2]; ++i) tt.push_back(1000000 + rng.below(50));
        std::sort(th.begin(), th.end());
        std::sort(tr.begin(), tr.end());
        std::sort(tt.begin(), tt.end());
        for (ll t : th) b.kinds.push_back(0), b.times.push_back(t);
        for (ll t : tr) b.kinds.push_back(1), b.times.push_back(t);
        for (ll t : tt) b.kinds.push_back(2), b.times.push_back(t);
        b.offsets.push_back((int)b.kinds.size());
    }
    return b;
}

inline int bucket(ll dt, int nb, ll unit) {
    if (dt == 0) return 0;
    ll a = (dt < 0 ? -dt : dt) / unit;
    int lg = 0;
    for (unsigned long long x = (unsigned long long)a + 1; x > 1; x >>= 1) ++lg;
    int m = std::min(nb - 1, 1 + lg);
    return dt > 0 ? m : nb - 1 + m;
}

inline bool visible(const Batch& b, int q, int k) {
    if (b.kinds[k] == 0) return true;
    if (b.kinds[k] == 1) return k == q || b.times[k] < b.times[q];
    return k == q;
}

inline void run_case(harness::Rng& rng, bool targetOnly, int h, int g, int dqk, int dv, int bq, int bk,
                     const std::vector<std::array<int, 3>>& counts, bool withRab) {
    using namespace harness;
    Batch b = make_batch(rng, counts);
    const int T = (int)b.kinds.size();
    const int NB = 8;
    const ll unit = 2;
    const float alpha = 1.0f / sqrtf((float)dqk);
    std::vector<int> qtok;
    for (int t = 0; t < T; ++t)
        if (!targetOnly || b.kinds[t] == 2) qtok.push_back(t);
    const int NQ = (int)qtok.size();
    std::vector<int> inst(T);
    for (size_t i = 0; i + 1 < b.offsets.size(); ++i)
        for (int t = b.offsets[i]; t < b.offsets[i + 1]; ++t) inst[t] = (int)i;
    std::vector<int> tiles;
    for (int r = 0; r < NQ;) {
        int ib = inst[qtok[r]];
        int e = r;
        while (e < NQ && e - r < bq && inst[qtok[e]] == ib) ++e;
        tiles.insert(tiles.end(), {r, e, b.offsets[ib], b.offsets[ib + 1]});
        r = e;
    }
    const int numTiles = (int)tiles.size() / 4;
    std::vector<float> Q((size_t)std::max(NQ, 1) * h * dqk), K((size_t)std::max(T, 1) * g * dqk),
        V((size_t)std::max(T, 1) * g * dv), rab((size_t)h * (2 * NB - 1));
    for (auto& x : Q) x = rng.uniform(-1, 1);
    for (auto& x : K) x = rng.uniform(-1, 1);
    for (auto& x : V) x = rng.uniform(-1, 1);
    for (auto& x : rab) x = rng.uniform(-0.5f, 0.5f);
    std::vector<float> want((size_t)std::max(NQ, 1) * h * dv, 0.0f);
    for (int r = 0; r < NQ; ++r) {
        int qt = qtok[r], ib = inst[qt];
        for (int hd = 0; hd < h; ++hd) {
            int kv = hd / (h / g);
            int n = 0;
            std::vector<double> acc(dv, 0.0);
            for (int kt = b.offsets[ib]; kt < b.offsets[ib + 1]; ++kt) {
                if (!visible(b, qt, kt)) continue;
                ++n;
                float dot = 0;
                for (int c = 0; c < dqk; ++c) dot += Q[((size_t)r * h + hd) * dqk + c] * K[((size_t)kt * g + kv) * dqk + c];
                float s = alpha * dot + (withRab ? rab[hd * (2 * NB - 1) + bucket(b.times[qt] - b.times[kt], NB, unit)] : 0.f);
                float a = s / (1.0f + expf(-s));
                for (int c = 0; c < dv; ++c) acc[c] += a * V[((size_t)kt * g + kv) * dv + c];
            }
            for (int c = 0; c < dv; ++c) want[((size_t)r * h + hd) * dv + c] = (float)(acc[c] / std::max(n, 1));
        }
    }
    float *dq = to_dev(Q), *dk = to_dev(K), *dvv = to_dev(V), *drab = to_dev(rab);
    int* dkinds = to_dev(b.kinds.empty() ? std::vector<int>{0} : b.kinds);
    ll* dtimes = to_dev(b.times.empty() ? std::vector<ll>{0} : b.times);
    int* dqt = to_dev(qtok.empty() ? std::vector<int>{0} : qtok);
    int* dtiles = to_dev(tiles.empty() ? std::vector<int>{0} : tiles);
    float* dout = to_dev(std::vector<float>(want.size(), -7.0f));
    if (numTiles > 0) {
        unsigned shared = 4u * (unsigned)(bq * dqk + bk * dqk + bk * dv + bq * dv + 2 * bq * bk);
        launch("mtfm_hstu_attention_fwd", dim3((unsigned)std::max(1, numTiles - 1), (unsigned)h), dim3(64), shared,
               (const float*)dq, (const float*)dk, (const float*)dvv, (const float*)(withRab ? drab : nullptr),
               (const int*)dkinds, (const ll*)dtimes, (const int*)(targetOnly ? dqt : nullptr), (const int*)dtiles,
               numTiles, dout, h, g, dqk, dv, NB, unit, alpha, bq, bk);
    }
    auto got = from_dev(dout, want.size());
    if (NQ == 0) got = want;  // nothing to compute
    char what[160];
    snprintf(what, sizeof what, "hstu attention (%s, h=%d g=%d dqk=%d dv=%d bq=%d bk=%d tokens=%d rab=%d)",
             targetOnly ? "target" : "full", h, g, dqk, dv, bq, bk, T, (int)withRab);
    expect_close(what, got, want, 1e-4f, 1e-5f);
    for (void* p : {(void*)dq, (void*)dk, (void*)dvv, (void*)drab, (void*)dkinds, (void*)dtimes, (void*)dqt,
                    (void*)dtiles, (void*)dout})
        mtfm_emu_free(p);
}


// Backward: dq, dk, dv, drab against a direct reference (double accumulation).
// NB time buckets per direction (up to 128, MtfmConfig.TimeBuckets). The dQ kernel runs with dqThreads threads per
// block; a thread owns the bucket sums b ≡ tid (mod dqThreads). In a full layer, H queries see later H keys (dt < 0,
// buckets NB − 1 + m), so with NB = 33 at 32 threads or NB = 128 at 64 threads pairs land in buckets ≥ the block
// size (checked below); the time spans reach m ≈ 20 at unit 1.
inline void run_bwd_case(harness::Rng& rng, bool targetOnly, int h, int g, int dqk, int dv, int bq, int bk,
                         const std::vector<std::array<int, 3>>& counts, int NB = 8, ll unit = 2,
                         int dqThreads = 64) {
    using namespace harness;
    Batch b = make_batch(rng, counts);
    const int T = (int)b.kinds.size();
    const int nb2 = 2 * NB - 1;
    const float alpha = 1.0f / sqrtf((float)dqk);
    std::vector<int> qtok;
    for (int t = 0; t < T; ++t)
        if (!targetOnly || b.kinds[t] == 2) qtok.push_back(t);
    const int NQ = (int)qtok.size();
    const int B = (int)b.offsets.size() - 1;
    std::vector<int> inst(T);
    for (int i = 0; i < B; ++i)
        for (int t = b.offsets[i]; t < b.offsets[i + 1]; ++t) inst[t] = i;
    std::vector<int> qTiles, kTiles;
    for (int r = 0; r < NQ;) {
        int ib = inst[qtok[r]], e = r;
        while (e < NQ && e - r < bq && inst[qtok[e]] == ib) ++e;
        qTiles.insert(qTiles.end(), {r, e, b.offsets[ib], b.offsets[ib + 1]});
        r = e;
    }
    for (int ib = 0, r = 0; ib < B; ++ib) {
        int qb = r;
        while (r < NQ && inst[qtok[r]] == ib) ++r;
        for (int k0 = b.offsets[ib]; k0 < b.offsets[ib + 1]; k0 += bk)
            kTiles.insert(kTiles.end(), {k0, std::min(k0 + bk, b.offsets[ib + 1]), qb, r});
    }
    const int nqt = (int)qTiles.size() / 4, nkt = (int)kTiles.size() / 4;
    auto rnd = [&](size_t n, float lo, float hi) {
        std::vector<float> x(std::max<size_t>(n, 1));
        for (auto& y : x) y = rng.uniform(lo, hi);
        return x;
    };
    auto Q = rnd((size_t)NQ * h * dqk, -1, 1), K = rnd((size_t)T * g * dqk, -1, 1), V = rnd((size_t)T * g * dv, -1, 1);
    auto rab = rnd((size_t)h * nb2, -0.5f, 0.5f), dO = rnd((size_t)NQ * h * dv, -1, 1);
    std::vector<double> wq(Q.size(), 0.0), wk(K.size(), 0.0), wv(V.size(), 0.0), wrab(rab.size(), 0.0);
    std::vector<float> wcount(std::max(NQ, 1), 0.0f);
    for (int r = 0; r < NQ; ++r) {
        int qt = qtok[r], ib = inst[qt], n = 0;
        for (int kt = b.offsets[ib]; kt < b.offsets[ib + 1]; ++kt) n += visible(b, qt, kt);
        wcount[r] = (float)n;
        for (int hd = 0; hd < h; ++hd) {
            int kv = hd / (h / g);
            for (int kt = b.offsets[ib]; kt < b.offsets[ib + 1]; ++kt) {
                if (!visible(b, qt, kt)) continue;
                double dot = 0, da = 0;
                for (int c = 0; c < dqk; ++c) dot += (double)Q[((size_t)r * h + hd) * dqk + c] * K[((size_t)kt * g + kv) * dqk + c];
                for (int c = 0; c < dv; ++c) da += (double)dO[((size_t)r * h + hd) * dv + c] * V[((size_t)kt * g + kv) * dv + c];
                int bu = bucket(b.times[qt] - b.times[kt], NB, unit);
                double sv = alpha * dot + rab[hd * nb2 + bu];
                double sg = 1.0 / (1.0 + std::exp(-sv));
                double a = sv * sg / n, ds = da / n * sg * (1 + sv * (1 - sg));
                for (int c = 0; c < dv; ++c) wv[((size_t)kt * g + kv) * dv + c] += a * dO[((size_t)r * h + hd) * dv + c];
                for (int c = 0; c < dqk; ++c) {
                    wq[((size_t)r * h + hd) * dqk + c] += alpha * ds * K[((size_t)kt * g + kv) * dqk + c];
                    wk[((size_t)kt * g + kv) * dqk + c] += alpha * ds * Q[((size_t)r * h + hd) * dqk + c];
                }
                wrab[hd * nb2 + bu] += ds;
            }
        }
    }
    auto tof = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
    float *dq_ = to_dev(Q), *dk_ = to_dev(K), *dv_ = to_dev(V), *drab_ = to_dev(rab), *ddo = to_dev(dO);
    int* dkinds = to_dev(b.kinds.empty() ? std::vector<int>{0} : b.kinds);
    ll* dtimes = to_dev(b.times.empty() ? std::vector<ll>{0} : b.times);
    int* dqt = to_dev(qtok.empty() ? std::vector<int>{0} : qtok);
    int* dqtiles = to_dev(qTiles.empty() ? std::vector<int>{0} : qTiles);
    int* dktiles = to_dev(kTiles.empty() ? std::vector<int>{0} : kTiles);
    float* dcnt = to_dev(std::vector<float>(wcount.size(), -1.0f));
    float* gq = to_dev(std::vector<float>(Q.size(), -9.0f));
    float* gk = to_dev(std::vector<float>(K.size(), -9.0f));
    float* gv = to_dev(std::vector<float>(V.size(), -9.0f));
    float* parts = to_dev(std::vector<float>((size_t)std::max(nqt, 1) * h * nb2, 0.0f));
    float* grab = to_dev(std::vector<float>(rab.size(), 0.25f));
    const int* qtp = targetOnly ? dqt : nullptr;
    if (nqt > 0) {
        launch("mtfm_hstu_attention_counts", dim3((unsigned)std::max(1, nqt - 1)), dim3(32), 0, (const int*)dkinds,
               (const ll*)dtimes, qtp, (const int*)dqtiles, nqt, dcnt);
        unsigned shq = 4u * (unsigned)(2 * bq * dqk + bk * dqk + bk * dv + bq * dv + 3 * bq * bk + nb2);
        launch("mtfm_hstu_attention_bwd_dq", dim3((unsigned)std::max(1, nqt - 1), (unsigned)h), dim3(dqThreads), shq,
               (const float*)dq_, (const float*)dk_, (const float*)dv_, (const float*)drab_, (const int*)dkinds,
               (const ll*)dtimes, qtp, (const int*)dqtiles, nqt, (const float*)dcnt, (const float*)ddo, gq, parts, h,
               g, dqk, dv, NB, unit, alpha, bq, bk);
        launch("mtfm_hstu_attention_rab_reduce", dim3((unsigned)((h * nb2 + 127) / 128)), dim3(128), 0,
               (const float*)parts, nqt, h, nb2, grab, 1);
    }
    if (nkt > 0) {
        unsigned shk = 4u * (unsigned)(2 * bk * dqk + 2 * bk * dv + bq * dqk + bq * dv + 3 * bq * bk);
        launch("mtfm_hstu_attention_bwd_dkv", dim3((unsigned)std::max(1, nkt - 2), (unsigned)g), dim3(64), shk,
               (const float*)dq_, (const float*)dk_, (const float*)dv_, (const float*)drab_, (const int*)dkinds,
               (const ll*)dtimes, qtp, (const int*)dktiles, nkt, (const float*)dcnt, (const float*)ddo, gk, gv, h, g,
               dqk, dv, NB, unit, alpha, bq, bk);
    }
    char what[160];
    snprintf(what, sizeof what, "hstu attention bwd (%s, h=%d g=%d dqk=%d dv=%d bq=%d bk=%d tokens=%d NB=%d)",
             targetOnly ? "target" : "full", h, g, dqk, dv, bq, bk, T, NB);
    std::vector<float> wr = tof(wrab);
    for (auto& x : wr) x += 0.25f;
    if (nb2 > dqThreads && !targetOnly && NQ > 0) {  // bucket sums owned by a thread's second round are reached
        bool high = false;
        for (int hd = 0; hd < h; ++hd)
            for (int bu = dqThreads; bu < nb2; ++bu) high |= wrab[hd * nb2 + bu] != 0.0;
        expect(high, std::string(what) + ": no pair in a bucket >= the block size");
    }
    if (NQ > 0) {
        expect_close((std::string(what) + " counts").c_str(), from_dev(dcnt, NQ), std::vector<float>(wcount.begin(), wcount.begin() + NQ), 0, 0);
        expect_close((std::string(what) + " dq").c_str(), from_dev(gq, (size_t)NQ * h * dqk), std::vector<float>(wq.begin(), wq.begin() + (size_t)NQ * h * dqk), 1e-3f, 1e-5f);
        expect_close((std::string(what) + " drab").c_str(), from_dev(grab, rab.size()), wr, 1e-3f, 1e-5f);
    }
    if (T > 0) {
        expect_close((std::string(what) + " dk").c_str(), from_dev(gk, (size_t)T * g * dqk), std::vector<float>(wk.begin(), wk.begin() + (size_t)T * g * dqk), 1e-3f, 1e-5f);
        expect_close((std::string(what) + " dv").c_str(), from_dev(gv, (size_t)T * g * dv), std::vector<float>(wv.begin(), wv.begin() + (size_t)T * g * dv), 1e-3f, 1e-5f);
    }
    for (void* p : {(void*)dq_, (void*)dk_, (void*)dv_, (void*)drab_, (void*)ddo, (void*)dkinds, (void*)dtimes,
                    (void*)dqt, (void*)dqtiles, (void*)dktiles, (void*)dcnt, (void*)gq, (void*)gk, (void*)gv,
                    (void*)parts, (void*)grab})
        mtfm_emu_free(p);
}

inline void test_attention(harness::Rng& rng) {
    std::vector<std::array<int, 3>> counts{{5, 7, 9}, {0, 0, 0}, {40, 3, 33}, {1, 0, 1}, {0, 6, 2}, {3, 2, 0}};
    run_case(rng, false, 3, 1, 16, 12, 32, 32, counts, true);
    run_case(rng, true, 3, 1, 16, 12, 32, 32, counts, true);
    run_case(rng, false, 4, 2, 9, 7, 8, 16, counts, true);
    run_case(rng, true, 4, 4, 9, 7, 16, 8, counts, false);
    run_case(rng, false, 2, 1, 5, 3, 1, 1, {{2, 2, 2}}, true);
    run_bwd_case(rng, false, 3, 1, 16, 12, 32, 32, counts);
    run_bwd_case(rng, true, 3, 1, 16, 12, 32, 32, counts);
    run_bwd_case(rng, false, 4, 2, 9, 7, 8, 16, counts);
    run_bwd_case(rng, true, 4, 4, 9, 7, 16, 8, counts);
    run_bwd_case(rng, false, 2, 1, 5, 3, 1, 1, {{2, 2, 2}, {0, 0, 0}});
    // more buckets than threads per block (64): 2·33 − 1 = 65 and 255 bucket sums per tile
    run_bwd_case(rng, false, 3, 1, 16, 12, 32, 32, counts, 33, 1, 32);
    run_bwd_case(rng, false, 4, 2, 9, 7, 8, 16, counts, 128, 1);
    run_bwd_case(rng, true, 3, 1, 16, 12, 16, 16, counts, 128, 1);
}

}  // namespace attn_test

namespace attn_test {

// The bf16 tensor-core forward (hstu_attention_bf16.cu) against the same reference in double: relative-norm error in
// the bf16 range (< 1.5e-2), not bitwise the fp32 result (the bf16 path really ran), every output written, invisible
// NaN keys in a skipped tile never read.
inline void run_case_bf16(harness::Rng& rng, bool targetOnly, int h, int g, int dqk, int dv, int bk, const Batch& b,
                          bool withRab, bool nanLateKeys, bool d64 = false) {
    using namespace harness;
    const int T = (int)b.kinds.size();
    const int NB = 8, bq = 64;
    const ll unit = 2;
    const float alpha = 1.0f / sqrtf((float)dqk);
    std::vector<int> qtok;
    for (int t = 0; t < T; ++t)
        if (!targetOnly || b.kinds[t] == 2) qtok.push_back(t);
    const int NQ = (int)qtok.size();
    std::vector<int> inst(T);
    for (size_t i = 0; i + 1 < b.offsets.size(); ++i)
        for (int t = b.offsets[i]; t < b.offsets[i + 1]; ++t) inst[t] = (int)i;
    std::vector<int> tiles;
    for (int r = 0; r < NQ;) {
        int ib = inst[qtok[r]];
        int e = r;
        while (e < NQ && e - r < bq && inst[qtok[e]] == ib) ++e;
        tiles.insert(tiles.end(), {r, e, b.offsets[ib], b.offsets[ib + 1]});
        r = e;
    }
    const int numTiles = (int)tiles.size() / 4;
    std::vector<float> Q((size_t)std::max(NQ, 1) * h * dqk), K((size_t)std::max(T, 1) * g * dqk),
        V((size_t)std::max(T, 1) * g * dv), rab((size_t)h * (2 * NB - 1));
    for (auto& x : Q) x = rng.uniform(-1, 1);
    for (auto& x : K) x = rng.uniform(-1, 1);
    for (auto& x : V) x = rng.uniform(-1, 1);
    for (auto& x : rab) x = rng.uniform(-0.5f, 0.5f);
    // Key tiles (of bk from each instance's start) that no query row sees get NaN K/V: they must be skipped unread.
    int poisonedTiles = 0;
    if (nanLateKeys)
        for (size_t ib = 0; ib + 1 < b.offsets.size(); ++ib)
            for (int kt = b.offsets[ib]; kt < b.offsets[ib + 1]; kt += bk) {
                bool seen = false;
                for (int r = 0; r < NQ && !seen; ++r)
                    if (inst[qtok[r]] == (int)ib)
                        for (int j = kt; j < std::min(kt + bk, b.offsets[ib + 1]) && !seen; ++j) seen = visible(b, qtok[r], j);
                if (seen) continue;
                ++poisonedTiles;
                for (int j = kt; j < std::min(kt + bk, b.offsets[ib + 1]); ++j) {
                    for (int c = 0; c < g * dqk; ++c) K[(size_t)j * g * dqk + c] = NAN;
                    for (int c = 0; c < g * dv; ++c) V[(size_t)j * g * dv + c] = NAN;
                }
            }
    if (nanLateKeys) expect(poisonedTiles > 0, "bf16 attention test: no invisible key tile to poison");
    std::vector<double> want((size_t)std::max(NQ, 1) * h * dv, 0.0);
    for (int r = 0; r < NQ; ++r) {
        int qt = qtok[r], ib = inst[qt];
        for (int hd = 0; hd < h; ++hd) {
            int kv = hd / (h / g);
            int n = 0;
            std::vector<double> acc(dv, 0.0);
            for (int kt = b.offsets[ib]; kt < b.offsets[ib + 1]; ++kt) {
                if (!visible(b, qt, kt)) continue;
                ++n;
                double dot = 0;
                for (int c = 0; c < dqk; ++c) dot += (double)Q[((size_t)r * h + hd) * dqk + c] * K[((size_t)kt * g + kv) * dqk + c];
                double s = alpha * dot + (withRab ? rab[hd * (2 * NB - 1) + bucket(b.times[qt] - b.times[kt], NB, unit)] : 0.0);
                double a = s / (1.0 + std::exp(-s));
                for (int c = 0; c < dv; ++c) acc[c] += a * V[((size_t)kt * g + kv) * dv + c];
            }
            for (int c = 0; c < dv; ++c) want[((size_t)r * h + hd) * dv + c] = acc[c] / std::max(n, 1);
        }
    }
    const size_t nOut = (size_t)NQ * h * dv;
    float *dq = to_dev(Q), *dk = to_dev(K), *dvv = to_dev(V), *drab = to_dev(rab);
    int* dkinds = to_dev(b.kinds.empty() ? std::vector<int>{0} : b.kinds);
    ll* dtimes = to_dev(b.times.empty() ? std::vector<ll>{0} : b.times);
    int* dqt = to_dev(qtok.empty() ? std::vector<int>{0} : qtok);
    int* dtiles = to_dev(tiles.empty() ? std::vector<int>{0} : tiles);
    float* dout = to_dev(std::vector<float>(std::max<size_t>(nOut, 1), NAN));  // poisoned: every element must be written
    if (numTiles > 0) {
        const int chunk = d64 ? 64 : 128;
        const int dqkPad = (dqk + 15) & ~15, dvcPad = (std::min(dv, chunk) + 7) & ~7;
        unsigned shared = 4u * (unsigned)(bk * (dqkPad / 2 + 4) + dvcPad * (bk / 2 + 4));
        launch(d64 ? "mtfm_hstu_attention_fwd_bf16_d64" : "mtfm_hstu_attention_fwd_bf16",
               dim3((unsigned)std::max(1, numTiles - 1), (unsigned)h, (unsigned)((dv + chunk - 1) / chunk)),
               dim3(128), shared, (const float*)dq, (const float*)dk, (const float*)dvv,
               (const float*)(withRab ? drab : nullptr), (const int*)dkinds, (const ll*)dtimes,
               (const int*)(targetOnly ? dqt : nullptr), (const int*)dtiles, numTiles, dout, h, g, dqk, dv, NB, unit,
               alpha, bq, bk);
    }
    auto got = from_dev(dout, nOut);
    double num = 0, den = 0;
    bool finite = true, differsFromRef = false;
    for (size_t i = 0; i < nOut; ++i) {
        finite &= std::isfinite(got[i]);
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
        differsFromRef |= got[i] != (float)want[i];
    }
    const double rel = den > 0 ? std::sqrt(num / den) : 0;
    char what[200];
    snprintf(what, sizeof what, "hstu attention bf16%s (%s, h=%d g=%d dqk=%d dv=%d bk=%d tokens=%d rab=%d nan=%d)",
             d64 ? "_d64" : "", targetOnly ? "target" : "full", h, g, dqk, dv, bk, T, (int)withRab, (int)nanLateKeys);
    printf("%s: rel-norm error %.3e\n", what, rel);
    expect(finite, std::string(what) + ": an output is not finite (unwritten, or a NaN key was read)");
    expect(rel < 1.5e-2, std::string(what) + ": rel-norm error " + std::to_string(rel) + " >= 1.5e-2");
    if (nOut > 0) expect(differsFromRef && rel > 1e-5, std::string(what) + ": equals the reference: did bf16 run?");
    for (void* p : {(void*)dq, (void*)dk, (void*)dvv, (void*)drab, (void*)dkinds, (void*)dtimes, (void*)dqt,
                    (void*)dtiles, (void*)dout})
        mtfm_emu_free(p);
}

inline void test_attention_bf16(harness::Rng& rng) {
    // instance sizes not multiples of 16/32/64, an empty instance, one > 64 tokens (two key tiles, two query tiles)
    std::vector<std::array<int, 3>> counts{{5, 7, 9}, {0, 0, 0}, {40, 3, 33}, {1, 0, 1}, {0, 6, 2}, {3, 2, 0}, {30, 20, 47}};
    run_case_bf16(rng, false, 3, 1, 16, 16, 64, make_batch(rng, counts), true, false);
    run_case_bf16(rng, true, 3, 1, 16, 16, 64, make_batch(rng, counts), true, false);
    run_case_bf16(rng, false, 4, 2, 24, 20, 64, make_batch(rng, counts), true, false);
    run_case_bf16(rng, true, 4, 4, 9, 7, 32, make_batch(rng, counts), false, false);
    run_case_bf16(rng, false, 2, 1, 64, 64, 64, make_batch(rng, counts), true, false);
    // dqk 200 (13 k-steps), dv 150 in two chunks of output channels
    run_case_bf16(rng, false, 2, 2, 200, 150, 32, make_batch(rng, {{30, 20, 47}, {3, 2, 5}}), true, false);
    // target layer; instance 0 = 10 H, 54 early R, 64 R later than every T, 5 T: the late-R key tiles are invisible to
    // every query and must be skipped (their K/V are NaN); instance 1 = 3 H, 40 late R, 2 T
    Batch late;
    late.offsets = {0};
    auto add = [&](int kind, int n, ll t0) {
        for (int i = 0; i < n; ++i) late.kinds.push_back(kind), late.times.push_back(t0 + i);
    };
    add(0, 10, 100), add(1, 54, 1000), add(1, 64, 9000), add(2, 5, 2000);
    late.offsets.push_back((int)late.kinds.size());
    add(0, 3, 100), add(1, 40, 9000), add(2, 2, 2000);
    late.offsets.push_back((int)late.kinds.size());
    run_case_bf16(rng, true, 2, 1, 32, 32, 64, late, true, true);
    run_case_bf16(rng, true, 2, 1, 32, 32, 32, late, true, true);
    // the small-head entry point (dqk ≤ 64, 64-channel chunks)
    run_case_bf16(rng, false, 3, 1, 16, 16, 64, make_batch(rng, counts), true, false, true);
    run_case_bf16(rng, true, 4, 2, 24, 20, 32, make_batch(rng, counts), true, false, true);
    run_case_bf16(rng, false, 2, 1, 64, 150, 64, make_batch(rng, {{30, 20, 47}, {3, 2, 5}}), true, false, true);
    run_case_bf16(rng, true, 2, 1, 32, 32, 64, late, true, true, true);
}

}  // namespace attn_test
