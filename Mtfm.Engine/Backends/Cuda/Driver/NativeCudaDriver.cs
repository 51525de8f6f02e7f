using System.Collections.Concurrent;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// A real CUDA device through the driver API (Mtfm.Engine.Native): the device's primary context, kernels compiled by
/// <see cref="CudaKernelLoader"/> for its architecture at first use. <see cref="Open"/> throws
/// <see cref="CudaNotAvailableException"/> when libcuda, NVRTC or a device is missing.
/// </summary>
internal sealed unsafe class NativeCudaDriver : ICudaDriver
{
    private readonly int _device;
    private readonly nint _context;
    private readonly CudaKernelLoader _loader;
    private readonly ConcurrentDictionary<string, nint> _modules = new();
    private readonly ConcurrentDictionary<(string File, string Name), CudaKernel> _kernels = new();
    private readonly HashSet<ulong> _live = [];
    private readonly HashSet<nint> _pinned = [];
    private readonly HashSet<nint> _streams = [];
    private long _syncs;
    private bool _disposed;

    private NativeCudaDriver(int ordinal, CudaKernelLoader loader)
    {
        _loader = loader;
        _device = CudaDriverApi.DeviceGet(ordinal);
        _context = CudaDriverApi.PrimaryContextRetain(_device);
        MakeCurrent();
        DeviceName = CudaDriverApi.DeviceName(_device);
        ComputeCapability = 10 * CudaDriverApi.DeviceAttribute(_device, CudaDriverApi.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            + CudaDriverApi.DeviceAttribute(_device, CudaDriverApi.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        MultiprocessorCount = CudaDriverApi.DeviceAttribute(_device, CudaDriverApi.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        TotalMemory = CudaDriverApi.DeviceTotalMemory(_device);
        MaxSharedPerBlockOptIn = CudaDriverApi.DeviceAttribute(_device, CudaDriverApi.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    }

    /// <summary>Opens device <paramref name="ordinal"/>; NVRTC must be present too (kernels are compiled at run time).</summary>
    public static NativeCudaDriver Open(int ordinal = 0, CudaKernelLoader? loader = null)
    {
        CudaDriverApi.Initialize();
        Nvrtc.EnsureAvailable();
        var count = CudaDriverApi.DeviceCount();
        if (ordinal < 0 || ordinal >= count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, $"the driver reports {count} device(s)");
        return new NativeCudaDriver(ordinal, loader ?? new CudaKernelLoader());
    }

    public string DeviceName { get; }

    public int ComputeCapability { get; }

    public int MultiprocessorCount { get; }

    public long TotalMemory { get; }

    /// <summary>Shared memory per block (static + dynamic) a kernel may use without opting in.</summary>
    internal const int DefaultSharedPerBlock = 48 * 1024;

    /// <summary>Shared memory per block a kernel may use after opting in (227 KiB on Hopper).</summary>
    public int MaxSharedPerBlockOptIn { get; }

    public bool IsEmulated => false;

    public long SynchronizationCount => Interlocked.Read(ref _syncs);

    public string? LastSynchronization => Volatile.Read(ref _lastSync);

    private string? _lastSync;

    private void Counted(string call)
    {
        Interlocked.Increment(ref _syncs);
        Volatile.Write(ref _lastSync, call);
    }

    public long LiveAllocations => _live.Count;

    /// <summary>
    /// Makes this device's primary context current on the calling thread. Any thread may call the driver (xunit runs
    /// tests, and continuations, on pool threads), so every entry point does this first; <c>cuCtxGetCurrent</c> is a
    /// cheap thread-local read, and asking the driver (rather than caching per thread) stays right when another driver
    /// instance, cuBLAS or a released-and-retained primary context changed what is current on the thread.
    /// </summary>
    internal void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (CudaDriverApi.ContextGetCurrent() != _context)
            CudaDriverApi.ContextSetCurrent(_context);
    }

    void ICudaDriver.MakeCurrent() => MakeCurrent();

    /// <summary>
    /// Waits for the work enqueued on every stream of this driver: they are CU_STREAM_NON_BLOCKING, which the legacy
    /// default stream that the synchronous cuMemcpy* calls run on does not wait for. (Only this driver's streams, not
    /// the whole context: tests running in parallel share the primary context.) Not counted on its own: the blocking
    /// copy that needs it is.
    /// </summary>
    private void DrainStreams()
    {
        foreach (var s in _streams)
            CudaDriverApi.Check(CudaDriverBindings.cuStreamSynchronize(s), "cuStreamSynchronize");
    }

    public ulong Allocate(long bytes)
    {
        MakeCurrent();
        var p = CudaDriverApi.MemAlloc(bytes);
        _live.Add(p);
        return p;
    }

    public void Free(ulong devicePointer)
    {
        MakeCurrent();
        if (!_live.Remove(devicePointer))
            throw new ArgumentException($"0x{devicePointer:x} is not a live allocation of this device", nameof(devicePointer));
        CudaDriverApi.MemFree(devicePointer);
    }

    public nint AllocatePinned(long bytes)
    {
        MakeCurrent();
        var p = CudaDriverApi.MemHostAlloc(bytes);
        _pinned.Add(p);
        return p;
    }

    public void FreePinned(nint hostPointer)
    {
        MakeCurrent();
        if (!_pinned.Remove(hostPointer))
            throw new ArgumentException($"0x{hostPointer:x} is not pinned memory of this device", nameof(hostPointer));
        CudaDriverApi.MemFreeHost(hostPointer);
    }

    public nint CreateStream()
    {
        MakeCurrent();
        var s = CudaDriverApi.StreamCreate();
        _streams.Add(s);
        return s;
    }

    public void DestroyStream(nint stream)
    {
        MakeCurrent();
        CudaDriverApi.StreamDestroy(stream);
        _streams.Remove(stream);
    }

    public void SynchronizeStream(nint stream)
    {
        MakeCurrent();
        Counted("cuStreamSynchronize");
        CudaDriverApi.StreamSynchronize(stream);
    }

    public void Synchronize()
    {
        MakeCurrent();
        Counted("cuCtxSynchronize");
        CudaDriverApi.ContextSynchronize();
    }

    public nint CreateEvent()
    {
        MakeCurrent();
        return CudaDriverApi.EventCreate();
    }

    public void DestroyEvent(nint evt)
    {
        MakeCurrent();
        CudaDriverApi.EventDestroy(evt);
    }

    public void RecordEvent(nint evt, nint stream)
    {
        MakeCurrent();
        CudaDriverApi.EventRecord(evt, stream);
    }

    public void StreamWaitEvent(nint stream, nint evt)
    {
        MakeCurrent();
        CudaDriverApi.StreamWaitEvent(stream, evt);
    }

    public void SynchronizeEvent(nint evt)
    {
        MakeCurrent();
        Counted("cuEventSynchronize");
        CudaDriverApi.EventSynchronize(evt);
    }

    public bool IsEventComplete(nint evt)
    {
        MakeCurrent();
        return CudaDriverApi.EventQuery(evt);
    }

    public void CopyHostToDeviceAsync(ulong dst, void* src, long bytes, nint stream)
    {
        MakeCurrent();
        if (bytes > 0)
            CudaDriverApi.MemcpyHtoDAsync(dst, src, bytes, stream);
    }

    public void CopyDeviceToHostAsync(void* dst, ulong src, long bytes, nint stream)
    {
        MakeCurrent();
        if (bytes > 0)
            CudaDriverApi.MemcpyDtoHAsync(dst, src, bytes, stream);
    }

    public void CopyDeviceToDeviceAsync(ulong dst, ulong src, long bytes, nint stream)
    {
        MakeCurrent();
        if (bytes > 0)
            CudaDriverApi.MemcpyDtoDAsync(dst, src, bytes, stream);
    }

    public void CopyHostToDevice(ulong dst, void* src, long bytes)
    {
        MakeCurrent();
        Counted("cuMemcpyHtoD");
        if (bytes > 0)
        {
            // Our streams are CU_STREAM_NON_BLOCKING: the synchronous copy (legacy default stream) is not ordered
            // with them. Drain them first (a kernel may still use dst), and wait for the legacy stream after (from
            // pageable memory cuMemcpyHtoD returns once the data is staged, before the DMA has landed, and later
            // launches on our streams would not wait for it): ordered like the emulation's blocking copy.
            DrainStreams();
            CudaDriverApi.MemcpyHtoD(dst, src, bytes);
            CudaDriverApi.Check(CudaDriverBindings.cuStreamSynchronize(0), "cuStreamSynchronize(legacy stream)");
        }
    }

    public void CopyDeviceToHost(void* dst, ulong src, long bytes)
    {
        MakeCurrent();
        Counted("cuMemcpyDtoH");
        if (bytes > 0)
        {
            DrainStreams(); // work on our non-blocking streams that writes src must finish first
            CudaDriverApi.MemcpyDtoH(dst, src, bytes);
        }
    }

    public void MemsetD32Async(ulong dst, uint value, long count, nint stream)
    {
        MakeCurrent();
        if (count > 0)
            CudaDriverApi.MemsetD32Async(dst, value, count, stream);
    }

    public CudaKernel GetKernel(string sourceFile, string kernelName)
    {
        MakeCurrent();
        // Called once per launch: the hit path allocates nothing (no key string, no closure).
        return _kernels.TryGetValue((sourceFile, kernelName), out var kernel) ? kernel : LoadKernel(sourceFile, kernelName);
    }

    private CudaKernel LoadKernel(string sourceFile, string kernelName)
    {
        return _kernels.GetOrAdd((sourceFile, kernelName), _ =>
        {
            var module = _modules.GetOrAdd(sourceFile, f =>
                CudaDriverApi.ModuleLoadData(_loader.GetImageForDevice(f, ComputeCapability).Image));
            var f = CudaDriverApi.ModuleGetFunction(module, kernelName);
            var staticBytes = CudaDriverApi.FuncGetAttribute(f, CudaDriverApi.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);
            // without opting in, static + dynamic must fit 48 KiB; take the stricter of that and what the attribute says
            var limit = Math.Min(DefaultSharedPerBlock - staticBytes,
                CudaDriverApi.FuncGetAttribute(f, CudaDriverApi.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES));
            return new CudaKernel(sourceFile, kernelName, f) { StaticSharedBytes = staticBytes, DynamicSharedLimit = limit };
        });
    }

    public void Launch(CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, void** args)
    {
        MakeCurrent();
        if (kernel.Function == 0)
            throw new ArgumentException($"kernel {kernel} was not loaded by a real device", nameof(kernel));
        var raise = sharedBytes <= (uint)Math.Max(0, kernel.DynamicSharedLimit) ? 0 // the common case, without building the name
            : DynamicSharedOptIn(kernel.ToString(), sharedBytes, kernel.DynamicSharedLimit, kernel.StaticSharedBytes, MaxSharedPerBlockOptIn);
        if (raise > 0)
        {
            CudaDriverApi.FuncSetAttribute(kernel.Function, CudaDriverApi.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, raise);
            kernel.DynamicSharedLimit = raise;
        }
        CudaDriverApi.LaunchKernel(kernel.Function, kernel.Name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            sharedBytes, stream, args);
    }

    /// <summary>
    /// The value to set as the kernel's <c>CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES</c> before a launch with
    /// <paramref name="requested"/> bytes of dynamic shared memory, or 0 when the current limit allows it. Without
    /// opting in, static + dynamic shared memory must fit 48 KiB (the attribute's default is 48 KiB minus the static
    /// size) or cuLaunchKernel fails; with it, up to the device's opt-in maximum per block.
    /// </summary>
    internal static int DynamicSharedOptIn(string kernel, uint requested, int currentLimit, int staticBytes, int optInPerBlock)
    {
        if (requested <= (uint)Math.Max(0, currentLimit))
            return 0;
        if (staticBytes + (long)requested > optInPerBlock)
            throw new ArgumentOutOfRangeException("sharedBytes", requested,
                $"kernel {kernel} has {staticBytes} B of static shared memory; with {requested} B dynamic it needs more than the device's {optInPerBlock} B per block");
        return (int)requested;
    }

    /// <summary>Synchronises, unloads modules, frees every live allocation and releases the primary context.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        MakeCurrent();
        CudaDriverApi.ContextSynchronize();
        foreach (var p in _live)
            CudaDriverApi.MemFree(p);
        _live.Clear();
        foreach (var p in _pinned)
            CudaDriverApi.MemFreeHost(p);
        _pinned.Clear();
        foreach (var m in _modules.Values)
            CudaDriverApi.ModuleUnload(m);
        _modules.Clear();
        _disposed = true;
        CudaDriverApi.PrimaryContextRelease(_device);
    }
}
