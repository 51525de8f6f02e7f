using System.Runtime.InteropServices;

namespace Mtfm.Engine.Native;

/// <summary>
/// Checked wrapper over cuBLAS (column-major, like cuBLAS itself; <see cref="SgemmRowMajor"/> maps row-major
/// operands). fp32 storage with fp32 compute (<c>CUBLAS_COMPUTE_32F</c>) through the Ex entry points.
/// </summary>
internal static unsafe class Cublas
{
    internal const int CUBLAS_OP_N = 0;
    internal const int CUBLAS_OP_T = 1;
    internal const int CUDA_R_32F = 0;
    internal const int CUDA_R_16F = 2;
    internal const int CUDA_R_16BF = 14;
    internal const int CUBLAS_COMPUTE_32F = 68;
    internal const int CUBLAS_COMPUTE_32F_FAST_16BF = 75;
    internal const int CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    internal const int CUBLAS_GEMM_DEFAULT = -1;

    /// <summary>Throws <see cref="CudaNotAvailableException"/> when cuBLAS cannot be loaded.</summary>
    internal static void EnsureAvailable() => CudaLibraries.Require(CudaLibrary.Cublas);

    internal static string StatusString(int status)
    {
        try
        {
            var p = CublasBindings.cublasGetStatusString(status);
            if (p != 0)
                return Marshal.PtrToStringUTF8(p) ?? $"cublasStatus {status}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
        return status switch
        {
            1 => "CUBLAS_STATUS_NOT_INITIALIZED",
            3 => "CUBLAS_STATUS_ALLOC_FAILED",
            7 => "CUBLAS_STATUS_INVALID_VALUE",
            8 => "CUBLAS_STATUS_ARCH_MISMATCH",
            11 => "CUBLAS_STATUS_MAPPING_ERROR",
            13 => "CUBLAS_STATUS_EXECUTION_FAILED",
            14 => "CUBLAS_STATUS_INTERNAL_ERROR",
            15 => "CUBLAS_STATUS_NOT_SUPPORTED",
            _ => $"cublasStatus {status}",
        };
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
            throw new CudaException(call, status, StatusString(status));
    }

    internal static nint Create()
    {
        EnsureAvailable();
        Check(CublasBindings.cublasCreate(out var h), "cublasCreate");
        return h;
    }

    internal static void Destroy(nint handle) => Check(CublasBindings.cublasDestroy(handle), "cublasDestroy");

    internal static void SetStream(nint handle, nint stream) =>
        Check(CublasBindings.cublasSetStream(handle, stream), "cublasSetStream");

    /// <summary>Column-major C = alpha op(A) op(B) + beta C in fp32 (the cublasSgemm equivalent, via cublasGemmEx).</summary>
    internal static void Sgemm(nint handle, bool transA, bool transB, int m, int n, int k, float alpha, ulong a,
        int lda, ulong b, int ldb, float beta, ulong c, int ldc) =>
        Check(CublasBindings.cublasGemmEx(handle, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
            transB ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, &beta, c,
            CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), "cublasGemmEx");

    /// <summary>
    /// Column-major C = alpha op(A) op(B) + beta C with explicit storage types (<see cref="CUDA_R_32F"/>,
    /// <see cref="CUDA_R_16BF"/>, <see cref="CUDA_R_16F"/>) and a compute type whose scalars are fp32
    /// (<see cref="CUBLAS_COMPUTE_32F"/> and its FAST variants): cublasGemmEx with the default algorithm, which uses the
    /// tensor cores for 16-bit inputs. Used by the benchmarks to measure the device's dense bf16 rate.
    /// </summary>
    internal static void GemmEx(nint handle, bool transA, bool transB, int m, int n, int k, float alpha, ulong a,
        int aType, int lda, ulong b, int bType, int ldb, float beta, ulong c, int cType, int ldc, int computeType)
    {
        if (computeType is not (CUBLAS_COMPUTE_32F or CUBLAS_COMPUTE_32F_FAST_16BF or CUBLAS_COMPUTE_32F_FAST_TF32))
            throw new ArgumentOutOfRangeException(nameof(computeType), computeType, "GemmEx passes fp32 alpha/beta: use a CUBLAS_COMPUTE_32F* compute type.");
        Check(CublasBindings.cublasGemmEx(handle, transA ? CUBLAS_OP_T : CUBLAS_OP_N, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
            m, n, k, &alpha, a, aType, lda, b, bType, ldb, &beta, c, cType, ldc, computeType, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
    }

    /// <summary>
    /// Column-major bf16 GEMM: A, B and C in bf16 (<see cref="CUDA_R_16BF"/>), fp32 accumulation
    /// (<see cref="CUBLAS_COMPUTE_32F"/>), tensor cores — the dense bf16 matrix rate a framework's bf16 matmul gets.
    /// </summary>
    internal static void GemmBf16(nint handle, bool transA, bool transB, int m, int n, int k, float alpha, ulong a,
        int lda, ulong b, int ldb, float beta, ulong c, int ldc) =>
        GemmEx(handle, transA, transB, m, n, k, alpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb, beta, c, CUDA_R_16BF,
            ldc, CUBLAS_COMPUTE_32F);

    /// <summary>Column-major strided batched fp32 GEMM (cublasGemmStridedBatchedEx).</summary>
    internal static void SgemmStridedBatched(nint handle, bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float beta, ulong c, int ldc, long strideC,
        int batchCount) =>
        Check(CublasBindings.cublasGemmStridedBatchedEx(handle, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
            transB ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_32F, lda, strideA, b, CUDA_R_32F, ldb,
            strideB, &beta, c, CUDA_R_32F, ldc, strideC, batchCount, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmStridedBatchedEx");

    /// <summary>One column-major GEMM call: C = alpha op(A) op(B) + beta C with C m×n, op(A) m×k, op(B) k×n.</summary>
    internal readonly record struct ColumnMajorGemm(bool TransA, bool TransB, int M, int N, int K, ulong A, int Lda,
        long StrideA, ulong B, int Ldb, long StrideB, ulong C, int Ldc, long StrideC);

    /// <summary>
    /// The column-major call computing the row-major C[m,n] = alpha op(A) op(B) + beta C (the CpuGemm.Sgemm contract):
    /// a row-major matrix with leading dimension ld is, read column-major with the same ld, its transpose, so the call
    /// computes Cᵀ (n×m) = op(B)ᵀ op(A)ᵀ: operands (and their transposition flags, strides and leading dimensions)
    /// swapped, m and n swapped, k unchanged.
    /// </summary>
    internal static ColumnMajorGemm RowMajorAsColumnMajor(bool transA, bool transB, int m, int n, int k, ulong a, int lda,
        long strideA, ulong b, int ldb, long strideB, ulong c, int ldc, long strideC) =>
        new(transB, transA, n, m, k, b, ldb, strideB, a, lda, strideA, c, ldc, strideC);

    /// <summary>Row-major C[m,n] = alpha op(A) op(B) + beta C (same contract as CpuGemm.Sgemm), see <see cref="RowMajorAsColumnMajor"/>.</summary>
    internal static void SgemmRowMajor(nint handle, bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc)
    {
        var g = RowMajorAsColumnMajor(transA, transB, m, n, k, a, lda, 0, b, ldb, 0, c, ldc, 0);
        Sgemm(handle, g.TransA, g.TransB, g.M, g.N, g.K, alpha, g.A, g.Lda, g.B, g.Ldb, beta, g.C, g.Ldc);
    }

    /// <summary>Row-major strided batched fp32 GEMM (batch i: C_i = alpha op(A_i) op(B_i) + beta C_i; strides in elements).</summary>
    internal static void SgemmStridedBatchedRowMajor(nint handle, bool transA, bool transB, int m, int n, int k,
        float alpha, ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float beta, ulong c, int ldc,
        long strideC, int batchCount)
    {
        var g = RowMajorAsColumnMajor(transA, transB, m, n, k, a, lda, strideA, b, ldb, strideB, c, ldc, strideC);
        SgemmStridedBatched(handle, g.TransA, g.TransB, g.M, g.N, g.K, alpha, g.A, g.Lda, g.StrideA, g.B, g.Ldb,
            g.StrideB, beta, g.C, g.Ldc, g.StrideC, batchCount);
    }
}
