using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Training;

/// <summary>
/// An exponential moving average of the dense parameters' values (<see cref="TrainOptions.WeightAverageDecay"/>), kept
/// on the backend the model lives on: after the update of step s (1-based) every average moves as
/// a ← d·a + (1 − d)·w with d = min(maxDecay, s / (s + 9)), so early on it averages about the last tenth of the steps
/// and later the last 1/(1 − maxDecay). Embedding tables are not averaged: a row moves only when a batch touches it,
/// and averaging them would double the memory of the largest tensors for no measured gain (docs/training.md). The
/// trainer validates, keeps and finally returns the averaged weights (<see cref="Swap"/>). Only backend operations
/// are used (Scale, Axpy, Copy): a CUDA step stays free of host synchronisation.
/// </summary>
internal sealed class WeightAverage : IDisposable
{
    private readonly IBackend _backend;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor?[] _average; // null: a row-sparse embedding table (not averaged)

    /// <summary>Starts every average at the parameter's current value.</summary>
    public WeightAverage(IBackend backend, IReadOnlyList<Parameter> parameters, float maxDecay)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(maxDecay > 0 && maxDecay < 1)) throw new ArgumentOutOfRangeException(nameof(maxDecay), maxDecay, "the decay of the weight average must lie in (0, 1).");
        _backend = backend;
        _parameters = parameters;
        MaxDecay = maxDecay;
        _average = new Tensor?[parameters.Count];
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.SparseGrad) continue;
            var a = backend.Allocate(DType.Float32, p.Value.Shape);
            backend.Copy(p.Value, a);
            _average[i] = a;
        }
    }

    /// <summary>The largest decay (the average's horizon is about 1/(1 − this) steps late in training).</summary>
    public float MaxDecay { get; }

    /// <summary>Bytes the averages hold (for <see cref="MemoryEstimate"/>).</summary>
    public long Bytes => _average.Sum(a => a is null ? 0L : a.Length * sizeof(float));

    /// <summary>How many parameter values a weight average of <paramref name="parameters"/> holds (the dense ones; for <see cref="MemoryEstimate"/>).</summary>
    public static long AveragedCount(IEnumerable<Parameter> parameters) => parameters.Where(p => !p.SparseGrad).Sum(p => p.Value.Length);

    /// <summary>The decay applied after the update of 1-based step <paramref name="step"/>.</summary>
    public static float Decay(long step, float maxDecay)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        return Math.Min(maxDecay, (float)(step / (step + 9.0)));
    }

    /// <summary>Whether parameter <paramref name="index"/> is averaged (a dense parameter).</summary>
    public bool Averages(int index) => _average[index] is not null;

    /// <summary>The average of parameter <paramref name="index"/> (null for an embedding table).</summary>
    public Tensor? Average(int index) => _average[index];

    /// <summary>Moves every average toward the parameter's value after the update of 1-based step <paramref name="step"/>.</summary>
    public void Update(long step)
    {
        float d = Decay(step, MaxDecay);
        for (int i = 0; i < _average.Length; i++)
        {
            if (_average[i] is not { } a) continue;
            _backend.Scale(a, d, a);
            _backend.Axpy(1f - d, _parameters[i].Value, a);
        }
    }

    /// <summary>
    /// Exchanges every dense parameter's value with its average: called once puts the averaged weights into the model
    /// (for validation and the best-weights snapshot), called again puts the training weights back.
    /// </summary>
    public void Swap()
    {
        for (int i = 0; i < _average.Length; i++)
        {
            if (_average[i] is not { } a) continue;
            var w = _parameters[i].Value;
            using var tmp = _backend.Allocate(DType.Float32, w.Shape);
            _backend.Copy(w, tmp);
            _backend.Copy(a, w);
            _backend.Copy(tmp, a);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        for (int i = 0; i < _average.Length; i++)
        {
            _average[i]?.Dispose();
            _average[i] = null;
        }
    }
}
