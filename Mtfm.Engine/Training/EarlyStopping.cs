namespace Mtfm.Engine.Training;

/// <summary>Whether a larger or a smaller validation metric is better.</summary>
internal enum MetricGoal
{
    /// <summary>Larger is better (AUC, GAUC).</summary>
    Maximize,

    /// <summary>Smaller is better (loss).</summary>
    Minimize,
}

/// <summary>What <see cref="EarlyStopping.Report"/> decided after one evaluation.</summary>
/// <param name="IsNewBest">This evaluation improved on the best so far by more than minDelta: save it as the best checkpoint.</param>
/// <param name="ShouldStop">No improvement for <c>patience</c> evaluations in a row: stop training.</param>
/// <param name="RestoreBest">Stopping, and the best evaluation is not the latest: reload the best checkpoint.</param>
/// <param name="BestValue">Best metric value so far.</param>
/// <param name="BestStep">Step (or epoch) of the best value.</param>
/// <param name="EvaluationsSinceBest">Evaluations since the best one (0 when this one is the best).</param>
internal readonly record struct EarlyStoppingDecision(bool IsNewBest, bool ShouldStop, bool RestoreBest, double BestValue, long BestStep, int EvaluationsSinceBest);

/// <summary>
/// Early stopping on a validation metric. An evaluation is an improvement when it beats the best so far by more than
/// <c>minDelta</c> in the goal's direction. A NaN metric (a diverged model, or AUC on one class) is never an
/// improvement and counts toward the patience. The first finite value is always the first best.
/// </summary>
internal sealed class EarlyStopping
{
    /// <summary>Creates the tracker.</summary>
    /// <param name="patience">Evaluations without improvement after which to stop (≥ 1).</param>
    /// <param name="goal">Maximize (AUC) or minimize (loss).</param>
    /// <param name="minDelta">Smallest change that counts as an improvement (≥ 0).</param>
    public EarlyStopping(int patience, MetricGoal goal, double minDelta = 0)
    {
        if (patience < 1) throw new ArgumentOutOfRangeException(nameof(patience), patience, "patience must be ≥ 1.");
        if (goal is not (MetricGoal.Maximize or MetricGoal.Minimize)) throw new ArgumentOutOfRangeException(nameof(goal), goal, "unknown goal.");
        if (!(minDelta >= 0) || !double.IsFinite(minDelta)) throw new ArgumentOutOfRangeException(nameof(minDelta), minDelta, "minDelta must be finite and ≥ 0.");
        Patience = patience; Goal = goal; MinDelta = minDelta;
    }

    private long _lastStep;
    private long _evaluations;

    /// <summary>Patience in evaluations.</summary>
    public int Patience { get; }

    /// <summary>Direction of improvement.</summary>
    public MetricGoal Goal { get; }

    /// <summary>Minimum improvement.</summary>
    public double MinDelta { get; }

    /// <summary>Best value so far (NaN before the first finite one).</summary>
    public double BestValue { get; private set; } = double.NaN;

    /// <summary>Step of <see cref="BestValue"/> (-1 before any).</summary>
    public long BestStep { get; private set; } = -1;

    /// <summary>Evaluations since the best.</summary>
    public int EvaluationsSinceBest { get; private set; }

    /// <summary>Whether a previous report already said stop.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Records the validation metric <paramref name="value"/> measured at <paramref name="step"/>.</summary>
    /// <exception cref="InvalidOperationException">Called again after it said stop.</exception>
    public EarlyStoppingDecision Report(long step, double value)
    {
        if (Stopped) throw new InvalidOperationException($"early stopping already triggered at step {step}; best was {BestValue} at step {BestStep}.");
        if (_evaluations > 0 && step <= _lastStep) throw new ArgumentOutOfRangeException(nameof(step), step, $"steps must increase; the previous evaluation was at step {_lastStep}.");
        _evaluations++;
        _lastStep = step;
        bool better = !double.IsNaN(value) && (double.IsNaN(BestValue) ||
            (Goal == MetricGoal.Maximize ? value > BestValue + MinDelta : value < BestValue - MinDelta));
        if (better)
        {
            BestValue = value;
            BestStep = step;
            EvaluationsSinceBest = 0;
        }
        else EvaluationsSinceBest++;
        bool stop = EvaluationsSinceBest >= Patience;
        Stopped = stop;
        return new EarlyStoppingDecision(better, stop, stop && BestStep >= 0, BestValue, BestStep, EvaluationsSinceBest);
    }

    /// <summary>The full internal state (for training checkpoints).</summary>
    internal (long Evaluations, long LastStep, double BestValue, long BestStep, int EvaluationsSinceBest, bool Stopped) ExportState() =>
        (_evaluations, _lastStep, BestValue, BestStep, EvaluationsSinceBest, Stopped);

    /// <summary>Restores a state taken by <see cref="ExportState"/>.</summary>
    internal void ImportState(long evaluations, long lastStep, double bestValue, long bestStep, int evaluationsSinceBest, bool stopped)
    {
        _evaluations = evaluations; _lastStep = lastStep; BestValue = bestValue; BestStep = bestStep;
        EvaluationsSinceBest = evaluationsSinceBest; Stopped = stopped;
    }
}
