using System.Runtime.CompilerServices;

namespace Mtfm.Engine.Data;

/// <summary>
/// Cross-user ("population") statistics of T tokens (docs/quality.md): for every categorical column of a scenario's
/// exposures (item, category, shop, user, …), how often exposures holding the candidate's value were shown and clicked
/// by anyone, in this scenario and in all scenarios together, and how often anyone acted on that value in a behaviour
/// sequence, before the candidate's time. A per-user instance cannot hold this knowledge; a tree model on causal counts
/// gets it from one time-ordered pass over the whole log, and so does this class.
/// <para>
/// One state, two uses. In training and evaluation, <see cref="ForStore"/> runs the state over the log's events in
/// (time, event id) order, second by second, all reads of a second before its observations, so an exposure sees only
/// events of strictly earlier seconds (its own click, its page's clicks and same-second behaviours never). In serving,
/// the state reached at the end of the training log is saved in the checkpoint (IO.PopulationCheckpoint) and read at
/// the request time; a host may add events as they come (<see cref="Observe"/>, <see cref="ObserveBehaviour"/>). The
/// click is the first task's label; an exposure without it is not counted.
/// </para>
/// Columns per categorical column a (table t) of scenario s (<see cref="ColumnsPerFeature"/> each), from the events
/// holding a's value v before time t:
/// <list type="number">
/// <item>exposures of s: L(E), L(E decayed), lor(C, E), lor(C decayed, E decayed) against p_s, the click rate of s so far;</item>
/// <item>exposures of every scenario whose column uses table t: the same four against p, the click rate of all scenarios;</item>
/// <item>behaviour events of every sequence with a column of table t: L(B), L(B decayed).</item>
/// </list>
/// L(x) = log1p(x)/4, decay e^(−Δt/1 d), lor(c, e) = logit((c + k·p)/(e + k)) − logit(p), k = <see cref="PriorStrength"/>,
/// p = (C + 1)/(E + 2). The decayed lor of a column of the scenario's <c>userFeatures</c> (the user's own last-day click
/// rate, in s and in all scenarios) takes k = <see cref="UserRecentPrior"/> instead (Model.MtfmConfig.UserRecentRatePrior).
/// <para>
/// With <see cref="UserRatesAtWindowStart"/> (Model.MtfmConfig.UserRatesAtWindowStart) the first eight columns of a
/// <c>userFeatures</c> column count only the events of windows before the token's own (schema <c>windowSeconds</c>,
/// the windows instances are cut by; decayed to the token's time), so every exposure of one user in one window reads
/// the same user figures, whatever the outcomes of that window's earlier exposures; p stays the running rate. The
/// state keeps, per row of such a column, its counts as they were when the row's current window began (a snapshot
/// taken at the row's first event of a window), so serving reads the same rule.
/// </para>
/// </summary>
internal sealed class PopulationStatistics : IPopulationSource
{
    /// <summary>E-folding time of the decayed counts (one day).</summary>
    public const double DecaySeconds = 86400;

    /// <summary>Pseudo-exposures of the prior in the smoothed click rates.</summary>
    public const double PriorStrength = 10;

    /// <summary>Columns per categorical column.</summary>
    public const int ColumnsPerFeature = 10;

    private readonly DataLayout _l;
    private readonly Counts[][] _cols; // per scenario, per categorical column of its exposures
    private readonly int[][] _colTable; // per scenario, per categorical column: its embedding table
    private readonly Counts?[] _tableExposures, _tableBehaviours; // per embedding table used by some T column, else null
    private readonly int[][] _seqTables; // per sequence: its categorical columns' tables
    private readonly double[] _scenExposures, _scenClicks;
    private double _allExposures, _allClicks;
    private readonly bool[][] _isUser; // per scenario, per categorical column: a userFeatures column

    /// <summary>The counts of one (scenario, categorical column), dense over the column's table rows.</summary>
    internal sealed class Counts(int rows)
    {
        public readonly double[] Exposures = new double[rows], Clicks = new double[rows];
        public readonly double[] DecayedExposures = new double[rows], DecayedClicks = new double[rows];
        public readonly long[] Last = CreateLast(rows);

        /// <summary>The counts of each row at the start of the window it last changed in (null unless a user column reads them).</summary>
        public WindowStartCounts? AtWindowStart;

        /// <summary>Row <paramref name="r"/> of <paramref name="from"/> copied into this one.</summary>
        public void CopyRow(Counts from, int r)
        {
            Exposures[r] = from.Exposures[r];
            Clicks[r] = from.Clicks[r];
            DecayedExposures[r] = from.DecayedExposures[r];
            DecayedClicks[r] = from.DecayedClicks[r];
            Last[r] = from.Last[r];
        }

        internal static long[] CreateLast(int rows)
        {
            var a = new long[rows];
            Array.Fill(a, long.MinValue);
            return a;
        }
    }

    /// <summary>
    /// The counts of every row as they stood before the first event of the window it last changed in
    /// (<see cref="Start"/>); <see cref="Window"/>[r] is that window's index (long.MinValue before any event).
    /// </summary>
    internal sealed class WindowStartCounts(int rows)
    {
        public readonly Counts Start = new(rows);
        public readonly long[] Window = Counts.CreateLast(rows);
    }

    /// <summary>
    /// An empty state for <paramref name="layout"/>, reading the user columns' decayed rates with prior
    /// <paramref name="userRecentPrior"/>, and their counts as at the start of the token's window when
    /// <paramref name="userRatesAtWindowStart"/> (see the class summary).
    /// </summary>
    public PopulationStatistics(DataLayout layout, double userRecentPrior = PriorStrength, bool userRatesAtWindowStart = false)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        if (!double.IsFinite(userRecentPrior) || userRecentPrior <= 0)
            throw new ArgumentOutOfRangeException(nameof(userRecentPrior), userRecentPrior, "must be a finite number > 0.");
        UserRecentPrior = userRecentPrior;
        int ns = layout.ScenarioCount;
        _cols = new Counts[ns][];
        _colTable = new int[ns][];
        _tableExposures = new Counts?[layout.Tables.Count];
        _tableBehaviours = new Counts?[layout.Tables.Count];
        for (int s = 0; s < ns; s++)
        {
            var tables = layout.Groups[layout.TargetGroup(s)].CategoricalTables;
            _colTable[s] = tables;
            _cols[s] = tables.Select(t => new Counts(layout.Tables[t].Rows)).ToArray();
            foreach (int t in tables)
            {
                _tableExposures[t] ??= new Counts(layout.Tables[t].Rows);
                _tableBehaviours[t] ??= new Counts(layout.Tables[t].Rows);
            }
        }
        _seqTables = Enumerable.Range(0, layout.SequenceCount).Select(j => layout.Groups[layout.HistoryGroup(j)].CategoricalTables).ToArray();
        _scenExposures = new double[ns];
        _scenClicks = new double[ns];
        _isUser = new bool[ns][];
        for (int s = 0; s < ns; s++)
        {
            var users = layout.Schema.Scenarios[s].UserFeatures;
            _isUser[s] = layout.SourceCat[s].Select(f => users.Contains(layout.Schema.Features[f].Name)).ToArray();
        }
        _windows = WindowSpec.From(layout.Schema);
        UserRatesAtWindowStart = userRatesAtWindowStart;
        if (userRatesAtWindowStart)
            for (int s = 0; s < ns; s++)
                for (int a = 0; a < _isUser[s].Length; a++)
                    if (_isUser[s][a])
                    {
                        EnableWindowStart(_cols[s][a]);
                        EnableWindowStart(_tableExposures[_colTable[s][a]]!);
                    }
    }

    private static void EnableWindowStart(Counts c) => c.AtWindowStart ??= new WindowStartCounts(c.Last.Length);

    private readonly WindowSpec _windows;

    /// <summary>Whether the user columns count only earlier windows (<see cref="Model.MtfmConfig.UserRatesAtWindowStart"/>).</summary>
    public bool UserRatesAtWindowStart { get; }

    /// <summary>Whether this state reads with <paramref name="userRecentPrior"/> and <paramref name="userRatesAtWindowStart"/>.</summary>
    public bool ReadsWith(double userRecentPrior, bool userRatesAtWindowStart) =>
        UserRecentPrior == userRecentPrior && UserRatesAtWindowStart == userRatesAtWindowStart;

    /// <summary>The reading rules in words, for error messages.</summary>
    public string RulesText => Rules(UserRecentPrior, UserRatesAtWindowStart);

    /// <summary>Reading rules in words: the recent-rate prior and whether user columns count earlier windows only.</summary>
    public static string Rules(double userRecentPrior, bool userRatesAtWindowStart) =>
        $"user recent-rate prior {userRecentPrior.ToString(System.Globalization.CultureInfo.InvariantCulture)}, user rates at window start {(userRatesAtWindowStart ? "on" : "off")}";

    /// <summary>Prior of the decayed click rates of the user columns (<see cref="Model.MtfmConfig.UserRecentRatePrior"/>).</summary>
    public double UserRecentPrior { get; }

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
        double pAll = (_allClicks + 1) / (_allExposures + 2);
        for (int a = 0; a < cols.Length; a++)
        {
            int r = rows[a], t = _colTable[scenario][a];
            var o = dst.Slice(ColumnsPerFeature * a, ColumnsPerFeature);
            bool user = _isUser[scenario][a];
            double recentPrior = user ? UserRecentPrior : PriorStrength;
            long window = user && UserRatesAtWindowStart ? _windows.IndexOf(time) : long.MinValue;
            ReadExposures(cols[a], r, time, window, p, recentPrior, o[..4]);
            ReadExposures(_tableExposures[t]!, r, time, window, pAll, recentPrior, o.Slice(4, 4));
            var b = _tableBehaviours[t]!;
            o[8] = L(b.Exposures[r]);
            o[9] = L(b.DecayedExposures[r] * Decay(time, b.Last[r]));
        }
    }

    /// <summary>
    /// The four exposure columns of row <paramref name="r"/>; with <paramref name="window"/> ≠ long.MinValue, from the
    /// counts before that window when the row has changed in it (otherwise its counts are those already).
    /// </summary>
    private static void ReadExposures(Counts c, int r, long time, long window, double p, double recentPrior, Span<float> o)
    {
        if (window != long.MinValue && c.AtWindowStart!.Window[r] == window) c = c.AtWindowStart.Start;
        double e = c.Exposures[r], k = c.Clicks[r];
        double w = Decay(time, c.Last[r]);
        double ed = c.DecayedExposures[r] * w, kd = c.DecayedClicks[r] * w;
        double lp = Logit(p);
        o[0] = L(e);
        o[1] = L(ed);
        o[2] = (float)(Logit((k + PriorStrength * p) / (e + PriorStrength)) - lp);
        o[3] = (float)(Logit((kd + recentPrior * p) / (ed + recentPrior)) - lp);
    }

    /// <summary>Adds one exposure of <paramref name="scenario"/> at <paramref name="time"/> with its click outcome.</summary>
    public void Observe(int scenario, ReadOnlySpan<int> rows, long time, bool clicked)
    {
        var cols = _cols[scenario];
        if (rows.Length != cols.Length) throw new ArgumentException($"{rows.Length} categorical rows for {cols.Length} columns.", nameof(rows));
        double click = clicked ? 1 : 0;
        _scenExposures[scenario] += 1;
        _scenClicks[scenario] += click;
        _allExposures += 1;
        _allClicks += click;
        for (int a = 0; a < cols.Length; a++)
        {
            Add(cols[a], rows[a], time, click, _windows);
            Add(_tableExposures[_colTable[scenario][a]]!, rows[a], time, click, _windows);
        }
    }

    /// <summary>Adds one behaviour event of sequence <paramref name="sequence"/> (its categorical rows in layout order) at <paramref name="time"/>.</summary>
    public void ObserveBehaviour(int sequence, ReadOnlySpan<int> rows, long time)
    {
        var tables = _seqTables[sequence];
        if (rows.Length != tables.Length) throw new ArgumentException($"{rows.Length} categorical rows for {tables.Length} columns.", nameof(rows));
        for (int a = 0; a < tables.Length; a++)
            if (_tableBehaviours[tables[a]] is { } b) Add(b, rows[a], time, 0, _windows);
    }

    private static void Add(Counts c, int r, long time, double click, WindowSpec windows)
    {
        if (c.AtWindowStart is { } s)
        {
            long window = windows.IndexOf(time);
            if (s.Window[r] != window)
            {
                // The row's first event of this window: keep the counts it starts the window with.
                s.Window[r] = window;
                s.Start.CopyRow(c, r);
            }
        }
        double w = Decay(time, c.Last[r]);
        c.Exposures[r] += 1;
        c.Clicks[r] += click;
        c.DecayedExposures[r] = c.DecayedExposures[r] * w + 1;
        c.DecayedClicks[r] = c.DecayedClicks[r] * w + click;
        if (time > c.Last[r]) c.Last[r] = time;
    }

    /// <summary>
    /// The columns of every exposure of <paramref name="store"/> (one time-ordered pass, see the class summary), with
    /// the state the pass ends in. Column block of exposure e: [<c>Offsets[e]</c>, <c>Offsets[e + 1]</c>).
    /// </summary>
    public static StoreColumns ForStore(EventStore store, double userRecentPrior = PriorStrength, bool userRatesAtWindowStart = false)
    {
        ArgumentNullException.ThrowIfNull(store);
        var state = new PopulationStatistics(store.Layout, userRecentPrior, userRatesAtWindowStart);
        var l = store.Layout;
        int ne = store.ExposureCount, tasks = l.TaskCount;
        var offsets = new long[ne + 1];
        var evOf = store.ExposureEvent.Items;
        for (int e = 0; e < ne; e++) offsets[e + 1] = offsets[e] + state.Width(store.SourceOf(evOf[e]));
        var values = new float[offsets[ne]];
        int n = store.Count, ns = l.ScenarioCount;
        var order = new int[n];
        var keys = new long[n];
        for (int i = 0; i < n; i++) { order[i] = i; keys[i] = store.TimeOf(i); }
        Array.Sort(keys, order);
        // Array.Sort is not stable: restore event-id order inside equal times.
        for (int a = 0; a < n;)
        {
            int b = a;
            while (b + 1 < n && keys[b + 1] == keys[a]) b++;
            if (b > a) Array.Sort(order, a, b - a + 1);
            a = b + 1;
        }
        var labels = store.Labels.Items;
        for (int g = 0; g < n;)
        {
            int h = g;
            while (h + 1 < n && keys[h + 1] == keys[g]) h++;
            for (int i = g; i <= h; i++)
            {
                int ev = order[i], e = store.ExposureIndexOf(ev);
                if (e >= 0) state.Read(store.SourceOf(ev), store.Categorical(ev), keys[i], values.AsSpan((int)offsets[e], (int)(offsets[e + 1] - offsets[e])));
            }
            for (int i = g; i <= h; i++)
            {
                int ev = order[i], e = store.ExposureIndexOf(ev), src = store.SourceOf(ev);
                if (e < 0) { state.ObserveBehaviour(src - ns, store.Categorical(ev), keys[i]); continue; }
                byte label = tasks > 0 ? labels[e * tasks] : (byte)255;
                if (label != 255) state.Observe(src, store.Categorical(ev), keys[i], label == 1);
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

        /// <summary>Bytes the columns of every exposure hold (data-side memory, not part of <see cref="Training.MemoryEstimate"/>).</summary>
        public long Bytes => values.LongLength * sizeof(float) + offsets.LongLength * sizeof(long);

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

    /// <summary>The all-scenario exposure counts (<see cref="Counts"/>) and behaviour counts (its Exposures and decayed figures) of table <paramref name="table"/>, or nulls when no T column uses it (checkpoint IO).</summary>
    internal (Counts? Exposures, Counts? Behaviours) TableCounts(int table) => (_tableExposures[table], _tableBehaviours[table]);

    /// <summary>Counted exposures and clicks of all scenarios (checkpoint IO).</summary>
    internal (double Exposures, double Clicks) AllTotals
    {
        get => (_allExposures, _allClicks);
        set => (_allExposures, _allClicks) = value;
    }

    /// <summary>Counted exposures and clicks of <paramref name="scenario"/>, the prior's evidence (checkpoint IO).</summary>
    internal (double Exposures, double Clicks) ScenarioTotals(int scenario) => (_scenExposures[scenario], _scenClicks[scenario]);

    internal void SetScenarioTotals(int scenario, double exposures, double clicks)
    {
        _scenExposures[scenario] = exposures;
        _scenClicks[scenario] = clicks;
    }

    private static readonly ConditionalWeakTable<EventStore, Dictionary<(double, bool), StoreColumns>> s_perStore = new();

    /// <summary><see cref="ForStore"/>, computed once per store and reading rules (train, validation and test parts share their store).</summary>
    public static StoreColumns CachedForStore(EventStore store, double userRecentPrior, bool userRatesAtWindowStart = false)
    {
        var perRules = s_perStore.GetValue(store, _ => []);
        lock (perRules)
        {
            var key = (userRecentPrior, userRatesAtWindowStart);
            if (!perRules.TryGetValue(key, out var c)) perRules[key] = c = ForStore(store, userRecentPrior, userRatesAtWindowStart);
            return c;
        }
    }

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
