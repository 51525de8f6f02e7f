// Tiny test harness for the emulated kernels: device buffers from the emulation's allocator (exact
// size, so ASan sees overflows), launch by name with the cuLaunchKernel void** ABI, tolerant compares.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../emu/cuda_emu.h"
#include "../emu/emu_api.h"

namespace harness {

inline int g_failures = 0;

struct Rng {
    unsigned long long s;
    explicit Rng(unsigned long long seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
    unsigned next() {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return (unsigned)(s >> 33);
    }
    float uniform(float a, float b) { return a + (b - a) * (float)(next() & 0xFFFFFF) / (float)0x1000000; }
    int below(int n) { return (int)(next() % (unsigned)n); }
};

template <typename T>
T* to_dev(const std::vector<T>& h) {
    T* p = static_cast<T*>(mtfm_emu_malloc(h.size() * sizeof(T)));
    if (!h.empty()) memcpy(p, h.data(), h.size() * sizeof(T));
    return p;
}
template <typename T>
std::vector<T> from_dev(const T* p, size_t n) {
    std::vector<T> h(n);
    if (n) memcpy(h.data(), p, n * sizeof(T));
    return h;
}

template <typename... A>
bool launch(const char* name, dim3 grid, dim3 block, unsigned shared, A... args) {
    void* params[] = {static_cast<void*>(&args)..., nullptr};
    int rc = mtfm_emu_launch(name, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared, params);
    if (rc != 0) {
        fprintf(stderr, "FAIL launch %s: %s\n", name, mtfm_emu_last_error());
        ++g_failures;
        return false;
    }
    return true;
}

inline bool close(float a, float b, float rtol, float atol) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

inline bool expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                         float rtol = 1e-5f, float atol = 1e-5f) {
    if (got.size() != want.size()) {
        fprintf(stderr, "FAIL %s: size %zu vs %zu\n", what, got.size(), want.size());
        ++g_failures;
        return false;
    }
    for (size_t i = 0; i < got.size(); ++i)
        if (!close(got[i], want[i], rtol, atol)) {
            fprintf(stderr, "FAIL %s: element %zu is %.9g, expected %.9g\n", what, i, got[i], want[i]);
            ++g_failures;
            return false;
        }
    return true;
}

inline void expect(bool ok, const std::string& what) {
    if (!ok) {
        fprintf(stderr, "FAIL %s\n", what.c_str());
        ++g_failures;
    }
}

// argv[1] = forward | reverse | random: the thread schedule inside each block.
inline void set_schedule_from_args(int argc, char** argv) {
    int mode = 0;
    if (argc > 1 && !strcmp(argv[1], "reverse")) mode = 1;
    if (argc > 1 && !strcmp(argv[1], "random")) mode = 2;
    mtfm_emu_set_schedule(mode, 12345);
    printf("schedule: %s\n", mode == 0 ? "forward" : mode == 1 ? "reverse" : "random");
}

inline int finish(const char* name) {
    if (g_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", name, g_failures);
        return 1;
    }
    printf("%s: all passed\n", name);
    return 0;
}

}  // namespace harness
