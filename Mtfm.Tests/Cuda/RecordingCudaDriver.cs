using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// An <see cref="ICudaDriver"/> decorator that logs the stream/event protocol (copies, event records and waits,
/// launches, each with the stream it was enqueued on) and forwards every call, for tests of the stream scheduler.
/// Stream handles are named through <see cref="Name"/> once the backend has created them.
/// </summary>
internal sealed unsafe class RecordingCudaDriver(ICudaDriver inner) : ICudaDriver
{
    private readonly ICudaDriver _inner = inner;

    public List<string> Log { get; } = [];

    public Dictionary<nint, string> Names { get; } = [];

    public void Name(nint handle, string name) => Names[handle] = name;

    private string N(nint h) => Names.TryGetValue(h, out var n) ? n : $"0x{h:x}";

    public string DeviceName => _inner.DeviceName;
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
    public void SynchronizeStream(nint stream) { Log.Add($"sync {N(stream)}"); _inner.SynchronizeStream(stream); }
    public void Synchronize() { Log.Add("sync all"); _inner.Synchronize(); }
    public nint CreateEvent() => _inner.CreateEvent();
    public void DestroyEvent(nint evt) => _inner.DestroyEvent(evt);
    public void RecordEvent(nint evt, nint stream) { Log.Add($"record {N(evt)} on {N(stream)}"); _inner.RecordEvent(evt, stream); }
    public void StreamWaitEvent(nint stream, nint evt) { Log.Add($"wait {N(stream)} for {N(evt)}"); _inner.StreamWaitEvent(stream, evt); }
    public void SynchronizeEvent(nint evt) { Log.Add($"sync {N(evt)}"); _inner.SynchronizeEvent(evt); }
    /// <summary>When set, every event reads as still pending (a device that lags behind the host).</summary>
    public bool EventsPending { get; set; }

    public bool IsEventComplete(nint evt) => !EventsPending && _inner.IsEventComplete(evt);
    /// <summary>Clears the log.</summary>
    public void Clear() => Log.Clear();

    public void CopyHostToDeviceAsync(ulong dst, void* src, long bytes, nint stream)
    {
        Log.Add($"h2d on {N(stream)}");
        _inner.CopyHostToDeviceAsync(dst, src, bytes, stream);
    }
    public void CopyDeviceToHostAsync(void* dst, ulong src, long bytes, nint stream) { Log.Add($"d2h on {N(stream)}"); _inner.CopyDeviceToHostAsync(dst, src, bytes, stream); }
    public void CopyDeviceToDeviceAsync(ulong dst, ulong src, long bytes, nint stream) { Log.Add($"d2d on {N(stream)}"); _inner.CopyDeviceToDeviceAsync(dst, src, bytes, stream); }
    public void CopyHostToDevice(ulong dst, void* src, long bytes) { Log.Add("h2d blocking"); _inner.CopyHostToDevice(dst, src, bytes); }
    public void CopyDeviceToHost(void* dst, ulong src, long bytes) { Log.Add("d2h blocking"); _inner.CopyDeviceToHost(dst, src, bytes); }
    public void MemsetD32Async(ulong dst, uint value, long count, nint stream) { Log.Add($"memset on {N(stream)}"); _inner.MemsetD32Async(dst, value, count, stream); }
    public CudaKernel GetKernel(string sourceFile, string kernelName) => _inner.GetKernel(sourceFile, kernelName);
    public void Launch(CudaKernel kernel, Dim3 grid, Dim3 block, uint sharedBytes, nint stream, void** args) { Log.Add($"launch on {N(stream)}"); _inner.Launch(kernel, grid, block, sharedBytes, stream, args); }
    public void Dispose() => _inner.Dispose();
}
