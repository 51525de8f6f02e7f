using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Training;

/// <summary>
/// The mean training loss over the steps <see cref="FirstStep"/>..<see cref="LastStep"/> (1-based, inclusive) that were
/// not skipped (NaN when all were). A device that checks for non-finite steps itself (CUDA) also reports the steps it
/// skipped: how many, the longest run of consecutive skipped steps (a run that started in an earlier window counts
/// whole), and the parameter index of the first non-finite gradient of the latest skipped step (-1: only the loss).
/// </summary>
internal readonly record struct LossWindow(long FirstStep, long LastStep, double Mean, int Skipped = 0, int MaxConsecutiveSkipped = 0, int LastBadParameter = -1);

/// <summary>
/// How the trainer reads its loss back: every step's loss is added, windows are closed every few steps, and closed
/// windows are taken in order once their value is on the host. On the CPU (<see cref="HostLossReadback"/>) that is
/// immediate and the non-finite check happens at the step; on a CUDA backend (<see cref="Cuda.CudaLossReadback"/>) the
/// losses are summed on the device and each window is copied back asynchronously, so a step never waits for the device.
/// </summary>
internal abstract class LossReadback : IDisposable
{
    /// <summary>Adds the scalar <paramref name="loss"/> of step <paramref name="step"/> (1-based) to the open window.</summary>
    public abstract void Add(Tensor loss, long step);

    /// <summary>Closes the open window (if it holds any step); a new one opens.</summary>
    public abstract void Close();

    /// <summary>
    /// The oldest closed window not yet taken, if its value is on the host; with <paramref name="wait"/> it waits for
    /// the device when needed (a host synchronisation: call it outside the measured steps, e.g. at an epoch's end).
    /// </summary>
    public abstract bool TryTake(bool wait, out LossWindow window);

    /// <inheritdoc />
    public virtual void Dispose() { }
}

/// <summary>Immediate readback: each step's loss is downloaded (free on the CPU backend) and checked at once.</summary>
internal sealed class HostLossReadback(IBackend backend) : LossReadback
{
    private readonly IBackend _backend = backend;
    private readonly float[] _host = new float[1];
    private readonly Queue<LossWindow> _closed = new();
    private double _sum;
    private long _first, _last;
    private int _n;

    public override void Add(Tensor loss, long step)
    {
        _backend.Download<float>(loss, _host);
        double v = _host[0];
        if (!double.IsFinite(v)) throw new InvalidOperationException($"The training loss became {v} at step {step}; lower the learning rate.");
        if (_n == 0) _first = step;
        _last = step;
        _sum += v;
        _n++;
    }

    public override void Close()
    {
        if (_n == 0) return;
        _closed.Enqueue(new LossWindow(_first, _last, _sum / _n));
        _sum = 0;
        _n = 0;
    }

    public override bool TryTake(bool wait, out LossWindow window) => _closed.TryDequeue(out window);
}
