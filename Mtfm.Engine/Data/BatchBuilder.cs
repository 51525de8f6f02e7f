namespace Mtfm.Engine.Data;

/// <summary>Turns <see cref="AggregatedInstances"/> into <see cref="JaggedBatch"/>es for training or evaluation.</summary>
internal sealed class BatchBuilder
{
    private readonly AggregatedInstances _inst;
    private readonly NumericStats _stats;
    private readonly DataLayout _l;
    private readonly HistoryStatistics _history;
    private readonly StoreFeatures _features;
    private readonly PopulationStatistics.StoreColumns? _population;

    /// <summary>
    /// Creates a builder; <paramref name="stats"/> are the training statistics of the numeric features. With
    /// <paramref name="population"/> T tokens also get their <see cref="PopulationStatistics"/> columns (one pass over the
    /// store, shared by every builder of that store), their user columns' decayed rates smoothed with
    /// <paramref name="userRecentPrior"/> (<see cref="Model.MtfmConfig.UserRecentRatePrior"/>) and counted up to the window
    /// start when <paramref name="userRatesAtWindowStart"/> (<see cref="Model.MtfmConfig.UserRatesAtWindowStart"/>): the
    /// model's own values, or the trainer rejects the builder; config.Batches(instances, stats) builds one from a configuration.
    /// </summary>
    public BatchBuilder(AggregatedInstances instances, NumericStats stats, bool population = false, double userRecentPrior = PopulationStatistics.PriorStrength,
        bool userRatesAtWindowStart = false)
    {
        _inst = instances ?? throw new ArgumentNullException(nameof(instances));
        _stats = stats ?? throw new ArgumentNullException(nameof(stats));
        _l = instances.Store.Layout;
        _history = new HistoryStatistics(_l);
        _features = new StoreFeatures(instances.Store);
        _population = population ? PopulationStatistics.CachedForStore(instances.Store, userRecentPrior, userRatesAtWindowStart) : null;
    }

    /// <summary>
    /// Where set, batches compute their history statistics over the instances in parallel with it (the trainer sets
    /// the CPU backend's pool while the step leaves it idle during batch building); bit-identical to a serial build.
    /// </summary>
    public ParallelRanges? Parallel { get; set; }

    /// <summary>Whether the builder's batches carry the true probabilities of their labels (generated data).</summary>
    public bool HasTrueProbabilities => _inst.Store.HasTrueProbability;

    /// <summary>The population statistics of the builder's store (one pass over all of its exposures), or null when the builder adds none.</summary>
    public PopulationStatistics.StoreColumns? Population => _population;

    /// <summary>
    /// Iterates batches of whole instances: a batch closes when adding the next instance would exceed
    /// <paramref name="maxTokens"/> tokens or <paramref name="maxInstances"/> instances (an instance longer than
    /// <paramref name="maxTokens"/> forms a batch of its own). With <paramref name="shuffleSeed"/> the instance order is
    /// a seeded permutation, otherwise the aggregation order.
    /// </summary>
    public IEnumerable<JaggedBatch> Batches(int maxTokens = 8192, int maxInstances = int.MaxValue, ulong? shuffleSeed = null) =>
        Batches(maxTokens, maxInstances, shuffleSeed, skip: 0);

    /// <summary>As <see cref="Batches(int, int, ulong?)"/>, without building the first <paramref name="skip"/> batches (resuming mid-epoch).</summary>
    internal IEnumerable<JaggedBatch> Batches(int maxTokens, int maxInstances, ulong? shuffleSeed, long skip)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "must be > 0");
        if (maxInstances <= 0) throw new ArgumentOutOfRangeException(nameof(maxInstances), maxInstances, "must be > 0");
        int n = _inst.Count;
        var perm = new int[n];
        for (int i = 0; i < n; i++) perm[i] = i;
        if (shuffleSeed is { } seed)
        {
            var rng = new SplitMix64(seed);
            for (int i = n - 1; i > 0; i--) { int j = (int)rng.NextBelow((ulong)(i + 1)); (perm[i], perm[j]) = (perm[j], perm[i]); }
        }
        foreach (var (s, e) in Pack(perm, maxTokens, maxInstances))
        {
            if (skip > 0) { skip--; continue; }
            yield return Build(perm.AsSpan(s, e - s));
        }
    }

    /// <summary>
    /// Number of batches <see cref="Batches(int, int, ulong?)"/> yields without a shuffle seed, from the instance offsets alone (no batch is built).
    /// </summary>
    public long CountBatches(int maxTokens = 8192, int maxInstances = int.MaxValue)
    {
        if (maxTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "must be > 0");
        if (maxInstances <= 0) throw new ArgumentOutOfRangeException(nameof(maxInstances), maxInstances, "must be > 0");
        var perm = new int[_inst.Count];
        for (int i = 0; i < perm.Length; i++) perm[i] = i;
        long n = 0;
        foreach (var _ in Pack(perm, maxTokens, maxInstances)) n++;
        return n;
    }

    /// <summary>Greedy packing of <paramref name="perm"/> into [start, end) ranges by the instance offsets.</summary>
    private IEnumerable<(int Start, int End)> Pack(int[] perm, int maxTokens, int maxInstances)
    {
        var off = _inst.Offsets.Items;
        int n = perm.Length, s = 0;
        while (s < n)
        {
            int e = s, tokens = 0;
            while (e < n && e - s < maxInstances)
            {
                int len = off[perm[e] + 1] - off[perm[e]];
                if (e > s && tokens + len > maxTokens) break;
                tokens += len; e++;
            }
            yield return (s, e);
            s = e;
        }
    }

    /// <summary>Builds one batch from the given instance indices.</summary>
    public JaggedBatch Build(ReadOnlySpan<int> instances)
    {
        var st = _inst.Store;
        var off = _inst.Offsets.Items;
        int tasks = _l.TaskCount;
        int tokens = 0;
        foreach (var i in instances) tokens += off[i + 1] - off[i];
        var asm = new InstanceAssembly(_l, tokens);
        var evTime = st.Time.Items;
        int nq = _inst.Sequences;
        foreach (var i in instances)
        {
            for (int p = off[i]; p < off[i + 1]; p++)
            {
                int ev = _inst.TokenEvent.Items[p];
                asm.Add((SegmentKind)_inst.TokenSegment.Items[p], _inst.TokenGroup.Items[p], evTime[ev], ev);
            }
            if (_inst.OlderCount.Count > 0)
                for (int j = 0; j < nq; j++)
                {
                    int at = _inst.OlderStart.Items[i * nq + j], c = _inst.OlderCount.Items[i * nq + j];
                    var pool = _inst.OlderPool[j].Items;
                    for (int o = at; o < at + c; o++) asm.AddOlderHistory(j, evTime[pool[o]], pool[o]);
                }
            asm.EndInstance();
        }
        var batch = asm.Build(_features, _stats, _history, st.HasTrueProbabilities, _population, Parallel);
        var probs = batch.TrueProbabilities;
        for (int j = 0; j < batch.TargetCount; j++)
        {
            int ev = batch.EventId[batch.TargetToken[j]];
            batch.TargetUser[j] = st.User.Items[ev];
            int e = st.ExposureIndex.Items[ev];
            for (int k = 0; k < tasks; k++)
            {
                byte lb = st.Labels.Items[e * tasks + k];
                if (lb != 255) { batch.Labels[j * tasks + k] = lb; batch.LabelMask[j * tasks + k] = 1; }
                if (probs is not null) probs[j * tasks + k] = st.TrueProb.Items[e * tasks + k];
            }
        }
        return batch;
    }

    /// <summary>Features of store events: categorical rows and raw numeric values as stored.</summary>
    private sealed class StoreFeatures(EventStore store) : ITokenFeatures
    {
        public ReadOnlySpan<int> Categorical(int group, int source) => store.Categorical(source);
        public ReadOnlySpan<float> Numeric(int group, int source) => store.Numeric(source);
    }
}
