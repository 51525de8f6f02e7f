// Tiled fp32 GEMM, strided-batched, row-major (the CpuGemm.Sgemm contract):
//   C_b[m, n] = alpha * op(A_b) op(B_b) + beta * C_b   for b < gridDim.z,
//   op(A)[i, p] = transA ? A[p * lda + i] : A[i * lda + p];  op(B)[p, j] = transB ? B[j * ldb + p] : B[p * ldb + j].
// beta == 0 overwrites C (never reads it, so NaN garbage in C does not propagate). The fallback when
// cuBLAS is missing, and what the host emulation runs. Block (16, 16); grid (ceil(n/16), ceil(m/16),
// batch). Each thread owns one C element and sums k in ascending order: deterministic.
#include "common.cuh"

#define MTFM_GEMM_TILE 16

MTFM_KERNEL void mtfm_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float* a, int lda,
                            mtfm_i64 strideA, const float* b, int ldb, mtfm_i64 strideB, float beta, float* c, int ldc,
                            mtfm_i64 strideC) {
    __shared__ float as[MTFM_GEMM_TILE][MTFM_GEMM_TILE + 1];
    __shared__ float bs[MTFM_GEMM_TILE][MTFM_GEMM_TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * MTFM_GEMM_TILE + ty;
    const int col = blockIdx.x * MTFM_GEMM_TILE + tx;
    a += (mtfm_i64)blockIdx.z * strideA;
    b += (mtfm_i64)blockIdx.z * strideB;
    c += (mtfm_i64)blockIdx.z * strideC;
    float acc = 0.0f;
    for (int p0 = 0; p0 < k; p0 += MTFM_GEMM_TILE) {
        // as[ty][tx] = op(A)[blockRow + ty, p0 + tx];  bs[ty][tx] = op(B)[p0 + ty, blockCol + tx]
        const int ar = blockIdx.y * MTFM_GEMM_TILE + ty, ap = p0 + tx;
        as[ty][tx] = (ar < m && ap < k) ? (transA ? a[(mtfm_i64)ap * lda + ar] : a[(mtfm_i64)ar * lda + ap]) : 0.0f;
        const int bp = p0 + ty, bc = blockIdx.x * MTFM_GEMM_TILE + tx;
        bs[ty][tx] = (bp < k && bc < n) ? (transB ? b[(mtfm_i64)bc * ldb + bp] : b[(mtfm_i64)bp * ldb + bc]) : 0.0f;
        __syncthreads();
        const int lim = k - p0 < MTFM_GEMM_TILE ? k - p0 : MTFM_GEMM_TILE;
        for (int p = 0; p < lim; ++p) acc = fmaf(as[ty][p], bs[p][tx], acc);
        __syncthreads();
    }
    if (row < m && col < n) {
        float* cp = c + (mtfm_i64)row * ldc + col;
        *cp = beta == 0.0f ? alpha * acc : alpha * acc + beta * *cp;
    }
}
MTFM_REGISTER_KERNEL(mtfm_sgemm)
