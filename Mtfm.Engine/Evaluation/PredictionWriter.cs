using System.Globalization;
using System.Text;
using Mtfm.Engine.Data;
using Parquet;
using Parquet.Schema;

namespace Mtfm.Engine.Evaluation;

/// <summary>
/// Collects the model's probabilities per scored exposure and writes them as one row per exposure, in log order (event
/// id), so users can compute their own metrics: <c>user</c>, <c>time</c> (unix seconds), <c>scenario</c>, the key
/// columns kept while reading (<see cref="ReadOptions.KeepColumns"/>, raw text), then per task <c>p_&lt;task&gt;</c>
/// (the model's probability; every scenario has a head per task) and <c>label_&lt;task&gt;</c> (0/1, empty/null where
/// the scenario has no such label). CSV (RFC-4180 quoting) or Parquet (strings, int64 time, float probabilities,
/// nullable int32 labels), chosen by the file extension.
/// </summary>
internal sealed class PredictionWriter
{
    private readonly EventStore _store;
    private readonly List<int> _events = [];
    private readonly List<float> _probs = [];
    private readonly int _tasks;

    /// <summary>Creates an empty writer for exposures of <paramref name="store"/>.</summary>
    public PredictionWriter(EventStore store)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _tasks = store.Layout.TaskCount;
        Columns = ["user", "time", "scenario", .. store.ExposureColumns?.Names ?? [],
            .. store.Layout.Schema.Tasks.Select(t => "p_" + t), .. store.Layout.Schema.Tasks.Select(t => "label_" + t)];
        var dup = Columns.GroupBy(c => c, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"prediction column '{dup.Key}' would appear twice (a kept key column has the name of a fixed column)", nameof(store));
    }

    /// <summary>The file's columns, in order.</summary>
    public IReadOnlyList<string> Columns { get; }

    /// <summary>Exposures collected so far.</summary>
    public int Count => _events.Count;

    /// <summary>Adds the exposures of <paramref name="batch"/> with their probabilities [T, tasks] (row-major, the batch's T order).</summary>
    public void Add(JaggedBatch batch, ReadOnlySpan<float> probabilities)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (probabilities.Length != batch.TargetCount * _tasks)
            throw new ArgumentException($"probabilities has {probabilities.Length} entries, expected {batch.TargetCount}·{_tasks}", nameof(probabilities));
        for (int j = 0; j < batch.TargetCount; j++)
        {
            int ev = batch.EventId[batch.TargetToken[j]];
            if (!_store.IsExposure(ev)) throw new ArgumentException($"T token {j} is event {ev}, which is not an exposure of this store", nameof(batch));
            _events.Add(ev);
            for (int k = 0; k < _tasks; k++) _probs.Add(probabilities[j * _tasks + k]);
        }
    }

    /// <summary>Adds one exposure (event id <paramref name="eventId"/>) with its probability per task (e.g. a baseline's scores).</summary>
    public void Add(int eventId, ReadOnlySpan<float> probabilities)
    {
        if (!_store.IsExposure(eventId)) throw new ArgumentException($"event {eventId} is not an exposure of this store", nameof(eventId));
        if (probabilities.Length != _tasks) throw new ArgumentException($"probabilities has {probabilities.Length} entries, expected {_tasks}", nameof(probabilities));
        _events.Add(eventId);
        foreach (float p in probabilities) _probs.Add(p);
    }

    /// <summary>Writes the collected rows to <paramref name="path"/> (<c>.csv</c> or <c>.parquet</c>).</summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase)) WriteCsv(path);
        else if (path.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) WriteParquetAsync(path).GetAwaiter().GetResult();
        else throw new ArgumentException($"predictions file '{path}': use a .csv or .parquet name", nameof(path));
    }

    private int[] Order()
    {
        var order = Enumerable.Range(0, _events.Count).ToArray();
        Array.Sort(order, (a, b) => _events[a].CompareTo(_events[b]));
        return order;
    }

    private string Key(int ev, int column) => _store.ExposureColumns!.Value(_store.ExposureIndexOf(ev), column);

    private int KeyCount => _store.ExposureColumns?.Names.Count ?? 0;

    private static string Quote(string s) =>
        s.AsSpan().IndexOfAny(",\"\n\r") >= 0 ? "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : s;

    private void WriteCsv(string path)
    {
        var ci = CultureInfo.InvariantCulture;
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        w.WriteLine(string.Join(',', Columns.Select(Quote)));
        var l = _store.Layout;
        foreach (int i in Order())
        {
            int ev = _events[i];
            w.Write(Quote(_store.UserKey(_store.UserOf(ev)))); w.Write(',');
            w.Write(_store.TimeOf(ev).ToString(ci)); w.Write(',');
            w.Write(Quote(l.SourceName(_store.SourceOf(ev))));
            for (int c = 0; c < KeyCount; c++) { w.Write(','); w.Write(Quote(Key(ev, c))); }
            for (int k = 0; k < _tasks; k++) { w.Write(','); w.Write(_probs[i * _tasks + k].ToString("R", ci)); }
            for (int k = 0; k < _tasks; k++)
            {
                w.Write(',');
                int y = _store.Label(ev, k);
                if (y >= 0) w.Write(y.ToString(ci));
            }
            w.WriteLine();
        }
    }

    private async Task WriteParquetAsync(string path)
    {
        var l = _store.Layout;
        int keys = KeyCount;
        var fields = new List<DataField> { new DataField<string>("user", false), new DataField<long>("time"), new DataField<string>("scenario", false) };
        for (int c = 0; c < keys; c++) fields.Add(new DataField<string>(Columns[3 + c], true));
        for (int k = 0; k < _tasks; k++) fields.Add(new DataField<float>("p_" + l.Schema.Tasks[k]));
        for (int k = 0; k < _tasks; k++) fields.Add(new DataField<int?>("label_" + l.Schema.Tasks[k]));
        var order = Order();
        int n = order.Length;
        var user = new string[n]; var time = new long[n]; var scen = new string[n];
        var key = new string?[keys][]; for (int c = 0; c < keys; c++) key[c] = new string?[n];
        var p = new float[_tasks][]; var y = new int?[_tasks][];
        for (int k = 0; k < _tasks; k++) { p[k] = new float[n]; y[k] = new int?[n]; }
        for (int r = 0; r < n; r++)
        {
            int i = order[r], ev = _events[i];
            user[r] = _store.UserKey(_store.UserOf(ev)); time[r] = _store.TimeOf(ev); scen[r] = l.SourceName(_store.SourceOf(ev));
            for (int c = 0; c < keys; c++) { string v = Key(ev, c); key[c][r] = v.Length == 0 ? null : v; }
            for (int k = 0; k < _tasks; k++)
            {
                p[k][r] = _probs[i * _tasks + k];
                int lab = _store.Label(ev, k);
                y[k][r] = lab >= 0 ? lab : null;
            }
        }
        await using var fs = File.Create(path);
        await using var w = await ParquetWriter.CreateAsync(new ParquetSchema(fields.ToArray<Field>()), fs).ConfigureAwait(false);
        using var rg = w.CreateRowGroup();
        int f = 0;
        await rg.WriteAsync(fields[f++], user).ConfigureAwait(false);
        await rg.WriteAsync<long>(fields[f++], time.AsMemory()).ConfigureAwait(false);
        await rg.WriteAsync(fields[f++], scen).ConfigureAwait(false);
        for (int c = 0; c < keys; c++) await rg.WriteAsync(fields[f++], key[c]).ConfigureAwait(false);
        for (int k = 0; k < _tasks; k++) await rg.WriteAsync<float>(fields[f++], p[k].AsMemory()).ConfigureAwait(false);
        for (int k = 0; k < _tasks; k++) await rg.WriteAsync<int>(fields[f++], y[k].AsMemory()).ConfigureAwait(false);
    }
}
