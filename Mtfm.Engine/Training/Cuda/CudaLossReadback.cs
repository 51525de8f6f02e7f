using Mtfm.Engine.Tensors;


using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// The trainer's loss on a <see cref="CudaBackend"/> without host synchronisation: each step's scalar loss is added into
/// a one-element device accumulator on the compute stream (an element-wise add kernel); closing a window enqueues an
/// asynchronous device→host copy of the accumulator into a pinned slot, records an event and re-zeroes the accumulator
/// (all stream-ordered). The host takes a window once its event has completed (polled with <c>IsEventComplete</c>), or
/// waits for it explicitly (<c>wait: true</c>, one counted event synchronisation) at an epoch's end. The step count of
/// a window is kept on the host. Slots are recycled after they are read; the slot list grows only if more windows are
/// in flight than ever before. A non-finite loss is therefore seen when its window is read: up to one window (plus the
/// device's lag) after the step that produced it.
/// </summary>
internal sealed unsafe class CudaLossReadback : LossReadback
{
    private readonly CudaBackend _backend;
    private readonly Tensor _sum;
    private readonly Queue<(nint Slot, nint Event, long First, long Last, int Steps)> _pending = new();
    private readonly Stack<(nint Slot, nint Event)> _free = new();
    private readonly List<(nint Slot, nint Event)> _all = [];
    private long _first, _last;
    private int _n;
    private bool _disposed;

    public CudaLossReadback(CudaBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        _sum = backend.Allocate(DType.Float32, [1], zero: true);
    }

    /// <summary>Pinned slots allocated so far.</summary>
    public int Slots => _all.Count;

    /// <summary>Closed windows not yet taken.</summary>
    public int Pending => _pending.Count;

    public override void Add(Tensor loss, long step)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (loss.Length != 1) throw new ArgumentException($"loss must hold one element, its shape is {loss.ShapeString}.", nameof(loss));
        _backend.Add(_sum, loss, _sum);
        if (_n == 0) _first = step;
        _last = step;
        _n++;
    }

    public override void Close()
    {
        if (_n == 0) return;
        var driver = _backend.Driver;
        if (!_free.TryPop(out var s))
        {
            s = (driver.AllocatePinned(sizeof(float)), driver.CreateEvent());
            _all.Add(s);
        }
        driver.CopyDeviceToHostAsync((void*)s.Slot, _backend.DevicePointer(_sum), sizeof(float), _backend.Stream);
        driver.RecordEvent(s.Event, _backend.Stream);
        _backend.Fill(_sum, 0f); // stream-ordered after the copy
        _pending.Enqueue((s.Slot, s.Event, _first, _last, _n)); // the step count stays on the host
        _n = 0;
    }

    public override bool TryTake(bool wait, out LossWindow window)
    {
        window = default;
        if (!_pending.TryPeek(out var p)) return false;
        var driver = _backend.Driver;
        if (!driver.IsEventComplete(p.Event))
        {
            if (!wait) return false;
            driver.SynchronizeEvent(p.Event);
        }
        _pending.Dequeue();
        float sum = *(float*)p.Slot;
        _free.Push((p.Slot, p.Event));
        window = new LossWindow(p.First, p.Last, (double)sum / p.Steps);
        return true;
    }

    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_backend.IsDisposed) return; // the driver's memory went with it
        foreach (var (_, e) in _all) if (!_backend.Driver.IsEventComplete(e)) _backend.Driver.SynchronizeEvent(e);
        foreach (var (slot, e) in _all)
        {
            _backend.Driver.FreePinned(slot);
            _backend.Driver.DestroyEvent(e);
        }
        _sum.Dispose();
    }
}
