namespace Mtfm.Engine.Backends.Cuda;

/// <summary>
/// The copy stream of <see cref="CudaBackend"/>: batch inputs staged ahead of the step that uses them.
/// <para>
/// Between <see cref="BeginCopyStreamUploads"/> and <see cref="EndCopyStreamUploads"/> every <see cref="Upload{T}"/>
/// goes through a second pinned staging ring onto the copy stream instead of the compute stream. Ordering, all by
/// events and never by blocking the host:
/// </para>
/// <list type="bullet">
/// <item>Before each copy-stream upload the compute stream records a fence event and the copy stream waits on it, so
/// the copy cannot overtake compute work enqueued earlier that still uses the destination's pooled memory (or the
/// zeroing memset of a fresh index tensor). Staging batch k+1 before step k is enqueued therefore lets the copy run
/// while step k computes.</item>
/// <item><see cref="EndCopyStreamUploads"/> records a completion event on the copy stream; the consumer calls
/// <see cref="WaitForCopies"/> right before the compute stream first uses the inputs (a device-side wait).</item>
/// <item>A pinned block of the ring is reused only once the event recorded after its copy has completed (polled with
/// <c>IsEventComplete</c>); when none is free the ring grows by one block instead of waiting, so it reaches its
/// working set (about two batches of inputs) during warm-up and then stops allocating.</item>
/// </list>
/// </summary>
internal sealed unsafe partial class CudaBackend
{
    private int _copyDepth;
    private readonly Stack<nint> _freeCopyEvents = new();
    private readonly List<nint> _allCopyEvents = [];

    /// <summary>True once the backend has been disposed.</summary>
    internal bool IsDisposed => _disposed;

    /// <summary>The copy stream (batch inputs staged ahead).</summary>
    public nint CopyStream => _copyStream;

    /// <summary>Pinned blocks allocated by both staging rings so far (constant once warmed up).</summary>
    internal long PinnedAllocations => _staging.PinnedAllocations + _copyStaging.PinnedAllocations;

    /// <summary>From now until <see cref="EndCopyStreamUploads"/>, uploads go onto the copy stream. Nests.</summary>
    internal void BeginCopyStreamUploads()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _copyDepth++;
    }

    /// <summary>
    /// Ends the copy-stream section and returns the event recorded on the copy stream after its uploads; pass it to
    /// <see cref="WaitForCopies"/> before the compute stream reads what was uploaded.
    /// </summary>
    internal nint EndCopyStreamUploads()
    {
        if (_copyDepth <= 0) throw new InvalidOperationException("EndCopyStreamUploads without BeginCopyStreamUploads.");
        _copyDepth--;
        if (!_freeCopyEvents.TryPop(out var evt))
        {
            evt = _driver.CreateEvent();
            _allCopyEvents.Add(evt);
        }
        _driver.RecordEvent(evt, _copyStream);
        return evt;
    }

    /// <summary>
    /// Makes the compute stream wait (on the device) for the copies that <paramref name="copiesDone"/> (from
    /// <see cref="EndCopyStreamUploads"/>) marks; the event is then recycled.
    /// </summary>
    internal void WaitForCopies(nint copiesDone)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_allCopyEvents.Contains(copiesDone)) throw new ArgumentException($"event 0x{copiesDone:x} was not returned by EndCopyStreamUploads.", nameof(copiesDone));
        _driver.StreamWaitEvent(_stream, copiesDone);
        _freeCopyEvents.Push(copiesDone); // the wait captured the event's state: it may be recorded again
    }

    private void CopyStreamUpload(ulong dst, void* src, long bytes)
    {
        if (bytes == 0) return;
        _driver.RecordEvent(_computeFence, _stream);
        _driver.StreamWaitEvent(_copyStream, _computeFence);
        _copyStaging.Upload(dst, src, bytes);
    }

    private void DisposeCopyEvents()
    {
        foreach (var e in _allCopyEvents) _driver.DestroyEvent(e);
        _allCopyEvents.Clear();
        _freeCopyEvents.Clear();
    }
}
