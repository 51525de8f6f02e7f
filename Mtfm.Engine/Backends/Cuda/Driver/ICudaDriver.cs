namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// The device operations the CUDA backend needs, implemented by the real driver (<see cref="NativeCudaDriver"/>) and
/// by the host emulation (<see cref="EmulatedCudaDriver"/>), so the same backend code and tests run on both.
/// Device pointers are <c>ulong</c> (CUdeviceptr); streams and events are opaque handles (0 = the null stream).
/// Host-blocking calls (<see cref="SynchronizeStream"/>, <see cref="Synchronize"/>, <see cref="SynchronizeEvent"/>,
/// blocking copies) are counted in <see cref="SynchronizationCount"/>. Not thread-safe: one owner thread.
/// </summary>
internal unsafe interface ICudaDriver : IDisposable
{
    /// <summary>Device name, e.g. "NVIDIA H200" or "emulated (host)".</summary>
    string DeviceName { get; }

    /// <summary>Compute capability as major*10 + minor (90 for Hopper); the emulated device reports 0.</summary>
    int ComputeCapability { get; }

    /// <summary>True for the host emulation.</summary>
    bool IsEmulated { get; }

    /// <summary>Host-blocking calls made through this driver so far.</summary>
    long SynchronizationCount { get; }

    /// <summary>The driver entry point of the latest counted host-blocking call (null before the first).</summary>
    string? LastSynchronization { get; }

    /// <summary>Device allocations currently live (made by <see cref="Allocate"/>, not yet freed).</summary>
    long LiveAllocations { get; }

    ulong Allocate(long bytes);

    void Free(ulong devicePointer);

    /// <summary>Page-locked host memory (for asynchronous copies).</summary>
    nint AllocatePinned(long bytes);

    void FreePinned(nint hostPointer);

    nint CreateStream();

    void DestroyStream(nint stream);

    /// <summary>Blocks until <paramref name="stream"/> is idle (counted).</summary>
    void SynchronizeStream(nint stream);

    /// <summary>Blocks until the whole device is idle (counted).</summary>
    void Synchronize();

    nint CreateEvent();

    void DestroyEvent(nint evt);

    void RecordEvent(nint evt, nint stream);

    /// <summary>Makes <paramref name="stream"/> wait for <paramref name="evt"/> on the device (no host blocking).</summary>
    void StreamWaitEvent(nint stream, nint evt);

    /// <summary>Blocks until the event has completed (counted).</summary>
    void SynchronizeEvent(nint evt);

    /// <summary>Non-blocking completion test.</summary>
    bool IsEventComplete(nint evt);

    void CopyHostToDeviceAsync(ulong dst, void* src, long bytes, nint stream);

    void CopyDeviceToHostAsync(void* dst, ulong src, long bytes, nint stream);

    void CopyDeviceToDeviceAsync(ulong dst, ulong src, long bytes, nint stream);

    /// <summary>Blocking copy (counted): ordered after all work enqueued so far on every stream, complete on return.</summary>
    void CopyHostToDevice(ulong dst, void* src, long bytes);

    /// <summary>Blocking copy (counted): ordered after all work enqueued so far on every stream, complete on return.</summary>
    void CopyDeviceToHost(void* dst, ulong src, long bytes);

    /// <summary>Fills <paramref name="count"/> 32-bit words with <paramref name="value"/>.</summary>
    void MemsetD32Async(ulong dst, uint value, long count, nint stream);

    /// <summary>The kernel <paramref name="kernelName"/> defined in <c>cuda/</c><paramref name="sourceFile"/> (compiled on first use on a GPU).</summary>
    CudaKernel GetKernel(string sourceFile, string kernelName);

    /// <summary>
    /// Makes the device current on the calling thread for code that calls a CUDA library directly (cuBLAS, raw driver
    /// calls); every method of the driver does this itself. Nothing to do on the emulated device.
    /// </summary>
    void MakeCurrent()
    {
    }

    /// <summary>Launches with the <c>cuLaunchKernel</c> parameter ABI (<paramref name="args"/>[i] points at argument i).</summary>
    void Launch(CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, void** args);
}

/// <summary>Convenience launch with packed arguments.</summary>
internal static unsafe class CudaDriverExtensions
{
    public static void Launch(this ICudaDriver driver, CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes,
        nint stream, ref CudaKernelArgs args)
    {
        var storage = stackalloc ulong[CudaKernelArgs.Capacity];
        var ptrs = stackalloc void*[CudaKernelArgs.Capacity];
        args.FillPointers(storage, ptrs);
        driver.Launch(kernel, grid, block, sharedBytes, stream, ptrs);
    }

    /// <summary>Blocking upload of a span (counted as a synchronisation).</summary>
    public static void Upload<T>(this ICudaDriver driver, ulong dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        fixed (T* p = src)
            driver.CopyHostToDevice(dst, p, (long)src.Length * sizeof(T));
    }

    /// <summary>Blocking download into a span (counted as a synchronisation).</summary>
    public static void Download<T>(this ICudaDriver driver, Span<T> dst, ulong src) where T : unmanaged
    {
        fixed (T* p = dst)
            driver.CopyDeviceToHost(p, src, (long)dst.Length * sizeof(T));
    }
}
