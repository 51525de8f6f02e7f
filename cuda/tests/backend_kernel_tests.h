// Kernels of the CUDA backend (backend_elementwise.cu, backend_reduce.cu, backend_rows.cu, backend_loss.cu,
// gemm.cu, optimizer.cu) against plain C++ references, at sizes that are not multiples of any block or tile, with odd
// launch shapes; buffers are exact-size allocations so the ASan build reports any overflow.
#pragma once
#include <algorithm>
#include <numeric>

#include "harness.h"

namespace backend_test {
using namespace harness;
using ll = long long;

inline std::vector<float> rand_vec(Rng& rng, size_t n, float lo = -1, float hi = 1) {
    std::vector<float> v(n);
    for (auto& x : v) x = rng.uniform(lo, hi);
    return v;
}

inline void test_elementwise(Rng& rng) {
    for (ll n : {0LL, 1LL, 1003LL}) {
        auto a = rand_vec(rng, n), b = rand_vec(rng, n), y0 = rand_vec(rng, n);
        float *da = to_dev(a), *db = to_dev(b), *dy = to_dev(y0);
        std::vector<float> want(n);
        launch("mtfm_add", dim3(3), dim3(64), 0, (const float*)da, (const float*)db, dy, n);
        for (ll i = 0; i < n; ++i) want[i] = a[i] + b[i];
        expect_close("add", from_dev(dy, n), want, 0, 0);
        launch("mtfm_mul", dim3(2), dim3(96), 0, (const float*)da, (const float*)db, dy, n);
        for (ll i = 0; i < n; ++i) want[i] = a[i] * b[i];
        expect_close("mul", from_dev(dy, n), want, 0, 0);
        launch("mtfm_mul_acc", dim3(5), dim3(32), 0, (const float*)da, (const float*)db, dy, n);
        for (ll i = 0; i < n; ++i) want[i] += a[i] * b[i];
        expect_close("mul_acc", from_dev(dy, n), want, 1e-6f, 1e-6f);
        launch("mtfm_scale", dim3(1), dim3(128), 0, (const float*)da, -0.5f, dy, n);
        for (ll i = 0; i < n; ++i) want[i] = -0.5f * a[i];
        expect_close("scale", from_dev(dy, n), want, 0, 0);
        launch("mtfm_axpy", dim3(4), dim3(64), 0, 2.0f, (const float*)db, dy, n);
        for (ll i = 0; i < n; ++i) want[i] += 2.0f * b[i];
        expect_close("axpy", from_dev(dy, n), want, 1e-6f, 1e-6f);
        float* ds = to_dev(std::vector<float>{0.25f});
        launch("mtfm_add_scalar", dim3(2), dim3(64), 0, (const float*)ds, 4.0f, dy, n);
        for (ll i = 0; i < n; ++i) want[i] += 1.0f;
        expect_close("add_scalar", from_dev(dy, n), want, 1e-6f, 1e-6f);
        launch("mtfm_silu_bwd_acc", dim3(3), dim3(32), 0, (const float*)da, (const float*)db, dy, n);
        for (ll i = 0; i < n; ++i) {
            float s = 1.0f / (1.0f + expf(-a[i]));
            want[i] += b[i] * s * (1 + a[i] * (1 - s));
        }
        expect_close("silu_bwd_acc", from_dev(dy, n), want);
        launch("mtfm_fill", dim3(2), dim3(32), 0, dy, n, 3.5f);
        expect_close("fill", from_dev(dy, n), std::vector<float>(n, 3.5f), 0, 0);
        mtfm_emu_free(da); mtfm_emu_free(db); mtfm_emu_free(dy); mtfm_emu_free(ds);
    }
}

inline void test_reductions(Rng& rng) {
    for (auto rc : {std::pair<int, int>{1, 1}, {37, 45}, {70, 3}, {0, 5}}) {
        const int r = rc.first, c = rc.second;
        const size_t n = (size_t)r * c;
        auto x = rand_vec(rng, n);
        float* dx = to_dev(x);
        // sum all: 3 blocks of 64 threads, then one block
        float* parts = to_dev(std::vector<float>(3, 0.f));
        float* dy = to_dev(std::vector<float>{9.f});
        launch("mtfm_sum_partials", dim3(3), dim3(64), 0, (const float*)dx, (ll)n, parts);
        launch("mtfm_sum_finalize", dim3(1), dim3(64), 0, (const float*)parts, 3, 0.5f, dy);
        double s = 0;
        for (float v : x) s += v;
        expect_close("sum_all", from_dev(dy, 1), {(float)(0.5 * s)}, 1e-5f, 1e-5f);
        // row sums: one warp per row, 2 warps per block, 3 blocks (grid-stride over rows)
        std::vector<float> rows(r), want(r);
        float* drows = to_dev(rows);
        launch("mtfm_row_sum", dim3(3), dim3(64), 0, (const float*)dx, r, c, 2.0f, drows);
        for (int i = 0; i < r; ++i) {
            float t = 0;
            for (int j = 0; j < c; ++j) t += x[(size_t)i * c + j];
            want[i] = 2.0f * t;
        }
        expect_close("row_sum", from_dev(drows, r), want);
        auto d0 = rand_vec(rng, n);
        float* ddx = to_dev(d0);
        launch("mtfm_row_sum_bwd", dim3(2), dim3(96), 0, (const float*)drows, r, c, -1.0f, ddx);
        for (size_t e = 0; e < n; ++e) d0[e] += -1.0f * want[e / c];
        expect_close("row_sum_bwd", from_dev(ddx, n), d0);
        // softmax forward / backward
        float* dsm = to_dev(std::vector<float>(n, 0.f));
        launch("mtfm_softmax_fwd", dim3(2), dim3(64), 0, (const float*)dx, dsm, r, c);
        std::vector<float> sm(n);
        for (int i = 0; i < r; ++i) {
            float m = -INFINITY, z = 0;
            for (int j = 0; j < c; ++j) m = std::max(m, x[(size_t)i * c + j]);
            for (int j = 0; j < c; ++j) z += expf(x[(size_t)i * c + j] - m);
            for (int j = 0; j < c; ++j) sm[(size_t)i * c + j] = expf(x[(size_t)i * c + j] - m) / z;
        }
        expect_close("softmax_fwd", from_dev(dsm, n), sm);
        auto gy = rand_vec(rng, n), g0 = rand_vec(rng, n);
        float *dgy = to_dev(gy), *dg = to_dev(g0);
        launch("mtfm_softmax_bwd", dim3(1), dim3(32), 0, (const float*)dsm, (const float*)dgy, dg, r, c);
        for (int i = 0; i < r; ++i) {
            float dot = 0;
            for (int j = 0; j < c; ++j) dot += gy[(size_t)i * c + j] * sm[(size_t)i * c + j];
            for (int j = 0; j < c; ++j) g0[(size_t)i * c + j] += sm[(size_t)i * c + j] * (gy[(size_t)i * c + j] - dot);
        }
        expect_close("softmax_bwd", from_dev(dg, n), g0);
        for (float* p : {dx, parts, dy, drows, ddx, dsm, dgy, dg}) mtfm_emu_free(p);
    }
}

inline void test_rows(Rng& rng) {
    const int n = 23, d = 7, m = 41;
    auto src = rand_vec(rng, (size_t)n * d);
    std::vector<int> idx(m);
    for (auto& v : idx) v = rng.below(n);
    std::vector<ll> idx64(idx.begin(), idx.end());
    float* dsrc = to_dev(src);
    int* di = to_dev(idx);
    ll* dl = to_dev(idx64);
    for (int wide = 0; wide < 2; ++wide) {
        const void* ip = wide ? (const void*)dl : (const void*)di;
        float* dg = to_dev(std::vector<float>((size_t)m * d, 0.f));
        launch("mtfm_gather_rows", dim3(3), dim3(64), 0, (const float*)dsrc, ip, wide, dg, m, d);
        std::vector<float> want((size_t)m * d);
        for (int i = 0; i < m; ++i)
            for (int c = 0; c < d; ++c) want[(size_t)i * d + c] = src[(size_t)idx[i] * d + c];
        expect_close("gather_rows", from_dev(dg, (size_t)m * d), want, 0, 0);
        auto tab = rand_vec(rng, (size_t)n * d);
        float* dt = to_dev(tab);
        launch("mtfm_fill_rows", dim3(2), dim3(32), 0, dt, ip, wide, m, d, -2.0f);
        for (int i = 0; i < m; ++i)
            for (int c = 0; c < d; ++c) tab[(size_t)idx[i] * d + c] = -2.0f;
        expect_close("fill_rows", from_dev(dt, (size_t)n * d), tab, 0, 0);
        mtfm_emu_free(dg); mtfm_emu_free(dt);
    }
    // scatter rows with distinct ids
    std::vector<int> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    for (int i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
    perm.resize(9);
    auto rs = rand_vec(rng, 9 * d);
    auto tab = rand_vec(rng, (size_t)n * d);
    float *drs = to_dev(rs), *dt = to_dev(tab);
    int* dp = to_dev(perm);
    launch("mtfm_scatter_rows", dim3(2), dim3(32), 0, (const float*)drs, (const void*)dp, 0, dt, 9, d);
    for (int i = 0; i < 9; ++i)
        for (int c = 0; c < d; ++c) tab[(size_t)perm[i] * d + c] = rs[(size_t)i * d + c];
    expect_close("scatter_rows", from_dev(dt, (size_t)n * d), tab, 0, 0);
    // scatter-add over segments: sources sorted by target, ascending within a target (as the backend builds them)
    std::vector<int> order(m);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return idx[a] < idx[b]; });
    std::vector<int> seg, targets;
    for (int s = 0; s < m;) {
        int e = s + 1;
        while (e < m && idx[order[e]] == idx[order[s]]) ++e;
        seg.push_back(s);
        targets.push_back(idx[order[s]]);
        s = e;
    }
    seg.push_back(m);
    auto g = rand_vec(rng, (size_t)m * d);
    float* dgr = to_dev(g);
    int *dord = to_dev(order), *dseg = to_dev(seg), *dtar = to_dev(targets);
    const int nt = (int)targets.size();
    launch("mtfm_scatter_add_segments", dim3(3), dim3(32), 0, (const float*)dgr, (const int*)dord, (const int*)dseg,
           (const int*)dtar, dt, nt, d);
    for (int i = 0; i < m; ++i)  // ascending i within a target = the kernel's order: exact
        for (int c = 0; c < d; ++c) tab[(size_t)idx[i] * d + c] += g[(size_t)i * d + c];
    expect_close("scatter_add_segments", from_dev(dt, (size_t)n * d), tab, 0, 0);
    // copy columns, overwrite then accumulate
    const int rows = 13, sc = 11, dc = 17, cols = 5;
    auto cs = rand_vec(rng, (size_t)rows * sc), cd = rand_vec(rng, (size_t)rows * dc);
    float *dcs = to_dev(cs), *dcd = to_dev(cd);
    for (int acc = 0; acc < 2; ++acc) {
        launch("mtfm_copy_columns", dim3(2), dim3(32), 0, (const float*)dcs, sc, 3, dcd, dc, 12, rows, cols, acc);
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < cols; ++c) {
                float v = cs[(size_t)r * sc + 3 + c];
                float& o = cd[(size_t)r * dc + 12 + c];
                o = acc ? o + v : v;
            }
        expect_close("copy_columns", from_dev(dcd, (size_t)rows * dc), cd, 0, 0);
    }
    // index conversion both ways
    ll* d64 = to_dev(std::vector<ll>(m, -1));
    launch("mtfm_index_i32_to_i64", dim3(2), dim3(32), 0, (const int*)di, d64, (ll)m);
    expect(from_dev(d64, m) == idx64, "index_i32_to_i64");
    int* d32 = to_dev(std::vector<int>(m, -1));
    launch("mtfm_index_i64_to_i32", dim3(1), dim3(64), 0, (const ll*)d64, d32, (ll)m);
    expect(from_dev(d32, m) == idx, "index_i64_to_i32");
    for (void* p : {(void*)dsrc, (void*)di, (void*)dl, (void*)drs, (void*)dt, (void*)dp, (void*)dgr, (void*)dord,
                    (void*)dseg, (void*)dtar, (void*)dcs, (void*)dcd, (void*)d64, (void*)d32})
        mtfm_emu_free(p);
}

inline void test_bce_mean_and_backward(Rng& rng) {
    const int n = 77;
    auto z = rand_vec(rng, n, -4, 4), t(z), mask(z), g0 = rand_vec(rng, n);
    for (int i = 0; i < n; ++i) {
        t[i] = (float)rng.below(2);
        mask[i] = rng.below(3) ? 1.0f : 0.0f;
    }
    double sum = 0, cnt = 0;
    for (int i = 0; i < n; ++i)
        if (mask[i] != 0) {
            sum += std::max(z[i], 0.0f) - z[i] * t[i] + std::log1p(std::exp(-std::fabs(z[i])));
            cnt += 1;
        }
    float *dz = to_dev(z), *dt = to_dev(t), *dm = to_dev(mask), *dg = to_dev(g0);
    float* stats = to_dev(std::vector<float>{(float)sum, (float)cnt});
    float* loss = to_dev(std::vector<float>{-1.f});
    float* dloss = to_dev(std::vector<float>{0.5f});
    launch("mtfm_bce_mean", dim3(1), dim3(32), 0, (const float*)stats, loss);
    expect_close("bce_mean", from_dev(loss, 1), {(float)(sum / cnt)});
    launch("mtfm_bce_bwd_acc", dim3(2), dim3(32), 0, (const float*)dz, (const float*)dt, (const float*)dm,
           (const float*)stats, (const float*)dloss, dg, n);
    for (int i = 0; i < n; ++i)
        if (mask[i] != 0) g0[i] += 0.5f / (float)cnt * (1.0f / (1.0f + expf(-z[i])) - t[i]);
    expect_close("bce_bwd_acc", from_dev(dg, n), g0);
    // no label present: loss 0, gradient untouched
    float* empty = to_dev(std::vector<float>{0.f, 0.f});
    launch("mtfm_bce_mean", dim3(1), dim3(32), 0, (const float*)empty, loss);
    expect_close("bce_mean empty", from_dev(loss, 1), {0.0f}, 0, 0);
    auto before = from_dev(dg, n);
    launch("mtfm_bce_bwd_acc", dim3(2), dim3(32), 0, (const float*)dz, (const float*)dt, (const float*)dm,
           (const float*)empty, (const float*)dloss, dg, n);
    expect_close("bce_bwd_acc empty", from_dev(dg, n), before, 0, 0);
    for (float* p : {dz, dt, dm, dg, stats, loss, dloss, empty}) mtfm_emu_free(p);
}

inline void test_gemm(Rng& rng) {
    const int bt = 2, m = 19, n = 23, k = 37;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
            for (float beta : {0.0f, 0.5f}) {
                const int lda = ta ? m : k, ldb = tb ? k : n;
                auto a = rand_vec(rng, (size_t)bt * m * k), b = rand_vec(rng, (size_t)bt * k * n);
                auto c = rand_vec(rng, (size_t)bt * m * n);
                std::vector<float> c0 = c;
                if (beta == 0.0f) std::fill(c0.begin(), c0.end(), NAN);  // must not be read
                float *da = to_dev(a), *db = to_dev(b), *dc = to_dev(c0);
                launch("mtfm_sgemm", dim3((n + 15) / 16, (m + 15) / 16, bt), dim3(16, 16), 0, ta, tb, m, n, k, 0.75f,
                       (const float*)da, lda, (ll)m * k, (const float*)db, ldb, (ll)k * n, beta, dc, n, (ll)m * n);
                std::vector<float> want(c.size());
                for (int z = 0; z < bt; ++z)
                    for (int i = 0; i < m; ++i)
                        for (int j = 0; j < n; ++j) {
                            float s = 0;
                            for (int p = 0; p < k; ++p) {
                                float av = ta ? a[(size_t)z * m * k + (size_t)p * lda + i] : a[(size_t)z * m * k + (size_t)i * lda + p];
                                float bv = tb ? b[(size_t)z * k * n + (size_t)j * ldb + p] : b[(size_t)z * k * n + (size_t)p * ldb + j];
                                s += av * bv;
                            }
                            size_t o = (size_t)z * m * n + (size_t)i * n + j;
                            want[o] = 0.75f * s + (beta == 0.0f ? 0.0f : beta * c[o]);
                        }
                expect_close("sgemm", from_dev(dc, c.size()), want, 1e-5f, 1e-5f);
                mtfm_emu_free(da); mtfm_emu_free(db); mtfm_emu_free(dc);
            }
}

inline void test_optimizer(Rng& rng) {
    // clip scale from per-tensor sum-of-squares partials (two tensors in consecutive slots)
    auto a = rand_vec(rng, 301, -2, 2), b = rand_vec(rng, 5, -2, 2);
    float *da = to_dev(a), *db = to_dev(b), *parts = to_dev(std::vector<float>(8, 0.f)), *scale = to_dev(std::vector<float>(2, 0.f));
    launch("mtfm_sumsq_partials", dim3(3), dim3(64), 0, (const float*)da, (ll)a.size(), parts);
    launch("mtfm_sumsq_partials", dim3(1), dim3(32), 0, (const float*)db, (ll)b.size(), parts + 3);
    double ss = 0;
    for (float v : a) ss += (double)v * v;
    for (float v : b) ss += (double)v * v;
    launch("mtfm_clip_scale", dim3(1), dim3(64), 0, (const float*)parts, 8, 1.5f, scale);
    const double norm = std::sqrt(ss);
    expect_close("clip_scale", from_dev(scale, 2), {(float)(1.5 / (norm + 1e-6)), (float)norm}, 1e-5f, 1e-6f);
    launch("mtfm_clip_scale", dim3(1), dim3(64), 0, (const float*)parts, 8, 1e9f, scale);
    expect_close("clip_scale (no clipping)", from_dev(scale, 1), {1.0f}, 0, 0);
    // lazy Adam with per-row steps: rows 2 and 5 (steps 0 and 3), then the step counts advance
    const int rows = 7, dim = 5;
    auto table = rand_vec(rng, rows * dim), m0 = rand_vec(rng, rows * dim, 0, 0.1f), v0 = rand_vec(rng, rows * dim, 0, 0.1f);
    std::vector<int> steps = {0, 1, 0, 0, 2, 3, 0}, ids = {5, 2};
    auto g = rand_vec(rng, ids.size() * dim, -1, 1);
    float *dt = to_dev(table), *dm = to_dev(m0), *dv = to_dev(v0), *dg = to_dev(g), *dsc = to_dev(std::vector<float>{0.5f});
    int *ds = to_dev(steps), *di = to_dev(ids);
    const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
    launch("mtfm_adam_rows_lazy", dim3(2), dim3(32), 0, dt, dm, dv, (const int*)ds, (const int*)di, (const float*)dg,
           (int)ids.size(), dim, lr, b1, b2, eps, wd, (const float*)dsc);
    launch("mtfm_row_steps_increment", dim3(1), dim3(32), 0, ds, (const int*)di, (int)ids.size(), (const float*)dsc);
    for (size_t r = 0; r < ids.size(); ++r) {
        const int row = ids[r];
        const double t = steps[row] + 1.0;
        const float stepSize = (float)(lr / (1.0 - std::pow((double)b1, t)));
        const float isb = (float)(1.0 / std::sqrt(1.0 - std::pow((double)b2, t)));
        const float decay = (float)(1.0 - (double)lr * wd);
        for (int c = 0; c < dim; ++c) {
            const int o = row * dim + c;
            const float gv = g[r * dim + c] * 0.5f;
            m0[o] = b1 * m0[o] + (1 - b1) * gv;
            v0[o] = b2 * v0[o] + (1 - b2) * gv * gv;
            table[o] = table[o] * decay - stepSize * m0[o] / (std::sqrt(v0[o]) * isb + eps);
        }
        steps[row] += 1;
    }
    expect_close("adam_rows_lazy table", from_dev(dt, rows * dim), table, 1e-5f, 1e-6f);
    expect_close("adam_rows_lazy m", from_dev(dm, rows * dim), m0, 1e-6f, 1e-7f);
    expect_close("adam_rows_lazy v", from_dev(dv, rows * dim), v0, 1e-6f, 1e-7f);
    expect(from_dev(ds, rows) == steps, "row_steps_increment");
    // the non-finite guard: slot 1 holds a NaN, so the step is skipped (factor 0) and the row update changes nothing
    std::vector<float> gp = {1.f, 2.f, 0.f, 0.f, 3.f, NAN, 0.f, 0.f};
    float *dgp = to_dev(gp), *dgs = to_dev(std::vector<float>(4, 7.f)), *dloss = to_dev(std::vector<float>{0.25f});
    launch("mtfm_step_guard", dim3(1), dim3(64), 0, dgp, 2, 4, (const float*)dloss, dgs);
    launch("mtfm_clip_from_guard", dim3(1), dim3(32), 0, dgs, 1.0f);
    auto verdict = from_dev(dgs, 4);
    expect(verdict[0] == 0.f && verdict[2] == 1.f && verdict[3] == 1.f && std::isnan(verdict[1]), "step_guard: skipped, first bad slot 1");
    auto tableBefore = from_dev(dt, rows * dim);
    auto stepsBefore = from_dev(ds, rows);
    launch("mtfm_adam_rows_lazy", dim3(2), dim3(32), 0, dt, dm, dv, (const int*)ds, (const int*)di, (const float*)dg,
           (int)ids.size(), dim, lr, b1, b2, eps, wd, (const float*)dgs);
    launch("mtfm_row_steps_increment", dim3(1), dim3(32), 0, ds, (const int*)di, (int)ids.size(), (const float*)dgs);
    expect(from_dev(dt, rows * dim) == tableBefore && from_dev(ds, rows) == stepsBefore, "a skipped step changes no row");
    // a finite step: the partials are sums of squares, so the norm is sqrt(1+2+3) and the factor min(1, 1/norm)
    gp[5] = 0.f;
    float* dgp2 = to_dev(gp);
    launch("mtfm_step_guard", dim3(1), dim3(64), 0, dgp2, 2, 4, (const float*)dloss, dgs);
    launch("mtfm_clip_from_guard", dim3(1), dim3(32), 0, dgs, 1.0f);
    expect_close("step_guard finite", from_dev(dgs, 4), {(float)(1.0 / (std::sqrt(6.0) + 1e-6)), (float)std::sqrt(6.0), 0.f, -1.f}, 1e-6f, 1e-6f);
    // the loss window: a skipped step, a good one, one without a guard; then a reset keeps the current run
    float* skipv = to_dev(std::vector<float>{0.f, 0.f, 1.f, 3.f});
    float* acc = to_dev(std::vector<float>{0.f, 0.f, 0.f, 0.f, -1.f});
    launch("mtfm_loss_accumulate", dim3(1), dim3(32), 0, (const float*)dloss, (const float*)skipv, acc);
    launch("mtfm_loss_accumulate", dim3(1), dim3(32), 0, (const float*)dloss, (const float*)skipv, acc);
    expect_close("loss_accumulate skipped", from_dev(acc, 5), {0.f, 2.f, 2.f, 2.f, 3.f}, 0, 0);
    launch("mtfm_loss_accumulate", dim3(1), dim3(32), 0, (const float*)dloss, (const float*)dgs, acc);
    launch("mtfm_loss_accumulate", dim3(1), dim3(32), 0, (const float*)dloss, (const float*)nullptr, acc);
    expect_close("loss_accumulate counted", from_dev(acc, 5), {0.5f, 2.f, 0.f, 2.f, 3.f}, 0, 0);
    launch("mtfm_loss_accumulate", dim3(1), dim3(32), 0, (const float*)dloss, (const float*)skipv, acc);
    launch("mtfm_loss_window_reset", dim3(1), dim3(32), 0, acc);
    expect_close("loss_window_reset", from_dev(acc, 5), {0.f, 0.f, 1.f, 1.f, -1.f}, 0, 0);
    for (void* p : {(void*)da, (void*)db, (void*)parts, (void*)scale, (void*)dt, (void*)dm, (void*)dv, (void*)dg, (void*)dsc,
                    (void*)ds, (void*)di, (void*)dgp, (void*)dgs, (void*)dloss, (void*)dgp2, (void*)skipv, (void*)acc})
        mtfm_emu_free(p);
}

inline void test_backend_kernels(Rng& rng) {
    test_optimizer(rng);
    test_elementwise(rng);
    test_reductions(rng);
    test_rows(rng);
    test_bce_mean_and_backward(rng);
    test_gemm(rng);
}

}  // namespace backend_test
