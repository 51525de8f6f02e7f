using System.Diagnostics;
using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// An <see cref="ICudaDriver"/> decorator over the emulated device that forwards every call except
/// <see cref="Launch"/>, which only counts: memory, copies, memsets, streams and events stay real, so a
/// <see cref="CudaBackend"/> on it runs exactly the host code path of a GPU (op dispatch, host-mirror checks and sorts,
/// tilings, staging, optimizer pointer tables, launch argument packing) while no kernel runs. Device contents are then
/// whatever memsets and copies left there (kernel outputs are never written): the trainer's loss accumulator stays zero
/// (its <c>mtfm_add</c> does not run), so the loss windows read back 0, a finite value. The host never reads other
/// device data inside a step (index tensors are written only by uploads, copies and <c>UniqueIndices</c>, whose host
/// mirrors are exact), so the host path does not depend on kernel results.
/// <para>
/// The emulated device performs copies and memsets synchronously with host <c>memcpy</c>/<c>memset</c>, which a GPU does
/// not (an enqueue costs the same whatever the size); their time is accumulated in <see cref="DataMovementTicks"/> so a
/// host-bound figure can leave it out. GEMMs are kernel launches here (the emulated backend has no cuBLAS) and so are
/// skipped and counted in <see cref="GemmLaunches"/>; on a GPU they are <c>cublasGemmStridedBatchedEx</c> calls, also
/// asynchronous enqueues, of a host cost of the same order as a launch.
/// </para>
/// </summary>
internal sealed unsafe class HostOnlyCudaDriver(ICudaDriver inner) : ICudaDriver
{
    private readonly ICudaDriver _inner = inner;

    /// <summary>Kernel launches swallowed so far.</summary>
    public long Launches { get; private set; }

    /// <summary>Of <see cref="Launches"/>, those of the tiled GEMM kernel (cuBLAS calls on a GPU).</summary>
    public long GemmLaunches { get; private set; }

    /// <summary>Host→device (async) copies forwarded so far.</summary>
    public long Uploads { get; private set; }

    /// <summary><see cref="Stopwatch"/> ticks spent in the emulated copies and memsets (host memcpy/memset).</summary>
    public long DataMovementTicks { get; private set; }

    /// <summary>Copies and memsets forwarded so far (every kind).</summary>
    public long DataMovements { get; private set; }

    /// <summary>Bytes written by memsets and device-to-device copies so far (device bandwidth on a GPU).</summary>
    public long DeviceBytes { get; private set; }

    /// <summary>
    /// When positive, memsets and device-to-device copies of at least this many bytes are counted but not performed
    /// (for profiling the host path without the emulated device's host memset/memcpy; the host never reads those
    /// bytes inside a step: the loss accumulator's 4-byte memsets and every host↔device copy stay real).
    /// </summary>
    public long SkipBulkBytes { get; set; }

    public string DeviceName => "host only (" + _inner.DeviceName + ", launches skipped)";
    public int ComputeCapability => _inner.ComputeCapability;
    public bool IsEmulated => _inner.IsEmulated;
    public long SynchronizationCount => _inner.SynchronizationCount;
    public string? LastSynchronization => _inner.LastSynchronization;
    public long LiveAllocations => _inner.LiveAllocations;
    public void MakeCurrent() => _inner.MakeCurrent();
    public ulong Allocate(long bytes) => _inner.Allocate(bytes);
    public void Free(ulong devicePointer) => _inner.Free(devicePointer);
    public nint AllocatePinned(long bytes) => _inner.AllocatePinned(bytes);
    public void FreePinned(nint hostPointer) => _inner.FreePinned(hostPointer);
    public nint CreateStream() => _inner.CreateStream();
    public void DestroyStream(nint stream) => _inner.DestroyStream(stream);
    public void SynchronizeStream(nint stream) => _inner.SynchronizeStream(stream);
    public void Synchronize() => _inner.Synchronize();
    public nint CreateEvent() => _inner.CreateEvent();
    public void DestroyEvent(nint evt) => _inner.DestroyEvent(evt);
    public void RecordEvent(nint evt, nint stream) => _inner.RecordEvent(evt, stream);
    public void StreamWaitEvent(nint stream, nint evt) => _inner.StreamWaitEvent(stream, evt);
    public void SynchronizeEvent(nint evt) => _inner.SynchronizeEvent(evt);
    public bool IsEventComplete(nint evt) => _inner.IsEventComplete(evt);

    private long Start() => Stopwatch.GetTimestamp();

    private void Stop(long t0)
    {
        DataMovementTicks += Stopwatch.GetTimestamp() - t0;
        DataMovements++;
    }

    public void CopyHostToDeviceAsync(ulong dst, void* src, long bytes, nint stream)
    {
        long t = Start();
        _inner.CopyHostToDeviceAsync(dst, src, bytes, stream);
        Stop(t);
        Uploads++;
    }

    public void CopyDeviceToHostAsync(void* dst, ulong src, long bytes, nint stream)
    {
        long t = Start();
        _inner.CopyDeviceToHostAsync(dst, src, bytes, stream);
        Stop(t);
    }

    public void CopyDeviceToDeviceAsync(ulong dst, ulong src, long bytes, nint stream)
    {
        DeviceBytes += bytes;
        if (SkipBulkBytes > 0 && bytes >= SkipBulkBytes) { DataMovements++; return; }
        long t = Start();
        _inner.CopyDeviceToDeviceAsync(dst, src, bytes, stream);
        Stop(t);
    }

    public void CopyHostToDevice(ulong dst, void* src, long bytes)
    {
        long t = Start();
        _inner.CopyHostToDevice(dst, src, bytes);
        Stop(t);
    }

    public void CopyDeviceToHost(void* dst, ulong src, long bytes)
    {
        long t = Start();
        _inner.CopyDeviceToHost(dst, src, bytes);
        Stop(t);
    }

    public void MemsetD32Async(ulong dst, uint value, long count, nint stream)
    {
        DeviceBytes += 4 * count;
        if (SkipBulkBytes > 0 && 4 * count >= SkipBulkBytes) { DataMovements++; return; }
        long t = Start();
        _inner.MemsetD32Async(dst, value, count, stream);
        Stop(t);
    }

    public CudaKernel GetKernel(string sourceFile, string kernelName) => _inner.GetKernel(sourceFile, kernelName);

    /// <summary>Counts the launch; runs nothing.</summary>
    public void Launch(CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, void** args)
    {
        Launches++;
        if (ReferenceEquals(kernel.Name, "mtfm_sgemm") || kernel.Name == "mtfm_sgemm") GemmLaunches++;
    }

    public void Dispose() => _inner.Dispose();
}
