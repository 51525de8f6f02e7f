using Parquet;
using Parquet.Schema;

namespace Mtfm.Engine.Data;

/// <summary>
/// Writes <see cref="AggregatedInstances"/> (user-window mode) as Parquet with list columns, the layout the reference
/// SQL in <c>docs/data.md</c> produces: <c>user_id</c> (string), <c>window_start</c> (int64), and per segment
/// <c>h_event_id</c>, <c>h_time</c>, <c>r_event_id</c>, <c>r_time</c>, <c>t_event_id</c>, <c>t_time</c>
/// (list&lt;int64&gt;, time-ordered, ties by event id; empty lists where a segment has no events).
/// </summary>
public static class AggregatedParquetWriter
{
    /// <summary>Column names in file order.</summary>
    public static readonly string[] Columns = ["user_id", "window_start", "h_event_id", "h_time", "r_event_id", "r_time", "t_event_id", "t_time"];

    /// <summary>Writes <paramref name="instances"/> to <paramref name="path"/> in row groups of <paramref name="rowGroupSize"/> instances.</summary>
    public static void Write(AggregatedInstances instances, string path, int rowGroupSize = 100_000) =>
        WriteAsync(instances, path, rowGroupSize).GetAwaiter().GetResult();

    /// <inheritdoc cref="Write"/>
    public static async Task WriteAsync(AggregatedInstances instances, string path, int rowGroupSize = 100_000)
    {
        ArgumentNullException.ThrowIfNull(instances);
        if (rowGroupSize <= 0) throw new ArgumentOutOfRangeException(nameof(rowGroupSize), rowGroupSize, "must be > 0");
        var user = new DataField<string>("user_id", false);
        var ws = new DataField<long>("window_start", false);
        var lists = new ListField[6];
        for (int c = 0; c < 6; c++) lists[c] = new ListField(Columns[c + 2], new DataField<long>("element", false));
        var schema = new ParquetSchema(new Field[] { user, ws }.Concat(lists).ToArray());
        var st = instances.Store;
        await using var fs = File.Create(path);
        await using var w = await ParquetWriter.CreateAsync(schema, fs).ConfigureAwait(false);
        for (int s = 0; s < instances.Count || (s == 0 && instances.Count == 0); s += rowGroupSize)
        {
            int n = Math.Min(rowGroupSize, instances.Count - s);
            using var rg = w.CreateRowGroup();
            var users = new string[n]; var starts = new long[n];
            for (int i = 0; i < n; i++) { users[i] = st.UserKey(instances.UserOf(s + i)); starts[i] = instances.WindowStartOf(s + i); }
            await rg.WriteAsync(user, users).ConfigureAwait(false);
            await rg.WriteAsync<long>(ws, starts.AsMemory()).ConfigureAwait(false);
            for (int c = 0; c < 6; c++)
            {
                byte seg = (byte)(c / 2);
                bool times = c % 2 == 1;
                var item = (DataField)lists[c].Item;
                int maxDef = item.MaxDefinitionLevel;
                var vals = new List<long>(); var defs = new List<int>(); var reps = new List<int>();
                for (int i = 0; i < n; i++)
                {
                    var ev = instances.Events(s + i); var sg = instances.Segments(s + i);
                    bool first = true;
                    for (int k = 0; k < ev.Length; k++)
                    {
                        if (sg[k] != seg) continue;
                        vals.Add(times ? st.TimeOf(ev[k]) : ev[k]);
                        defs.Add(maxDef); reps.Add(first ? 0 : 1);
                        first = false;
                    }
                    if (first) { defs.Add(maxDef - 1); reps.Add(0); }
                }
                await rg.WriteAllPartsAsync<long>(item, vals.ToArray(), defs.ToArray(), reps.ToArray(), CancellationToken.None).ConfigureAwait(false);
            }
            if (instances.Count == 0) break;
        }
    }
}
