using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Data;

/// <summary>
/// Cross-user ("population") statistics of T tokens (docs/quality.md): for every categorical column of a scenario's
/// exposures (item, category, shop, user, …), how often exposures holding the candidate's value were shown and clicked
/// by anyone, before the candidate's time. A per-user instance cannot hold this knowledge; a tree model on causal counts
/// gets it from one time-ordered pass over the whole log, and so does this class.
/// <para>
/// One state, two uses. In training and evaluation, <see cref="ForStore"/> runs the state over the log's exposures in
/// (time, event id) order, second by second, all reads of a second before its observations, so an exposure sees only
/// exposures of strictly earlier seconds (its own click and those of its page never). In serving, the state reached at
/// the end of the training log is saved in the checkpoint (IO.PopulationCheckpoint) and read at the request time; a host may add outcomes as they
/// come (<see cref="Observe"/>). The click is the first task's label; an exposure without it is not counted.
/// </para>
/// Columns per categorical column a of scenario s (4 each), from the counts of a's value v before time t:
/// L(E_v), L(E_v decayed), and the smoothed log-odds ratios lor(C_v, E_v) and lor(C_v decayed, E_v decayed), with
/// L(x) = log1p(x)/4, decay e^(−Δt/1 d), lor(c, e) = logit((c + k·p)/(e + k)) − logit(p), k = <see cref="PriorStrength"/>
/// and p = (C + 1)/(E + 2) the scenario's click rate so far.
/// </summary>
internal sealed class PopulationStatistics : IPopulationSource
{
    /// <summary>E-folding time of the decayed counts (one day).</summary>
    public const double DecaySeconds = 86400;

    /// <summary>Pseudo-exposures of the prior in the smoothed click rates.</summary>
    public const double PriorStrength = 10;

    /// <summary>Columns per categorical column.</summary>
    public const int ColumnsPerFeature = 4;

    private readonly DataLayout _l;
    private readonly Counts[][] _cols; // per scenario, per categorical column of its exposures
    private readonly double[] _scenExposures, _scenClicks;

    /// <summary>The counts of one (scenario, categorical column), dense over the column's table rows.</summary>
    internal sealed class Counts(int rows)
    {
        public readonly double[] Exposures = new double[rows], Clicks = new double[rows];
        public readonly double[] DecayedExposures = new double[rows], DecayedClicks = new double[rows];
        public readonly long[] Last = CreateLast(rows);

        private static long[] CreateLast(int rows)
        {
            var a = new long[rows];
            Array.Fill(a, long.MinValue);
            return a;
        }
    }

    /// <summary>An empty state for <paramref name="layout"/>.</summary>
    public PopulationStatistics(DataLayout layout)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        int ns = layout.ScenarioCount;
        _cols = new Counts[ns][];
        for (int s = 0; s < ns; s++)
        {
            var tables = layout.Groups[layout.TargetGroup(s)].CategoricalTables;
            _cols[s] = tables.Select(t => new Counts(layout.Tables[t].Rows)).ToArray();
        }
        _scenExposures = new double[ns];
        _scenClicks = new double[ns];
    }

    /// <summary>The layout the state is for.</summary>
    public DataLayout Layout => _l;

    /// <summary>Statistics columns of the T tokens of scenario <paramref name="scenario"/>.</summary>
    public int Width(int scenario) => ColumnsPerFeature * _cols[scenario].Length;

    /// <summary>
    /// Writes the columns of a T token of <paramref name="scenario"/> at <paramref name="time"/> whose categorical rows
    /// (the scenario's columns, in layout order) are <paramref name="rows"/>.
    /// </summary>
    public void Read(int scenario, ReadOnlySpan<int> rows, long time, Span<float> dst)
    {
        var cols = _cols[scenario];
        if (rows.Length != cols.Length) throw new ArgumentException($"{rows.Length} categorical rows for {cols.Length} columns.", nameof(rows));
        if (dst.Length != ColumnsPerFeature * cols.Length) throw new ArgumentException($"{dst.Length} columns for {ColumnsPerFeature * cols.Length}.", nameof(dst));
        double p = (_scenClicks[scenario] + 1) / (_scenExposures[scenario] + 2);
        double lp = Logit(p);
        for (int a = 0; a < cols.Length; a++)
        {
            var c = cols[a];
            int r = rows[a];
            double e = c.Exposures[r], k = c.Clicks[r];
            double w = Decay(time, c.Last[r]);
            double ed = c.DecayedExposures[r] * w, kd = c.DecayedClicks[r] * w;
            var o = dst.Slice(ColumnsPerFeature * a, ColumnsPerFeature);
            o[0] = L(e);
            o[1] = L(ed);
            o[2] = (float)(Logit((k + PriorStrength * p) / (e + PriorStrength)) - lp);
            o[3] = (float)(Logit((kd + PriorStrength * p) / (ed + PriorStrength)) - lp);
        }
    }

    /// <summary>Adds one exposure of <paramref name="scenario"/> at <paramref name="time"/> with its click outcome.</summary>
    public void Observe(int scenario, ReadOnlySpan<int> rows, long time, bool clicked)
    {
        var cols = _cols[scenario];
        if (rows.Length != cols.Length) throw new ArgumentException($"{rows.Length} categorical rows for {cols.Length} columns.", nameof(rows));
        double click = clicked ? 1 : 0;
        _scenExposures[scenario] += 1;
        _scenClicks[scenario] += click;
        for (int a = 0; a < cols.Length; a++)
        {
            var c = cols[a];
            int r = rows[a];
            double w = Decay(time, c.Last[r]);
            c.Exposures[r] += 1;
            c.Clicks[r] += click;
            c.DecayedExposures[r] = c.DecayedExposures[r] * w + 1;
            c.DecayedClicks[r] = c.DecayedClicks[r] * w + click;
            if (time > c.Last[r]) c.Last[r] = time;
        }
    }

    /// <summary>
    /// The columns of every exposure of <paramref name="store"/> (one time-ordered pass, see the class summary), with
    /// the state the pass ends in. Column block of exposure e: [<c>Offsets[e]</c>, <c>Offsets[e + 1]</c>).
    /// </summary>
    public static StoreColumns ForStore(EventStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        var state = new PopulationStatistics(store.Layout);
        var l = store.Layout;
        int ne = store.ExposureCount, tasks = l.TaskCount;
        var offsets = new long[ne + 1];
        var evOf = store.ExposureEvent.Items;
        for (int e = 0; e < ne; e++) offsets[e + 1] = offsets[e] + state.Width(store.SourceOf(evOf[e]));
        var values = new float[offsets[ne]];
        var order = new int[ne];
        var keys = new long[ne];
        for (int e = 0; e < ne; e++) { order[e] = e; keys[e] = store.TimeOf(evOf[e]); }
        Array.Sort(keys, order);
        // Array.Sort is not stable: restore exposure (= event id) order inside equal times.
        for (int a = 0; a < ne;)
        {
            int b = a;
            while (b + 1 < ne && keys[b + 1] == keys[a]) b++;
            if (b > a) Array.Sort(order, a, b - a + 1);
            a = b + 1;
        }
        var labels = store.Labels.Items;
        for (int g = 0; g < ne;)
        {
            int h = g;
            while (h + 1 < ne && keys[h + 1] == keys[g]) h++;
            for (int i = g; i <= h; i++)
            {
                int e = order[i], ev = evOf[e];
                state.Read(store.SourceOf(ev), store.Categorical(ev), keys[i], values.AsSpan((int)offsets[e], (int)(offsets[e + 1] - offsets[e])));
            }
            for (int i = g; i <= h; i++)
            {
                int e = order[i], ev = evOf[e];
                byte label = tasks > 0 ? labels[e * tasks] : (byte)255;
                if (label != 255) state.Observe(store.SourceOf(ev), store.Categorical(ev), keys[i], label == 1);
            }
            g = h + 1;
        }
        return new StoreColumns(store, values, offsets, state);
    }

    /// <summary>The per-exposure columns of one store and the state its pass ended in.</summary>
    internal sealed class StoreColumns(EventStore store, float[] values, long[] offsets, PopulationStatistics finalState) : IPopulationSource
    {
        /// <summary>The state after the last exposure of the store.</summary>
        public PopulationStatistics FinalState => finalState;

        /// <summary>The columns of exposure <paramref name="exposure"/>.</summary>
        public ReadOnlySpan<float> Of(int exposure) => values.AsSpan((int)offsets[exposure], (int)(offsets[exposure + 1] - offsets[exposure]));

        public int Width(int scenario) => finalState.Width(scenario);

        /// <summary>Copies the columns the pass computed for the exposure event <paramref name="source"/>.</summary>
        public void Write(int scenario, int source, ReadOnlySpan<int> categorical, long time, Span<float> dst)
        {
            int e = store.ExposureIndexOf(source);
            if (e < 0) throw new ArgumentException($"event {source} is not an exposure.", nameof(source));
            Of(e).CopyTo(dst);
        }
    }

    /// <summary>Reads the state at the token's time (serving: the state saved with the model).</summary>
    void IPopulationSource.Write(int scenario, int source, ReadOnlySpan<int> categorical, long time, Span<float> dst) =>
        Read(scenario, categorical, time, dst);

    /// <summary>Categorical columns of scenario <paramref name="scenario"/> (the state holds one <see cref="Counts"/> each).</summary>
    internal int ColumnCount(int scenario) => _cols[scenario].Length;

    /// <summary>The counts of column <paramref name="column"/> of scenario <paramref name="scenario"/> (checkpoint IO).</summary>
    internal Counts Column(int scenario, int column) => _cols[scenario][column];

    /// <summary>Counted exposures and clicks of <paramref name="scenario"/>, the prior's evidence (checkpoint IO).</summary>
    internal (double Exposures, double Clicks) ScenarioTotals(int scenario) => (_scenExposures[scenario], _scenClicks[scenario]);

    internal void SetScenarioTotals(int scenario, double exposures, double clicks)
    {
        _scenExposures[scenario] = exposures;
        _scenClicks[scenario] = clicks;
    }

    private static readonly ConditionalWeakTable<EventStore, StoreColumns> s_perStore = new();

    /// <summary><see cref="ForStore"/>, computed once per store (train, validation and test parts share their store).</summary>
    public static StoreColumns CachedForStore(EventStore store) => s_perStore.GetValue(store, ForStore);

    private static double Decay(long now, long last) =>
        last == long.MinValue ? 0 : Math.Exp(-Math.Max(0, now - last) / DecaySeconds);

    private static double Logit(double p) => Math.Log(p / (1 - p));

    private static float L(double x) => (float)(Math.Log(1 + x) / 4);
}

/// <summary>Where a batch's T tokens get their <see cref="PopulationStatistics"/> columns from.</summary>
internal interface IPopulationSource
{
    /// <summary>Columns of the T tokens of <paramref name="scenario"/>.</summary>
    int Width(int scenario);

    /// <summary>Writes the columns of a T token (its source id, categorical rows and time) into <paramref name="dst"/>.</summary>
    void Write(int scenario, int source, ReadOnlySpan<int> categorical, long time, Span<float> dst);
}
