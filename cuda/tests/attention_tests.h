// Test of the fused jagged HSTU attention forward against a direct O(N²) reference (included by kernel_tests.cpp).
#pragma once
#include <algorithm>
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

inline void test_attention(harness::Rng& rng) {
    std::vector<std::array<int, 3>> counts{{5, 7, 9}, {0, 0, 0}, {40, 3, 33}, {1, 0, 1}, {0, 6, 2}, {3, 2, 0}};
    run_case(rng, false, 3, 1, 16, 12, 32, 32, counts, true);
    run_case(rng, true, 3, 1, 16, 12, 32, 32, counts, true);
    run_case(rng, false, 4, 2, 9, 7, 8, 16, counts, true);
    run_case(rng, true, 4, 4, 9, 7, 16, 8, counts, false);
    run_case(rng, false, 2, 1, 5, 3, 1, 1, {{2, 2, 2}}, true);
}

}  // namespace attn_test
