using System.Globalization;
using System.Text;
using Parquet;
using Parquet.Schema;

namespace Mtfm.Engine.Data;

/// <summary>Writes an <see cref="EventStore"/> back as a flat event log (CSV or Parquet) readable with the same schema. Hashed features cannot be written (their raw values are gone).</summary>
internal static class EventLogWriter
{
    private static string RawCat(DataLayout l, int feature, int row)
    {
        var f = l.Schema.Features[feature];
        if (row == l.MissingRow[feature] || row == l.AbsentRow[feature]) return ""; // a missing value (missing: allow), or a feature a feedback token's scenario lacks
        return f.Kind switch
        {
            "categorical" => row == 0 ? "<oov>" : f.Vocabulary![row - 1],
            "id" => row == 0 ? "-1" : (row - 1).ToString(CultureInfo.InvariantCulture),
            _ => throw new NotSupportedException($"feature '{f.Name}' is hashed: its raw values are not stored and cannot be written"),
        };
    }

    private static (string[] header, int[] featCol, int[][] labelCol) Columns(DataLayout l)
    {
        var s = l.Schema;
        var header = new List<string> { s.UserColumn, s.TimeColumn, s.SourceColumn };
        var featCol = new int[s.Features.Count];
        for (int f = 0; f < s.Features.Count; f++) { featCol[f] = header.Count; header.Add(s.Features[f].ColumnName); }
        var labelCol = new int[s.Scenarios.Count][];
        for (int sc = 0; sc < s.Scenarios.Count; sc++)
        {
            labelCol[sc] = new int[s.Tasks.Count];
            for (int t = 0; t < s.Tasks.Count; t++)
            {
                if (!s.Scenarios[sc].Labels.TryGetValue(s.Tasks[t], out var name)) { labelCol[sc][t] = -1; continue; }
                int i = header.IndexOf(name);
                if (i < 0) { i = header.Count; header.Add(name); }
                labelCol[sc][t] = i;
            }
        }
        return (header.ToArray(), featCol, labelCol);
    }

    private static string[] Cells(EventStore st, int e, int width, int[] featCol, int[][] labelCol, string[] cells)
    {
        var l = st.Layout;
        Array.Fill(cells, "");
        cells[0] = st.UserKey(st.UserOf(e));
        cells[1] = st.TimeOf(e).ToString(CultureInfo.InvariantCulture);
        int src = st.SourceOf(e);
        cells[2] = l.SourceName(src);
        var cat = st.Categorical(e); var num = st.Numeric(e);
        for (int k = 0; k < cat.Length; k++) cells[featCol[l.SourceCat[src][k]]] = RawCat(l, l.SourceCat[src][k], cat[k]);
        for (int k = 0; k < num.Length; k++) cells[featCol[l.SourceNum[src][k]]] = float.IsNaN(num[k]) && l.AllowMissing[l.SourceNum[src][k]] ? "" : num[k].ToString("R", CultureInfo.InvariantCulture);
        if (src < l.ScenarioCount)
            for (int t = 0; t < l.TaskCount; t++)
                if (labelCol[src][t] >= 0) cells[labelCol[src][t]] = st.Label(e, t).ToString(CultureInfo.InvariantCulture);
        return cells;
    }

    private static string Quote(string s) =>
        s.AsSpan().IndexOfAny(",\"\n\r") >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>Writes the store as CSV (header row, events in id order). Requires <see cref="DatasetSchema.TimeFormat"/> = unix_seconds.</summary>
    public static void WriteCsv(EventStore store, string path)
    {
        if (store.Layout.Schema.TimeFormat != "unix_seconds") throw new NotSupportedException("WriteCsv writes unix_seconds times only");
        var (header, featCol, labelCol) = Columns(store.Layout);
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        w.WriteLine(string.Join(',', header.Select(Quote)));
        var cells = new string[header.Length];
        for (int e = 0; e < store.Count; e++)
        {
            Cells(store, e, header.Length, featCol, labelCol, cells);
            for (int c = 0; c < cells.Length; c++) { if (c > 0) w.Write(','); w.Write(Quote(cells[c])); }
            w.WriteLine();
        }
    }

    /// <summary>Writes the store as a flat Parquet file: strings for user, source and categorical features, int64 time, nullable int64 id features, nullable double numerics, nullable int32 labels.</summary>
    public static void WriteParquet(EventStore store, string path, int rowGroupSize = 1 << 20) =>
        WriteParquetAsync(store, path, rowGroupSize).GetAwaiter().GetResult();

    /// <inheritdoc cref="WriteParquet"/>
    public static async Task WriteParquetAsync(EventStore store, string path, int rowGroupSize = 1 << 20)
    {
        var l = store.Layout;
        var (header, featCol, labelCol) = Columns(l);
        var kinds = new char[header.Length]; // s string, n double, l label, t time
        Array.Fill(kinds, 's');
        kinds[1] = 't';
        for (int f = 0; f < l.Schema.Features.Count; f++)
        {
            if (l.FeatureTable[f] < 0) kinds[featCol[f]] = 'n';
            else if (l.Schema.Features[f].Kind == "id") kinds[featCol[f]] = 'i';
        }
        foreach (var sc in labelCol) foreach (var c in sc) if (c >= 0) kinds[c] = 'l';
        var fields = new DataField[header.Length];
        for (int c = 0; c < header.Length; c++)
            fields[c] = kinds[c] switch
            {
                't' => new DataField<long>(header[c]),
                'n' => new DataField<double?>(header[c]),
                'l' => new DataField<int?>(header[c]),
                'i' => new DataField<long?>(header[c]),
                _ => new DataField<string>(header[c], c >= 3),
            };
        await using var fs = File.Create(path);
        await using var w = await ParquetWriter.CreateAsync(new ParquetSchema(fields), fs).ConfigureAwait(false);
        var cells = new string[header.Length];
        for (int start = 0; start < store.Count; start += rowGroupSize)
        {
            int n = Math.Min(rowGroupSize, store.Count - start);
            var cols = new string?[header.Length][];
            for (int c = 0; c < header.Length; c++) cols[c] = new string?[n];
            for (int i = 0; i < n; i++)
            {
                Cells(store, start + i, header.Length, featCol, labelCol, cells);
                for (int c = 0; c < header.Length; c++) cols[c][i] = cells[c].Length == 0 && c >= 3 ? null : cells[c];
            }
            using var rg = w.CreateRowGroup();
            for (int c = 0; c < header.Length; c++)
            {
                switch (kinds[c])
                {
                    case 't': await rg.WriteAsync<long>(fields[c], cols[c].Select(x => long.Parse(x!, CultureInfo.InvariantCulture)).ToArray().AsMemory()).ConfigureAwait(false); break;
                    case 'n': await rg.WriteAsync<double>(fields[c], cols[c].Select(x => x is null ? (double?)null : double.Parse(x, CultureInfo.InvariantCulture)).ToArray().AsMemory()).ConfigureAwait(false); break;
                    case 'i': await rg.WriteAsync<long>(fields[c], cols[c].Select(x => x is null ? (long?)null : long.Parse(x, CultureInfo.InvariantCulture)).ToArray().AsMemory()).ConfigureAwait(false); break;
                    case 'l': await rg.WriteAsync<int>(fields[c], cols[c].Select(x => x is null ? (int?)null : int.Parse(x, CultureInfo.InvariantCulture)).ToArray().AsMemory()).ConfigureAwait(false); break;
                    default: await rg.WriteAsync(fields[c], cols[c]!).ConfigureAwait(false); break;
                }
            }
        }
    }
}
