using System.Runtime.CompilerServices;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// The CUDA implementation of <see cref="IBackend"/> on an <see cref="ICudaDriver"/> (a real GPU through
/// <see cref="NativeCudaDriver"/>, or the host emulation through <see cref="EmulatedCudaDriver"/>: the same code and
/// kernels run on both). Storage is pooled device memory (<see cref="CudaStorage"/>); every op is one or a few kernel
/// launches from <c>cuda/*.cu</c> on one compute stream; uploads are asynchronous through pinned staging; only
/// <see cref="Download{T}"/> synchronises. Batch inputs can be staged ahead on a second (copy) stream ordered by
/// events (<see cref="BeginCopyStreamUploads"/>; docs/cuda.md, "Stream scheduler"). Index tensors keep a host mirror (see <see cref="CudaStorage"/>), so index
/// validation, the sort behind the deterministic scatter-add and <see cref="UniqueIndices"/> never read the device.
/// GEMMs use cuBLAS (<c>cublasGemmStridedBatchedEx</c>) on a real GPU when it loads, else the tiled kernel of
/// <c>gemm.cu</c>. Not thread-safe: one owner thread.
/// </summary>
internal sealed unsafe partial class CudaBackend : IBackend
{
    private const int Threads = 256;
    private const int MaxGrid = 4096;

    private readonly ICudaDriver _driver;
    private readonly bool _ownsDriver;
    private readonly CudaMemoryPool _pool;
    private readonly CudaHostStaging _staging;
    private readonly nint _stream;
    private readonly nint _copyStream;        // batch inputs staged ahead (see CudaBackend.CopyStream.cs)
    private readonly CudaHostStaging _copyStaging;
    private readonly nint _computeFence;      // re-recorded on the compute stream before each copy-stream upload
    private readonly nint _cublas;
    private long _liveAllocations;
    private long _liveBytes;
    private bool _disposed;

    /// <summary>A backend on <paramref name="driver"/> (disposed with the backend when <paramref name="ownsDriver"/>).</summary>
    public CudaBackend(ICudaDriver driver, bool ownsDriver = true, bool useCublas = true)
    {
        ArgumentNullException.ThrowIfNull(driver);
        _driver = driver;
        _ownsDriver = ownsDriver;
        _pool = new CudaMemoryPool(driver);
        _stream = driver.CreateStream();
        _staging = new CudaHostStaging(driver, _stream);
        _copyStream = driver.CreateStream();
        _copyStaging = new CudaHostStaging(driver, _copyStream);
        _computeFence = driver.CreateEvent();
        Ops = new CudaOps(driver);
        if (useCublas && !driver.IsEmulated)
        {
            try
            {
                Cublas.EnsureAvailable();
                _cublas = Cublas.Create();
                Cublas.SetStream(_cublas, _stream);
            }
            catch (CudaNotAvailableException)
            {
                _cublas = 0; // the tiled kernel of gemm.cu serves instead
            }
        }
    }

    /// <summary>A backend on the host emulation (<c>libmtfm_cuda_emu.so</c>; <c>MTFM_CUDA_EMU_LIB</c> when null).</summary>
    public static CudaBackend OpenEmulated(string? libraryPath = null) => new(EmulatedCudaDriver.Open(libraryPath));

    /// <summary>A backend on GPU <paramref name="ordinal"/>; throws <see cref="CudaNotAvailableException"/> without one.</summary>
    public static CudaBackend OpenDevice(int ordinal = 0, string? kernelCacheDirectory = null) =>
        new(NativeCudaDriver.Open(ordinal, new CudaKernelLoader(kernelCacheDirectory)));

    /// <inheritdoc />
    public string Name => "cuda";

    /// <summary>The driver (real or emulated).</summary>
    public ICudaDriver Driver => _driver;

    /// <summary>Typed kernel launchers on the same driver.</summary>
    public CudaOps Ops { get; }

    /// <summary>The compute stream every op is enqueued on.</summary>
    public nint Stream => _stream;

    /// <summary>True when GEMMs go through cuBLAS (false: the tiled kernel of <c>gemm.cu</c>).</summary>
    public bool UsesCublas => _cublas != 0;

    /// <summary>The device memory pool of this backend.</summary>
    public CudaMemoryPool Pool => _pool;

    /// <inheritdoc />
    public long LiveAllocations => _liveAllocations;

    /// <inheritdoc />
    public long LiveBytes => _liveBytes;

    /// <inheritdoc />
    public Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long n = Tensor.CheckedLength(shape);
        long bytes = Math.Max(4, n * dtype.SizeOf());
        var buffer = _pool.Rent(bytes);
        var storage = new CudaStorage(this, dtype, n, buffer);
        // Index storages start zeroed so that their host mirror (zeros) is exact from the start.
        if ((zero || dtype.IsIndex()) && n > 0) _driver.MemsetD32Async(buffer.Pointer, 0, (n * dtype.SizeOf() + 3) / 4, _stream);
        _liveAllocations++;
        _liveBytes += storage.Bytes;
        return Tensor.Owning(storage, shape);
    }

    internal void OnFreed(DeviceBuffer buffer, long bytes)
    {
        _liveAllocations--;
        _liveBytes -= bytes;
        if (!_disposed) _pool.Return(buffer); // stream-ordered: later work on the one stream may reuse it
    }

    /// <inheritdoc />
    public void Upload<T>(ReadOnlySpan<T> src, Tensor dst) where T : unmanaged
    {
        CheckMine(dst, nameof(dst));
        if (DTypeExtensions.Of<T>() != dst.DType) throw new ArgumentException($"Host elements are {typeof(T).Name} but dst is {dst.DType}.", nameof(dst));
        if (src.Length != dst.Length) throw new ArgumentException($"src has {src.Length} elements, dst {dst.ShapeString} has {dst.Length}.", nameof(src));
        UploadTensor(src, dst, CudaUploadCategory.Tensor);
    }

    /// <summary><see cref="Upload{T}"/> with the category named by the caller (checks done by the caller).</summary>
    private void UploadTensor<T>(ReadOnlySpan<T> src, Tensor dst, CudaUploadCategory category) where T : unmanaged
    {
        fixed (T* p = src) StageUpload(Ptr(dst), p, (long)src.Length * sizeof(T), category);
        var mirror = Mirror(dst);
        if (mirror is not null)
        {
            if (typeof(T) == typeof(int))
            {
                var s = System.Runtime.InteropServices.MemoryMarshal.Cast<T, int>(src);
                for (int i = 0; i < s.Length; i++) mirror[dst.Offset + i] = s[i];
            }
            else System.Runtime.InteropServices.MemoryMarshal.Cast<T, long>(src).CopyTo(mirror.AsSpan((int)dst.Offset));
        }
    }

    /// <inheritdoc />
    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    {
        CheckMine(src, nameof(src));
        if (DTypeExtensions.Of<T>() != src.DType) throw new ArgumentException($"Host elements are {typeof(T).Name} but src is {src.DType}.", nameof(src));
        if (dst.Length != src.Length) throw new ArgumentException($"dst has {dst.Length} elements, src {src.ShapeString} has {src.Length}.", nameof(dst));
        fixed (T* p = dst) _staging.Download(p, Ptr(src), (long)dst.Length * sizeof(T));
    }

    /// <summary>Copies raw device memory owned by this backend (e.g. optimizer state) to the host, after the work enqueued so far.</summary>
    internal void DownloadRaw<T>(ulong src, Span<T> dst) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        fixed (T* p = dst) _staging.Download(p, src, (long)dst.Length * sizeof(T));
    }

    /// <summary>Blocks until every op enqueued so far has completed (counted by the driver).</summary>
    public void Synchronize() => _driver.SynchronizeStream(_stream);

    /// <inheritdoc />
    public void Copy(Tensor src, Tensor dst)
    {
        CheckMine(src, nameof(src));
        CheckMine(dst, nameof(dst));
        CheckSameLength(src, dst, nameof(dst));
        long n = src.Length;
        if (src.DType == dst.DType)
        {
            if (n > 0) _driver.CopyDeviceToDeviceAsync(Ptr(dst), Ptr(src), n * dst.DType.SizeOf(), _stream);
        }
        else if (src.DType == DType.Int32 && dst.DType == DType.Int64)
        {
            Launch1D("rows.cu", "mtfm_index_i32_to_i64", n, (ref CudaKernelArgs a) => { a.Ptr(Ptr(src)); a.Ptr(Ptr(dst)); a.I64(n); });
        }
        else if (src.DType == DType.Int64 && dst.DType == DType.Int32)
        {
            var values = IndexValues(src);
            for (int i = 0; i < values.Length; i++)
                if (values[i] < int.MinValue || values[i] > int.MaxValue)
                    throw new ArgumentOutOfRangeException(nameof(src), values[i], $"src[{i}] = {values[i]} does not fit the Int32 dst.");
            Launch1D("rows.cu", "mtfm_index_i64_to_i32", n, (ref CudaKernelArgs a) => { a.Ptr(Ptr(src)); a.Ptr(Ptr(dst)); a.I64(n); });
        }
        else throw new ArgumentException($"Cannot copy {src.DType} src into {dst.DType} dst (only equal dtypes and Int32⇄Int64).", nameof(dst));
        var dm = Mirror(dst);
        if (dm is not null) IndexValues(src).CopyTo(dm.AsSpan((int)dst.Offset, (int)n));
    }

    /// <inheritdoc />
    public void Fill(Tensor dst, float value)
    {
        ulong p = F(dst, nameof(dst));
        long n = dst.Length;
        Launch1D("elementwise.cu", "mtfm_fill", n, (ref CudaKernelArgs a) => { a.Ptr(p); a.I64(n); a.F32(value); });
    }

    // ------------------------------------------------------------------ GEMM

    /// <inheritdoc />
    public void Gemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        RequireRank(a, 2, nameof(a));
        RequireRank(b, 2, nameof(b));
        RequireRank(c, 2, nameof(c));
        GemmDims(transA, transB, a.Dim(0), a.Dim(1), b.Dim(0), b.Dim(1), c.Dim(0), c.Dim(1), out int m, out int n, out int k);
        GemmBatched(transA, transB, m, n, k, alpha, F(a, nameof(a)), a.Dim(1), 0, F(b, nameof(b)), b.Dim(1), 0, beta, F(c, nameof(c)), n, 0, 1);
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
        GemmBatched(transA, transB, m, n, k, alpha, F(a, nameof(a)), a.Dim(2), (long)a.Dim(1) * a.Dim(2),
            F(b, nameof(b)), b.Dim(2), (long)b.Dim(1) * b.Dim(2), beta, F(c, nameof(c)), n, (long)m * n, bt);
    }

    /// <summary>Row-major strided-batched SGEMM: cuBLAS when loaded, else the tiled kernel.</summary>
    private void GemmBatched(bool transA, bool transB, int m, int n, int k, float alpha, ulong a, int lda, long sa,
        ulong b, int ldb, long sb, float beta, ulong c, int ldc, long sc, int batch)
    {
        if (m == 0 || n == 0 || batch == 0) return;
        if (_cublas != 0)
        {
            // Row-major C = op(A)·op(B) is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: operands swapped (Cublas.RowMajorAsColumnMajor).
            _driver.MakeCurrent(); // cuBLAS runs in the context current on this thread
            Cublas.SgemmStridedBatchedRowMajor(_cublas, transA, transB, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
            return;
        }
        if (batch > 65535) throw new ArgumentOutOfRangeException(nameof(batch), batch, "the tiled GEMM kernel takes at most 65535 batches.");
        var args = new CudaKernelArgs();
        args.I32(transA ? 1 : 0); args.I32(transB ? 1 : 0); args.I32(m); args.I32(n); args.I32(k); args.F32(alpha);
        args.Ptr(a); args.I32(lda); args.I64(sa); args.Ptr(b); args.I32(ldb); args.I64(sb); args.F32(beta);
        args.Ptr(c); args.I32(ldc); args.I64(sc);
        const int tile = 16;
        Ops.Launch("gemm.cu", "mtfm_sgemm", new Dim3((uint)((n + tile - 1) / tile), (uint)((m + tile - 1) / tile), (uint)batch),
            new Dim3(tile, tile, 1), 0, _stream, ref args);
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

    // Every launch goes through Ops (CudaOps: the one launch path).
    private void Launch1D(string file, string name, long work, CudaOps.ArgsBuilder build) => Ops.Launch1D(file, name, work, _stream, build);

    private void LaunchRows(string file, string name, int rows, CudaOps.ArgsBuilder build) => Ops.LaunchWarpRows(file, name, rows, _stream, build);

    private static uint Grid(long work) => (uint)Math.Clamp((work + Threads - 1) / Threads, 1, MaxGrid);

    /// <summary>A scratch device buffer, returned with <see cref="Release"/> right after the launches that use it.</summary>
    private DeviceBuffer Scratch(long bytes) => _pool.Rent(Math.Max(4, bytes));

    private void Release(DeviceBuffer b) => _pool.Return(b);

    /// <summary>Uploads host ints into a scratch buffer (asynchronous, staged).</summary>
    private DeviceBuffer ScratchInts(ReadOnlySpan<int> values, CudaUploadCategory category)
    {
        var b = Scratch((long)values.Length * sizeof(int));
        fixed (int* p = values) StageUpload(b.Pointer, p, (long)values.Length * sizeof(int), category);
        return b;
    }

    /// <summary>
    /// Called with the category of every upload enqueued on the compute stream (not on the copy stream); for tests of the
    /// stream scheduler. Null by default.
    /// </summary>
    internal Action<CudaUploadCategory>? ComputeStreamUploadObserved { get; set; }

    /// <summary>The one place uploads are enqueued: on the copy stream between Begin/EndCopyStreamUploads, else staged on the compute stream.</summary>
    private void StageUpload(ulong dst, void* src, long bytes, CudaUploadCategory category)
    {
        if (_copyDepth > 0) { CopyStreamUpload(dst, src, bytes); return; }
        if (bytes > 0) ComputeStreamUploadObserved?.Invoke(category);
        _staging.Upload(dst, src, bytes);
    }

    /// <summary>Throws unless <paramref name="t"/> lives on this backend and is not freed.</summary>
    private void CheckMine(Tensor t, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!ReferenceEquals(t.Backend, this)) throw new ArgumentException($"{name} lives on backend '{t.Backend.Name}', not on this CUDA backend.", name);
        t.Storage.ThrowIfDisposed();
    }

    private static ulong Ptr(Tensor t) => ((CudaStorage)t.Storage).Pointer + (ulong)(t.Offset * t.DType.SizeOf());

    private static long[]? Mirror(Tensor t) => ((CudaStorage)t.Storage).Mirror;

    /// <summary>Device pointer of a tensor of this backend (for kernels wired in outside the backend).</summary>
    public ulong DevicePointer(Tensor t)
    {
        CheckMine(t, nameof(t));
        return Ptr(t);
    }

    /// <summary>The fp32 device pointer of <paramref name="t"/>'s first element.</summary>
    internal ulong F(Tensor t, string name)
    {
        CheckMine(t, name);
        if (t.DType != DType.Float32) throw new ArgumentException($"{name} must be Float32, it is {t.DType}.", name);
        return Ptr(t);
    }

    /// <summary>Device pointer of an index tensor (Int32 or Int64).</summary>
    private ulong I(Tensor t, string name)
    {
        CheckMine(t, name);
        if (!t.DType.IsIndex()) throw new ArgumentException($"{name} must be an Int32 or Int64 index tensor, it is {t.DType}.", name);
        return Ptr(t);
    }

    /// <summary>The host mirror of an index tensor's values (exact: see <see cref="CudaStorage"/>).</summary>
    internal ReadOnlySpan<long> IndexValues(Tensor t) => Mirror(t)!.AsSpan((int)t.Offset, checked((int)t.Length));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Is64(Tensor index) => index.DType == DType.Int64 ? 1 : 0;

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

    /// <summary>Synchronises, frees pooled memory and staging, the stream and cuBLAS; disposes an owned driver.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _driver.SynchronizeStream(_copyStream);
        _driver.SynchronizeStream(_stream);
        foreach (var c in _layoutCaches.ToArray()) c.Dispose(); // detach from their layouts
        _disposed = true;
        _staging.Dispose();
        _copyStaging.Dispose();
        DisposeCopyEvents();
        _driver.DestroyEvent(_computeFence);
        _driver.DestroyStream(_copyStream);
        if (_cublas != 0) Cublas.Destroy(_cublas);
        _pool.Dispose();
        _driver.DestroyStream(_stream);
        if (_ownsDriver) _driver.Dispose();
    }
}
