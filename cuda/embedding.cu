// Embedding lookup and its row-sparse backward.
//  gather:    out[t, :] = table[ids[t], :]                       out [n, dim], table [rows, dim]
//  backward:  the host sorts token positions by id (order) and gives the unique ids with segment
//             offsets; one block per unique id sums its tokens' gradient rows in order, so the
//             result is deterministic without atomics:
//             gradRows[u, :] = sum over t in order[segOffsets[u] .. segOffsets[u+1]) of gradOut[t, :]
//  scatter:   tableGrad[uniqueIds[u], :] += gradRows[u, :] (ids unique: no conflicts).
#include "common.cuh"

// Grid-stride over n*dim elements. An id outside [0, rows) writes NaN (the host validates ids first;
// this only makes a missed check visible instead of reading out of bounds).
MTFM_KERNEL void mtfm_embedding_gather(const float* table, const int* ids, float* out, int n, int dim, int rows) {
    const mtfm_i64 total = (mtfm_i64)n * dim;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 t = i / dim;
        const int c = (int)(i - t * dim);
        const int id = ids[t];
        out[i] = (id >= 0 && id < rows) ? table[(mtfm_i64)id * dim + c] : mtfm_nan();
    }
}
MTFM_REGISTER_KERNEL(mtfm_embedding_gather)

// grid.x = numUnique (one block per unique id, loops if gridDim.x is smaller); threads stride over dim.
// Empty segments produce zero rows.
MTFM_KERNEL void mtfm_embedding_backward_segments(const float* gradOut, const int* order, const int* segOffsets,
                                                  float* gradRows, int numUnique, int dim) {
    for (int u = blockIdx.x; u < numUnique; u += gridDim.x) {
        const int begin = segOffsets[u];
        const int end = segOffsets[u + 1];
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            float s = 0.0f;
            for (int j = begin; j < end; ++j) s += gradOut[(mtfm_i64)order[j] * dim + c];
            gradRows[(mtfm_i64)u * dim + c] = s;
        }
    }
}
MTFM_REGISTER_KERNEL(mtfm_embedding_backward_segments)

// tableGrad[uniqueIds[u], :] += gradRows[u, :]; grid-stride over numUnique*dim.
MTFM_KERNEL void mtfm_embedding_scatter_rows(const float* gradRows, const int* uniqueIds, float* tableGrad,
                                             int numUnique, int dim) {
    const mtfm_i64 total = (mtfm_i64)numUnique * dim;
    for (mtfm_i64 i = (mtfm_i64)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (mtfm_i64)gridDim.x * blockDim.x) {
        const mtfm_i64 u = i / dim;
        const int c = (int)(i - u * dim);
        tableGrad[(mtfm_i64)uniqueIds[u] * dim + c] += gradRows[i];
    }
}
MTFM_REGISTER_KERNEL(mtfm_embedding_scatter_rows)
