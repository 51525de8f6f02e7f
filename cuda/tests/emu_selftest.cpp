// Self-test of the emulation runtime: barriers, warp collectives, dynamic shared memory, and that
// broken kernels (missing barrier, divergent barrier, partial-warp collective, deadlock) are caught.
// Usage: mtfm_emu_selftest [forward|reverse|random]
#include "harness.h"

using namespace harness;

static bool launch_expect_error(const char* name, const char* fragment, dim3 grid, dim3 block, float* out) {
    void* params[] = {&out};
    int rc = mtfm_emu_launch(name, grid.x, grid.y, grid.z, block.x, block.y, block.z, 0, params);
    std::string err = mtfm_emu_last_error();
    bool ok = rc != 0 && err.find(fragment) != std::string::npos;
    expect(ok, std::string(name) + ": expected an error containing '" + fragment + "', got rc=" + std::to_string(rc) +
                   " '" + err + "'");
    return ok;
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

    // a kernel after a failed launch still works
    launch("mtfm_test_block_tree_sum", dim3(nb), dim3(bs), 0, (const float*)din, dout, n);
    expect_close("block tree sum after errors", from_dev(dout, nb), want, 0, 0);

    for (void* p : {(void*)din, (void*)dout, (void*)dvi, (void*)dwo, (void*)dds, (void*)ddo, (void*)scratch})
        mtfm_emu_free(p);
    return finish("mtfm_emu_selftest");
}
