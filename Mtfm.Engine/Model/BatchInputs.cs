using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Model;

/// <summary>
/// A <see cref="JaggedBatch"/> uploaded to the tape's backend: index tensors, numeric features, labels and the
/// attention metadata. Everything lives in the tape's scope and is freed with it — unless the inputs were staged ahead
/// (<see cref="MarkStaged"/>) and handed to the forward explicitly (<see cref="For"/>): then the forward takes the
/// staged tensors (living in the stager's scope) instead of uploading again, and runs the stager's hook once (e.g. the
/// compute stream waiting for the copy stream). No global state: the stager hands its inputs to the step that uses them.
/// </summary>
internal sealed class BatchInputs
{
    private readonly JaggedBatch _batch;
    private long _pairsFull = -1, _pairsTarget = -1;
    private DataLayout? _stagedLayout;
    private Action? _onTake;

    /// <summary>
    /// Marks these inputs (built ahead on a tape whose scope outlives the step) as staged for <paramref name="layout"/>:
    /// <see cref="For"/> given them takes them instead of uploading again and calls <paramref name="onTake"/> once.
    /// </summary>
    internal void MarkStaged(DataLayout layout, Action? onTake)
    {
        ArgumentNullException.ThrowIfNull(layout);
        _stagedLayout = layout;
        _onTake = onTake;
    }

    /// <summary>
    /// The inputs of <paramref name="batch"/> for a forward on <paramref name="tape"/>: <paramref name="staged"/> when it
    /// was staged for this batch, layout, backend and bucket count (its hook runs, once), else uploaded now.
    /// </summary>
    internal static BatchInputs For(Tape tape, JaggedBatch batch, DataLayout layout, int timeBuckets, BatchInputs? staged)
    {
        if (staged is not null && tape is not null && ReferenceEquals(staged._batch, batch) && ReferenceEquals(staged._stagedLayout, layout)
            && ReferenceEquals(staged.TokenGroups.Backend, tape.Backend) && staged.Attention.NumBuckets == timeBuckets)
        {
            var hook = staged._onTake;
            staged._onTake = null;
            staged._stagedLayout = null; // taken: a second forward on the batch uploads again
            hook?.Invoke();
            return staged;
        }
        return new BatchInputs(tape!, batch, layout, timeBuckets);
    }

    /// <param name="tape">Tape whose backend and scope hold the inputs.</param>
    /// <param name="batch">The batch.</param>
    /// <param name="layout">The data layout the batch was built for.</param>
    /// <param name="timeBuckets">Time buckets per direction of the attention layout (<c>MtfmConfig.TimeBuckets</c>).</param>
    public BatchInputs(Tape tape, JaggedBatch batch, DataLayout layout, int timeBuckets = MtfmConfig.DefaultTimeBuckets)
    {
        _batch = batch;
        ArgumentNullException.ThrowIfNull(tape);
        ArgumentNullException.ThrowIfNull(batch);
        int n = batch.TokenCount, nt = batch.TargetCount, groups = layout.Groups.Count;
        if (batch.Blocks.Length != groups) throw new ArgumentException($"batch has {batch.Blocks.Length} group blocks, the layout {groups} groups.", nameof(batch));
        if (batch.TaskCount != layout.TaskCount) throw new ArgumentException($"batch has {batch.TaskCount} tasks, the layout {layout.TaskCount}.", nameof(batch));
        Attention = new AttentionLayout(batch.Offsets, batch.Segment, batch.Time, timeBuckets);
        if (!Attention.TargetTokens.AsSpan().SequenceEqual(batch.TargetToken))
            throw new ArgumentException("batch.TargetToken must list the T tokens in token order.", nameof(batch));
        TokenGroups = tape.Ids(batch.Group, [n]);
        TargetTokens = tape.Ids(batch.TargetToken, [nt]);
        var tg = new int[nt];
        for (int j = 0; j < nt; j++) tg[j] = batch.Group[batch.TargetToken[j]];
        TargetGroups = tape.Ids(tg, [nt]);

        GroupTokens = new Tensor?[groups];
        GroupCategorical = new Tensor[groups][];
        GroupNumeric = new Variable?[groups];
        GroupStatistics = new Variable?[groups];
        GroupPopulation = new Variable?[groups];
        for (int g = 0; g < groups; g++)
        {
            var b = batch.Blocks[g];
            GroupCategorical[g] = [];
            if (b.Rows == 0) continue;
            GroupTokens[g] = tape.Ids(b.TokenIndex, [b.Rows]);
            (GroupCategorical[g], GroupNumeric[g], GroupStatistics[g], GroupPopulation[g]) = Upload(tape, b);
        }

        int ns = layout.ScenarioCount, tasks = layout.TaskCount;
        ScenarioRows = new Tensor?[ns];
        var perScenario = new List<int>[ns];
        for (int s = 0; s < ns; s++) perScenario[s] = new List<int>();
        for (int j = 0; j < nt; j++)
        {
            int s = batch.TargetScenario[j];
            if ((uint)s >= (uint)ns) throw new ArgumentException($"batch.TargetScenario[{j}] = {s} is outside [0, {ns}).", nameof(batch));
            perScenario[s].Add(j);
        }
        for (int s = 0; s < ns; s++)
            if (perScenario[s].Count > 0) ScenarioRows[s] = tape.Ids(perScenario[s].ToArray(), [perScenario[s].Count]);

        Labels = new Tensor[tasks];
        LabelMask = new Tensor[tasks];
        var lab = new float[nt];
        var mask = new float[nt];
        for (int k = 0; k < tasks; k++)
        {
            for (int j = 0; j < nt; j++)
            {
                lab[j] = batch.Labels[j * tasks + k];
                mask[j] = batch.LabelMask[j * tasks + k];
            }
            Labels[k] = tape.Input(lab, [nt]).Value;
            LabelMask[k] = tape.Input(mask, [nt]).Value;
        }
    }

    /// <summary>
    /// A group block's tokenizer inputs on <paramref name="tape"/>: per categorical column Int32 [rows] table rows, the
    /// numeric features [rows, numeric], the history statistics [rows, statistics] and the population statistics
    /// [rows, population] (each null when the block has none).
    /// </summary>
    internal static (Tensor[] Categorical, Variable? Numeric, Variable? Statistics, Variable? Population) Upload(Tape tape, GroupBlock b)
    {
        var cats = new Tensor[b.CategoricalWidth];
        var col = new int[b.Rows];
        for (int c = 0; c < b.CategoricalWidth; c++)
        {
            for (int r = 0; r < b.Rows; r++) col[r] = b.Categorical[r * b.CategoricalWidth + c];
            cats[c] = tape.Ids(col, [b.Rows]);
        }
        var numeric = b.NumericWidth > 0 ? tape.Input(b.Numeric, [b.Rows, b.NumericWidth]) : null;
        var statistics = b.StatisticsWidth > 0 ? tape.Input(b.Statistics, [b.Rows, b.StatisticsWidth]) : null;
        var population = b.PopulationWidth > 0 ? tape.Input(b.Population, [b.Rows, b.PopulationWidth]) : null;
        return (cats, numeric, statistics, population);
    }

    /// <summary>Attention metadata (offsets, kinds, times, T list).</summary>
    public AttentionLayout Attention { get; }

    /// <summary>Int32 [N] group id per token.</summary>
    public Tensor TokenGroups { get; }

    /// <summary>Int32 [T] token index of each T token.</summary>
    public Tensor TargetTokens { get; }

    /// <summary>Int32 [T] group id of each T token.</summary>
    public Tensor TargetGroups { get; }

    /// <summary>Per group: Int32 [rows] token positions of its rows (null when the group is absent).</summary>
    public Tensor?[] GroupTokens { get; }

    /// <summary>Per group, per categorical column: Int32 [rows] embedding-table rows.</summary>
    public Tensor[][] GroupCategorical { get; }

    /// <summary>Per group: [rows, numeric] transformed numeric features, or null.</summary>
    public Variable?[] GroupNumeric { get; }

    /// <summary>Per group: [rows, statistics] history statistics of T groups (<see cref="HistoryStatistics"/>), or null.</summary>
    public Variable?[] GroupStatistics { get; }

    /// <summary>Per group: [rows, population] population statistics of T groups (<see cref="PopulationStatistics"/>), or null.</summary>
    public Variable?[] GroupPopulation { get; }

    /// <summary>Per scenario: Int32 positions (in the T list) of its exposures, or null.</summary>
    public Tensor?[] ScenarioRows { get; }

    /// <summary>Per task: [T] labels.</summary>
    public Tensor[] Labels { get; }

    /// <summary>Per task: [T] 1 where the label is present.</summary>
    public Tensor[] LabelMask { get; }

    /// <summary>Int32 positions in the T list of group <paramref name="group"/>'s rows (a T group).</summary>
    public Tensor GroupTargetRows(Tape tape, int group)
    {
        var b = _batch.Blocks[group];
        var rows = new int[b.Rows];
        for (int r = 0; r < b.Rows; r++)
        {
            int j = Array.BinarySearch(_batch.TargetToken, b.TokenIndex[r]);
            if (j < 0) throw new ArgumentException($"Token {b.TokenIndex[r]} of group {group} is not a T token.", nameof(group));
            rows[r] = j;
        }
        return tape.Ids(rows, [b.Rows]);
    }

    /// <summary>Visible (query, key) pairs of a full (false) or target (true) layer, for FLOP counting.</summary>
    public long VisiblePairs(bool targetQueries)
    {
        ref long cache = ref targetQueries ? ref _pairsTarget : ref _pairsFull;
        if (cache < 0) cache = CountPairs(targetQueries);
        return cache;
    }

    private long CountPairs(bool targetQueries)
    {
        var a = Attention;
        long pairs = 0;
        for (int b = 0; b < a.Batch; b++)
        {
            int s = a.Offsets[b], e = a.Offsets[b + 1];
            int h = 0, rStart = s;
            while (rStart < e && a.Kind[rStart] == 0) { rStart++; h++; }
            int rEnd = rStart;
            while (rEnd < e && a.Kind[rEnd] == 1) rEnd++;
            for (int t = s; t < e; t++)
            {
                if (targetQueries && a.Kind[t] != 2) continue;
                int prefix = 0;
                if (a.Kind[t] != 0)
                {
                    // R keys strictly earlier than t (R is time-sorted), plus t itself unless counted.
                    int lo = rStart, hi = rEnd;
                    while (lo < hi) { int mid = (lo + hi) >> 1; if (a.Time[mid] < a.Time[t]) lo = mid + 1; else hi = mid; }
                    prefix = lo - rStart;
                }
                bool selfCounted = a.Kind[t] == 0;
                pairs += h + prefix + (selfCounted ? 0 : 1);
            }
        }
        return pairs;
    }
}
