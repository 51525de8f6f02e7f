// C API of libmtfm_cuda_emu.so: what the C# emulated device (EmulatedCudaDriver) calls in place of
// the CUDA driver. All functions return 0 on success and a non-zero code on failure; the message is
// then available from mtfm_emu_last_error() (per calling thread). Launches are serialised.
#pragma once
#include <cstddef>

extern "C" {
// Memory: plain host memory standing in for device memory (exact size, so ASan sees overflows).
void* mtfm_emu_malloc(size_t bytes);
void mtfm_emu_free(void* p);
int mtfm_emu_memcpy(void* dst, const void* src, size_t bytes);
int mtfm_emu_memset_d32(void* dst, unsigned value, size_t count);

// Launch: same kernel-parameter ABI as cuLaunchKernel (params[i] points at the i-th argument).
int mtfm_emu_launch(const char* name, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX, unsigned blockY,
                    unsigned blockZ, unsigned sharedBytes, void** params);
const char* mtfm_emu_last_error(void);

// Thread schedule inside a block: 0 forward, 1 reverse, 2 random (seeded). Initially taken from the
// environment variable MTFM_EMU_SCHEDULE = forward | reverse | random[:seed].
int mtfm_emu_set_schedule(int mode, unsigned long long seed);
int mtfm_emu_get_schedule(void);

// Registered kernels (name lookup like cuModuleGetFunction).
int mtfm_emu_kernel_count(void);
const char* mtfm_emu_kernel_name(int index);
int mtfm_emu_has_kernel(const char* name);
}
