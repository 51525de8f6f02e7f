using System.Globalization;
using nietras.SeparatedValues;

namespace Mtfm.Engine.Data;

/// <summary>Streams a CSV event log (header row, comma separated, RFC-4180 quoting) into an <see cref="EventStore"/> with bounded working memory (Sep).</summary>
internal static class CsvEventReader
{
    /// <summary>Reads <paramref name="path"/> into <paramref name="store"/>; throws <see cref="DataFormatException"/> naming file, row and column of the first malformed row (or after <see cref="ReadOptions.MaxErrors"/> rejections).</summary>
    public static ReadSummary Read(string path, EventStore store, ReadOptions? options = null)
    {
        using var reader = Open(path, () => Sep.New(',').Reader(o => o with { HasHeader = true, Unescape = true, DisableColCountCheck = true }).FromFile(path));
        return Read(reader, path, store, options);
    }

    /// <summary>Reads CSV text (tests, small inputs) into <paramref name="store"/>.</summary>
    public static ReadSummary ReadText(string csv, string name, EventStore store, ReadOptions? options = null)
    {
        using var reader = Open(name, () => Sep.New(',').Reader(o => o with { HasHeader = true, Unescape = true, DisableColCountCheck = true }).FromText(csv));
        return Read(reader, name, store, options);
    }

    private static SepReader Open(string file, Func<SepReader> open)
    {
        try { return open(); }
        catch (ArgumentException e) { throw new DataFormatException($"{file}: invalid header row: {e.Message}", e); }
    }

    private static ReadSummary Read(SepReader reader, string file, EventStore store, ReadOptions? options)
    {
        options ??= new ReadOptions();
        var header = reader.Header.ColNames.ToArray();
        var dec = new RowDecoder(store, file, header, options.KeepColumns);
        StartKeeping(store, options);
        var sum = new ReadSummary { File = file };
        long row = 0;
        foreach (var r in reader)
        {
            row++;
            sum.RowsRead++;
            try
            {
                if (r.ColCount != header.Length)
                    throw new DataFormatException($"{file}: row {row}, column '{(r.ColCount < header.Length ? header[r.ColCount] : "#" + (r.ColCount))}': wrong column count '{r.ColCount}' (header has {header.Length})");
                var cells = new SepCells(r);
                if (!dec.Decode(ref cells, row)) { sum.RowsSkipped++; continue; }
                sum.RowsUsed++;
                if (store.SourceOf(store.Count - 1) < store.Layout.ScenarioCount) sum.Exposures++;
            }
            catch (DataFormatException e) when (sum.RowsRejected < options.MaxErrors)
            {
                sum.RowsRejected++;
                if (sum.Errors.Count < 100) sum.Errors.Add(e.Message);
            }
            if ((row & 0xFFFF) == 0) options.Progress?.Report(row);
        }
        options.Log?.WriteLine(sum.ToString());
        return sum;
    }

    /// <summary>Prepares the store's <see cref="EventStore.ExposureColumns"/> for <see cref="ReadOptions.KeepColumns"/> (the same columns on every read into one store).</summary>
    internal static void StartKeeping(EventStore store, ReadOptions options)
    {
        if (options.KeepColumns.Count == 0)
        {
            if (store.ExposureColumns is not null) throw new ArgumentException("This store keeps columns per exposure: read every file into it with the same ReadOptions.KeepColumns.", nameof(options));
            return;
        }
        if (store.ExposureColumns is null)
        {
            if (store.ExposureCount > 0) throw new ArgumentException("ReadOptions.KeepColumns must be given from the first read into a store on.", nameof(options));
            store.ExposureColumns = new ExposureColumns(options.KeepColumns);
        }
        else if (!store.ExposureColumns.Names.SequenceEqual(options.KeepColumns))
            throw new ArgumentException("Every read into one store must keep the same columns.", nameof(options));
    }

    private readonly ref struct SepCells(SepReader.Row row) : IRowCells
    {
        private readonly SepReader.Row _row = row;
        public ReadOnlySpan<char> Text(int col) => _row[col].Span;
        public bool TryNumber(int col, out double v) =>
            double.TryParse(_row[col].Span, NumberStyles.Float, CultureInfo.InvariantCulture, out v);
        public bool IsTimestamp(int col) => false;
    }
}
