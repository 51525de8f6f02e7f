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

    /// <summary>The batches in order, each with its inputs when the device stages them ahead (null: the forward uploads them).</summary>
    public abstract IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config);

    /// <summary>
    /// Null when the step's loss and every gradient are finite, or when this device checks later (a non-finite loss
    /// then surfaces through the loss readback); otherwise what is not finite, naming the first parameter whose
    /// gradient holds a NaN or ∞.
    /// </summary>
    public abstract string? NonFinite(Tensor loss);

    /// <summary>Whether <see cref="AddState"/> and <see cref="LoadState"/> work here (training checkpoints and resume).</summary>
    public abstract bool SupportsCheckpoints { get; }

    /// <summary>Adds every parameter's value (and <paramref name="best"/>, when set) and the optimizer state to <paramref name="w"/>.</summary>
    public abstract void AddState(SafetensorsWriter w, float[][]? best);

    /// <summary>Restores weights and optimizer state written by <see cref="AddState"/>; returns the best weights when the file has them.</summary>
    public abstract float[][]? LoadState(SafetensorsFile f);
}

/// <summary>
/// Training on the CPU backend: <see cref="CpuOptimizerStep"/>, immediate loss readback, batches uploaded by the
/// forward, the non-finite check at each step and checkpointable optimizer state.
/// </summary>
internal sealed unsafe class CpuTrainingDevice : TrainingDevice
{
    private const string GradBuffersTensor = "trainer.grad_buffers";

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

    public override IEnumerable<StagedBatch> Stage(IEnumerable<JaggedBatch> batches, DataLayout layout, MtfmConfig config) =>
        batches.Select(b => new StagedBatch(b, null));

    public override bool SupportsCheckpoints => true;

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

    public override void AddState(SafetensorsWriter w, float[][]? best)
    {
        var ps = _parameters;
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
            w.AddFloat32("param." + p.Name, Values(p.Value), shape);
            if (best is not null) w.AddFloat32("best." + p.Name, best[i], shape);
            if (_step.Dense.TryGetValue(p, out var ds)) OptimizerStateIO.Add(w, p.Name!, ds);
            if (_step.Sparse.TryGetValue(p, out var rs)) OptimizerStateIO.Add(w, p.Name!, rs);
        }
    }

    public override float[][]? LoadState(SafetensorsFile f)
    {
        var ps = _parameters;
        if (!f.Contains(GradBuffersTensor) || f.GetInfo(GradBuffersTensor).ElementCount != ps.Count || f.GetInfo(GradBuffersTensor).DType != SafetensorsDType.I32)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{GradBuffersTensor}' is missing or does not have one entry per parameter ({ps.Count})");
        var hasGrad = f.ReadInt32(GradBuffersTensor);
        bool hasBest = f.Contains("best." + ps[0].Name);
        var best = hasBest ? new float[ps.Count][] : null;
        for (int i = 0; i < ps.Count; i++)
        {
            var p = ps[i];
            var dst = Values(p.Value);
            Read("param." + p.Name, dst);
            if (best is not null) { best[i] = new float[dst.Length]; Read("best." + p.Name, best[i]); }
            _step.Dense.Remove(p); _step.Sparse.Remove(p);
            p.ZeroGrad();
            if (hasGrad[i] != 0) p.EnsureGrad();
            if (f.Contains("optim.m." + p.Name))
            {
                if (f.Contains("optim.row_steps." + p.Name)) _step.Sparse[p] = OptimizerStateIO.ReadRowSparseAdam(f, p.Name!, p.Value.RowCount, p.Value.LastDim);
                else _step.Dense[p] = OptimizerStateIO.ReadAdamW(f, p.Name!, dst.Length);
            }
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
