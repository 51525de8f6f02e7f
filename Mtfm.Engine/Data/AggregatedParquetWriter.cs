using Parquet;
using Parquet.Schema;

namespace Mtfm.Engine.Data;

/// <summary>
/// Writes <see cref="AggregatedInstances"/> (user-window mode) as Parquet with list columns, the layout the reference
/// SQL in <c>docs/data.md</c> produces: <c>user_id</c> (string), <c>window_start</c> (int64), per segment
/// x ∈ {h, r, t}: <c>x_event_id</c>, <c>x_time</c> (list&lt;int64&gt;) and <c>x_source</c> (list&lt;string&gt;: scenario
/// or sequence name), then per task <c>t_&lt;task&gt;</c> (list&lt;int32&gt;, null where the scenario has no such label).
/// Lists are time-ordered (ties by event id) and empty, never null, where a segment has no events.
/// </summary>
internal static class AggregatedParquetWriter
{
    /// <summary>Column names in file order for the given task names.</summary>
    public static string[] ColumnsFor(IEnumerable<string> tasks) =>
        ["user_id", "window_start", "h_event_id", "h_time", "h_source", "r_event_id", "r_time", "r_source",
         "t_event_id", "t_time", "t_source", .. tasks.Select(t => "t_" + t)];

    /// <summary>Writes <paramref name="instances"/> to <paramref name="path"/> in row groups of <paramref name="rowGroupSize"/> instances.</summary>
    public static void Write(AggregatedInstances instances, string path, int rowGroupSize = 100_000) =>
        WriteAsync(instances, path, rowGroupSize).GetAwaiter().GetResult();

    /// <inheritdoc cref="Write"/>
    public static async Task WriteAsync(AggregatedInstances instances, string path, int rowGroupSize = 100_000)
    {
        ArgumentNullException.ThrowIfNull(instances);
        if (instances.Mode != AggregationMode.UserWindow) throw new ArgumentException($"only user-window instances are written, got {instances.Mode}", nameof(instances));
        if (rowGroupSize <= 0) throw new ArgumentOutOfRangeException(nameof(rowGroupSize), rowGroupSize, "must be > 0");
        var st = instances.Store; var l = st.Layout;
        var names = ColumnsFor(l.Schema.Tasks);
        var user = new DataField<string>("user_id", false);
        var ws = new DataField<long>("window_start", false);
        var lists = new ListField[names.Length - 2];
        for (int c = 0; c < lists.Length; c++)
        {
            int kind = c < 9 ? c % 3 : 3; // 0 event id, 1 time, 2 source, 3 label
            Field item = kind switch
            {
                2 => new DataField<string>("element", false),
                3 => new DataField<int?>("element", true),
                _ => new DataField<long>("element", false),
            };
            lists[c] = new ListField(names[c + 2], item);
        }
        var schema = new ParquetSchema(new Field[] { user, ws }.Concat(lists).ToArray());
        var sourceNames = Enumerable.Range(0, l.ScenarioCount + l.SequenceCount).Select(s => l.SourceName(s).AsMemory()).ToArray();
        await using var fs = File.Create(path);
        await using var w = await ParquetWriter.CreateAsync(schema, fs).ConfigureAwait(false);
        int s0 = 0;
        do
        {
            int n = Math.Min(rowGroupSize, instances.Count - s0);
            using var rg = w.CreateRowGroup();
            var users = new string[n]; var starts = new long[n];
            for (int i = 0; i < n; i++) { users[i] = st.UserKey(instances.UserOf(s0 + i)); starts[i] = instances.WindowStartOf(s0 + i); }
            await rg.WriteAsync(user, users).ConfigureAwait(false);
            await rg.WriteAsync<long>(ws, starts.AsMemory()).ConfigureAwait(false);
            for (int c = 0; c < lists.Length; c++)
            {
                byte seg = (byte)Math.Min(c / 3, 2);
                int kind = c < 9 ? c % 3 : 3, task = c - 9;
                var item = (DataField)lists[c].Item;
                int maxDef = item.MaxDefinitionLevel, emptyDef = maxDef - (item.IsNullable ? 2 : 1);
                var longs = new List<long>(); var strs = new List<ReadOnlyMemory<char>>(); var ints = new List<int>();
                var defs = new List<int>(); var reps = new List<int>();
                for (int i = 0; i < n; i++)
                {
                    var ev = instances.Events(s0 + i); var sg = instances.Segments(s0 + i);
                    bool first = true;
                    for (int k = 0; k < ev.Length; k++)
                    {
                        if (sg[k] != seg) continue;
                        int def = maxDef;
                        switch (kind)
                        {
                            case 0: longs.Add(ev[k]); break;
                            case 1: longs.Add(st.TimeOf(ev[k])); break;
                            case 2: strs.Add(sourceNames[st.SourceOf(ev[k])]); break;
                            default:
                                int lb = st.Label(ev[k], task);
                                if (lb >= 0) ints.Add(lb); else def = maxDef - 1;
                                break;
                        }
                        defs.Add(def); reps.Add(first ? 0 : 1);
                        first = false;
                    }
                    if (first) { defs.Add(emptyDef); reps.Add(0); }
                }
                if (kind == 2) await rg.WriteAllPartsAsync<ReadOnlyMemory<char>>(item, strs.ToArray(), defs.ToArray(), reps.ToArray(), CancellationToken.None).ConfigureAwait(false);
                else if (kind == 3) await rg.WriteAllPartsAsync<int>(item, ints.ToArray(), defs.ToArray(), reps.ToArray(), CancellationToken.None).ConfigureAwait(false);
                else await rg.WriteAllPartsAsync<long>(item, longs.ToArray(), defs.ToArray(), reps.ToArray(), CancellationToken.None).ConfigureAwait(false);
            }
            s0 += n;
        } while (s0 < instances.Count);
    }
}
