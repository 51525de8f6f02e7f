// Every kernel of cuda/*.cu run on the host emulation against a plain C++ reference, at sizes that are
// not multiples of any block size, including empty inputs and empty segments. Built twice: with
// ASan+UBSan (an out-of-bounds access fails the test) and against the release library.
// Usage: mtfm_kernel_tests [forward|reverse|random]
#include <algorithm>
#include <map>
#include <numeric>

#include "harness.h"
#include <array>
#include "attention_tests.h"
#include "backend_kernel_tests.h"

using namespace harness;
using ll = long long;

static float silu(float x) { return x / (1.0f + expf(-x)); }
static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static void test_elementwise(Rng& rng) {
    for (ll n : {0LL, 1LL, 1000LL}) {
        std::vector<float> x(n), dy(n);
        for (auto& v : x) v = rng.uniform(-6, 6);
        for (auto& v : dy) v = rng.uniform(-1, 1);
        float *dx_ = to_dev(x), *ddy = to_dev(dy), *dout = to_dev(std::vector<float>(n, 0.f));
        launch("mtfm_silu_fwd", dim3(3), dim3(96), 0, (const float*)dx_, dout, n);
        std::vector<float> want(n);
        for (ll i = 0; i < n; ++i) want[i] = silu(x[i]);
        expect_close("silu_fwd", from_dev(dout, n), want);
        launch("mtfm_silu_bwd", dim3(2), dim3(64), 0, (const float*)dx_, (const float*)ddy, dout, n);
        for (ll i = 0; i < n; ++i) {
            float s = sigm(x[i]);
            want[i] = dy[i] * s * (1 + x[i] * (1 - s));
        }
        expect_close("silu_bwd", from_dev(dout, n), want);
        mtfm_emu_free(dx_); mtfm_emu_free(ddy); mtfm_emu_free(dout);
    }
    for (auto rc : {std::pair<int, int>{0, 5}, {7, 13}, {33, 1}}) {
        int rows = rc.first, cols = rc.second;
        std::vector<float> x((size_t)rows * cols), b(cols);
        for (auto& v : x) v = rng.uniform(-1, 1);
        for (auto& v : b) v = rng.uniform(-1, 1);
        float *dxp = to_dev(x), *db = to_dev(b), *dy = to_dev(x);
        launch("mtfm_bias_add", dim3(2), dim3(32), 0, (const float*)dxp, (const float*)db, dy, rows, cols);
        std::vector<float> want(x.size());
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < cols; ++c) want[(size_t)r * cols + c] = x[(size_t)r * cols + c] + b[c];
        expect_close("bias_add", from_dev(dy, x.size()), want);
        std::vector<float> g0(cols, 0.5f);
        float* dg = to_dev(g0);
        launch("mtfm_bias_grad", dim3((cols + 31) / 32), dim3(32), 0, (const float*)dxp, dg, rows, cols, 1);
        std::vector<float> wg(cols, 0.5f);
        for (int c = 0; c < cols; ++c) {
            float s = 0;
            for (int r = 0; r < rows; ++r) s += x[(size_t)r * cols + c];
            wg[c] += s;
        }
        expect_close("bias_grad", from_dev(dg, cols), wg);
        mtfm_emu_free(dxp); mtfm_emu_free(db); mtfm_emu_free(dy); mtfm_emu_free(dg);
    }
}

static void test_group_layernorm(Rng& rng) {
    for (auto nd : {std::pair<int, int>{0, 8}, {1, 3}, {29, 45}, {5, 130}}) {
        const int n = nd.first, d = nd.second, G = 4;
        const float eps = 1e-5f;
        std::vector<float> x((size_t)n * d), dy((size_t)n * d), gamma((size_t)G * d), beta((size_t)G * d);
        std::vector<int> grp(n);
        for (auto& v : x) v = rng.uniform(-2, 2);
        for (auto& v : dy) v = rng.uniform(-1, 1);
        for (auto& v : gamma) v = rng.uniform(0.5f, 1.5f);
        for (auto& v : beta) v = rng.uniform(-0.5f, 0.5f);
        for (auto& v : grp) v = rng.below(G - 1);  // group G-1 stays empty
        std::vector<float> mu(n), rs(n), y((size_t)n * d), dx((size_t)n * d), dga((size_t)G * d, 0.f),
            dbe((size_t)G * d, 0.f);
        for (int t = 0; t < n; ++t) {
            double s = 0, q = 0;
            for (int c = 0; c < d; ++c) s += x[(size_t)t * d + c];
            mu[t] = (float)(s / d);
            for (int c = 0; c < d; ++c) q += (x[(size_t)t * d + c] - mu[t]) * (x[(size_t)t * d + c] - mu[t]);
            rs[t] = 1.0f / sqrtf((float)(q / d) + eps);
            double a = 0, b = 0;
            for (int c = 0; c < d; ++c) {
                size_t i = (size_t)t * d + c, gi = (size_t)grp[t] * d + c;
                float xh = (x[i] - mu[t]) * rs[t];
                y[i] = xh * gamma[gi] + beta[gi];
                a += dy[i] * gamma[gi];
                b += dy[i] * gamma[gi] * xh;
                dga[gi] += dy[i] * xh;
                dbe[gi] += dy[i];
            }
            for (int c = 0; c < d; ++c) {
                size_t i = (size_t)t * d + c, gi = (size_t)grp[t] * d + c;
                float xh = (x[i] - mu[t]) * rs[t];
                dx[i] = rs[t] * (dy[i] * gamma[gi] - (float)(a / d) - xh * (float)(b / d));
            }
        }
        float *dxp = to_dev(x), *ddy = to_dev(dy), *dga_ = to_dev(gamma), *dbe_ = to_dev(beta);
        int* dgrp = to_dev(grp);
        float *dyo = to_dev(std::vector<float>(x.size(), 0.f)), *dmu = to_dev(std::vector<float>(n, 0.f)),
              *drs = to_dev(std::vector<float>(n, 0.f)), *ddx = to_dev(std::vector<float>(x.size(), 0.f));
        launch("mtfm_group_layernorm_fwd", dim3(std::max(1, n - 3)), dim3(64), 0, (const float*)dxp, (const int*)dgrp,
               (const float*)dga_, (const float*)dbe_, dyo, dmu, drs, n, d, G, eps);
        expect_close("group_layernorm_fwd y", from_dev(dyo, y.size()), y, 1e-4f, 1e-5f);
        expect_close("group_layernorm_fwd mean", from_dev(dmu, n), mu, 1e-4f, 1e-6f);
        expect_close("group_layernorm_fwd rstd", from_dev(drs, n), rs, 1e-4f, 1e-5f);
        launch("mtfm_group_layernorm_bwd_x", dim3(std::max(1, n)), dim3(96), 0, (const float*)ddy, (const float*)dxp,
               (const int*)dgrp, (const float*)dga_, (const float*)dmu, (const float*)drs, ddx, n, d, G, 0);
        expect_close("group_layernorm_bwd_x", from_dev(ddx, dx.size()), dx, 1e-3f, 1e-4f);
        std::vector<int> order(n), offs(G + 1, 0);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return grp[a] < grp[b]; });
        for (int t = 0; t < n; ++t) offs[grp[t] + 1]++;
        for (int g = 0; g < G; ++g) offs[g + 1] += offs[g];
        int *dord = to_dev(order), *doffs = to_dev(offs);
        float *ddga = to_dev(std::vector<float>(gamma.size(), 0.f)), *ddbe = to_dev(std::vector<float>(beta.size(), 0.f));
        launch("mtfm_group_layernorm_bwd_params", dim3((d + 31) / 32, 3), dim3(32), 0, (const float*)ddy,
               (const float*)dxp, (const int*)dord, (const int*)doffs, (const float*)dmu, (const float*)drs, ddga,
               ddbe, G, d, 0);
        expect_close("group_layernorm dgamma", from_dev(ddga, dga.size()), dga, 1e-3f, 1e-4f);
        expect_close("group_layernorm dbeta", from_dev(ddbe, dbe.size()), dbe, 1e-4f, 1e-5f);
        // no affine parameters: plain LayerNorm
        launch("mtfm_group_layernorm_fwd", dim3(std::max(1, n)), dim3(32), 0, (const float*)dxp, (const int*)nullptr,
               (const float*)nullptr, (const float*)nullptr, dyo, dmu, drs, n, d, 0, eps);
        std::vector<float> yp(x.size());
        for (int t = 0; t < n; ++t)
            for (int c = 0; c < d; ++c) yp[(size_t)t * d + c] = (x[(size_t)t * d + c] - mu[t]) * rs[t];
        expect_close("layernorm_fwd (no affine)", from_dev(dyo, yp.size()), yp, 1e-4f, 1e-5f);
        for (void* p : {(void*)dxp, (void*)ddy, (void*)dga_, (void*)dbe_, (void*)dgrp, (void*)dyo, (void*)dmu,
                        (void*)drs, (void*)ddx, (void*)dord, (void*)doffs, (void*)ddga, (void*)ddbe})
            mtfm_emu_free(p);
    }
}

static void test_bce(Rng& rng) {
    for (int n : {0, 1, 777}) {
        std::vector<float> x(n), y(n), m(n);
        for (auto& v : x) v = rng.uniform(-8, 8);
        for (auto& v : y) v = (float)rng.below(2);
        for (auto& v : m) v = rng.below(4) == 0 ? 0.0f : 1.0f;
        const int blocks = 3;
        float *dx = to_dev(x), *dy = to_dev(y), *dm = to_dev(m);
        float* dpart = to_dev(std::vector<float>(2 * blocks, 0.f));
        float* dstats = to_dev(std::vector<float>(2, 0.f));
        float* dacc = to_dev(std::vector<float>{10.0f, 5.0f});
        launch("mtfm_bce_fwd", dim3(blocks), dim3(64), 0, (const float*)dx, (const float*)dy, (const float*)dm, dpart, n);
        launch("mtfm_bce_finalize", dim3(1), dim3(32), 0, (const float*)dpart, blocks, dstats, dacc);
        double ls = 0, cnt = 0;
        for (int i = 0; i < n; ++i)
            if (m[i] != 0) {
                ls += std::max(x[i], 0.f) - x[i] * y[i] + log1pf(expf(-fabsf(x[i])));
                cnt += 1;
            }
        expect_close("bce stats", from_dev(dstats, 2), {(float)ls, (float)cnt}, 1e-4f, 1e-4f);
        expect_close("bce accum", from_dev(dacc, 2), {10.0f + (float)ls, 5.0f + (float)cnt}, 1e-4f, 1e-4f);
        for (void* p : {(void*)dx, (void*)dy, (void*)dm, (void*)dpart, (void*)dstats, (void*)dacc})
            mtfm_emu_free(p);
    }
}

static void adam_ref(float& p, float& m, float& v, float g, float lr, float b1, float b2, float eps, float wd,
                     float bc1, float bc2) {
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    p = p * (1 - lr * wd);
    p -= lr * (m / bc1) / (sqrtf(v / bc2) + eps);
}

static void test_adam(Rng& rng) {
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    const float bc1 = 1 - powf(b1, 3), bc2 = 1 - powf(b2, 3);
    std::vector<ll> sizes{5, 0, 1, 300, 0, 77};
    std::vector<std::vector<float>> P, Gr, M, V;
    std::vector<unsigned long long> table;
    std::vector<ll> offs{0};
    std::vector<float*> bufs;
    for (ll s : sizes) {
        std::vector<float> p(s), g(s), m(s), v(s);
        for (auto& a : p) a = rng.uniform(-1, 1);
        for (auto& a : g) a = rng.uniform(-1, 1);
        for (auto& a : m) a = rng.uniform(-0.1f, 0.1f);
        for (auto& a : v) a = rng.uniform(0, 0.01f);
        for (auto* h : {&p, &g, &m, &v}) {
            bufs.push_back(to_dev(*h));
            table.push_back((unsigned long long)(uintptr_t)bufs.back());
        }
        P.push_back(p); Gr.push_back(g); M.push_back(m); V.push_back(v);
        offs.push_back(offs.back() + s);
    }
    auto* dtab = to_dev(table);
    auto* doffs = to_dev(offs);
    float scale = 0.5f;
    float* dscale = to_dev(std::vector<float>{scale});
    launch("mtfm_adamw_multi", dim3(3), dim3(64), 0, (const unsigned long long*)dtab, (const ll*)doffs,
           (int)sizes.size(), lr, b1, b2, eps, wd, bc1, bc2, (const float*)dscale);
    for (size_t k = 0; k < sizes.size(); ++k) {
        for (ll j = 0; j < sizes[k]; ++j) adam_ref(P[k][j], M[k][j], V[k][j], Gr[k][j] * scale, lr, b1, b2, eps, wd, bc1, bc2);
        expect_close("adamw_multi p", from_dev(bufs[4 * k], sizes[k]), P[k], 1e-5f, 1e-6f);
        expect_close("adamw_multi m", from_dev(bufs[4 * k + 2], sizes[k]), M[k], 1e-5f, 1e-7f);
        expect_close("adamw_multi v", from_dev(bufs[4 * k + 3], sizes[k]), V[k], 1e-5f, 1e-8f);
    }
    for (auto* b : bufs) mtfm_emu_free(b);
    mtfm_emu_free(dtab); mtfm_emu_free(doffs); mtfm_emu_free(dscale);
}

int main(int argc, char** argv) {
    set_schedule_from_args(argc, argv);
    Rng rng(42);
    test_elementwise(rng);
    test_group_layernorm(rng);
    test_bce(rng);
    test_adam(rng);
    attn_test::test_attention(rng);
    attn_test::test_attention_bf16(rng);
    backend_test::test_backend_kernels(rng);
    return finish("mtfm_kernel_tests");
}
