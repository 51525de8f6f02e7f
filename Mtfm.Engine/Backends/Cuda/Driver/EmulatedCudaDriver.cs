using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>Thread order inside a block on the emulated device (races show up as differences between them).</summary>
internal enum EmulatedSchedule
{
    Forward = 0,
    Reverse = 1,
    Random = 2,
}

/// <summary>
/// The emulated CUDA device: the kernels of <c>cuda/*.cu</c> compiled for the host into <c>libmtfm_cuda_emu.so</c>
/// (CMake; threads as fibers, see docs/cuda.md), called in place of the driver. The library is found through the
/// environment variable <c>MTFM_CUDA_EMU_LIB</c> or an explicit path. Device memory is host memory; every operation
/// completes before it returns (a valid implementation of stream order); streams and events are bookkeeping only.
/// </summary>
internal sealed unsafe class EmulatedCudaDriver : ICudaDriver
{
    /// <summary>Environment variable naming libmtfm_cuda_emu.so.</summary>
    public const string LibraryVariable = "MTFM_CUDA_EMU_LIB";

    private sealed class Api
    {
        public required nint Handle;
        public required delegate* unmanaged<nuint, void*> Malloc;
        public required delegate* unmanaged<void*, void> Free;
        public required delegate* unmanaged<void*, void*, nuint, int> Memcpy;
        public required delegate* unmanaged<void*, uint, nuint, int> MemsetD32;
        public required delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int> Launch;
        public required delegate* unmanaged<byte*> LastError;
        public required delegate* unmanaged<int, ulong, int> SetSchedule;
        public required delegate* unmanaged<byte*, int> HasKernel;
    }

    private static readonly ConcurrentDictionary<string, Api> s_apis = new();
    private readonly Api _api;
    private readonly HashSet<ulong> _live = [];
    private readonly HashSet<nint> _pinned = [];
    private readonly ConcurrentDictionary<string, CudaKernel> _kernels = new();
    private long _syncs;
    private long _nextHandle = 1;
    private bool _disposed;

    private EmulatedCudaDriver(Api api, string path)
    {
        _api = api;
        LibraryPath = path;
    }

    /// <summary>The library file in use.</summary>
    public string LibraryPath { get; }

    /// <summary>
    /// Opens the emulated device from <paramref name="libraryPath"/> (default: <c>MTFM_CUDA_EMU_LIB</c>). Throws
    /// <see cref="CudaNotAvailableException"/> when the library is not configured or cannot be loaded.
    /// </summary>
    public static EmulatedCudaDriver Open(string? libraryPath = null)
    {
        var path = libraryPath ?? Environment.GetEnvironmentVariable(LibraryVariable);
        if (string.IsNullOrWhiteSpace(path))
            throw new CudaNotAvailableException(
                $"emulated device: {LibraryVariable} is not set (build libmtfm_cuda_emu.so with CMake: scripts/test.sh)");
        var api = s_apis.GetOrAdd(Path.GetFullPath(path), Load);
        return new EmulatedCudaDriver(api, path);
    }

    private static Api Load(string path)
    {
        if (!File.Exists(path))
            throw new CudaNotAvailableException($"emulated device: library '{path}' does not exist");
        if (!NativeLibrary.TryLoad(path, out var h))
            throw new CudaNotAvailableException($"emulated device: library '{path}' could not be loaded");
        nint Sym(string name) => NativeLibrary.TryGetExport(h, name, out var p)
            ? p
            : throw new CudaNotAvailableException($"emulated device: '{path}' has no export {name}");
        return new Api
        {
            Handle = h,
            Malloc = (delegate* unmanaged<nuint, void*>)Sym("mtfm_emu_malloc"),
            Free = (delegate* unmanaged<void*, void>)Sym("mtfm_emu_free"),
            Memcpy = (delegate* unmanaged<void*, void*, nuint, int>)Sym("mtfm_emu_memcpy"),
            MemsetD32 = (delegate* unmanaged<void*, uint, nuint, int>)Sym("mtfm_emu_memset_d32"),
            Launch = (delegate* unmanaged<byte*, uint, uint, uint, uint, uint, uint, uint, void**, int>)Sym("mtfm_emu_launch"),
            LastError = (delegate* unmanaged<byte*>)Sym("mtfm_emu_last_error"),
            SetSchedule = (delegate* unmanaged<int, ulong, int>)Sym("mtfm_emu_set_schedule"),
            HasKernel = (delegate* unmanaged<byte*, int>)Sym("mtfm_emu_has_kernel"),
        };
    }

    public string DeviceName => "emulated (host)";

    public int ComputeCapability => 0;

    public bool IsEmulated => true;

    public long SynchronizationCount => Interlocked.Read(ref _syncs);

    public string? LastSynchronization => Volatile.Read(ref _lastSync);

    private string? _lastSync;

    public long LiveAllocations => _live.Count;

    /// <summary>Sets the thread schedule inside blocks for every later launch (process-wide in the library).</summary>
    public void SetSchedule(EmulatedSchedule schedule, ulong seed = 1)
    {
        if (_api.SetSchedule((int)schedule, seed) != 0)
            throw new CudaException("mtfm_emu_set_schedule", 1, LastError());
    }

    private string LastError() => Marshal.PtrToStringUTF8((nint)_api.LastError()) ?? "unknown error";

    private void Sync(string call)
    {
        Interlocked.Increment(ref _syncs);
        Volatile.Write(ref _lastSync, call);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    public ulong Allocate(long bytes)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var p = (ulong)_api.Malloc((nuint)bytes);
        if (p == 0)
            throw new CudaException($"mtfm_emu_malloc({bytes} bytes)", 2, LastError());
        _live.Add(p);
        return p;
    }

    public void Free(ulong devicePointer)
    {
        ThrowIfDisposed();
        if (!_live.Remove(devicePointer))
            throw new ArgumentException($"0x{devicePointer:x} is not a live allocation of this device", nameof(devicePointer));
        _api.Free((void*)devicePointer);
    }

    public nint AllocatePinned(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var p = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        _pinned.Add(p);
        return p;
    }

    public void FreePinned(nint hostPointer)
    {
        if (!_pinned.Remove(hostPointer))
            throw new ArgumentException($"0x{hostPointer:x} is not pinned memory of this device", nameof(hostPointer));
        NativeMemory.AlignedFree((void*)hostPointer);
    }

    public nint CreateStream() => (nint)Interlocked.Increment(ref _nextHandle);

    public void DestroyStream(nint stream)
    {
    }

    public void SynchronizeStream(nint stream) => Sync("cuStreamSynchronize");

    public void Synchronize() => Sync("cuCtxSynchronize");

    public nint CreateEvent() => (nint)Interlocked.Increment(ref _nextHandle);

    public void DestroyEvent(nint evt)
    {
    }

    public void RecordEvent(nint evt, nint stream)
    {
    }

    public void StreamWaitEvent(nint stream, nint evt)
    {
    }

    public void SynchronizeEvent(nint evt) => Sync("cuEventSynchronize");

    public bool IsEventComplete(nint evt) => true;

    private void Copy(void* dst, void* src, long bytes, string call)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (_api.Memcpy(dst, src, (nuint)bytes) != 0)
            throw new CudaException(call, 1, LastError());
    }

    public void CopyHostToDeviceAsync(ulong dst, void* src, long bytes, nint stream) =>
        Copy((void*)dst, src, bytes, "cuMemcpyHtoDAsync");

    public void CopyDeviceToHostAsync(void* dst, ulong src, long bytes, nint stream) =>
        Copy(dst, (void*)src, bytes, "cuMemcpyDtoHAsync");

    public void CopyDeviceToDeviceAsync(ulong dst, ulong src, long bytes, nint stream) =>
        Copy((void*)dst, (void*)src, bytes, "cuMemcpyDtoDAsync");

    public void CopyHostToDevice(ulong dst, void* src, long bytes)
    {
        Sync("cuMemcpyHtoD");
        Copy((void*)dst, src, bytes, "cuMemcpyHtoD");
    }

    public void CopyDeviceToHost(void* dst, ulong src, long bytes)
    {
        Sync("cuMemcpyDtoH");
        Copy(dst, (void*)src, bytes, "cuMemcpyDtoH");
    }

    public void MemsetD32Async(ulong dst, uint value, long count, nint stream)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (_api.MemsetD32((void*)dst, value, (nuint)count) != 0)
            throw new CudaException("cuMemsetD32Async", 1, LastError());
    }

    public CudaKernel GetKernel(string sourceFile, string kernelName)
    {
        ThrowIfDisposed();
        // Called once per launch: the hit path allocates nothing (the closure lives in LoadKernel).
        return _kernels.TryGetValue(kernelName, out var kernel) ? kernel : LoadKernel(sourceFile, kernelName);
    }

    private CudaKernel LoadKernel(string sourceFile, string kernelName)
    {
        return _kernels.GetOrAdd(kernelName, name =>
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(name + "\0");
            fixed (byte* p = bytes)
            {
                if (_api.HasKernel(p) == 0)
                    throw new CudaException($"cuModuleGetFunction({name})", 500,
                        $"no kernel named '{name}' in {LibraryPath} (source {sourceFile})");
            }
            return new CudaKernel(sourceFile, name, 0);
        });
    }

    public void Launch(CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, void** args)
    {
        ThrowIfDisposed();
        var bytes = System.Text.Encoding.UTF8.GetBytes(kernel.Name + "\0");
        int rc;
        fixed (byte* p = bytes)
            rc = _api.Launch(p, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes, args);
        if (rc != 0)
            throw new CudaException($"cuLaunchKernel({kernel.Name}, grid {grid}, block {block})", rc, LastError());
    }

    /// <summary>Frees every allocation still live (device buffers are never freed by finalizers).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        foreach (var p in _live)
            _api.Free((void*)p);
        _live.Clear();
        foreach (var p in _pinned)
            NativeMemory.AlignedFree((void*)p);
        _pinned.Clear();
        _disposed = true;
    }
}
