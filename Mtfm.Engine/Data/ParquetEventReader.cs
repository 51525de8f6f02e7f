using System.Globalization;
using Parquet;
using Parquet.Schema;

namespace Mtfm.Engine.Data;

/// <summary>Streams a flat Parquet event log (one column per CSV column; strings, integers, floats, booleans or timestamps (read as unix seconds, or as ISO 8601 text when the schema's time format is iso8601), nullable allowed) into an <see cref="EventStore"/>, one row group at a time.</summary>
internal static class ParquetEventReader
{
    /// <summary>Reads <paramref name="path"/> into <paramref name="store"/> (synchronously).</summary>
    public static ReadSummary Read(string path, EventStore store, ReadOptions? options = null) =>
        ReadAsync(path, store, options).GetAwaiter().GetResult();

    /// <summary>Reads <paramref name="path"/> into <paramref name="store"/>; errors name file, row (1-based over the file) and column.</summary>
    /// <exception cref="DataFormatException">The file is not valid Parquet (any failure of the Parquet decoder, with the
    /// row group and column it was reading) or a row is malformed.</exception>
    public static async Task<ReadSummary> ReadAsync(string path, EventStore store, ReadOptions? options = null, CancellationToken ct = default)
    {
        var where = new Position();
        try
        {
            return await ReadCore(path, store, options, where, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not (DataFormatException or OperationCanceledException or FileNotFoundException or DirectoryNotFoundException
            or UnauthorizedAccessException or OutOfMemoryException))
        {
            // Found by fuzzing: a damaged file made the decoder throw IOException, InvalidDataException, index errors ...
            string at = where.RowGroup < 0 ? "reading the footer/schema" : $"row group {where.RowGroup}{(where.Column is null ? "" : $", column '{where.Column}'")}";
            throw new DataFormatException($"{path}: not a readable Parquet file ({at}): {e.GetType().Name}: {e.Message}", e);
        }
    }

    private sealed class Position
    {
        public int RowGroup = -1;
        public string? Column;
    }

    private static async Task<ReadSummary> ReadCore(string path, EventStore store, ReadOptions? options, Position where, CancellationToken ct)
    {
        options ??= new ReadOptions();
        ParquetFooterCheck.Validate(path); // the decoder can spin forever on a damaged footer (found by fuzzing)
        await using var reader = await ParquetReader.CreateAsync(path, null, ct).ConfigureAwait(false);
        var fields = reader.Schema.GetDataFields();
        var header = fields.Select(f => f.Name).ToArray();
        var dec = new RowDecoder(store, path, header, options.KeepColumns);
        CsvEventReader.StartKeeping(store, options);
        var sum = new ReadSummary { File = path };
        var cols = new Column[fields.Length];
        long row = 0;
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            where.RowGroup = g;
            where.Column = null;
            using var rg = reader.OpenRowGroupReader(g);
            int n = checked((int)rg.RowCount);
            for (int c = 0; c < fields.Length; c++)
            {
                where.Column = fields[c].Name;
                cols[c] = await ReadColumn(rg, fields[c], n, path, ct).ConfigureAwait(false);
            }
            where.Column = null;
            for (int i = 0; i < n; i++)
            {
                row++;
                sum.RowsRead++;
                try
                {
                    var cells = new Cells(cols, i);
                    if (!dec.Decode(ref cells, row)) { sum.RowsSkipped++; continue; }
                    sum.RowsUsed++;
                    if (store.SourceOf(store.Count - 1) < store.Layout.ScenarioCount) sum.Exposures++;
                }
                catch (DataFormatException e) when (sum.RowsRejected < options.MaxErrors)
                {
                    sum.RowsRejected++;
                    if (sum.Errors.Count < 100) sum.Errors.Add(e.Message);
                }
            }
            options.Progress?.Report(row);
        }
        options.Log?.WriteLine(sum.ToString());
        return sum;
    }

    private sealed class Column
    {
        public string?[]? Text;
        public double[]? Num;
        public bool[]? Null;
        public bool IsTime;
    }

    private readonly ref struct Cells(Column[] cols, int i) : IRowCells
    {
        private readonly Column[] _cols = cols;
        private readonly int _i = i;
        public ReadOnlySpan<char> Text(int col)
        {
            var c = _cols[col];
            if (c.Text is not null) return c.Text[_i].AsSpan();
            if (c.Null![_i]) return default;
            if (c.IsTime) return DateTimeOffset.FromUnixTimeSeconds((long)c.Num![_i]).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture).AsSpan();
            return c.Num![_i].ToString("R", CultureInfo.InvariantCulture).AsSpan();
        }
        public bool TryNumber(int col, out double v)
        {
            var c = _cols[col];
            if (c.Text is not null) return double.TryParse(c.Text[_i], NumberStyles.Float, CultureInfo.InvariantCulture, out v);
            v = c.Num![_i];
            return !c.Null![_i];
        }
        public bool IsTimestamp(int col) => _cols[col].IsTime;
    }

    private static async Task<Column> ReadColumn(ParquetRowGroupReader rg, DataField f, int n, string path, CancellationToken ct)
    {
        var t = Nullable.GetUnderlyingType(f.ClrType) ?? f.ClrType;
        var col = new Column();
        if (t == typeof(string) || t == typeof(ReadOnlyMemory<char>) || t == typeof(Memory<char>))
        {
            col.Text = new string?[n];
            await rg.ReadAsync(f, col.Text.AsMemory()!, null, ct).ConfigureAwait(false);
            return col;
        }
        col.Num = new double[n]; col.Null = new bool[n];
        if (t == typeof(long)) await Fill<long>(rg, f, col, n, x => x, ct).ConfigureAwait(false);
        else if (t == typeof(int)) await Fill<int>(rg, f, col, n, x => x, ct).ConfigureAwait(false);
        else if (t == typeof(double)) await Fill<double>(rg, f, col, n, x => x, ct).ConfigureAwait(false);
        else if (t == typeof(float)) await Fill<float>(rg, f, col, n, x => x, ct).ConfigureAwait(false);
        else if (t == typeof(DateTime))
        {
            col.IsTime = true;
            // Timestamps become unix seconds (floored); unspecified kinds are taken as UTC.
            await Fill<DateTime>(rg, f, col, n, x => Math.Floor((DateTime.SpecifyKind(x, x.Kind == DateTimeKind.Unspecified ? DateTimeKind.Utc : x.Kind).ToUniversalTime() - DateTime.UnixEpoch).TotalSeconds), ct).ConfigureAwait(false);
        }
        else if (t == typeof(bool)) await Fill<bool>(rg, f, col, n, x => x ? 1 : 0, ct).ConfigureAwait(false);
        else throw new DataFormatException($"{path}: column '{f.Name}' has unsupported Parquet type {t.Name}");
        return col;
    }

    private static async Task Fill<T>(ParquetRowGroupReader rg, DataField f, Column col, int n, Func<T, double> conv, CancellationToken ct) where T : struct
    {
        if (f.IsNullable)
        {
            var buf = new T?[n];
            await rg.ReadAsync<T>(f, buf.AsMemory(), null, ct).ConfigureAwait(false);
            for (int i = 0; i < n; i++) { if (buf[i] is { } v) col.Num![i] = conv(v); else col.Null![i] = true; }
        }
        else
        {
            var buf = new T[n];
            await rg.ReadAsync<T>(f, buf.AsMemory(), null, ct).ConfigureAwait(false);
            for (int i = 0; i < n; i++) col.Num![i] = conv(buf[i]);
        }
    }
}
