using System.Runtime.InteropServices;

namespace Mtfm.Engine.Native;

/// <summary>Raw cuBLAS entry points (cublasStatus_t-returning). Use <see cref="Cublas"/>, which checks results.</summary>
internal static unsafe partial class CublasBindings
{
    private const string Lib = CudaLibraries.CublasName;

    static CublasBindings() => CudaLibraries.EnsureResolver();

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")]
    internal static partial int cublasCreate(out nint handle);

    [LibraryImport(Lib, EntryPoint = "cublasDestroy_v2")]
    internal static partial int cublasDestroy(nint handle);

    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")]
    internal static partial int cublasSetStream(nint handle, nint stream);

    [LibraryImport(Lib, EntryPoint = "cublasSetMathMode")]
    internal static partial int cublasSetMathMode(nint handle, int mode);

    [LibraryImport(Lib, EntryPoint = "cublasGetStatusString")]
    internal static partial nint cublasGetStatusString(int status);

    [LibraryImport(Lib, EntryPoint = "cublasGemmEx")]
    internal static partial int cublasGemmEx(nint handle, int transA, int transB, int m, int n, int k, void* alpha,
        ulong a, int aType, int lda, ulong b, int bType, int ldb, void* beta, ulong c, int cType, int ldc,
        int computeType, int algo);

    [LibraryImport(Lib, EntryPoint = "cublasGemmStridedBatchedEx")]
    internal static partial int cublasGemmStridedBatchedEx(nint handle, int transA, int transB, int m, int n, int k,
        void* alpha, ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB, void* beta,
        ulong c, int cType, int ldc, long strideC, int batchCount, int computeType, int algo);
}
