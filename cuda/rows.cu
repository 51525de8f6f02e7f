// Row and column kernels (IBackend): gather/scatter/fill rows by an index tensor,
// deterministic scatter-add over pre-sorted segments, column-block copies (concat/split), and Int32/Int64
// index conversion. Index tensors are Int32 (is64 = 0) or Int64 (is64 = 1); their range is checked on
// the host before the launch (the backend keeps a host mirror of every index tensor). 1-D grid-stride
// loops over the output elements unless noted.
#include "common.cuh"

__device__ __forceinline__ mtfm_i64 mtfm_read_index(const void* idx, int is64, mtfm_i64 i) {
    return is64 ? ((const mtfm_i64*)idx)[i] : (mtfm_i64)((const int*)idx)[i];
}

// dst[i, :] = src[idx[i], :] for i < m; rows of `cols` floats.
MTFM_KERNEL void mtfm_gather_rows(const float* src, const void* idx, int is64, float* dst, int m, int cols) {
    const mtfm_i64 n = (mtfm_i64)m * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 i = e / cols, c = e - i * cols;
        dst[e] = src[mtfm_read_index(idx, is64, i) * cols + c];
    }
}
MTFM_REGISTER_KERNEL(mtfm_gather_rows)

// dst[idx[i], :] = src[i, :] for i < m (idx distinct).
MTFM_KERNEL void mtfm_scatter_rows(const float* src, const void* idx, int is64, float* dst, int m, int cols) {
    const mtfm_i64 n = (mtfm_i64)m * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 i = e / cols, c = e - i * cols;
        dst[mtfm_read_index(idx, is64, i) * cols + c] = src[e];
    }
}
MTFM_REGISTER_KERNEL(mtfm_scatter_rows)

// dst[idx[i], :] = value for i < m (repeats write the same value: benign).
MTFM_KERNEL void mtfm_fill_rows(float* dst, const void* idx, int is64, int m, int cols, float value) {
    const mtfm_i64 n = (mtfm_i64)m * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 i = e / cols, c = e - i * cols;
        dst[mtfm_read_index(idx, is64, i) * cols + c] = value;
    }
}
MTFM_REGISTER_KERNEL(mtfm_fill_rows)

// dst[targets[u], c] += src[order[j], c] for j in [segOffsets[u], segOffsets[u+1]), summed in j order
// starting from the current dst value (the same order as the CPU backend). Targets distinct. One
// thread per (target, column): grid-stride over numTargets * cols. Deterministic, no atomics.
MTFM_KERNEL void mtfm_scatter_add_segments(const float* src, const int* order, const int* segOffsets,
                                           const int* targets, float* dst, int numTargets, int cols) {
    const mtfm_i64 n = (mtfm_i64)numTargets * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const int u = (int)(e / cols);
        const int c = (int)(e - (mtfm_i64)u * cols);
        float* d = dst + (mtfm_i64)targets[u] * cols + c;
        float acc = *d;
        for (int j = segOffsets[u]; j < segOffsets[u + 1]; ++j) acc += src[(mtfm_i64)order[j] * cols + c];
        *d = acc;
    }
}
MTFM_REGISTER_KERNEL(mtfm_scatter_add_segments)

// dst[r, dstCol + c] (+)= src[r, srcCol + c] for r < rows, c < cols; strides are the row widths.
MTFM_KERNEL void mtfm_copy_columns(const float* src, int srcStride, int srcCol, float* dst, int dstStride, int dstCol,
                                   int rows, int cols, int accumulate) {
    const mtfm_i64 n = (mtfm_i64)rows * cols;
    for (mtfm_i64 e = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 r = e / cols, c = e - r * cols;
        const float v = src[r * srcStride + srcCol + c];
        float* d = dst + r * dstStride + dstCol + c;
        *d = accumulate ? *d + v : v;
    }
}
MTFM_REGISTER_KERNEL(mtfm_copy_columns)

// dst[i] = (long long)src[i].
MTFM_KERNEL void mtfm_index_i32_to_i64(const int* src, mtfm_i64* dst, mtfm_i64 n) {
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        dst[i] = (mtfm_i64)src[i];
}
MTFM_REGISTER_KERNEL(mtfm_index_i32_to_i64)

// dst[i] = (int)src[i]; the range was checked on the host (values outside Int32 never reach here).
MTFM_KERNEL void mtfm_index_i64_to_i32(const mtfm_i64* src, int* dst, mtfm_i64 n) {
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (mtfm_i64)gridDim.x * blockDim.x)
        dst[i] = (int)src[i];
}
MTFM_REGISTER_KERNEL(mtfm_index_i64_to_i32)
