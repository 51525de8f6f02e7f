using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// The CPU implementation of <see cref="IBackend"/>: 64-byte aligned host memory, kernels written with
/// <c>TensorPrimitives</c>/intrinsics, parallel loops on a private <see cref="CpuWorkerPool"/>. Every reduction uses a
/// fixed partition (fixed row blocks reduced in order), so results are bit-for-bit reproducible — for a fixed thread
/// count, and in practice for any thread count.
/// </summary>
internal sealed unsafe partial class CpuBackend : IBackend
{
    private readonly CpuWorkerPool _pool;
    private long _liveAllocations;
    private long _liveBytes;
    private long _peakLiveBytes;

    /// <summary>Creates a CPU backend with <paramref name="threads"/> workers (0 = one per core).</summary>
    public CpuBackend(int threads = 0) => _pool = new CpuWorkerPool(threads);

    /// <inheritdoc />
    public string Name => "cpu";

    /// <summary>The worker pool every parallel kernel and GEMM runs on.</summary>
    public CpuWorkerPool Pool => _pool;

    /// <summary>Threads that share a parallel kernel.</summary>
    public int ThreadCount => _pool.ThreadCount;

    /// <inheritdoc />
    public long LiveAllocations => Interlocked.Read(ref _liveAllocations);

    /// <inheritdoc />
    public long LiveBytes => Interlocked.Read(ref _liveBytes);

    /// <summary>The most bytes that were ever live at once (high-water mark of <see cref="LiveBytes"/>).</summary>
    public long PeakLiveBytes => Interlocked.Read(ref _peakLiveBytes);

    /// <summary>Freed blocks kept for reuse (a steady-state step takes no memory from the OS).</summary>
    internal CpuBlockCache BlockCache { get; } = new();

    /// <inheritdoc />
    public Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false)
    {
        long n = Tensor.CheckedLength(shape);
        var storage = new CpuStorage(this, dtype, n, zero);
        Interlocked.Increment(ref _liveAllocations);
        long live = Interlocked.Add(ref _liveBytes, storage.Bytes);
        long peak;
        while (live > (peak = Interlocked.Read(ref _peakLiveBytes)) && Interlocked.CompareExchange(ref _peakLiveBytes, live, peak) != peak) { }
        return Tensor.Owning(storage, shape);
    }

    /// <summary>Bytes of one chunk of a parallel copy or clear (smaller ones run on the calling thread).</summary>
    private const int ByteChunk = 1 << 18;

    /// <summary>Copies <paramref name="bytes"/> bytes (non-overlapping buffers), in 256 KiB chunks over the pool.</summary>
    internal void CopyBytes(void* src, void* dst, nuint bytes)
    {
        if (bytes <= 2 * ByteChunk)
        {
            Buffer.MemoryCopy(src, dst, bytes, bytes);
            return;
        }
        var body = new ByteRangeBody { Src = (byte*)src, Dst = (byte*)dst, Bytes = bytes };
        _pool.For(Chunks(bytes), 1, ref body);
    }

    /// <summary>Sets <paramref name="bytes"/> bytes to 0, in 256 KiB chunks over the pool.</summary>
    internal void ClearBytes(void* dst, nuint bytes)
    {
        if (bytes <= 2 * ByteChunk)
        {
            NativeMemory.Clear(dst, bytes);
            return;
        }
        var body = new ByteRangeBody { Src = null, Dst = (byte*)dst, Bytes = bytes };
        _pool.For(Chunks(bytes), 1, ref body);
    }

    private static int Chunks(nuint bytes) => (int)((bytes + ByteChunk - 1) / ByteChunk);

    /// <summary>Chunk c of a byte range: copied from Src, or cleared where Src is null.</summary>
    private struct ByteRangeBody : IRangeBody
    {
        public byte* Src, Dst;
        public nuint Bytes;

        public readonly void Run(int start, int end)
        {
            nuint a = (nuint)start * ByteChunk, b = Math.Min(Bytes, (nuint)end * ByteChunk);
            if (Src == null) NativeMemory.Clear(Dst + a, b - a);
            else Buffer.MemoryCopy(Src + a, Dst + a, b - a, b - a);
        }
    }

    internal void OnFreed(long bytes)
    {
        Interlocked.Decrement(ref _liveAllocations);
        Interlocked.Add(ref _liveBytes, -bytes);
    }

    /// <inheritdoc />
    public void Upload<T>(ReadOnlySpan<T> src, Tensor dst) where T : unmanaged
    {
        CheckMine(dst, nameof(dst));
        if (DTypeExtensions.Of<T>() != dst.DType) throw new ArgumentException($"Host elements are {typeof(T).Name} but dst is {dst.DType}.", nameof(dst));
        if (src.Length != dst.Length) throw new ArgumentException($"src has {src.Length} elements, dst {dst.ShapeString} has {dst.Length}.", nameof(src));
        src.CopyTo(new Span<T>(Raw(dst), src.Length));
    }

    /// <inheritdoc />
    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    {
        CheckMine(src, nameof(src));
        if (DTypeExtensions.Of<T>() != src.DType) throw new ArgumentException($"Host elements are {typeof(T).Name} but src is {src.DType}.", nameof(src));
        if (dst.Length != src.Length) throw new ArgumentException($"dst has {dst.Length} elements, src {src.ShapeString} has {src.Length}.", nameof(dst));
        new ReadOnlySpan<T>(Raw(src), dst.Length).CopyTo(dst);
    }

    /// <inheritdoc />
    public void Copy(Tensor src, Tensor dst)
    {
        CheckMine(src, nameof(src));
        CheckMine(dst, nameof(dst));
        CheckSameLength(src, dst, nameof(dst));
        if (src.DType == dst.DType)
        {
            CopyBytes(Raw(src), Raw(dst), (nuint)(src.Length * src.DType.SizeOf()));
            return;
        }
        if (src.DType == DType.Int32 && dst.DType == DType.Int64)
        {
            int* s = (int*)Raw(src);
            long* d = (long*)Raw(dst);
            for (long i = 0; i < src.Length; i++) d[i] = s[i];
            return;
        }
        if (src.DType == DType.Int64 && dst.DType == DType.Int32)
        {
            long* s = (long*)Raw(src);
            int* d = (int*)Raw(dst);
            for (long i = 0; i < src.Length; i++)
            {
                long v = s[i];
                if (v < int.MinValue || v > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(src), v, $"src[{i}] = {v} does not fit the Int32 dst.");
                d[i] = (int)v;
            }
            return;
        }
        throw new ArgumentException($"Cannot copy {src.DType} src into {dst.DType} dst (only equal dtypes and Int32⇄Int64).", nameof(dst));
    }

    /// <inheritdoc />
    public void Fill(Tensor dst, float value)
    {
        var p = F(dst, nameof(dst));
        new Span<float>(p, checked((int)dst.Length)).Fill(value);
    }

    // ------------------------------------------------------------------ GEMM

    /// <inheritdoc />
    public void Gemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        RequireRank(a, 2, nameof(a));
        RequireRank(b, 2, nameof(b));
        RequireRank(c, 2, nameof(c));
        GemmDims(transA, transB, a.Dim(0), a.Dim(1), b.Dim(0), b.Dim(1), c.Dim(0), c.Dim(1), out int m, out int n, out int k);
        CpuGemm.Sgemm(_pool, transA, transB, m, n, k, alpha, F(a, nameof(a)), a.Dim(1), F(b, nameof(b)), b.Dim(1), beta, F(c, nameof(c)), n);
    }

    /// <inheritdoc />
    public void BatchedGemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        RequireRank(a, 3, nameof(a));
        RequireRank(b, 3, nameof(b));
        RequireRank(c, 3, nameof(c));
        int bt = a.Dim(0);
        if (b.Dim(0) != bt) throw new ArgumentException($"b has batch {b.Dim(0)}, a has batch {bt}.", nameof(b));
        if (c.Dim(0) != bt) throw new ArgumentException($"c has batch {c.Dim(0)}, a has batch {bt}.", nameof(c));
        GemmDims(transA, transB, a.Dim(1), a.Dim(2), b.Dim(1), b.Dim(2), c.Dim(1), c.Dim(2), out int m, out int n, out int k);
        float* pa = F(a, nameof(a)), pb = F(b, nameof(b)), pc = F(c, nameof(c));
        long sa = (long)a.Dim(1) * a.Dim(2), sb = (long)b.Dim(1) * b.Dim(2), sc = (long)m * n;
        for (int i = 0; i < bt; i++)
            CpuGemm.Sgemm(_pool, transA, transB, m, n, k, alpha, pa + i * sa, a.Dim(2), pb + i * sb, b.Dim(2), beta, pc + i * sc, n);
    }

    private static void GemmDims(bool transA, bool transB, int a0, int a1, int b0, int b1, int c0, int c1, out int m, out int n, out int k)
    {
        m = transA ? a1 : a0;
        k = transA ? a0 : a1;
        int kb = transB ? b1 : b0;
        n = transB ? b0 : b1;
        if (kb != k) throw new ArgumentException($"Inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{kb}, {n}].", "b");
        if (c0 != m || c1 != n) throw new ArgumentException($"c is [{c0}, {c1}], the product is [{m}, {n}].", "c");
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>Throws unless <paramref name="t"/> lives on this backend and is not freed.</summary>
    private void CheckMine(Tensor t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (!ReferenceEquals(t.Backend, this)) throw new ArgumentException($"{name} lives on backend '{t.Backend.Name}', not on this CPU backend.", name);
        t.Storage.ThrowIfDisposed();
    }

    private void* Raw(Tensor t) => (byte*)((CpuStorage)t.Storage).Pointer + t.Offset * t.DType.SizeOf();

    /// <summary>
    /// Host pointer to the first element of an fp32 tensor of this backend, for CPU kernels that live outside the backend
    /// (e.g. the fused attention kernel wired in through <c>Tape.Record</c>). Valid while the tensor's storage lives.
    /// </summary>
    public float* FloatPointer(Tensor t) => F(t, nameof(t));

    /// <summary>Host pointer to the first element of an Int32 tensor of this backend.</summary>
    public int* Int32Pointer(Tensor t)
    {
        CheckMine(t, nameof(t));
        if (t.DType != DType.Int32) throw new ArgumentException($"t must be Int32, it is {t.DType}.", nameof(t));
        return (int*)Raw(t);
    }

    /// <summary>Host pointer to the first element of an Int64 tensor of this backend.</summary>
    public long* Int64Pointer(Tensor t)
    {
        CheckMine(t, nameof(t));
        if (t.DType != DType.Int64) throw new ArgumentException($"t must be Int64, it is {t.DType}.", nameof(t));
        return (long*)Raw(t);
    }

    /// <summary>The fp32 host pointer of <paramref name="t"/>'s first element.</summary>
    internal float* F(Tensor t, string name)
    {
        CheckMine(t, name);
        if (t.DType != DType.Float32) throw new ArgumentException($"{name} must be Float32, it is {t.DType}.", name);
        return (float*)Raw(t);
    }

    /// <summary>Host pointer of an index tensor (Int32 or Int64).</summary>
    private void* I(Tensor t, string name)
    {
        CheckMine(t, name);
        if (!t.DType.IsIndex()) throw new ArgumentException($"{name} must be an Int32 or Int64 index tensor, it is {t.DType}.", name);
        return Raw(t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long ReadIndex(void* p, bool is64, long i) => is64 ? ((long*)p)[i] : ((int*)p)[i];

    private static void RequireRank(Tensor t, int rank, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.Rank != rank) throw new ArgumentException($"{name} must have rank {rank}, its shape is {t.ShapeString}.", name);
    }

    private static void CheckSameLength(Tensor a, Tensor b, string name)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{name} {b.ShapeString} has {b.Length} elements, expected {a.Length} (as {a.ShapeString}).", name);
    }

    /// <summary>The tensor viewed as [rows, cols] where cols is the last dimension.</summary>
    private static (int Rows, int Cols) Matrix(Tensor t)
    {
        int cols = t.LastDim;
        int rows = cols == 0 ? 0 : checked((int)(t.Length / cols));
        return (rows, cols);
    }

    /// <summary>Stops the worker pool.</summary>
    public void Dispose()
    {
        _pool.Dispose();
        BlockCache.Dispose();
    }
}
