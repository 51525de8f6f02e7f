namespace Mtfm.Engine.Data;

/// <summary>Turns <see cref="AggregatedInstances"/> into <see cref="JaggedBatch"/>es for training or evaluation.</summary>
public sealed class BatchBuilder
{
    private readonly AggregatedInstances _inst;
    private readonly NumericStats _stats;
    private readonly DataLayout _l;

    /// <summary>Creates a builder; <paramref name="stats"/> are the training statistics of the numeric features.</summary>
    public BatchBuilder(AggregatedInstances instances, NumericStats stats)
    {
        _inst = instances ?? throw new ArgumentNullException(nameof(instances));
        _stats = stats ?? throw new ArgumentNullException(nameof(stats));
        _l = instances.Store.Layout;
    }

    /// <summary>
    /// Iterates batches of whole instances: a batch closes when adding the next instance would exceed
    /// <paramref name="maxTokens"/> tokens or <paramref name="maxInstances"/> instances (an instance longer than
    /// <paramref name="maxTokens"/> forms a batch of its own). With <paramref name="shuffleSeed"/> the instance order is
    /// a seeded permutation, otherwise the aggregation order.
    /// </summary>
    public IEnumerable<JaggedBatch> Batches(int maxTokens = 8192, int maxInstances = int.MaxValue, ulong? shuffleSeed = null)
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
        var off = _inst.Offsets.Items;
        int s = 0;
        while (s < n)
        {
            int e = s, tokens = 0;
            while (e < n && e - s < maxInstances)
            {
                int len = off[perm[e] + 1] - off[perm[e]];
                if (e > s && tokens + len > maxTokens) break;
                tokens += len; e++;
            }
            yield return Build(perm.AsSpan(s, e - s));
            s = e;
        }
    }

    /// <summary>Builds one batch from the given instance indices.</summary>
    public JaggedBatch Build(ReadOnlySpan<int> instances)
    {
        var st = _inst.Store;
        var off = _inst.Offsets.Items;
        int tasks = _l.TaskCount, ng = _l.Groups.Count;
        int tokens = 0;
        foreach (var i in instances) tokens += off[i + 1] - off[i];
        var offsets = new int[instances.Length + 1];
        var seg = new byte[tokens]; var grp = new int[tokens]; var time = new long[tokens]; var row = new int[tokens]; var evs = new int[tokens];
        var groupRows = new int[ng];
        int t = 0, targets = 0;
        for (int b = 0; b < instances.Length; b++)
        {
            int i = instances[b];
            for (int p = off[i]; p < off[i + 1]; p++, t++)
            {
                int ev = _inst.TokenEvent.Items[p];
                seg[t] = _inst.TokenSegment.Items[p];
                int g = _inst.TokenGroup.Items[p];
                grp[t] = g; time[t] = st.Time.Items[ev]; evs[t] = ev;
                row[t] = groupRows[g]++;
                if (seg[t] == (byte)SegmentKind.Target) targets++;
            }
            offsets[b + 1] = t;
        }
        var blocks = new GroupBlock[ng];
        for (int g = 0; g < ng; g++)
        {
            var gi = _l.Groups[g];
            int cw = gi.CategoricalTables.Length, nw = gi.NumericWidth;
            blocks[g] = new GroupBlock
            {
                Rows = groupRows[g], CategoricalWidth = cw, NumericWidth = nw,
                TokenIndex = new int[groupRows[g]], Categorical = new int[groupRows[g] * cw], Numeric = new float[groupRows[g] * nw],
            };
        }
        var tTok = new int[targets]; var tInst = new int[targets]; var tScen = new int[targets]; var tUser = new int[targets];
        var labels = new float[targets * tasks]; var mask = new byte[targets * tasks];
        var probs = st.HasTrueProbabilities ? new float[targets * tasks] : null;
        int j = 0, inst = 0;
        for (t = 0; t < tokens; t++)
        {
            while (offsets[inst + 1] <= t) inst++;
            int ev = evs[t];
            var blk = blocks[grp[t]];
            int r = row[t];
            blk.TokenIndex[r] = t;
            st.Categorical(ev).CopyTo(blk.Categorical.AsSpan(r * blk.CategoricalWidth, blk.CategoricalWidth));
            _stats.EncodeToken(_l.Groups[grp[t]], st.Numeric(ev), blk.Numeric.AsSpan(r * blk.NumericWidth, blk.NumericWidth));
            if (seg[t] != (byte)SegmentKind.Target) continue;
            tTok[j] = t; tInst[j] = inst; tScen[j] = st.Source.Items[ev]; tUser[j] = st.User.Items[ev];
            int e = st.ExposureIndex.Items[ev];
            for (int k = 0; k < tasks; k++)
            {
                byte lb = st.Labels.Items[e * tasks + k];
                if (lb != 255) { labels[j * tasks + k] = lb; mask[j * tasks + k] = 1; }
                if (probs is not null) probs[j * tasks + k] = st.TrueProb.Items[e * tasks + k];
            }
            j++;
        }
        return new JaggedBatch
        {
            InstanceCount = instances.Length, TokenCount = tokens, TargetCount = targets, TaskCount = tasks,
            Offsets = offsets, Segment = seg, Group = grp, Time = time, RowInGroup = row, EventId = evs, Blocks = blocks,
            TargetToken = tTok, TargetInstance = tInst, TargetScenario = tScen, TargetUser = tUser, Labels = labels, LabelMask = mask,
            TrueProbabilities = probs,
        };
    }
}
