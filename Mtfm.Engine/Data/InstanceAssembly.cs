namespace Mtfm.Engine.Data;

/// <summary>
/// The raw features of one token. The token's <c>source</c> id is what was given to
/// <see cref="InstanceAssembly.Add"/>: an <see cref="EventStore"/> event id in training, a request position in serving.
/// </summary>
internal interface ITokenFeatures
{
    /// <summary>The categorical table rows of token <paramref name="source"/> of group <paramref name="group"/>.</summary>
    ReadOnlySpan<int> Categorical(int group, int source);

    /// <summary>The raw numeric values (NaN = missing) of token <paramref name="source"/> of group <paramref name="group"/>, in the group's feature order.</summary>
    ReadOnlySpan<float> Numeric(int group, int source);
}

/// <summary>
/// H selection (spec §2), the one implementation for training (<see cref="UserLevelAggregator"/>) and serving
/// (<c>RequestEncoder</c>): per sequence the last <see cref="SequenceSpec.HistoryCap"/> behaviour events pushed
/// (in time order), merged over sequences by (time, id); and the older events up to
/// <see cref="SequenceSpec.StatisticsCap"/> that only the history statistics count (<see cref="MergeOlder"/>).
/// </summary>
internal sealed class HistorySelector
{
    private readonly int[][] _rings;
    private readonly int[] _caps, _keep, _head, _count, _cursor;

    public HistorySelector(DataLayout layout)
    {
        int nq = layout.SequenceCount;
        _caps = layout.Schema.Sequences.Select(q => q.HistoryCap).ToArray();
        _keep = layout.Schema.Sequences.Select(q => q.EffectiveStatisticsCap).ToArray();
        _rings = new int[nq][];
        for (int j = 0; j < nq; j++) _rings[j] = new int[Math.Max(1, _keep[j])];
        _head = new int[nq]; _count = new int[nq]; _cursor = new int[nq];
    }

    /// <summary>Whether some sequence counts older events in its statistics than its H holds.</summary>
    public bool HasOlder => !_keep.AsSpan().SequenceEqual(_caps);

    /// <summary>Forgets every pushed event (next user / request).</summary>
    public void Clear() { Array.Clear(_head); Array.Clear(_count); }

    /// <summary>Pushes behaviour <paramref name="id"/> of sequence <paramref name="sequence"/>; per sequence, pushes come in (time, id) order.</summary>
    public void Push(int sequence, int id)
    {
        if (_keep[sequence] == 0) return;
        var ring = _rings[sequence];
        if (_count[sequence] < ring.Length) { ring[(_head[sequence] + _count[sequence]) % ring.Length] = id; _count[sequence]++; }
        else { ring[_head[sequence]] = id; _head[sequence] = (_head[sequence] + 1) % ring.Length; }
    }

    /// <summary>Held events of sequence <paramref name="j"/> older than its H (the first of the ring, in time order).</summary>
    public int OlderCount(int j) => Math.Max(0, _count[j] - _caps[j]);

    /// <summary>Whether sequence <paramref name="j"/> keeps events older than its H for the statistics.</summary>
    public bool KeepsOlder(int j) => _keep[j] > _caps[j];

    /// <summary>Appends the selected H events, merged by (<paramref name="time"/>[id], id), with their sequence.</summary>
    public void Merge(long[] time, ref GrowBuffer<int> ids, ref GrowBuffer<int> sequences)
    {
        int nq = _rings.Length;
        for (int j = 0; j < nq; j++) _cursor[j] = OlderCount(j);
        while (true)
        {
            int best = -1, bestId = 0;
            for (int j = 0; j < nq; j++)
            {
                if (_cursor[j] >= _count[j]) continue;
                int id = _rings[j][(_head[j] + _cursor[j]) % _rings[j].Length];
                if (best < 0 || time[id] < time[bestId] || (time[id] == time[bestId] && id < bestId)) { best = j; bestId = id; }
            }
            if (best < 0) break;
            _cursor[best]++;
            ids.Add(bestId); sequences.Add(best);
        }
    }

    /// <summary>
    /// Appends the held events older than each sequence's H (statistics only: at most
    /// <see cref="SequenceSpec.StatisticsCap"/> − <see cref="SequenceSpec.HistoryCap"/> per sequence), sequence by
    /// sequence in time order, with their sequence.
    /// </summary>
    public void MergeOlder(ref GrowBuffer<int> ids, ref GrowBuffer<int> sequences)
    {
        for (int j = 0; j < _rings.Length; j++)
            for (int c = 0, n = OlderCount(j); c < n; c++)
            {
                ids.Add(_rings[j][(_head[j] + c) % _rings[j].Length]); sequences.Add(j);
            }
    }
}

/// <summary>
/// The one instance assembly of training and serving: collects instances as token lists (H, R, T, each in time order;
/// groups numbered as in <see cref="DataLayout"/>) and builds the <see cref="JaggedBatch"/> with its group blocks.
/// <see cref="BatchBuilder"/> feeds it aggregated instances of an <see cref="EventStore"/>; the request encoder feeds
/// it one request. Features come from an <see cref="ITokenFeatures"/>; target rows get scenario and instance here,
/// users, labels and true probabilities are written by the caller (zero otherwise).
/// </summary>
internal sealed class InstanceAssembly
{
    private readonly DataLayout _l;
    private GrowBuffer<byte> _seg;
    private GrowBuffer<int> _grp, _src;
    private GrowBuffer<long> _time;
    private GrowBuffer<int> _offsets;
    private int _targets;
    // Statistics-only older history (HistorySelector.MergeOlder): per entry its sequence, time and source; per instance where its entries end.
    private GrowBuffer<int> _oSeq, _oSrc, _oOffsets;
    private GrowBuffer<long> _oTime;

    public InstanceAssembly(DataLayout layout, int tokenCapacity = 256)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        _seg = new(tokenCapacity); _grp = new(tokenCapacity); _src = new(tokenCapacity); _time = new(tokenCapacity);
        _offsets = new(16); _offsets.Add(0);
        _oSeq = new(16); _oSrc = new(16); _oTime = new(16); _oOffsets = new(16); _oOffsets.Add(0);
    }

    /// <summary>Tokens added so far.</summary>
    public int TokenCount => _seg.Count;

    /// <summary>Adds one token of the current instance; <paramref name="source"/> is handed back to <see cref="ITokenFeatures"/> and stored as <see cref="JaggedBatch.EventId"/>.</summary>
    public void Add(SegmentKind segment, int group, long time, int source)
    {
        _seg.Add((byte)segment); _grp.Add(group); _time.Add(time); _src.Add(source);
        if (segment == SegmentKind.Target) _targets++;
    }

    /// <summary>Adds an H token of sequence <paramref name="sequence"/>.</summary>
    public void AddHistory(int sequence, long time, int source) => Add(SegmentKind.History, _l.HistoryGroup(sequence), time, source);
    /// <summary>Adds an R token of sequence <paramref name="sequence"/>.</summary>
    public void AddRealtime(int sequence, long time, int source) => Add(SegmentKind.Realtime, _l.RealtimeGroup(sequence), time, source);
    /// <summary>Adds a T token of scenario <paramref name="scenario"/>.</summary>
    public void AddTarget(int scenario, long time, int source) => Add(SegmentKind.Target, _l.TargetGroup(scenario), time, source);

    /// <summary>
    /// Adds an event of sequence <paramref name="sequence"/> older than the instance's H that only the T tokens' history
    /// statistics count (never a token); per sequence in time order, before the instance's H tokens of that sequence.
    /// </summary>
    public void AddOlderHistory(int sequence, long time, int source)
    {
        _oSeq.Add(sequence); _oTime.Add(time); _oSrc.Add(source);
    }

    /// <summary>Closes the current instance.</summary>
    public void EndInstance() { _offsets.Add(_seg.Count); _oOffsets.Add(_oSeq.Count); }

    /// <summary>
    /// Builds the batch of the closed instances (with true-probability rows when <paramref name="withTrueProbabilities"/>):
    /// numeric values encoded with <paramref name="stats"/> (transform and presence indicators), T tokens' history
    /// statistics written by <paramref name="history"/> from each instance's visible tokens (over the instances in
    /// parallel with <paramref name="parallel"/>; the same values either way).
    /// </summary>
    public JaggedBatch Build(ITokenFeatures features, NumericStats stats, HistoryStatistics history, bool withTrueProbabilities = false,
        IPopulationSource? population = null, ParallelRanges? parallel = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(stats);
        ArgumentNullException.ThrowIfNull(history);
        if (_offsets.Items[_offsets.Count - 1] != _seg.Count) throw new InvalidOperationException("the last instance is not closed (EndInstance)");
        int tokens = _seg.Count, ng = _l.Groups.Count, tasks = _l.TaskCount, targets = _targets, nq = _l.SequenceCount;
        var seg = _seg.ToArray(); var grp = _grp.ToArray(); var time = _time.ToArray(); var evs = _src.ToArray();
        var offsets = _offsets.ToArray();
        var row = new int[tokens];
        var groupRows = new int[ng];
        for (int t = 0; t < tokens; t++) row[t] = groupRows[grp[t]]++;
        var blocks = new GroupBlock[ng];
        for (int g = 0; g < ng; g++)
        {
            var gi = _l.Groups[g];
            int cw = gi.CategoricalTables.Length, nw = gi.NumericWidth;
            int sw = gi.Segment == SegmentKind.Target ? history.Width(gi.Source) : 0;
            int pw = gi.Segment == SegmentKind.Target && population is not null ? population.Width(gi.Source) : 0;
            blocks[g] = new GroupBlock
            {
                Rows = groupRows[g], CategoricalWidth = cw, NumericWidth = nw,
                TokenIndex = new int[groupRows[g]], Categorical = new int[groupRows[g] * cw], Numeric = new float[groupRows[g] * nw],
                StatisticsWidth = sw, Statistics = new float[groupRows[g] * sw],
                PopulationWidth = pw, Population = new float[groupRows[g] * pw],
            };
        }
        var tTok = new int[targets]; var tInst = new int[targets]; var tScen = new int[targets];
        int j = 0, inst = 0;
        for (int t = 0; t < tokens; t++)
        {
            while (offsets[inst + 1] <= t) inst++;
            var blk = blocks[grp[t]];
            int r = row[t];
            blk.TokenIndex[r] = t;
            features.Categorical(grp[t], evs[t]).CopyTo(blk.Categorical.AsSpan(r * blk.CategoricalWidth, blk.CategoricalWidth));
            stats.EncodeToken(_l.Groups[grp[t]], features.Numeric(grp[t], evs[t]), blk.Numeric.AsSpan(r * blk.NumericWidth, blk.NumericWidth));
            if (seg[t] != (byte)SegmentKind.Target) continue;
            if (blk.PopulationWidth > 0)
                population!.Write(_l.Groups[grp[t]].Source, evs[t], blk.Categorical.AsSpan(r * blk.CategoricalWidth, blk.CategoricalWidth), time[t],
                    blk.Population.AsSpan(r * blk.PopulationWidth, blk.PopulationWidth));
            tTok[j] = t; tInst[j] = inst; tScen[j] = grp[t] - 2 * nq;
            j++;
        }
        var batch = new JaggedBatch
        {
            InstanceCount = offsets.Length - 1, TokenCount = tokens, TargetCount = targets, TaskCount = tasks,
            Offsets = offsets, Segment = seg, Group = grp, Time = time, RowInGroup = row, EventId = evs, Blocks = blocks,
            TargetToken = tTok, TargetInstance = tInst, TargetScenario = tScen, TargetUser = new int[targets],
            Labels = new float[targets * tasks], LabelMask = new byte[targets * tasks],
            TrueProbabilities = withTrueProbabilities ? new float[targets * tasks] : null,
        };
        history.Fill(batch, parallel, BuildOlder(features, stats));
        return batch;
    }

    /// <summary>The older history's features (encoded as H tokens' are), or null when no instance has any.</summary>
    private OlderHistory? BuildOlder(ITokenFeatures features, NumericStats stats)
    {
        int n = _oSeq.Count;
        if (n == 0) return null;
        var seq = _oSeq.ToArray();
        var catAt = new int[n + 1];
        var numAt = new int[n + 1];
        for (int e = 0; e < n; e++)
        {
            var gi = _l.Groups[_l.HistoryGroup(seq[e])];
            catAt[e + 1] = catAt[e] + gi.CategoricalTables.Length;
            numAt[e + 1] = numAt[e] + gi.NumericWidth;
        }
        var cat = new int[catAt[n]];
        var num = new float[numAt[n]];
        var src = _oSrc.Items;
        for (int e = 0; e < n; e++)
        {
            int g = _l.HistoryGroup(seq[e]);
            features.Categorical(g, src[e]).CopyTo(cat.AsSpan(catAt[e], catAt[e + 1] - catAt[e]));
            stats.EncodeToken(_l.Groups[g], features.Numeric(g, src[e]), num.AsSpan(numAt[e], numAt[e + 1] - numAt[e]));
        }
        return new OlderHistory
        {
            Offsets = _oOffsets.ToArray(), Sequence = seq, Time = _oTime.ToArray(),
            CategoricalAt = catAt, NumericAt = numAt, Categorical = cat, Numeric = num,
        };
    }
}
