using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// The pieces of the native (GPU-only) path whose logic can be checked without a GPU: the cuBLAS row-major mapping
/// (run through a column-major GEMM with cuBLAS's definition and compared with <see cref="CpuGemm"/>), the
/// <c>cuLaunchKernel</c> argument layout, the dynamic shared memory opt-in decision, and the companion libraries
/// (libcublasLt, libnvrtc-builtins) loaded beside an explicitly named cuBLAS/NVRTC.
/// </summary>
public sealed unsafe class CudaNativeHostLogicTests
{
    private const ulong TagA = 0xA0000, TagB = 0xB0000, TagC = 0xC0000;

    /// <summary>
    /// cuBLAS's column-major GEMM as its documentation defines it (C(i,j) at C[i + j·ldc]; op(A)(i,p) = A[i + p·lda]
    /// or, transposed, A[p + i·lda]), operands found by their "device pointer" tags. Also checks cuBLAS's leading
    /// dimension rules (it returns CUBLAS_STATUS_INVALID_VALUE otherwise).
    /// </summary>
    private static void ColumnMajorGemm(Cublas.ColumnMajorGemm g, float alpha, float beta, int batch,
        Dictionary<ulong, float[]> memory)
    {
        Assert.True(g.Lda >= Math.Max(1, g.TransA ? g.K : g.M), $"lda {g.Lda} too small for cuBLAS");
        Assert.True(g.Ldb >= Math.Max(1, g.TransB ? g.N : g.K), $"ldb {g.Ldb} too small for cuBLAS");
        Assert.True(g.Ldc >= Math.Max(1, g.M), $"ldc {g.Ldc} too small for cuBLAS");
        float[] a = memory[g.A], b = memory[g.B], c = memory[g.C];
        for (var t = 0; t < batch; t++)
            for (var j = 0; j < g.N; j++)
                for (var i = 0; i < g.M; i++)
                {
                    double acc = 0;
                    for (var p = 0; p < g.K; p++)
                    {
                        var av = g.TransA ? a[t * g.StrideA + p + i * (long)g.Lda] : a[t * g.StrideA + i + p * (long)g.Lda];
                        var bv = g.TransB ? b[t * g.StrideB + j + p * (long)g.Ldb] : b[t * g.StrideB + p + j * (long)g.Ldb];
                        acc += (double)av * bv;
                    }
                    var ci = t * g.StrideC + i + j * (long)g.Ldc;
                    c[ci] = (float)(alpha * acc + beta * c[ci]);
                }
    }

    [Theory]
    [InlineData(false, false, 0)]
    [InlineData(true, false, 0)]
    [InlineData(false, true, 0)]
    [InlineData(true, true, 0)]
    [InlineData(false, false, 3)] // leading dimensions wider than the matrices (views into wider rows)
    [InlineData(true, true, 5)]
    public void RowMajorMappingMatchesCpuGemm(bool transA, bool transB, int pad)
    {
        var rng = new Random(5);
        const int m = 7, n = 5, k = 9;
        int lda = (transA ? m : k) + pad, ldb = (transB ? k : n) + pad, ldc = n + pad;
        var a = CudaTestDevice.RandomFloats(rng, (transA ? k : m) * lda, -1, 1);
        var b = CudaTestDevice.RandomFloats(rng, (transB ? n : k) * ldb, -1, 1);
        var c = CudaTestDevice.RandomFloats(rng, m * ldc, -1, 1);
        var want = (float[])c.Clone();
        fixed (float* pa = a, pb = b, pw = want)
            CpuGemm.Sgemm(transA, transB, m, n, k, 0.75f, pa, lda, pb, ldb, 0.5f, pw, ldc);
        var memory = new Dictionary<ulong, float[]> { [TagA] = a, [TagB] = b, [TagC] = (float[])c.Clone() };
        var g = Cublas.RowMajorAsColumnMajor(transA, transB, m, n, k, TagA, lda, 0, TagB, ldb, 0, TagC, ldc, 0);
        ColumnMajorGemm(g, 0.75f, 0.5f, 1, memory);
        CudaTestDevice.AssertClose(want, memory[TagC], 1e-5f, 1e-5f, $"row-major via column-major transA={transA} transB={transB}");
    }

    [Fact]
    public void StridedBatchedRowMajorMappingMatchesCpuGemmPerBatch()
    {
        var rng = new Random(6);
        const int m = 4, n = 6, k = 3, batch = 3;
        long sa = m * k + 2, sb = k * n + 1, sc = m * n + 3; // gaps between the batch items
        var a = CudaTestDevice.RandomFloats(rng, (int)(batch * sa), -1, 1);
        var b = CudaTestDevice.RandomFloats(rng, (int)(batch * sb), -1, 1);
        var c = CudaTestDevice.RandomFloats(rng, (int)(batch * sc), -1, 1);
        var want = (float[])c.Clone();
        fixed (float* pa = a, pb = b, pw = want)
            for (var t = 0; t < batch; t++)
                CpuGemm.Sgemm(false, true, m, n, k, 1.25f, pa + t * sa, k, pb + t * sb, k, -0.5f, pw + t * sc, n);
        var memory = new Dictionary<ulong, float[]> { [TagA] = a, [TagB] = b, [TagC] = (float[])c.Clone() };
        // B is transposed: stored [n, k], ldb = k (what CudaBackend.BatchedGemm passes: the stored last dimension)
        var g = Cublas.RowMajorAsColumnMajor(false, true, m, n, k, TagA, k, sa, TagB, k, sb, TagC, n, sc);
        ColumnMajorGemm(g, 1.25f, -0.5f, batch, memory);
        CudaTestDevice.AssertClose(want, memory[TagC], 1e-5f, 1e-5f, "strided batched row-major via column-major");
    }

    [Fact]
    public void KernelArgumentsSitInTheLowBytesOfZeroedEightByteSlots()
    {
        var args = new CudaKernelArgs();
        args.Ptr(0x1122334455667788UL);
        args.I32(-5);
        args.U32(0xDEADBEEFu);
        args.I64(-7);
        args.F32(1.5f);
        Assert.Equal(5, args.Count);
        var storage = stackalloc ulong[CudaKernelArgs.Capacity];
        var ptrs = stackalloc void*[CudaKernelArgs.Capacity];
        for (var i = 0; i < CudaKernelArgs.Capacity; i++) storage[i] = ulong.MaxValue; // stale stack contents
        args.FillPointers(storage, ptrs);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(ptrs[i] == storage + i, $"argument {i} must point at its own slot");
            Assert.Equal(0L, (long)ptrs[i] % 8);
        }
        Assert.Equal(0x1122334455667788UL, *(ulong*)ptrs[0]);
        // cuLaunchKernel copies sizeof(parameter) bytes from each pointer: a 4-byte int reads the low half, and the
        // high half is zero, so an int passed to a 64-bit parameter still reads its (non-negative) value.
        Assert.Equal(-5, *(int*)ptrs[1]);
        Assert.Equal(0u, ((uint*)ptrs[1])[1]);
        Assert.Equal(0xDEADBEEFu, *(uint*)ptrs[2]);
        Assert.Equal(0xDEADBEEFUL, *(ulong*)ptrs[2]);
        Assert.Equal(-7L, *(long*)ptrs[3]);
        Assert.Equal(1.5f, *(float*)ptrs[4]);
        Assert.Equal(0u, ((uint*)ptrs[4])[1]);
    }

    [Fact]
    public void KernelArgumentsBeyondTheCapacityAreRejected()
    {
        var args = new CudaKernelArgs();
        for (var i = 0; i < CudaKernelArgs.Capacity; i++) args.I32(i);
        var e = Assert.Throws<InvalidOperationException>(() => args.I32(99));
        Assert.Contains(CudaKernelArgs.Capacity.ToString(), e.Message);
    }

    [Fact]
    public void DynamicSharedMemoryAboveTheDefaultLimitIsOptedIn()
    {
        const int optIn = 227 * 1024; // H100/H200: CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        // within the default: nothing to set (the default limit is 48 KiB minus the static shared memory)
        Assert.Equal(0, NativeCudaDriver.DynamicSharedOptIn("k", 0, 48 * 1024 - 900, 900, optIn));
        Assert.Equal(0, NativeCudaDriver.DynamicSharedOptIn("k", 48 * 1024 - 900, 48 * 1024 - 900, 900, optIn));
        // the bf16 attention forward at dqk = 224, dv = 128: a 64-key tile takes 48,128 B of dynamic shared memory,
        // within 48 KiB alone, but with its ~1.5 KiB of static shared memory over the default limit
        var dyn = CudaOps.HstuAttentionBf16SharedBytes(CudaOps.HstuAttentionBf16KeyTile(224, 128), 224, 128);
        Assert.Equal(48128, dyn);
        Assert.Equal(dyn, NativeCudaDriver.DynamicSharedOptIn("bf16", (uint)dyn, 48 * 1024 - 1540, 1540, optIn));
        // already raised: nothing more to do
        Assert.Equal(0, NativeCudaDriver.DynamicSharedOptIn("bf16", (uint)dyn, dyn, 1540, optIn));
        // beyond what the device allows per block: rejected with the numbers
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            NativeCudaDriver.DynamicSharedOptIn("big", (uint)optIn, 48 * 1024, 16, optIn));
        Assert.Equal("sharedBytes", e.ParamName);
        Assert.Contains("big", e.Message);
        Assert.Contains(optIn.ToString(), e.Message);
    }

    [Fact]
    public void CublasLtIsFoundBesideAVersionedCublas()
    {
        var dir = Directory.CreateTempSubdirectory("mtfm-cublaslt-");
        try
        {
            var cublas = Path.Combine(dir.FullName, "libcublas.so.13.0.2.14");
            File.WriteAllText(cublas, "");
            Assert.Null(CudaLibraries.CublasLtBeside(cublas)); // no libcublasLt.so.13 there yet
            var lt = Path.Combine(dir.FullName, "libcublasLt.so.13");
            File.WriteAllText(lt, "");
            Assert.Equal(lt, CudaLibraries.CublasLtBeside(cublas));
            Assert.Equal(lt, CudaLibraries.CublasLtBeside(Path.Combine(dir.FullName, "libcublas.so.13")));
            Assert.Null(CudaLibraries.CublasLtBeside(Path.Combine(dir.FullName, "libcublas.so.12")));
            Assert.Null(CudaLibraries.CublasLtBeside(Path.Combine(dir.FullName, "libcublas.so")));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
        Assert.Equal("libnvrtc-builtins.so.13.0", CudaLibraries.NvrtcBuiltinsName(13, 0));
    }
}
