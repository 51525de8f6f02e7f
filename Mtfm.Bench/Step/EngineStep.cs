using System.Diagnostics;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Tensors;
using Mtfm.Engine.Training;

namespace Mtfm.Bench.Step;

/// <summary>
/// One MTFM training step as <see cref="MtfmTrainer"/> runs it on the CPU backend — forward, backward, global-norm
/// clipping (1.0), AdamW on dense parameters (weight decay 1e-4 on 2-D <c>.w</c> weights), row-sparse Adam on
/// embedding tables — with the learning rates held constant (2e-3 dense, 1e-3 embeddings) so steps are comparable.
/// The model runs on a <see cref="ProfilingBackend"/> over the CPU backend; the step times its phases (batch inputs,
/// forward, backward, clipping, optimizer) so that the profile adds up to the whole step.
/// </summary>
internal sealed unsafe class EngineStep : IDisposable
{
    private readonly CpuBackend _cpu;
    private readonly Dictionary<Parameter, AdamWState> _dense = new();
    private readonly Dictionary<Parameter, RowSparseAdamState> _sparse = new();
    private readonly AdamOptions _decay = new() { WeightDecay = 1e-4f }, _plain = new();
    private long _step;

    public EngineStep(MtfmConfig config, DataLayout layout, int threads, ulong seed = 1)
    {
        _cpu = new CpuBackend(threads);
        Profiler = new ProfilingBackend(_cpu);
        Model = new MtfmModel(Profiler, config, layout, seed);
    }

    public MtfmModel Model { get; }

    public ProfilingBackend Profiler { get; }

    public CpuBackend Cpu => _cpu;

    /// <summary>Phase times of the last step, in Stopwatch ticks: inputs, forward, backward, clip, optimizer.</summary>
    public long[] LastPhases { get; } = new long[5];

    /// <summary>Largest inner-backend live bytes during the last step (parameters, gradients, activations).</summary>
    public long LastPeakLiveBytes { get; private set; }

    /// <summary>Live backend bytes after the last forward (parameters + gradients held + saved activations).</summary>
    public long LastLiveAfterForward { get; private set; }

    /// <summary>Live backend bytes before the last step began.</summary>
    public long LastLiveBefore { get; private set; }

    /// <summary>Loss of the batch at the current weights, without an update.</summary>
    public float Loss(JaggedBatch batch)
    {
        using var tape = new Tape(Profiler, gradEnabled: false);
        var o = Model.Forward(tape, batch);
        var l = new float[1];
        Profiler.Download<float>(o.Loss.Value, l);
        return l[0];
    }

    /// <summary>One training step; returns the loss before the update.</summary>
    public float Step(JaggedBatch batch, FlopCounter? flops = null)
    {
        LastLiveBefore = _cpu.LiveBytes;
        Profiler.ResetPeak();
        var l = new float[1];
        long t0 = Stopwatch.GetTimestamp(), t1, t2, t3;
        using (var staging = new Tape(Profiler, gradEnabled: false))
        {
            // The batch's inputs (attention layout, index tensors, features) are built first, as their own phase.
            var inputs = new BatchInputs(staging, batch, Model.Layout, Model.Config.TimeBuckets);
            inputs.MarkStaged(Model.Layout, null);
            t1 = Stopwatch.GetTimestamp();
            using var tape = new Tape(Profiler);
            var output = Model.Forward(tape, batch, flops, inputs);
            LastLiveAfterForward = _cpu.LiveBytes;
            t2 = Stopwatch.GetTimestamp();
            tape.Backward(output.Loss, releaseActivationGradients: true, releaseActivations: true);
            Profiler.Download<float>(output.Loss.Value, l);
            t3 = Stopwatch.GetTimestamp();
        }
        long t4 = Stopwatch.GetTimestamp();
        Clip();
        long t5 = Stopwatch.GetTimestamp();
        Update();
        long t6 = Stopwatch.GetTimestamp();
        LastPhases[0] = t1 - t0; LastPhases[1] = t2 - t1; LastPhases[2] = t3 - t2 + (t4 - t3); LastPhases[3] = t5 - t4; LastPhases[4] = t6 - t5;
        LastPeakLiveBytes = Profiler.PeakLiveBytes;
        return l[0];
    }

    private Span<float> Values(Tensor t) => new(_cpu.FloatPointer(t), checked((int)t.Length));

    private void Clip()
    {
        double ss = 0;
        foreach (var p in Model.Parameters)
        {
            if (p.Grad is { } g) ss += GradientClipping.SumOfSquares(Values(g));
            if (p.SparseGradient is { } sg) ss += GradientClipping.SumOfSquares(Values(sg.Values));
        }
        float scale = GradientClipping.ScaleFactor(Math.Sqrt(ss), 1f);
        if (scale >= 1f) return;
        foreach (var p in Model.Parameters)
        {
            if (p.Grad is { } g) _cpu.Scale(g, scale, g);
            if (p.SparseGradient is { } sg) _cpu.Scale(sg.Values, scale, sg.Values);
        }
    }

    private void Update()
    {
        _step++;
        foreach (var p in Model.Parameters)
        {
            if (p.SparseGrad)
            {
                if (p.SparseGradient is { } sg)
                {
                    if (!_sparse.TryGetValue(p, out var st)) _sparse[p] = st = new RowSparseAdamState(p.Value.RowCount, p.Value.LastDim);
                    var ids = new ReadOnlySpan<int>(_cpu.Int32Pointer(sg.Indices), sg.RowCount);
                    st.Update(Values(p.Value), ids, Values(sg.Values), 1e-3f, _plain);
                }
            }
            else if (p.Grad is { } g)
            {
                if (!_dense.TryGetValue(p, out var st)) _dense[p] = st = new AdamWState(checked((int)p.Value.Length));
                bool decay = p.Value.Rank == 2 && p.Name!.EndsWith(".w", StringComparison.Ordinal);
                st.Update(Values(p.Value), Values(g), 2e-3f, decay ? _decay : _plain);
            }
            p.ZeroGrad();
        }
    }

    /// <summary>Bytes of parameters, of dense gradients held, and of optimizer state (Adam moments, row steps).</summary>
    public (long Parameters, long Gradients, long Optimizer) StateBytes()
    {
        long par = 0, grad = 0, opt = 0;
        foreach (var p in Model.Parameters)
        {
            par += p.Value.Length * 4;
            if (p.Grad is not null) grad += p.Grad.Length * 4;
        }
        foreach (var s in _dense.Values) opt += 8L * s.FirstMoment.Length;
        foreach (var s in _sparse.Values) opt += 8L * s.FirstMoment.Length + 4L * s.RowSteps.Length;
        return (par, grad, opt);
    }

    public void Dispose()
    {
        Model.Dispose();
        _cpu.Dispose();
    }
}
