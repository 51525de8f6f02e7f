using Mtfm.Engine.Tensors;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Native;

namespace Mtfm.Engine.Training.Cuda;

/// <summary>
/// The trainer's loss on a <see cref="CudaBackend"/> without host synchronisation: each step's scalar loss is added into
/// a small device accumulator on the compute stream (<c>mtfm_loss_accumulate</c>; with a <see cref="CudaOptimizerStep"/>
/// guard, a step the guard skipped adds nothing and is counted instead); closing a window enqueues an asynchronous
/// device→host copy of the accumulator into a pinned slot, records an event and resets the window's fields
/// (all stream-ordered). The host takes a window once its event has completed (polled with <c>IsEventComplete</c>), or
/// waits for it explicitly (<c>wait: true</c>, one counted event synchronisation) at an epoch's end. The step count of
/// a window is kept on the host. Slots are recycled after they are read; the slot list grows only if more windows are
/// in flight than ever before. A non-finite loss is therefore seen when its window is read: up to one window (plus the
/// device's lag) after the step that produced it.
/// </summary>
internal sealed unsafe class CudaLossReadback : LossReadback
{
    private const int AccFloats = 5; // loss sum, skipped, current skip run, longest run, first bad slot of the latest skip

    private readonly CudaBackend _backend;
    private readonly CudaOptimizerStep? _guard;
    private readonly DeviceBuffer _acc;
    private readonly Queue<(nint Slot, nint Event, long First, long Last, int Steps)> _pending = new();
    private readonly Stack<(nint Slot, nint Event)> _free = new();
    private readonly List<(nint Slot, nint Event)> _all = [];
    private long _first, _last;
    private int _n;
    private bool _disposed;

    /// <param name="backend">The backend the losses live on.</param>
    /// <param name="guard">The optimizer step whose non-finite guard (<see cref="CudaOptimizerStep.Guard"/>) has judged
    /// each step before its loss is added; null: every loss is added.</param>
    public CudaLossReadback(CudaBackend backend, CudaOptimizerStep? guard = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        _guard = guard;
        _acc = backend.Pool.Rent(AccFloats * sizeof(float));
        backend.Driver.MemsetD32Async(_acc.Pointer, 0, AccFloats, backend.Stream);
        ResetWindow();
    }

    private void ResetWindow()
    {
        var a = new CudaKernelArgs();
        a.Ptr(_acc.Pointer);
        _backend.Ops.Launch("optimizer.cu", "mtfm_loss_window_reset", 1, 32, 0, _backend.Stream, ref a);
    }

    /// <summary>Pinned slots allocated so far.</summary>
    public int Slots => _all.Count;

    /// <summary>Closed windows not yet taken.</summary>
    public int Pending => _pending.Count;

    public override void Add(Tensor loss, long step)
    {
        ArgumentNullException.ThrowIfNull(loss);
        if (loss.Length != 1) throw new ArgumentException($"loss must hold one element, its shape is {loss.ShapeString}.", nameof(loss));
        ulong verdict = 0;
        if (_guard is not null)
        {
            verdict = _guard.GuardVerdict;
            if (verdict == 0) throw new InvalidOperationException($"step {step}: the optimizer step's guard has not judged this step (call Guard before adding its loss).");
        }
        var a = new CudaKernelArgs();
        a.Ptr(_backend.DevicePointer(loss)); a.Ptr(verdict); a.Ptr(_acc.Pointer);
        _backend.Ops.Launch("optimizer.cu", "mtfm_loss_accumulate", 1, 32, 0, _backend.Stream, ref a);
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
            s = (driver.AllocatePinned(AccFloats * sizeof(float)), driver.CreateEvent());
            _all.Add(s);
        }
        driver.CopyDeviceToHostAsync((void*)s.Slot, _acc.Pointer, AccFloats * sizeof(float), _backend.Stream);
        driver.RecordEvent(s.Event, _backend.Stream);
        ResetWindow(); // stream-ordered after the copy
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
        var acc = new ReadOnlySpan<float>((void*)p.Slot, AccFloats);
        int skipped = (int)acc[1];
        window = new LossWindow(p.First, p.Last, skipped < p.Steps ? (double)acc[0] / (p.Steps - skipped) : double.NaN,
            skipped, (int)acc[3], (int)acc[4]);
        _free.Push((p.Slot, p.Event));
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
        _backend.ReturnToPool(_acc);
    }
}
