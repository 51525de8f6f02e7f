namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// Pinned host staging for the CUDA backend's asynchronous copies on its compute stream. An upload copies the caller's
/// data into a pinned block, enqueues the host→device copy and records an event; the block is reused once its event
/// has completed (checked without blocking), so the caller's span may be reused immediately and no upload blocks the
/// host. A download enqueues the device→host copy and synchronises the stream (the one blocking call, counted by the
/// driver). Blocks come from size-class free lists (as <see cref="CudaMemoryPool"/>) and are freed on dispose.
/// </summary>
internal sealed unsafe class CudaHostStaging(ICudaDriver driver, nint stream) : IDisposable
{
    private readonly ICudaDriver _driver = driver;
    private readonly nint _stream = stream;
    private readonly List<(nint Block, long Class, nint Event)> _inFlight = [];
    private readonly Dictionary<long, Stack<nint>> _free = [];
    private readonly Stack<nint> _events = new(); // completed events, recorded again by later copies

    /// <summary>Pinned blocks allocated so far (the ring grows only while no block of the class is free).</summary>
    public long PinnedAllocations { get; private set; }

    /// <summary>Staged copies whose completion event has not been seen yet.</summary>
    public int InFlight => _inFlight.Count;

    /// <summary>Enqueues dst ← src (bytes) on the stream without blocking the host.</summary>
    public void Upload(ulong dst, void* src, long bytes)
    {
        if (bytes == 0) return;
        Reclaim(all: false);
        var cls = CudaMemoryPool.SizeClass(bytes);
        var block = RentBlock(cls);
        Buffer.MemoryCopy(src, (void*)block, cls, bytes);
        _driver.CopyHostToDeviceAsync(dst, (void*)block, bytes, _stream);
        if (!_events.TryPop(out var evt)) evt = _driver.CreateEvent();
        _driver.RecordEvent(evt, _stream);
        _inFlight.Add((block, cls, evt));
    }

    /// <summary>dst ← src after all work enqueued so far on the stream (synchronises the stream once).</summary>
    public void Download(void* dst, ulong src, long bytes)
    {
        if (bytes == 0) return;
        var cls = CudaMemoryPool.SizeClass(bytes);
        var block = RentBlock(cls);
        _driver.CopyDeviceToHostAsync((void*)block, src, bytes, _stream);
        _driver.SynchronizeStream(_stream);
        Buffer.MemoryCopy((void*)block, dst, bytes, bytes);
        Push(cls, block);
        Reclaim(all: true); // the stream is idle: every staged upload has completed
    }

    private nint RentBlock(long cls)
    {
        if (_free.TryGetValue(cls, out var s) && s.Count > 0) return s.Pop();
        PinnedAllocations++;
        return _driver.AllocatePinned(cls);
    }

    private void Push(long cls, nint block)
    {
        if (!_free.TryGetValue(cls, out var s)) _free[cls] = s = new Stack<nint>();
        s.Push(block);
    }

    private void Reclaim(bool all)
    {
        int kept = 0;
        for (int i = 0; i < _inFlight.Count; i++)
        {
            var f = _inFlight[i];
            if (all || _driver.IsEventComplete(f.Event))
            {
                _events.Push(f.Event);
                Push(f.Class, f.Block);
            }
            else _inFlight[kept++] = f;
        }
        _inFlight.RemoveRange(kept, _inFlight.Count - kept);
    }

    /// <summary>Frees every pinned block (the caller has synchronised the stream).</summary>
    public void Dispose()
    {
        Reclaim(all: true);
        while (_events.Count > 0) _driver.DestroyEvent(_events.Pop());
        foreach (var s in _free.Values)
            while (s.Count > 0) _driver.FreePinned(s.Pop());
    }
}
