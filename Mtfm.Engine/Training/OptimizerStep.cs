using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training.Cuda;

namespace Mtfm.Engine.Training;

/// <summary>
/// The optimizer step of a training step, on the backend the model lives on: global-norm gradient clipping, AdamW on
/// dense parameters (weight decay where <see cref="Parameter.WeightDecay"/>), row-sparse Adam on embedding tables, and
/// the snapshot/restore of the weights that early stopping keeps; <see cref="TrainingDevice.For"/> chooses the
/// implementation (<see cref="CpuOptimizerStep"/>, <see cref="CudaOptimizerStep"/>).
/// </summary>
internal interface IOptimizerStep
{
    /// <summary>
    /// Clips the gradients to a global L2 norm of at most <paramref name="maxNorm"/> (≤ 0: off): the CPU step scales
    /// them now, the CUDA step computes the factor on the device and applies it in the next <see cref="Update"/>.
    /// </summary>
    void Clip(float maxNorm);

    /// <summary>Applies one update (1-based <paramref name="step"/>) and zeroes the gradients.</summary>
    void Update(long step, float lr, float lrEmb, AdamOptions denseOpt, AdamOptions embOpt);

    /// <summary>A host copy of every parameter's value, in the model's parameter order.</summary>
    float[][] Snapshot();

    /// <summary>Writes a <see cref="Snapshot"/> back.</summary>
    void Restore(float[][] snapshot);
}

/// <summary>
/// The CPU optimizer step (through the backend's host pointers). Its moments (<see cref="Dense"/>, <see cref="Sparse"/>)
/// are what training checkpoints save and restore.
/// </summary>
internal sealed unsafe class CpuOptimizerStep : IOptimizerStep
{
    private readonly CpuBackend _cpu;
    private readonly IReadOnlyList<Parameter> _parameters;

    public CpuOptimizerStep(CpuBackend cpu, IReadOnlyList<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(parameters);
        _cpu = cpu;
        _parameters = parameters;
    }

    /// <summary>AdamW state per dense parameter that has been updated.</summary>
    public Dictionary<Parameter, AdamWState> Dense { get; } = new();

    /// <summary>Row-sparse Adam state per embedding table that has been updated.</summary>
    public Dictionary<Parameter, RowSparseAdamState> Sparse { get; } = new();

    private Span<float> Values(Tensor t) => new(_cpu.FloatPointer(t), checked((int)t.Length));

    public void Clip(float maxNorm)
    {
        if (maxNorm <= 0) return;
        double ss = 0;
        foreach (var p in _parameters)
        {
            if (p.Grad is { } g) ss += GradientClipping.SumOfSquares(Values(g));
            if (p.SparseGradient is { } sg) ss += GradientClipping.SumOfSquares(Values(sg.Values));
        }
        float scale = GradientClipping.ScaleFactor(Math.Sqrt(ss), maxNorm);
        if (scale >= 1f) return;
        foreach (var p in _parameters)
        {
            if (p.Grad is { } g) _cpu.Scale(g, scale, g);
            if (p.SparseGradient is { } sg) _cpu.Scale(sg.Values, scale, sg.Values);
        }
    }

    public void Update(long step, float lr, float lrEmb, AdamOptions denseOpt, AdamOptions embOpt)
    {
        _ = step; // step counts are kept per parameter (dense) and per row (embeddings)
        foreach (var p in _parameters)
        {
            if (p.SparseGrad)
            {
                if (p.SparseGradient is { } sg)
                {
                    if (!Sparse.TryGetValue(p, out var st)) Sparse[p] = st = new RowSparseAdamState(p.Value.RowCount, p.Value.LastDim);
                    var ids = new ReadOnlySpan<int>(_cpu.Int32Pointer(sg.Indices), sg.RowCount);
                    st.Update(Values(p.Value), ids, Values(sg.Values), lrEmb, embOpt);
                }
            }
            else if (p.Grad is { } g)
            {
                if (!Dense.TryGetValue(p, out var st)) Dense[p] = st = new AdamWState(checked((int)p.Value.Length));
                st.Update(Values(p.Value), Values(g), lr, p.WeightDecay ? denseOpt : embOpt);
            }
            p.ZeroGrad();
        }
    }

    public float[][] Snapshot()
    {
        var s = new float[_parameters.Count][];
        for (int i = 0; i < s.Length; i++) s[i] = Values(_parameters[i].Value).ToArray();
        return s;
    }

    public void Restore(float[][] snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        for (int i = 0; i < snapshot.Length; i++) snapshot[i].CopyTo(Values(_parameters[i].Value));
    }
}
