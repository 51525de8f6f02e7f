// Self-test of the emulation runtime: barriers, warp collectives, dynamic shared memory, and that
// broken kernels (missing barrier, divergent barrier, partial-warp collective, deadlock) are caught.
// Usage: mtfm_emu_selftest [forward|reverse|random]
#include <algorithm>

#include "harness.h"

using namespace harness;

static float from_bits(unsigned u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static bool launch_expect_error(const char* name, const char* fragment, dim3 grid, dim3 block, float* out) {
    void* params[] = {&out};
    int rc = mtfm_emu_launch(name, grid.x, grid.y, grid.z, block.x, block.y, block.z, 0, params);
    std::string err = mtfm_emu_last_error();
    bool ok = rc != 0 && err.find(fragment) != std::string::npos;
    expect(ok, std::string(name) + ": expected an error containing '" + fragment + "', got rc=" + std::to_string(rc) +
                   " '" + err + "'");
    return ok;
}

// Reference rounding fp32 -> bf16 (round to nearest even) written with arithmetic, not with the kernel's bit trick.
static float bf16_round_ref(float x) {
    if (std::isnan(x) || std::isinf(x) || x == 0.0f) return x;
    int e;
    std::frexp(x, &e);                                  // |x| in [2^(e-1), 2^e)
    const double ulp = std::ldexp(1.0, std::max(e - 8, -133));  // 8 significant bits (bf16 subnormals below 2^-126)
    const double q = (double)x / ulp;
    double r = std::nearbyint(q);                       // default rounding mode: to nearest, ties to even
    return (float)(r * ulp);                            // may overflow to ±inf: intended
}

static unsigned bits(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    return u;
}

static void test_mma_bf16(Rng& rng) {
    // conversions: random values across magnitudes, ties, specials
    std::vector<float> in;
    for (int i = 0; i < 2000; ++i) in.push_back(std::ldexp(rng.uniform(-1, 1), rng.below(60) - 30));
    for (unsigned u : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u,
                       0xff800000u, 0x80000000u, 0x00000000u, 0x00000001u, 0x00400000u, 0x807fffffu, 0x7fc00000u,
                       0xffc00001u, 0x7f800001u, 0x7f7f8000u, 0x3f7fffffu})
        in.push_back(from_bits(u));
    float* din = to_dev(in);
    unsigned* dout = to_dev(std::vector<unsigned>(2 * in.size(), 0));
    launch("mtfm_test_bf16_convert", dim3(1), dim3(64), 0, (const float*)din, dout, (int)in.size());
    auto conv = from_dev(dout, 2 * in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        const float back = from_bits(conv[2 * i + 1]);
        const bool ok = std::isnan(in[i]) ? std::isnan(back) && (conv[2 * i] & 0x8000u) == (bits(in[i]) >> 16 & 0x8000u)
                                          : bits(back) == bits(bf16_round_ref(in[i])) && conv[2 * i + 1] == conv[2 * i] << 16;
        char msg[160];
        snprintf(msg, sizeof msg, "bf16 rounding of 0x%08x: got 0x%04x, expected 0x%08x", bits(in[i]), conv[2 * i],
                 bits(bf16_round_ref(in[i])));
        expect(ok, msg);
    }
    mtfm_emu_free(din);
    mtfm_emu_free(dout);

    // mma vs a scalar reference on bf16-rounded inputs: 3 warps, random data, chained twice (D feeds back as C)
    const int warps = 3, reps = 2;
    std::vector<float> a(warps * 256), b(warps * 128), c(warps * 128);
    for (auto& x : a) x = rng.uniform(-2, 2);
    for (auto& x : b) x = rng.uniform(-2, 2);
    for (auto& x : c) x = rng.uniform(-4, 4);
    float *da = to_dev(a), *db = to_dev(b), *dc = to_dev(c), *dd = to_dev(std::vector<float>(c.size(), -7.0f));
    launch("mtfm_test_mma_bf16", dim3(1), dim3(32 * warps), 0, (const float*)da, (const float*)db, (const float*)dc, dd,
           reps);
    std::vector<float> want(c.size());
    for (int w = 0; w < warps; ++w)
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 8; ++j) {
                double dot = 0;
                for (int kk = 0; kk < 16; ++kk)
                    dot += (double)bf16_round_ref(a[w * 256 + i * 16 + kk]) * bf16_round_ref(b[w * 128 + kk * 8 + j]);
                float acc = c[w * 128 + i * 8 + j];
                for (int r = 0; r < reps; ++r) acc = (float)((double)acc + dot);
                want[w * 128 + i * 8 + j] = acc;
            }
    expect_close("mma bf16 m16n8k16 vs scalar reference", from_dev(dd, c.size()), want, 1e-6f, 1e-6f);
    for (void* p : {(void*)da, (void*)db, (void*)dc, (void*)dd}) mtfm_emu_free(p);

    float* scratch = to_dev(std::vector<float>(64, 0.f));
    launch_expect_error("mtfm_test_mma_partial", "but the block has only 48 threads", dim3(1), dim3(48), scratch);
    launch_expect_error("mtfm_test_mma_divergent", "divergent warp collectives: mtfm_mma_bf16_16816", dim3(1), dim3(32),
                        scratch);
    // reported as "lane 8 ... has already exited" or as a deadlock, depending on the schedule
    launch_expect_error("mtfm_test_mma_exited", "mtfm_mma_bf16_16816", dim3(1), dim3(32), scratch);
    mtfm_emu_free(scratch);
}

int main(int argc, char** argv) {
    set_schedule_from_args(argc, argv);
    Rng rng(7);
    const int n = 1000, bs = 256, nb = (n + bs - 1) / bs;
    std::vector<float> in(n);
    for (auto& v : in) v = (float)rng.below(100);  // integers: sums are exact in any order
    float* din = to_dev(in);
    float* dout = to_dev(std::vector<float>(nb, 0.f));
    std::vector<float> want(nb, 0.f);
    for (int i = 0; i < n; ++i) want[i / bs] += in[i];
    launch("mtfm_test_block_tree_sum", dim3(nb), dim3(bs), 0, (const float*)din, dout, n);
    expect_close("block tree sum", from_dev(dout, nb), want, 0, 0);
    launch("mtfm_test_block_tree_sum_racy", dim3(nb), dim3(bs), 0, (const float*)din, dout, n);
    auto racy = from_dev(dout, nb);
    bool differs = false;
    for (int b = 0; b < nb; ++b) differs |= !(racy[b] == want[b]);
    // The tree reduction without its first barrier happens to be right when threads run in reverse
    // order; the forward and random schedules expose it.
    if (mtfm_emu_get_schedule() != 1)
        expect(differs, "missing __syncthreads was not visible: racy kernel gave the right sums");

    // warp ops over 64 threads (2 warps)
    std::vector<int> vi(64);
    for (int t = 0; t < 64; ++t) vi[t] = rng.below(50) + (t == 40 ? 5000 : 0);
    int* dvi = to_dev(vi);
    int* dwo = to_dev(std::vector<int>(64 * 8, 0));
    launch("mtfm_test_warp_ops", dim3(1), dim3(64), 0, (const int*)dvi, dwo);
    auto wo = from_dev(dwo, 64 * 8);
    for (int t = 0; t < 64; ++t) {
        int w = t & ~31, l = t & 31;
        unsigned ballot = 0;
        bool any = false, all = true;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            ballot |= (unsigned)(vi[w + j] & 1) << j;
            any |= vi[w + j] > 1000;
            all &= vi[w + j] >= 0;
            sum += vi[w + j];
        }
        int exp[8] = {vi[w + 5],
                      l >= 3 ? vi[t - 3] : vi[t],
                      (l & 7) + 2 < 8 ? vi[t + 2] : vi[t],
                      vi[w + (l ^ 9)],
                      (int)ballot,
                      any,
                      all,
                      sum};
        for (int k = 0; k < 8; ++k)
            expect(wo[t * 8 + k] == exp[k], "warp op " + std::to_string(k) + " thread " + std::to_string(t) + ": got " +
                                                std::to_string(wo[t * 8 + k]) + ", expected " + std::to_string(exp[k]));
    }

    // dynamic shared memory, 3 blocks of 40 threads
    std::vector<float> ds(120);
    for (auto& v : ds) v = rng.uniform(-1, 1);
    float* dds = to_dev(ds);
    float* ddo = to_dev(std::vector<float>(120, 0.f));
    launch("mtfm_test_dynamic_shared", dim3(3), dim3(40), 40 * sizeof(float), (const float*)dds, ddo);
    std::vector<float> dw(120);
    for (int b = 0; b < 3; ++b)
        for (int t = 0; t < 40; ++t) dw[b * 40 + t] = ds[b * 40 + (t + 1) % 40];
    expect_close("dynamic shared", from_dev(ddo, 120), dw, 0, 0);

    float* scratch = to_dev(std::vector<float>(64, 0.f));
    launch_expect_error("mtfm_test_divergent_barrier", "divergent __syncthreads", dim3(1), dim3(64), scratch);
    launch_expect_error("mtfm_test_partial_warp", "but the block has only 48 threads", dim3(1), dim3(48), scratch);
    launch_expect_error("mtfm_test_deadlock", "deadlock", dim3(1), dim3(32), scratch);
    launch_expect_error("mtfm_no_such_kernel", "no kernel named", dim3(1), dim3(32), scratch);
    launch_expect_error("mtfm_test_partial_warp", "at most 1024 threads", dim3(1), dim3(2048), scratch);

    launch("mtfm_test_early_exit", dim3(1), dim3(64), 0, scratch, 37);
    auto ee = from_dev(scratch, 37);
    std::vector<float> eew(37);
    for (int t = 0; t < 37; ++t) eew[t] = (float)((t + 1) % 37);
    expect_close("early exit counts as arrived", ee, eew, 0, 0);

    for (int who : {0, 36, 40, -1}) {  // first thread, last active thread, an exited thread, nobody
        launch("mtfm_test_syncthreads_or", dim3(1), dim3(64), 0, scratch, 37, who);
        const float want = (who >= 0 && who < 37) ? 2.0f : 0.0f;
        const std::string what = "__syncthreads_or (who = " + std::to_string(who) + ")";
        expect_close(what.c_str(), from_dev(scratch, 37),
                     std::vector<float>(37, want), 0, 0);
    }

    test_mma_bf16(rng);

    // a kernel after a failed launch still works
    launch("mtfm_test_block_tree_sum", dim3(nb), dim3(bs), 0, (const float*)din, dout, n);
    expect_close("block tree sum after errors", from_dev(dout, nb), want, 0, 0);

    for (void* p : {(void*)din, (void*)dout, (void*)dvi, (void*)dwo, (void*)dds, (void*)ddo, (void*)scratch})
        mtfm_emu_free(p);
    return finish("mtfm_emu_selftest");
}
