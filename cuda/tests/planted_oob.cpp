// Runs one deliberately out-of-bounds kernel (argv[1]: global | shared | local | local_index | static_shared).
// ctest passes only if AddressSanitizer reports the access: proof that the sanitized harness catches
// out-of-bounds accesses in kernels.
#include "harness.h"

using namespace harness;

int main(int argc, char** argv) {
    std::string which = argc > 1 ? argv[1] : "global";
    const int n = 32;
    float* out = static_cast<float*>(mtfm_emu_malloc(n * sizeof(float)));
    if (which == "global") launch("mtfm_planted_global_oob", dim3(1), dim3(64), 0, out, n);
    else if (which == "shared") launch("mtfm_planted_shared_oob", dim3(1), dim3(32), 32 * sizeof(float), out, n);
    else if (which == "local") launch("mtfm_planted_local_oob", dim3(1), dim3(32), 0, out, 7);
    else if (which == "local_index") launch("mtfm_planted_local_index_oob", dim3(1), dim3(32), 0, out, 7);
    else if (which == "static_shared") launch("mtfm_planted_static_shared_oob", dim3(1), dim3(32), 0, out, 1);
    printf("planted kernel '%s' ran without a sanitizer report\n", which.c_str());
    mtfm_emu_free(out);
    return 0;
}
