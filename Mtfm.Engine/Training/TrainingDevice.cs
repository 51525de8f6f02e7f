using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training.Cuda;

namespace Mtfm.Engine.Training;

/// <summary>
/// Everything of a training step that depends on the backend the model lives on: the optimizer step, how the loss is
/// read back, how batches reach the device, the non-finite check and the optimizer state that training checkpoints
/// hold. <see cref="For"/> is the one place that chooses the implementation (<see cref="CpuTrainingDevice"/>,
/// <see cref="CudaTrainingDevice"/>); the trainer knows no backend type.
/// </summary>
internal abstract class TrainingDevice
{
    /// <summary>The training device for <paramref name="parameters"/> living on <paramref name="backend"/>.</summary>
    /// <exception cref="NotSupportedException">No training device exists for the backend's type.</exception>
    public static TrainingDevice For(IBackend backend, IReadOnlyList<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(parameters);
        return backend switch
        {
            CpuBackend cpu => new CpuTrainingDevice(cpu, parameters),
            CudaBackend cuda => new CudaTrainingDevice(cuda, parameters),
            _ => throw new NotSupportedException($"no training device for the '{backend.Name}' backend"),
        };
    }

    /// <summary>Clipping, the update, and the snapshot/restore of the weights early stopping keeps.</summary>
    public abstract IOptimizerStep Step { get; }

    /// <summary>A new loss readback (the caller disposes it).</summary>
    public abstract LossReadback NewLossReadback();

    /// <summary>Whether a step leaves a core free for building the next batch meanwhile (<see cref="TrainOptions.PrefetchBatches"/>).</summary>
    public abstract bool FreeCoreForBatches { get; }

    /// <summary>The batches in order, each with its inputs when the device stages them ahead (null: the forward uploads them).</summary>
    public abstract IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config);

    /// <summary>
    /// Null when the step's loss and every gradient are finite, or when this device checks later (a non-finite loss
    /// then surfaces through the loss readback); otherwise what is not finite, naming the first parameter whose
    /// gradient holds a NaN or ∞.
    /// </summary>
    public abstract string? NonFinite(Tensor loss);

    private const string GradBuffersTensor = "trainer.grad_buffers";
    private const string AveragePrefix = "average.";

    /// <summary>The parameters this device trains, in checkpoint order.</summary>
    protected abstract IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The current value of fp32 tensor <paramref name="t"/> (a parameter's value or its average) on the host (may synchronise).</summary>
    protected abstract ReadOnlySpan<float> HostValue(Tensor t);

    /// <summary>Sets fp32 tensor <paramref name="t"/> from the host.</summary>
    protected abstract void SetValue(Tensor t, ReadOnlySpan<float> value);

    /// <summary>The optimizer state of parameter <paramref name="index"/> on the host: AdamW (dense), row-sparse Adam (embedding tables) or none yet.</summary>
    protected abstract (AdamWState? Dense, RowSparseAdamState? Sparse) OptimizerState(int index);

    /// <summary>Replaces the optimizer state of parameter <paramref name="index"/> (both null: none, as before its first update).</summary>
    protected abstract void SetOptimizerState(int index, AdamWState? dense, RowSparseAdamState? sparse);

    /// <summary>
    /// Adds every parameter's value (and <paramref name="best"/>, when set; the weight average of each dense parameter,
    /// when <paramref name="average"/> is set) and the optimizer state (<see cref="OptimizerStateIO"/>'s names; the
    /// same file on every device) to <paramref name="w"/>.
    /// </summary>
    public void AddState(SafetensorsWriter w, float[][]? best, WeightAverage? average = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        var ps = Parameters;
        // Which dense parameters hold a gradient buffer: once a parameter has had a gradient it keeps a zeroed one and
        // is updated every step (Adam moves it by its moments even without a new gradient), so a resume must recreate it.
        var hasGrad = new int[ps.Count];
        for (int i = 0; i < ps.Count; i++) hasGrad[i] = ps[i].Grad is null ? 0 : 1;
        w.AddInt32(GradBuffersTensor, hasGrad, hasGrad.Length);
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            var shape = new long[p.Value.Rank];
            for (int d = 0; d < shape.Length; d++) shape[d] = p.Value.Shape[d];
            w.AddFloat32("param." + p.Name, HostValue(p.Value), shape);
            if (best is not null) w.AddFloat32("best." + p.Name, best[i], shape);
            if (average?.Average(i) is { } a) w.AddFloat32(AveragePrefix + p.Name, HostValue(a), shape);
            var (dense, sparse) = OptimizerState(i);
            if (dense is not null) OptimizerStateIO.Add(w, p.Name!, dense);
            if (sparse is not null) OptimizerStateIO.Add(w, p.Name!, sparse);
        }
    }

    /// <summary>
    /// Restores weights, optimizer state and (into <paramref name="average"/>, when set) the weight averages written by
    /// <see cref="AddState"/> (on any device); returns the best weights when the file has them.
    /// </summary>
    /// <exception cref="CheckpointFormatException">A tensor is missing or does not fit the model.</exception>
    public float[][]? LoadState(SafetensorsFile f, WeightAverage? average = null)
    {
        ArgumentNullException.ThrowIfNull(f);
        var ps = Parameters;
        if (!f.Contains(GradBuffersTensor) || f.GetInfo(GradBuffersTensor).ElementCount != ps.Count || f.GetInfo(GradBuffersTensor).DType != SafetensorsDType.I32)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{GradBuffersTensor}' is missing or does not have one entry per parameter ({ps.Count})");
        var hasGrad = f.ReadInt32(GradBuffersTensor);
        bool hasBest = f.Contains("best." + ps[0].Name);
        var best = hasBest ? new float[ps.Count][] : null;
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            int n = checked((int)p.Value.Length);
            var value = new float[n];
            Read("param." + p.Name, value);
            SetValue(p.Value, value);
            if (best is not null) { best[i] = new float[n]; Read("best." + p.Name, best[i]); }
            if (average?.Average(i) is { } a)
            {
                Read(AveragePrefix + p.Name, value);
                SetValue(a, value);
            }
            p.ZeroGrad();
            if (hasGrad[i] != 0) p.EnsureGrad();
            AdamWState? dense = null;
            RowSparseAdamState? sparse = null;
            if (f.Contains("optim.m." + p.Name))
            {
                if (f.Contains("optim.row_steps." + p.Name)) sparse = OptimizerStateIO.ReadRowSparseAdam(f, p.Name!, p.Value.RowCount, p.Value.LastDim);
                else dense = OptimizerStateIO.ReadAdamW(f, p.Name!, n);
            }
            SetOptimizerState(i, dense, sparse);
        }
        return best;

        void Read(string name, Span<float> dst)
        {
            if (!f.Contains(name)) throw new CheckpointFormatException(f.FilePath, $"tensor '{name}' is missing");
            var info = f.GetInfo(name);
            if (info.DType != SafetensorsDType.F32 || info.ElementCount != dst.Length)
                throw new CheckpointFormatException(f.FilePath, $"tensor '{name}' is {info.DType} with {info.ElementCount} elements; the model has {dst.Length}");
            f.CopyFloat32(name, dst);
        }
    }
}

/// <summary>
/// Training on the CPU backend: <see cref="CpuOptimizerStep"/>, immediate loss readback, batches uploaded by the
/// forward, the non-finite check at each step and checkpointable optimizer state.
/// </summary>
internal sealed unsafe class CpuTrainingDevice : TrainingDevice
{
    private readonly CpuBackend _cpu;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly CpuOptimizerStep _step;

    public CpuTrainingDevice(CpuBackend cpu, IReadOnlyList<Parameter> parameters)
    {
        _cpu = cpu;
        _parameters = parameters;
        _step = new CpuOptimizerStep(cpu, parameters);
    }

    public override IOptimizerStep Step => _step;

    public override LossReadback NewLossReadback() => new HostLossReadback(_cpu);

    public override bool FreeCoreForBatches => _cpu.ThreadCount < Environment.ProcessorCount;

    public override IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config) =>
        batches.Select(b => new StagedBatch(b, null));

    private Span<float> Values(Tensor t) => new(_cpu.FloatPointer(t), checked((int)t.Length));

    public override string? NonFinite(Tensor loss)
    {
        float l = Values(loss)[0];
        string? first = null;
        foreach (var p in _parameters)
        {
            double ss = 0;
            if (p.Grad is { } g) ss += GradientClipping.SumOfSquares(Values(g));
            if (p.SparseGradient is { } sg) ss += GradientClipping.SumOfSquares(Values(sg.Values));
            if (!double.IsFinite(ss)) { first = p.Name; break; }
        }
        if (float.IsFinite(l) && first is null) return null;
        string lossText = float.IsFinite(l) ? "loss finite" : $"loss {l}";
        return first is null ? $"{lossText}, every gradient finite" : $"{lossText}, first non-finite gradient in parameter '{first}'";
    }

    protected override IReadOnlyList<Parameter> Parameters => _parameters;

    protected override ReadOnlySpan<float> HostValue(Tensor t) => Values(t);

    protected override void SetValue(Tensor t, ReadOnlySpan<float> value) => value.CopyTo(Values(t));

    protected override (AdamWState? Dense, RowSparseAdamState? Sparse) OptimizerState(int index)
    {
        var p = _parameters[index];
        return (_step.Dense.GetValueOrDefault(p), _step.Sparse.GetValueOrDefault(p));
    }

    protected override void SetOptimizerState(int index, AdamWState? dense, RowSparseAdamState? sparse)
    {
        var p = _parameters[index];
        _step.Dense.Remove(p);
        _step.Sparse.Remove(p);
        if (dense is not null) _step.Dense[p] = dense;
        if (sparse is not null) _step.Sparse[p] = sparse;
    }
}
