using System.Numerics.Tensors;

namespace Mtfm.Engine.Data;

/// <summary>
/// Runs <paramref name="body"/> over [0, <paramref name="count"/>) in disjoint ranges of at least
/// <paramref name="minChunk"/> indices, possibly in parallel, and returns when every range is done (the CPU backend's
/// worker pool in training, where the step leaves the cores idle while a batch is built).
/// </summary>
internal delegate void ParallelRanges(int count, int minChunk, Action<int, int> body);

/// <summary>
/// Per-target numeric "history statistics" (docs/quality.md): for every T token, counts and shares computed from the
/// H and R tokens of its own instance that the token may see under the spec §4 rule (every H token; an R token only
/// when strictly earlier), and from the instance's older events that a sequence's <see cref="SequenceSpec.StatisticsCap"/>
/// keeps beyond its H (<see cref="OlderHistory"/>: counted like H tokens, never tokenized). They give the T tokenizer
/// the user-specific evidence a tree model gets from causal count features (how often and how recently the user acted, how often on the candidate's own feature values, the spread
/// of the user's low-cardinality behaviour values such as ratings or feedback outcomes), which a pointwise attention
/// of one or two layers struggles to sum up on small data.
/// <para>
/// One definition for training and serving: <see cref="BatchBuilder"/> and the serving request encoder both call
/// <see cref="Fill"/> on the batch they built, so a T token's statistics depend only on what its instance shows it.
/// Nothing is read from outside the instance and no label of any T token is used, so the statistics are as causal as
/// the attention mask.
/// </para>
/// Columns per scenario s, for each behaviour sequence j (in schema order):
/// <list type="number">
/// <item>n = visible tokens of j: L(n), L(Σ e^(−Δt/1 h)), L(Σ e^(−Δt/1 d)), and the time since the latest one
/// (<c>log1p(Δt/60 s)/10</c>, 2 when there is none), with L(x) = log1p(x)/4 and Δt = the target's time minus the
/// token's;</item>
/// <item>for every categorical column of s whose embedding table j also carries ("same value"): the same four figures
/// over the visible tokens of j holding the candidate's value, the share m/(n+1) replacing L(Σ e^(−Δt/1 h));</item>
/// <item>for every other categorical column of j with at most <see cref="MaxLowCardinalityRows"/> table rows (ratings,
/// outcomes): per row v the share c_v/(n+1), and per same-value column the share of v among the same-value tokens
/// c_{same,v}/(m+1);</item>
/// <item>for every numeric column of j (already transformed with the training statistics, so 0 is the training mean):
/// its shrunk mean Σx/(n+1) over the visible tokens and Σx/(m+1) over each same-value set.</item>
/// </list>
/// </summary>
internal sealed class HistoryStatistics
{
    /// <summary>A sequence's categorical column with at most this many table rows contributes per-value shares.</summary>
    public const int MaxLowCardinalityRows = 16;

    private const double Hour = 3600, Day = 86400;

    private readonly DataLayout _l;
    private readonly ScenarioPlan[] _plans;

    private sealed record SequencePlan(int Sequence, (int TargetColumn, int SequenceColumn)[] Same, (int Column, int Rows)[] LowCard, int Numeric)
    {
        /// <summary>Statistics columns of this sequence.</summary>
        public int Width { get; } = 4 + 4 * Same.Length + LowCard.Sum(x => x.Rows * (1 + Same.Length)) + Numeric * (1 + Same.Length);
    }

    private sealed record ScenarioPlan(SequencePlan[] Sequences, int Width);

    /// <summary>Plans the columns of every scenario of <paramref name="layout"/>.</summary>
    public HistoryStatistics(DataLayout layout)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        _plans = new ScenarioPlan[layout.ScenarioCount];
        for (int s = 0; s < layout.ScenarioCount; s++)
        {
            var tTables = layout.Groups[layout.TargetGroup(s)].CategoricalTables;
            var seqs = new SequencePlan[layout.SequenceCount];
            int width = 0;
            for (int j = 0; j < layout.SequenceCount; j++)
            {
                var qTables = layout.Groups[layout.HistoryGroup(j)].CategoricalTables;
                var same = new List<(int, int)>();
                for (int a = 0; a < tTables.Length; a++)
                {
                    int b = Array.IndexOf(qTables, tTables[a]);
                    if (b >= 0) same.Add((a, b));
                }
                var low = new List<(int, int)>();
                for (int b = 0; b < qTables.Length; b++)
                {
                    int rows = layout.Tables[qTables[b]].Rows;
                    // A feedback sequence's absent row (DataLayout.AbsentRow) gets a share column but does not count
                    // against the limit, so adding it never takes a table's shares away.
                    int own = rows - (layout.TableHasAbsentRow(qTables[b]) ? 1 : 0);
                    if (own <= MaxLowCardinalityRows && !same.Exists(x => x.Item2 == b)) low.Add((b, rows));
                }
                seqs[j] = new SequencePlan(j, same.ToArray(), low.ToArray(), layout.Groups[layout.HistoryGroup(j)].NumericFeatures.Length);
                width += seqs[j].Width;
            }
            _plans[s] = new ScenarioPlan(seqs, width);
        }
    }

    /// <summary>Statistics columns of the T tokens of scenario <paramref name="scenario"/>.</summary>
    public int Width(int scenario) => _plans[scenario].Width;

    /// <summary>
    /// Writes the statistics of every T token of <paramref name="batch"/> into its group block's
    /// <see cref="GroupBlock.Statistics"/> (which must hold <see cref="Width"/> columns per row).
    /// </summary>
    /// <param name="batch">The batch.</param>
    /// <param name="parallel">Runs the instances in parallel ranges when given (the same values either way).</param>
    /// <param name="older">Per instance the events older than its H that the statistics also count (<see cref="SequenceSpec.StatisticsCap"/>), or null.</param>
    public void Fill(JaggedBatch batch, ParallelRanges? parallel = null, OlderHistory? older = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        for (int g = 0; g < batch.Blocks.Length; g++)
        {
            var gi = _l.Groups[g];
            if (gi.Segment != SegmentKind.Target || batch.Blocks[g].Rows == 0) continue;
            if (batch.Blocks[g].StatisticsWidth != _plans[gi.Source].Width)
                throw new ArgumentException($"group {gi.Name} has {batch.Blocks[g].StatisticsWidth} statistics columns, the plan {_plans[gi.Source].Width}.", nameof(batch));
        }
        // Instances are independent (each writes only its own T rows): a parallel fill is bit-identical to a serial one.
        if (older is not null && older.Offsets.Length != batch.InstanceCount + 1)
            throw new ArgumentException($"older history has {older.Offsets.Length - 1} instances, the batch {batch.InstanceCount}.", nameof(older));
        var ctx = new Context(batch, older);
        if (parallel is null || batch.InstanceCount < 2 * MinInstancesPerChunk) FillInstances(ctx, 0, batch.InstanceCount);
        else parallel(batch.InstanceCount, MinInstancesPerChunk, (s, e) => FillInstances(ctx, s, e));
    }

    /// <summary>Fewest instances a parallel chunk of <see cref="Fill"/> takes.</summary>
    private const int MinInstancesPerChunk = 8;

    private void FillInstances(Context ctx, int first, int end)
    {
        var batch = ctx.Batch;
        var older = ctx.Older;
        int nq = _l.SequenceCount;
        // Per sequence, the instance's context tokens of its H and R groups (in context order): the only tokens any
        // of its aggregates looks at.
        var seqTokens = new List<int>[nq];
        for (int j = 0; j < nq; j++) seqTokens[j] = [];
        // Candidates of one instance at one time see the same tokens: their aggregates are computed once per
        // (time, scenario, sequence), and each T token only picks the same-value parts of its own values.
        var groups = new Dictionary<(long Time, int Scenario), Aggregate[]>();
        var scratch = new Scratch();
        for (int i = first; i < end; i++)
        {
            int s0 = batch.Offsets[i], e0 = batch.Offsets[i + 1];
            groups.Clear();
            scratch.Reset();
            for (int j = 0; j < nq; j++) seqTokens[j].Clear();
            // Older events first (they precede every H token of their sequence), as entries −1 − e.
            if (older is not null)
                for (int e = older.Offsets[i]; e < older.Offsets[i + 1]; e++) seqTokens[older.Sequence[e]].Add(-1 - e);
            for (int t = s0; t < e0; t++)
            {
                if (batch.Segment[t] == (byte)SegmentKind.Target) continue;
                seqTokens[_l.Groups[batch.Group[t]].Source].Add(t);
            }
            for (int t = s0; t < e0; t++)
            {
                if (batch.Segment[t] != (byte)SegmentKind.Target) continue;
                int g = batch.Group[t];
                int scenario = _l.Groups[g].Source;
                var plan = _plans[scenario];
                var tb = batch.Blocks[g];
                if (plan.Width == 0) continue;
                long now = batch.Time[t];
                if (!groups.TryGetValue((now, scenario), out var aggs))
                {
                    aggs = new Aggregate[nq];
                    for (int j = 0; j < nq; j++) aggs[j] = Aggregate.Over(ctx, seqTokens[j], plan.Sequences[j], now, scratch);
                    groups[(now, scenario)] = aggs;
                }
                var outRow = tb.Statistics.AsSpan(batch.RowInGroup[t] * plan.Width, plan.Width);
                var tCat = tb.Categorical.AsSpan(batch.RowInGroup[t] * tb.CategoricalWidth, tb.CategoricalWidth);
                int col = 0;
                for (int j = 0; j < nq; j++)
                {
                    var sp = plan.Sequences[j];
                    int width = sp.Width;
                    Write(sp, aggs[j], tCat, now, outRow.Slice(col, width));
                    col += width;
                }
            }
        }
    }

    /// <summary>
    /// One sequence's sums over the tokens a T token at <c>now</c> sees: the parts that do not depend on the candidate
    /// (<see cref="Overall"/>) and, per same-value column a, the parts of the tokens holding each value
    /// (<see cref="TryGetSame"/>, summed on first request: only the values some candidate holds are summed). Every slot
    /// of the statistics vector belongs to exactly one of them and is summed over its tokens in context order, as a
    /// direct per-candidate loop would.
    /// </summary>
    private sealed class Aggregate
    {
        private readonly Context _ctx;
        private readonly SequencePlan _sp;
        private readonly Scratch _scratch;
        private readonly int[] _ints;       // _ints[_visible.._visible + _n): context tokens of the sequence visible at now, in context order
        private readonly double[] _doubles; // _doubles[_wd.._wd + _n): their e^(−Δt/1 d); _doubles[_overall.._overall + width): the overall sums
        private readonly int _visible, _wd, _overall, _n;
        private readonly (int[]? Array, int Offset)[] _sameValues; // per same-value column: where the visible tokens' values are (null until first use)

        public long Last { get; }

        /// <summary>The overall sums (the parts that do not depend on the candidate).</summary>
        public ReadOnlySpan<double> Overall => _doubles.AsSpan(_overall, _sp.Width);

        private Aggregate(Context ctx, SequencePlan sp, Scratch scratch, int[] ints, int visible, int n, double[] doubles, int wd, int overall, long last)
        {
            _ctx = ctx; _sp = sp; _scratch = scratch; _ints = ints; _visible = visible; _n = n;
            _doubles = doubles; _wd = wd; _overall = overall; Last = last;
            _sameValues = new (int[]?, int)[sp.Same.Length];
        }

        /// <summary>The sums over the tokens of <paramref name="tokens"/> (the sequence's H and R context tokens) visible at <paramref name="now"/>.</summary>
        public static Aggregate Over(Context ctx, List<int> tokens, SequencePlan sp, long now, Scratch scratch)
        {
            var batch = ctx.Batch;
            int width = sp.Width, lowOffset = 4 + 4 * sp.Same.Length;
            var (ints, vis) = scratch.Ints(tokens.Count);
            int n = 0;
            foreach (int k in tokens)
                if (k < 0 || batch.Segment[k] != (byte)SegmentKind.Realtime || batch.Time[k] < now) ints[vis + n++] = k;
            var (doubles, wdAt) = scratch.Doubles(n + width);
            int accAt = wdAt + n;
            var wd = doubles.AsSpan(wdAt, n);
            var acc = doubles.AsSpan(accAt, width);
            acc.Clear();
            // The decay weights of all visible tokens at once (vectorised exp; the sums below keep the context order).
            var wh = scratch.Temp(n);
            for (int i = 0; i < n; i++) wh[i] = -Math.Max(0, now - ctx.Time(ints[vis + i]));
            TensorPrimitives.Divide(wh, Day, wd);
            TensorPrimitives.Exp(wd, wd);
            TensorPrimitives.Divide(wh, Hour, wh);
            TensorPrimitives.Exp(wh, wh);
            long last = long.MinValue;
            acc[0] = n;
            for (int i = 0; i < n; i++)
            {
                int k = ints[vis + i];
                acc[1] += wh[i]; acc[2] += wd[i];
                last = Math.Max(last, ctx.Time(k));
                int p = lowOffset;
                if (sp.LowCard.Length > 0)
                {
                    var kCat = ctx.Categorical(k);
                    for (int c = 0; c < sp.LowCard.Length; c++)
                    {
                        var (qc, rows) = sp.LowCard[c];
                        acc[p + kCat[qc]] += 1;
                        p += rows * (1 + sp.Same.Length);
                    }
                }
                if (sp.Numeric > 0)
                {
                    var kNum = ctx.Numeric(k);
                    for (int c = 0; c < sp.Numeric; c++, p += 1 + sp.Same.Length) acc[p] += kNum[c];
                }
            }
            return new Aggregate(ctx, sp, scratch, ints, vis, n, doubles, wdAt, accAt, last);
        }

        /// <summary>
        /// The same-value part of column <paramref name="a"/> for value <paramref name="v"/> (summed on first request);
        /// false when no visible token holds it.
        /// </summary>
        public bool TryGetSame(int a, int v, out ReadOnlySpan<double> acc, out long last)
        {
            if (!_scratch.Same.TryGetValue((this, a, v), out var e))
            {
                e = Sum(a, v);
                _scratch.Same[(this, a, v)] = e;
            }
            last = e.Last;
            acc = e.Array is null ? default : e.Array.AsSpan(e.Offset, _sp.Width);
            return e.Array is not null;
        }

        private (double[]? Array, int Offset, long Last) Sum(int a, int v)
        {
            var sp = _sp;
            int lowOffset = 4 + 4 * sp.Same.Length, q = 4 + 4 * a;
            var values = SameValues(a);
            double[]? arr = null;
            int off = 0;
            long last = long.MinValue;
            for (int i = 0; i < values.Length; i++)
            {
                if (values[i] != v) continue;
                int k = _ints[_visible + i];
                if (arr is null)
                {
                    (arr, off) = _scratch.Doubles(sp.Width);
                    arr.AsSpan(off, sp.Width).Clear();
                }
                var vec = arr.AsSpan(off, sp.Width);
                last = Math.Max(last, _ctx.Time(k));
                int p = lowOffset;
                if (sp.LowCard.Length > 0)
                {
                    var kCat = _ctx.Categorical(k);
                    for (int c = 0; c < sp.LowCard.Length; c++)
                    {
                        var (qc, rows) = sp.LowCard[c];
                        vec[p + rows * (1 + a) + kCat[qc]] += 1;
                        p += rows * (1 + sp.Same.Length);
                    }
                }
                if (sp.Numeric > 0)
                {
                    var kNum = _ctx.Numeric(k);
                    for (int c = 0; c < sp.Numeric; c++, p += 1 + sp.Same.Length) vec[p + 1 + a] += kNum[c];
                }
                vec[q] += 1; vec[q + 2] += _doubles[_wd + i];
            }
            return (arr, off, last);
        }

        /// <summary>Same-value column <paramref name="a"/> (of the sequence's categorical rows) of every visible token, read on first use.</summary>
        private ReadOnlySpan<int> SameValues(int a)
        {
            if (_sameValues[a] is ({ } have, int at)) return have.AsSpan(at, _n);
            int column = _sp.Same[a].SequenceColumn;
            var (arr, off) = _scratch.Ints(_n);
            for (int i = 0; i < _n; i++) arr[off + i] = _ctx.Categorical(_ints[_visible + i])[column];
            _sameValues[a] = (arr, off);
            return arr.AsSpan(off, _n);
        }
    }

    /// <summary>
    /// The context tokens an aggregate reads: k ≥ 0 a token of the batch, k &lt; 0 entry −1 − k of the older history
    /// (statistics only, always visible: it precedes the window).
    /// </summary>
    private readonly struct Context(JaggedBatch batch, OlderHistory? older)
    {
        public JaggedBatch Batch { get; } = batch;
        public OlderHistory? Older { get; } = older;

        public long Time(int k) => k >= 0 ? Batch.Time[k] : Older!.Time[-1 - k];

        public ReadOnlySpan<int> Categorical(int k)
        {
            if (k < 0) { int e = -1 - k; return Older!.Categorical.AsSpan(Older.CategoricalAt[e], Older.CategoricalAt[e + 1] - Older.CategoricalAt[e]); }
            var kb = Batch.Blocks[Batch.Group[k]];
            return kb.Categorical.AsSpan(Batch.RowInGroup[k] * kb.CategoricalWidth, kb.CategoricalWidth);
        }

        public ReadOnlySpan<float> Numeric(int k)
        {
            if (k < 0) { int e = -1 - k; return Older!.Numeric.AsSpan(Older.NumericAt[e], Older.NumericAt[e + 1] - Older.NumericAt[e]); }
            var kb = Batch.Blocks[Batch.Group[k]];
            return kb.Numeric.AsSpan(Batch.RowInGroup[k] * kb.NumericWidth, kb.NumericWidth);
        }
    }

    /// <summary>
    /// Per-chunk working memory of <see cref="FillInstances"/>: bump regions that live until the instance ends (an
    /// aggregate's visible tokens, weights and sums), so an instance's aggregates cost no garbage. A region that no
    /// longer fits starts a larger array; the earlier ones stay valid for the aggregates that point into them.
    /// </summary>
    private sealed class Scratch
    {
        private int[] _ints = new int[1024];
        private double[] _doubles = new double[4096];
        private double[] _temp = new double[256];
        private int _intTop, _doubleTop;

        /// <summary>Same-value sums already computed, by (aggregate, column, value); Array null = no visible token holds the value.</summary>
        public Dictionary<(Aggregate Agg, int Column, int Value), (double[]? Array, int Offset, long Last)> Same { get; } = [];

        /// <summary>Forgets every region (the next instance).</summary>
        public void Reset() { _intTop = 0; _doubleTop = 0; Same.Clear(); }

        public (int[] Array, int Offset) Ints(int n)
        {
            if (_intTop + n > _ints.Length) { _ints = new int[Math.Max(2 * _ints.Length, n)]; _intTop = 0; }
            int at = _intTop;
            _intTop += n;
            return (_ints, at);
        }

        public (double[] Array, int Offset) Doubles(int n)
        {
            if (_doubleTop + n > _doubles.Length) { _doubles = new double[Math.Max(2 * _doubles.Length, n)]; _doubleTop = 0; }
            int at = _doubleTop;
            _doubleTop += n;
            return (_doubles, at);
        }

        /// <summary>A buffer of <paramref name="n"/> doubles valid until the next call.</summary>
        public Span<double> Temp(int n)
        {
            if (_temp.Length < n) _temp = new double[Math.Max(2 * _temp.Length, n)];
            return _temp.AsSpan(0, n);
        }
    }

    /// <summary>The statistics of one sequence for a T token with categorical rows <paramref name="tCat"/>.</summary>
    private static void Write(SequencePlan sp, Aggregate agg, ReadOnlySpan<int> tCat, long now, Span<float> o)
    {
        int width = o.Length, lowOffset = 4 + 4 * sp.Same.Length;
        Span<double> acc = width <= 256 ? stackalloc double[width] : new double[width];
        agg.Overall.CopyTo(acc);
        Span<long> last = stackalloc long[1 + sp.Same.Length];
        last[0] = agg.Last;
        for (int a = 0; a < sp.Same.Length; a++)
        {
            last[1 + a] = long.MinValue;
            if (!agg.TryGetSame(a, tCat[sp.Same[a].TargetColumn], out var sameAcc, out long sameLast)) continue;
            last[1 + a] = sameLast;
            for (int x = 0; x < width; x++) acc[x] += sameAcc[x]; // disjoint slots: exact
        }
        double n = acc[0];
        o[0] = L(n); o[1] = L(acc[1]); o[2] = L(acc[2]); o[3] = Since(now, last[0]);
        for (int a = 0; a < sp.Same.Length; a++)
        {
            int q = 4 + 4 * a;
            o[q] = L(acc[q]);
            o[q + 1] = (float)(acc[q] / (n + 1));
            o[q + 2] = L(acc[q + 2]);
            o[q + 3] = Since(now, last[1 + a]);
        }
        int p = lowOffset;
        for (int c = 0; c < sp.LowCard.Length; c++)
        {
            int rows = sp.LowCard[c].Rows;
            for (int v = 0; v < rows; v++) o[p + v] = (float)(acc[p + v] / (n + 1));
            p += rows;
            for (int a = 0; a < sp.Same.Length; a++, p += rows)
            {
                double m = acc[4 + 4 * a];
                for (int v = 0; v < rows; v++) o[p + v] = (float)(acc[p + v] / (m + 1));
            }
        }
        for (int c = 0; c < sp.Numeric; c++)
        {
            o[p] = (float)(acc[p] / (n + 1)); p++;
            for (int a = 0; a < sp.Same.Length; a++, p++) o[p] = (float)(acc[p] / (acc[4 + 4 * a] + 1));
        }
    }

    private static float L(double x) => (float)(Math.Log(1 + x) / 4);

    private static float Since(long now, long last) =>
        last == long.MinValue ? 2f : (float)(Math.Log(1 + Math.Max(0, now - last) / 60.0) / 10);
}

/// <summary>
/// Events older than an instance's H that only the history statistics count (<see cref="SequenceSpec.StatisticsCap"/>,
/// <see cref="HistorySelector.MergeOlder"/>), with their features encoded as an H token's; built by
/// <see cref="InstanceAssembly"/> for training and serving alike.
/// </summary>
internal sealed class OlderHistory
{
    /// <summary>Per instance i its entries [Offsets[i], Offsets[i + 1]).</summary>
    public int[] Offsets { get; init; } = [];
    /// <summary>Per entry its sequence.</summary>
    public int[] Sequence { get; init; } = [];
    /// <summary>Per entry its time.</summary>
    public long[] Time { get; init; } = [];
    /// <summary>Entry e's categorical rows are Categorical[CategoricalAt[e]..CategoricalAt[e + 1]).</summary>
    public int[] CategoricalAt { get; init; } = [];
    /// <summary>Entry e's encoded numeric values are Numeric[NumericAt[e]..NumericAt[e + 1]).</summary>
    public int[] NumericAt { get; init; } = [];
    /// <summary>Categorical table rows of every entry.</summary>
    public int[] Categorical { get; init; } = [];
    /// <summary>Encoded numeric values (transform and presence, as <see cref="NumericStats.EncodeToken"/> writes) of every entry.</summary>
    public float[] Numeric { get; init; } = [];
}
