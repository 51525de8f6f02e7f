namespace Mtfm.Engine.Data;

/// <summary>
/// In-memory columnar (struct-of-arrays) event store: the hub between readers, the synthetic generator, the
/// MovieLens importer and the aggregator. Event i (its <em>event id</em>, in insertion order) has a dense user index,
/// a time (unix seconds), a source (scenario index for exposures, <c>ScenarioCount + j</c> for sequence j), its
/// categorical table rows and raw numeric values (the source's feature layout), and for exposures its labels per task
/// and optionally the true probabilities (synthetic data).
/// </summary>
public sealed class EventStore
{
    /// <summary>The compiled schema.</summary>
    public DataLayout Layout { get; }
    internal GrowBuffer<int> User;
    internal GrowBuffer<long> Time;
    internal GrowBuffer<short> Source;
    internal GrowBuffer<int> CatStart;
    internal GrowBuffer<int> NumStart;
    internal GrowBuffer<int> ExposureIndex; // -1 for behaviour events
    internal GrowBuffer<int> CatValues;
    internal GrowBuffer<float> NumValues;
    internal GrowBuffer<byte> Labels;       // exposure * tasks + k: 0/1, 255 = absent
    internal GrowBuffer<float> TrueProb;    // exposure * tasks + k: NaN = unknown
    internal GrowBuffer<int> ExposureEvent; // exposure -> event id
    private readonly List<string> _userKeys = [];
    private readonly Dictionary<string, int> _userIndex = new(StringComparer.Ordinal);
    internal bool HasTrueProbabilities;

    /// <summary>Creates an empty store for <paramref name="layout"/>.</summary>
    public EventStore(DataLayout layout, int capacity = 1024)
    {
        Layout = layout ?? throw new ArgumentNullException(nameof(layout));
        User = new(capacity); Time = new(capacity); Source = new(capacity); CatStart = new(capacity); NumStart = new(capacity);
        ExposureIndex = new(capacity); CatValues = new(capacity * 2); NumValues = new(capacity); Labels = new(capacity);
        TrueProb = new(capacity); ExposureEvent = new(capacity);
    }

    /// <summary>Number of events.</summary>
    public int Count => Time.Count;
    /// <summary>Number of exposures.</summary>
    public int ExposureCount => ExposureEvent.Count;
    /// <summary>Number of distinct users.</summary>
    public int UserCount => _userKeys.Count;
    /// <summary>Whether true probabilities were recorded (synthetic data).</summary>
    public bool HasTrueProbability => HasTrueProbabilities;
    /// <summary>User key of dense user index <paramref name="user"/>.</summary>
    public string UserKey(int user) => _userKeys[user];
    /// <summary>Time (unix seconds) of event <paramref name="eventId"/>.</summary>
    public long TimeOf(int eventId) => Time.Items[eventId];
    /// <summary>Dense user index of event <paramref name="eventId"/>.</summary>
    public int UserOf(int eventId) => User.Items[eventId];
    /// <summary>Source of event <paramref name="eventId"/> (scenario index, or ScenarioCount + sequence index).</summary>
    public int SourceOf(int eventId) => Source.Items[eventId];
    /// <summary>Raw texts of the columns kept per exposure while reading (<see cref="ReadOptions.KeepColumns"/>); null when none were asked for.</summary>
    public ExposureColumns? ExposureColumns { get; internal set; }
    /// <summary>Dense exposure index of event <paramref name="eventId"/> (its position among the exposures in reading order), −1 for a behaviour event.</summary>
    public int ExposureIndexOf(int eventId) => ExposureIndex.Items[eventId];
    /// <summary>True when event <paramref name="eventId"/> is an exposure.</summary>
    public bool IsExposure(int eventId) => ExposureIndex.Items[eventId] >= 0;

    /// <summary>Dense index of a user key, adding it if new.</summary>
    internal int InternUser(ReadOnlySpan<char> key)
    {
        var look = _userIndex.GetAlternateLookup<ReadOnlySpan<char>>();
        if (look.TryGetValue(key, out int u)) return u;
        string s = key.ToString();
        u = _userKeys.Count;
        _userKeys.Add(s);
        _userIndex[s] = u;
        return u;
    }

    /// <summary>Adds a user with a known key (generators) and returns its dense index.</summary>
    internal int InternUser(string key) => InternUser(key.AsSpan());

    /// <summary>Starts an event; the caller then appends exactly the source's categorical values, numeric values and (exposures) labels.</summary>
    internal int BeginEvent(int user, long time, int source)
    {
        int id = Time.Count;
        User.Add(user); Time.Add(time); Source.Add((short)source);
        CatStart.Add(CatValues.Count); NumStart.Add(NumValues.Count);
        if (source < Layout.ScenarioCount)
        {
            ExposureIndex.Add(ExposureEvent.Count);
            ExposureEvent.Add(id);
        }
        else ExposureIndex.Add(-1);
        return id;
    }

    /// <summary>Categorical table rows of event <paramref name="eventId"/> (the source's categorical features in order).</summary>
    public ReadOnlySpan<int> Categorical(int eventId) =>
        CatValues.Items.AsSpan(CatStart.Items[eventId], Layout.SourceCat[Source.Items[eventId]].Length);
    /// <summary>Raw (untransformed) numeric values of event <paramref name="eventId"/>; NaN = missing (features with <c>missing: allow</c>).</summary>
    public ReadOnlySpan<float> Numeric(int eventId) =>
        NumValues.Items.AsSpan(NumStart.Items[eventId], Layout.SourceNum[Source.Items[eventId]].Length);
    /// <summary>Label of task <paramref name="task"/> for exposure event <paramref name="eventId"/>: 0, 1, or −1 when absent.</summary>
    public int Label(int eventId, int task)
    {
        int e = ExposureIndex.Items[eventId];
        if (e < 0) throw new ArgumentException($"event {eventId} is not an exposure", nameof(eventId));
        byte b = Labels.Items[e * Layout.TaskCount + task];
        return b == 255 ? -1 : b;
    }
    /// <summary>True probability of task <paramref name="task"/> for exposure event <paramref name="eventId"/> (NaN when unknown).</summary>
    public float TrueProbability(int eventId, int task)
    {
        int e = ExposureIndex.Items[eventId];
        if (e < 0 || !HasTrueProbabilities) return float.NaN;
        return TrueProb.Items[e * Layout.TaskCount + task];
    }

    /// <summary>
    /// Event ids ordered by (user, time, event id): the order the aggregator consumes. Counting sort by user, then a
    /// per-user sort by time only where the log is not already time-ordered.
    /// </summary>
    public int[] SortedByUserTime()
    {
        int n = Count, nu = UserCount;
        var start = new int[nu + 1];
        var user = User.Items; var time = Time.Items;
        for (int i = 0; i < n; i++) start[user[i] + 1]++;
        for (int u = 0; u < nu; u++) start[u + 1] += start[u];
        var pos = start.AsSpan(0, nu).ToArray();
        var order = new int[n];
        for (int i = 0; i < n; i++) order[pos[user[i]]++] = i;
        var cmp = new TimeIdComparer(time);
        for (int u = 0; u < nu; u++)
        {
            var seg = order.AsSpan(start[u], start[u + 1] - start[u]);
            bool sorted = true;
            for (int k = 1; k < seg.Length; k++) if (time[seg[k]] < time[seg[k - 1]]) { sorted = false; break; }
            if (!sorted) seg.Sort(cmp);
        }
        return order;
    }

    private readonly struct TimeIdComparer(long[] time) : IComparer<int>
    {
        public int Compare(int a, int b) { int c = time[a].CompareTo(time[b]); return c != 0 ? c : a.CompareTo(b); }
    }

    /// <summary>Multi-line summary: users, time range, events per scenario and sequence, label rates.</summary>
    public string Summary()
    {
        var l = Layout;
        var perSource = new long[l.ScenarioCount + l.SequenceCount];
        var pos = new long[l.ScenarioCount * l.TaskCount]; var lab = new long[l.ScenarioCount * l.TaskCount];
        long tmin = long.MaxValue, tmax = long.MinValue;
        for (int i = 0; i < Count; i++)
        {
            int s = Source.Items[i]; perSource[s]++;
            tmin = Math.Min(tmin, Time.Items[i]); tmax = Math.Max(tmax, Time.Items[i]);
            int e = ExposureIndex.Items[i];
            if (e < 0) continue;
            for (int k = 0; k < l.TaskCount; k++)
            {
                byte b = Labels.Items[e * l.TaskCount + k];
                if (b != 255) { lab[s * l.TaskCount + k]++; pos[s * l.TaskCount + k] += b; }
            }
        }
        var sb = new System.Text.StringBuilder();
        sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{l.Schema.Name}: {Count} events ({ExposureCount} exposures), {UserCount} users");
        if (Count > 0) sb.Append(System.Globalization.CultureInfo.InvariantCulture, $", time {DateTimeOffset.FromUnixTimeSeconds(tmin):u} .. {DateTimeOffset.FromUnixTimeSeconds(tmax):u}");
        sb.AppendLine();
        for (int s = 0; s < perSource.Length; s++)
        {
            sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"  {(s < l.ScenarioCount ? "scenario" : "sequence")} {l.SourceName(s)}: {perSource[s]}");
            if (s < l.ScenarioCount)
                for (int k = 0; k < l.TaskCount; k++)
                    if (lab[s * l.TaskCount + k] > 0) sb.Append(System.Globalization.CultureInfo.InvariantCulture, $", {l.Schema.Tasks[k]} rate {(double)pos[s * l.TaskCount + k] / lab[s * l.TaskCount + k]:F4}");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>
    /// Mean and standard deviation of every numeric feature after its log1p (where the transform says so), over events
    /// with time before <paramref name="beforeTime"/> (the training part), missing values excluded. Features never seen get mean 0, std 1.
    /// </summary>
    public NumericStats ComputeNumericStats(long beforeTime = long.MaxValue)
    {
        int nf = Layout.Schema.Features.Count;
        var sum = new double[nf]; var sq = new double[nf]; var cnt = new long[nf];
        for (int i = 0; i < Count; i++)
        {
            if (Time.Items[i] >= beforeTime) continue;
            var feats = Layout.SourceNum[Source.Items[i]];
            int o = NumStart.Items[i];
            for (int k = 0; k < feats.Length; k++)
            {
                if (float.IsNaN(NumValues.Items[o + k])) continue; // a missing value (missing: allow)
                double v = NumericStats.Pre(Layout.Schema.Features[feats[k]].Transform, NumValues.Items[o + k]);
                sum[feats[k]] += v; sq[feats[k]] += v * v; cnt[feats[k]]++;
            }
        }
        var mean = new float[nf]; var std = new float[nf];
        for (int f = 0; f < nf; f++)
        {
            if (cnt[f] == 0) { mean[f] = 0; std[f] = 1; continue; }
            double m = sum[f] / cnt[f];
            double var = Math.Max(0, sq[f] / cnt[f] - m * m);
            mean[f] = (float)m; std[f] = (float)Math.Max(Math.Sqrt(var), 1e-6);
        }
        return new NumericStats(Layout, mean, std);
    }
}
