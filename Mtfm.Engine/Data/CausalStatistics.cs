using System.Globalization;

namespace Mtfm.Engine.Data;

/// <summary>Settings of <see cref="CausalStatistics"/>.</summary>
internal sealed record CausalStatisticsOptions
{
    /// <summary>E-folding time in seconds of the decayed exposure and click counts (default one day).</summary>
    public double DecaySeconds { get; init; } = 86400;
    /// <summary>E-folding time in seconds of the short recency-weighted behaviour sum (default one hour).</summary>
    public double RecencySeconds { get; init; } = 3600;
    /// <summary>Strength (pseudo-exposures) of the prior in the smoothed CTRs; the prior is the scenario's CTR so far.</summary>
    public double PriorStrength { get; init; } = 10;
    /// <summary>
    /// Test-only leak: behaviour events of an exposure's own second become visible to it (they never are in a causal
    /// pass). Leak tests use it to check that a model fed such features beats the Bayes AUC.
    /// </summary>
    internal bool LeakSameSecond { get; init; }
}

/// <summary>
/// Causal statistics features for every exposure, computed in one time-ordered pass over an <see cref="EventStore"/>
/// from events strictly before the exposure's second (events of the same second, its own click included, are never
/// visible; a click label becomes visible at the exposure's second + 1). Per exposure: the scenario, its raw numeric
/// features and low-cardinality categorical rows; per user: past exposures, clicks, smoothed CTR, exponentially decayed
/// versions, behaviour count and the time since the last behaviour and exposure; per exposure feature value (a
/// categorical feature of the scenario that is not one of its user features) and per user × value: the same counts,
/// plus (user × value) the recency-weighted sums of the user's behaviour events carrying the same value (same embedding
/// table and row) and the time since the last one. Missing entries are NaN.
/// <para>
/// Incremental: <see cref="Write"/> reads the features of one exposure from the state and <see cref="Observe"/> adds one
/// event; <see cref="Compute"/> runs them in (time, event id) order, second by second, all writes of a second before
/// its observations. Framework-free and deterministic.
/// </para>
/// </summary>
internal sealed class CausalStatistics
{
    private const int LowCardinality = 64;
    private readonly DataLayout _l;
    private readonly CausalStatisticsOptions _o;
    private readonly int[] _numCol, _lowCatCol, _valueCol; // per schema feature: first column, or −1
    private readonly bool[] _isUserFeature;
    private readonly string[] _names;
    private readonly List<Counter> _users = [];
    private readonly List<Counter> _values = [];
    private readonly List<Counter> _userValues = [];
    private readonly Dictionary<long, int> _valueIndex = [];
    private readonly Dictionary<long, int> _userValueIndex = [];
    private readonly double[] _scenExp, _scenClk;

    /// <summary>Creates an empty state for <paramref name="layout"/>.</summary>
    public CausalStatistics(DataLayout layout, CausalStatisticsOptions? options = null)
    {
        _l = layout ?? throw new ArgumentNullException(nameof(layout));
        _o = options ?? new CausalStatisticsOptions();
        var s = layout.Schema;
        int nf = s.Features.Count;
        _numCol = new int[nf]; _lowCatCol = new int[nf]; _valueCol = new int[nf]; _isUserFeature = new bool[nf];
        Array.Fill(_numCol, -1); Array.Fill(_lowCatCol, -1); Array.Fill(_valueCol, -1);
        var inScenario = new bool[nf];
        for (int sc = 0; sc < layout.ScenarioCount; sc++)
        {
            foreach (int f in layout.SourceCat[sc]) inScenario[f] = true;
            foreach (int f in layout.SourceNum[sc]) inScenario[f] = true;
            foreach (var name in s.Scenarios[sc].UserFeatures) _isUserFeature[s.Features.FindIndex(x => x.Name == name)] = true;
        }
        var names = new List<string> { "scenario" };
        names.AddRange(["user.exposures", "user.clicks", "user.ctr", "user.decayed_exposures", "user.decayed_clicks", "user.decayed_ctr",
            "user.behaviours", "user.log_seconds_since_behaviour", "user.log_seconds_since_exposure"]);
        for (int f = 0; f < nf; f++)
        {
            if (!inScenario[f]) continue;
            string n = s.Features[f].Name;
            int table = layout.FeatureTable[f];
            if (table < 0) { _numCol[f] = names.Count; names.Add(n + ".value"); continue; }
            if (layout.Tables[table].Rows <= LowCardinality) { _lowCatCol[f] = names.Count; names.Add(n + ".row"); }
            if (_isUserFeature[f]) continue;
            _valueCol[f] = names.Count;
            names.AddRange([n + ".exposures", n + ".clicks", n + ".ctr", n + ".decayed_ctr",
                "user×" + n + ".exposures", "user×" + n + ".clicks", "user×" + n + ".ctr", "user×" + n + ".decayed_ctr",
                "user×" + n + ".behaviour_recency", "user×" + n + ".behaviour_decayed", "user×" + n + ".log_seconds_since_behaviour"]);
        }
        _names = names.ToArray();
        _scenExp = new double[layout.ScenarioCount]; _scenClk = new double[layout.ScenarioCount];
    }

    /// <summary>Column names, in order.</summary>
    public IReadOnlyList<string> FeatureNames => _names;
    /// <summary>Number of columns per exposure.</summary>
    public int FeatureCount => _names.Length;

    /// <summary>
    /// Computes the features of every exposure of <paramref name="store"/> in one pass ([exposure index, column],
    /// row-major; exposure index = order of insertion, as <see cref="EventStore"/> numbers exposures).
    /// </summary>
    public static float[] Compute(EventStore store, CausalStatisticsOptions? options, out CausalStatistics state)
    {
        ArgumentNullException.ThrowIfNull(store);
        state = new CausalStatistics(store.Layout, options);
        int n = store.Count, w = state.FeatureCount;
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var time = store.Time.Items;
        bool sorted = true;
        for (int i = 1; i < n && sorted; i++) sorted = time[i] >= time[i - 1];
        if (!sorted)
        {
            var keys = new long[n];
            Array.Copy(time, keys, n);
            Array.Sort(keys, order); // not stable: restore event-id order inside equal times below
            int a = 0;
            while (a < n)
            {
                int b = a;
                while (b + 1 < n && keys[b + 1] == keys[a]) b++;
                if (b > a) Array.Sort(order, a, b - a + 1);
                a = b + 1;
            }
        }
        var features = new float[(long)store.ExposureCount * w];
        bool leak = state._o.LeakSameSecond;
        int g = 0;
        while (g < n)
        {
            int h = g;
            while (h + 1 < n && time[order[h + 1]] == time[order[g]]) h++;
            if (leak)
                for (int k = g; k <= h; k++) if (!store.IsExposure(order[k])) state.Observe(store, order[k]);
            for (int k = g; k <= h; k++)
            {
                int ev = order[k];
                if (store.IsExposure(ev)) state.Write(store, ev, features.AsSpan(store.ExposureIndex.Items[ev] * w, w));
            }
            for (int k = g; k <= h; k++)
                if (!leak || store.IsExposure(order[k])) state.Observe(store, order[k]);
            g = h + 1;
        }
        return features;
    }

    /// <summary>Writes the features of exposure event <paramref name="eventId"/> from the current state into <paramref name="dst"/>.</summary>
    public void Write(EventStore store, int eventId, Span<float> dst)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (!store.IsExposure(eventId)) throw new ArgumentException($"event {eventId} is not an exposure", nameof(eventId));
        if (dst.Length != FeatureCount) throw new ArgumentException($"dst has {dst.Length} entries, expected {FeatureCount}.", nameof(dst));
        dst.Fill(float.NaN);
        int sc = store.SourceOf(eventId), user = store.UserOf(eventId);
        long t = store.TimeOf(eventId);
        double prior = (_scenClk[sc] + 1) / (_scenExp[sc] + 2);
        dst[0] = sc;
        var u = UserCounter(user);
        WriteCounts(u, t, prior, dst.Slice(1, 6));
        dst[7] = (float)u.Behaviours;
        if (u.LastBehaviour != long.MinValue) dst[8] = (float)Math.Log(1 + (t - u.LastBehaviour));
        if (u.LastExposure != long.MinValue) dst[9] = (float)Math.Log(1 + (t - u.LastExposure));
        var num = _l.SourceNum[sc]; var numV = store.Numeric(eventId);
        for (int k = 0; k < num.Length; k++) if (_numCol[num[k]] >= 0) dst[_numCol[num[k]]] = numV[k];
        var cat = _l.SourceCat[sc]; var rows = store.Categorical(eventId);
        Span<float> tmp = stackalloc float[6];
        for (int k = 0; k < cat.Length; k++)
        {
            int f = cat[k];
            if (_lowCatCol[f] >= 0) dst[_lowCatCol[f]] = rows[k];
            int c0 = _valueCol[f];
            if (c0 < 0) continue;
            long vk = ValueKey(_l.FeatureTable[f], rows[k]);
            if (_valueIndex.TryGetValue(vk, out int vi))
            {
                WriteCounts(_values[vi], t, prior, tmp);
                dst[c0] = tmp[0]; dst[c0 + 1] = tmp[1]; dst[c0 + 2] = tmp[2]; dst[c0 + 3] = tmp[5];
                if (_userValueIndex.TryGetValue(UserValueKey(user, vi), out int uvi))
                {
                    var uv = _userValues[uvi];
                    WriteCounts(uv, t, dst[c0 + 2], tmp); // shrink towards the value's CTR
                    dst[c0 + 4] = tmp[0]; dst[c0 + 5] = tmp[1]; dst[c0 + 6] = tmp[2]; dst[c0 + 7] = tmp[5];
                    if (uv.LastBehaviour != long.MinValue)
                    {
                        double dt = t - uv.LastBehaviour;
                        dst[c0 + 8] = (float)(uv.Recency * Math.Exp(-dt / _o.RecencySeconds));
                        dst[c0 + 9] = (float)(uv.BehaviourDecayed * Math.Exp(-dt / _o.DecaySeconds));
                        dst[c0 + 10] = (float)Math.Log(1 + dt);
                    }
                    else { dst[c0 + 8] = 0; dst[c0 + 9] = 0; }
                }
                else WriteEmptyUserValue(dst, c0, dst[c0 + 2]);
            }
            else
            {
                dst[c0] = 0; dst[c0 + 1] = 0; dst[c0 + 2] = (float)prior; dst[c0 + 3] = (float)prior;
                WriteEmptyUserValue(dst, c0, (float)prior);
            }
        }
    }

    private static void WriteEmptyUserValue(Span<float> dst, int c0, float prior)
    {
        dst[c0 + 4] = 0; dst[c0 + 5] = 0; dst[c0 + 6] = prior; dst[c0 + 7] = prior; dst[c0 + 8] = 0; dst[c0 + 9] = 0;
    }

    /// <summary>
    /// Adds event <paramref name="eventId"/> to the state: an exposure adds its exposure and click (task 0 label, where
    /// present) to its user, values and user × values; a behaviour event adds to its user's behaviour count and to the
    /// user × value behaviour sums of each of its categorical values. Call in (time, event id) order, after every
    /// <see cref="Write"/> of the same second.
    /// </summary>
    public void Observe(EventStore store, int eventId)
    {
        ArgumentNullException.ThrowIfNull(store);
        int src = store.SourceOf(eventId), user = store.UserOf(eventId);
        long t = store.TimeOf(eventId);
        var u = UserCounter(user);
        var cat = _l.SourceCat[src]; var rows = store.Categorical(eventId);
        if (store.IsExposure(eventId))
        {
            u.LastExposure = t;
            int lb = store.Label(eventId, 0);
            if (lb < 0) return; // no click label in this scenario: nothing to count
            double click = lb;
            _scenExp[src]++; _scenClk[src] += click;
            u.Add(t, click, _o.DecaySeconds);
            for (int k = 0; k < cat.Length; k++)
            {
                int f = cat[k];
                if (_valueCol[f] < 0) continue;
                int vi = ValueId(ValueKey(_l.FeatureTable[f], rows[k]));
                _values[vi].Add(t, click, _o.DecaySeconds);
                UserValue(user, vi).Add(t, click, _o.DecaySeconds);
            }
            return;
        }
        u.Behaviours++;
        u.LastBehaviour = t;
        for (int k = 0; k < cat.Length; k++)
        {
            int vi = ValueId(ValueKey(_l.FeatureTable[cat[k]], rows[k]));
            var uv = UserValue(user, vi);
            if (uv.LastBehaviour != long.MinValue)
            {
                double dt = t - uv.LastBehaviour;
                uv.Recency *= Math.Exp(-dt / _o.RecencySeconds);
                uv.BehaviourDecayed *= Math.Exp(-dt / _o.DecaySeconds);
            }
            uv.Recency += 1; uv.BehaviourDecayed += 1; uv.LastBehaviour = t;
        }
    }

    private void WriteCounts(Counter c, long t, double prior, Span<float> dst)
    {
        double decay = c.Last == long.MinValue ? 0 : Math.Exp(-(t - c.Last) / _o.DecaySeconds);
        double de = c.DExp * decay, dc = c.DClk * decay, a = _o.PriorStrength;
        dst[0] = (float)c.Exp; dst[1] = (float)c.Clk; dst[2] = (float)((c.Clk + a * prior) / (c.Exp + a));
        dst[3] = (float)de; dst[4] = (float)dc; dst[5] = (float)((dc + a * prior) / (de + a));
    }

    private static long ValueKey(int table, int row) => ((long)table << 40) | (uint)row;
    private static long UserValueKey(int user, int valueId) => ((long)user << 32) | (uint)valueId;

    private Counter UserCounter(int user)
    {
        while (_users.Count <= user) _users.Add(new Counter());
        return _users[user];
    }

    private int ValueId(long key)
    {
        if (!_valueIndex.TryGetValue(key, out int id)) { id = _values.Count; _values.Add(new Counter()); _valueIndex[key] = id; }
        return id;
    }

    private Counter UserValue(int user, int valueId)
    {
        long key = UserValueKey(user, valueId);
        if (!_userValueIndex.TryGetValue(key, out int id)) { id = _userValues.Count; _userValues.Add(new Counter()); _userValueIndex[key] = id; }
        return _userValues[id];
    }

    /// <summary>A one-line description of the columns.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{FeatureCount} causal statistics columns ({_values.Count} values, {_userValues.Count} user × value pairs seen)");

    private sealed class Counter
    {
        public double Exp, Clk, DExp, DClk, Recency, BehaviourDecayed, Behaviours;
        public long Last = long.MinValue, LastBehaviour = long.MinValue, LastExposure = long.MinValue;

        public void Add(long t, double click, double decaySeconds)
        {
            if (Last != long.MinValue) { double d = Math.Exp(-(t - Last) / decaySeconds); DExp *= d; DClk *= d; }
            Exp++; Clk += click; DExp++; DClk += click; Last = t;
        }
    }
}
