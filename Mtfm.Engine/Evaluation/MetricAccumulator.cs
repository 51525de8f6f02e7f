namespace Mtfm.Engine.Evaluation;

/// <summary>
/// Collects predictions from streaming evaluation batches and computes AUC, GAUC and log-loss per (scenario, task)
/// and per task pooled over scenarios. Each batch is row-major: exposure e, task t at index e·TaskCount + t.
/// An exposure contributes to task t only where its presence mask is 1 (not every scenario carries every label).
/// Memory: 16 bytes per present (exposure, task). Not thread-safe.
/// </summary>
internal sealed class MetricAccumulator
{
    private readonly Cell[] _cells; // [scenario * TaskCount + task]

    /// <summary>
    /// Creates an empty accumulator for <paramref name="scenarioCount"/> scenarios and <paramref name="taskCount"/> tasks;
    /// with <paramref name="trueProbabilities"/> every batch also brings the true probability of each label (generated
    /// data), and the metrics include <see cref="ScenarioTaskMetrics.ExpectedAuc"/>.
    /// </summary>
    public MetricAccumulator(int scenarioCount, int taskCount, bool trueProbabilities = false)
    {
        HasTrueProbabilities = trueProbabilities;
        if (scenarioCount <= 0) throw new ArgumentOutOfRangeException(nameof(scenarioCount), scenarioCount, "scenarioCount must be ≥ 1.");
        if (taskCount <= 0) throw new ArgumentOutOfRangeException(nameof(taskCount), taskCount, "taskCount must be ≥ 1.");
        ScenarioCount = scenarioCount;
        TaskCount = taskCount;
        _cells = new Cell[scenarioCount * taskCount];
        for (int i = 0; i < _cells.Length; i++) _cells[i] = new Cell();
    }

    /// <summary>Number of scenarios (ids 0 .. ScenarioCount−1).</summary>
    public int ScenarioCount { get; }

    /// <summary>Number of tasks per exposure.</summary>
    public int TaskCount { get; }

    /// <summary>Whether batches bring true probabilities (see the constructor).</summary>
    public bool HasTrueProbabilities { get; }

    /// <summary>Total (exposure, task) pairs accumulated so far.</summary>
    public long Count { get; private set; }

    /// <summary>Adds one batch of <c>n</c> exposures.</summary>
    /// <param name="probabilities">[n, TaskCount] predicted probabilities in [0, 1] (apply the sigmoid to logits first).</param>
    /// <param name="labels">[n, TaskCount] labels, 0 or 1 where present (ignored where absent).</param>
    /// <param name="present">[n, TaskCount] 1 where the exposure carries that task's label, 0 otherwise.</param>
    /// <param name="userIds">[n] user of each exposure (for GAUC).</param>
    /// <param name="scenarioIds">[n] scenario of each exposure, in [0, ScenarioCount).</param>
    /// <param name="trueProbabilities">[n, TaskCount] true probabilities in [0, 1] where present: required with
    /// <see cref="HasTrueProbabilities"/>, empty otherwise.</param>
    /// <exception cref="ArgumentException">A length does not match, or a value is out of range (the message names the argument, index and value).</exception>
    public void Add(ReadOnlySpan<float> probabilities, ReadOnlySpan<float> labels, ReadOnlySpan<byte> present,
        ReadOnlySpan<long> userIds, ReadOnlySpan<int> scenarioIds, ReadOnlySpan<float> trueProbabilities = default)
    {
        int n = scenarioIds.Length;
        long cells = (long)n * TaskCount;
        if (userIds.Length != n) throw new ArgumentException($"userIds has {userIds.Length} entries but scenarioIds has {n}.", nameof(userIds));
        if (probabilities.Length != cells) throw new ArgumentException($"probabilities has {probabilities.Length} entries, expected n·tasks = {n}·{TaskCount} = {cells}.", nameof(probabilities));
        if (labels.Length != cells) throw new ArgumentException($"labels has {labels.Length} entries, expected {cells}.", nameof(labels));
        if (present.Length != cells) throw new ArgumentException($"present has {present.Length} entries, expected {cells}.", nameof(present));
        if (trueProbabilities.Length != (HasTrueProbabilities ? cells : 0))
            throw new ArgumentException($"trueProbabilities has {trueProbabilities.Length} entries, expected {(HasTrueProbabilities ? cells : 0)} " +
                $"(the accumulator was created {(HasTrueProbabilities ? "with" : "without")} true probabilities).", nameof(trueProbabilities));
        // Validate everything before mutating so a bad batch leaves the accumulator unchanged.
        for (int e = 0; e < n; e++)
        {
            int s = scenarioIds[e];
            if ((uint)s >= (uint)ScenarioCount)
                throw new ArgumentException($"scenarioIds[{e}] = {s}: must be in [0, {ScenarioCount}).", nameof(scenarioIds));
            for (int t = 0; t < TaskCount; t++)
            {
                int k = e * TaskCount + t;
                byte m = present[k];
                if (m > 1) throw new ArgumentException($"present[{k}] = {m}: must be 0 or 1.", nameof(present));
                if (m == 0) continue;
                float y = labels[k];
                if (y != 0f && y != 1f) throw new ArgumentException($"labels[{k}] = {y} (exposure {e}, task {t}): must be 0 or 1.", nameof(labels));
                float p = probabilities[k];
                if (!(p >= 0f && p <= 1f)) throw new ArgumentException($"probabilities[{k}] = {p} (exposure {e}, task {t}): must be in [0, 1].", nameof(probabilities));
                if (HasTrueProbabilities && !(trueProbabilities[k] >= 0f && trueProbabilities[k] <= 1f))
                    throw new ArgumentException($"trueProbabilities[{k}] = {trueProbabilities[k]} (exposure {e}, task {t}): must be in [0, 1].", nameof(trueProbabilities));
            }
        }
        for (int e = 0; e < n; e++)
        {
            for (int t = 0; t < TaskCount; t++)
            {
                int k = e * TaskCount + t;
                if (present[k] == 0) continue;
                _cells[scenarioIds[e] * TaskCount + t].Add(probabilities[k], labels[k], userIds[e], HasTrueProbabilities ? trueProbabilities[k] : 0f);
                Count++;
            }
        }
    }

    /// <summary>Metrics of one (scenario, task) cell.</summary>
    public ScenarioTaskMetrics Compute(int scenario, int task)
    {
        if ((uint)scenario >= (uint)ScenarioCount) throw new ArgumentOutOfRangeException(nameof(scenario), scenario, $"must be in [0, {ScenarioCount}).");
        if ((uint)task >= (uint)TaskCount) throw new ArgumentOutOfRangeException(nameof(task), task, $"must be in [0, {TaskCount}).");
        var c = _cells[scenario * TaskCount + task];
        return Metrics(scenario, task, c.Scores.AsSpan(0, c.Length), c.Labels.AsSpan(0, c.Length), c.Users.AsSpan(0, c.Length), c.Truth.AsSpan(0, c.Length));
    }

    /// <summary>Metrics of one task pooled over all scenarios (reported with Scenario = -1).</summary>
    public ScenarioTaskMetrics ComputePooled(int task)
    {
        if ((uint)task >= (uint)TaskCount) throw new ArgumentOutOfRangeException(nameof(task), task, $"must be in [0, {TaskCount}).");
        int total = 0;
        for (int s = 0; s < ScenarioCount; s++) total += _cells[s * TaskCount + task].Length;
        var sc = new float[total];
        var ys = new float[total];
        var us = new long[total];
        var tr = new float[total];
        int o = 0;
        for (int s = 0; s < ScenarioCount; s++)
        {
            var c = _cells[s * TaskCount + task];
            c.Scores.AsSpan(0, c.Length).CopyTo(sc.AsSpan(o));
            c.Labels.AsSpan(0, c.Length).CopyTo(ys.AsSpan(o));
            c.Users.AsSpan(0, c.Length).CopyTo(us.AsSpan(o));
            c.Truth.AsSpan(0, c.Length).CopyTo(tr.AsSpan(o));
            o += c.Length;
        }
        return Metrics(-1, task, sc, ys, us, tr);
    }

    /// <summary>Every (scenario, task) cell in scenario-major order, then the pooled row of each task.</summary>
    public IReadOnlyList<ScenarioTaskMetrics> ComputeAll()
    {
        var list = new List<ScenarioTaskMetrics>(_cells.Length + TaskCount);
        for (int s = 0; s < ScenarioCount; s++)
            for (int t = 0; t < TaskCount; t++)
                list.Add(Compute(s, t));
        for (int t = 0; t < TaskCount; t++) list.Add(ComputePooled(t));
        return list;
    }

    /// <summary>Forgets everything accumulated (keeps the buffers).</summary>
    public void Reset()
    {
        foreach (var c in _cells) c.Length = 0;
        Count = 0;
    }

    private ScenarioTaskMetrics Metrics(int scenario, int task, ReadOnlySpan<float> p, ReadOnlySpan<float> y, ReadOnlySpan<long> u, ReadOnlySpan<float> truth)
    {
        long pos = 0;
        foreach (float v in y) if (v == 1f) pos++;
        double auc = Auc.Compute(p, y);
        var g = GroupAuc.Compute(p, y, u);
        double ll = LogLoss.Compute(p, y);
        return new ScenarioTaskMetrics(scenario, task, p.Length, pos, auc, g.Value, g.UsersCounted, ll)
        {
            ExpectedAuc = HasTrueProbabilities && p.Length > 0 ? BayesOptimalAuc.Expected(p, truth) : double.NaN,
        };
    }

    private sealed class Cell
    {
        public float[] Scores = new float[16];
        public float[] Labels = new float[16];
        public long[] Users = new long[16];
        public float[] Truth = new float[16];
        public int Length;

        public void Add(float p, float y, long u, float truth)
        {
            if (Length == Scores.Length)
            {
                int cap = checked(Length * 2);
                Array.Resize(ref Scores, cap);
                Array.Resize(ref Labels, cap);
                Array.Resize(ref Users, cap);
                Array.Resize(ref Truth, cap);
            }
            Scores[Length] = p;
            Labels[Length] = y;
            Users[Length] = u;
            Truth[Length] = truth;
            Length++;
        }
    }
}
