using System.Diagnostics;
using Mtfm.Engine.Data;

namespace Mtfm.Cli.Commands;

/// <summary>`mtfm data`: export event logs and aggregated datasets.</summary>
internal static class DataCommand
{
    /// <summary>
    /// Loads <paramref name="data"/> (synthetic[:size], movielens:dir, or events + schema) and writes the event log
    /// (CSV or Parquet by extension) and its schema JSON beside it.
    /// </summary>
    public static int Export(string data, string? schema, string outPath)
    {
        var store = PreparedData.LoadStore(new TrainRequest { Data = data, Schema = schema, Feedback = false }, Console.Out, out string desc);
        Console.WriteLine($"{desc}: {store.Count:N0} events, {store.ExposureCount:N0} exposures, {store.UserCount:N0} users");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        if (outPath.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) EventLogWriter.WriteParquet(store, outPath);
        else EventLogWriter.WriteCsv(store, outPath);
        string schemaPath = Path.ChangeExtension(outPath, ".schema.json");
        File.WriteAllText(schemaPath, store.Layout.Schema.ToJson());
        Console.WriteLine($"wrote {outPath} and {schemaPath}");
        return 0;
    }

    /// <summary>Aggregates every window of <paramref name="data"/> and writes the Parquet dataset with list columns.</summary>
    public static int Aggregate(string data, string? schema, AggregationMode mode, string outPath)
    {
        var store = PreparedData.LoadStore(new TrainRequest { Data = data, Schema = schema, Feedback = false }, Console.Out, out string desc);
        var sw = Stopwatch.StartNew();
        var inst = UserLevelAggregator.Aggregate(store, mode);
        double secs = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"{desc}: {store.Count:N0} events aggregated in {secs:F2} s ({store.Count / Math.Max(secs, 1e-9):N0} events/s)");
        Console.WriteLine($"  {inst}");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
        AggregatedParquetWriter.Write(inst, outPath);
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }

    /// <summary>Generates <c>synthetic:market[-small|-light]</c> and prints its truth report on the train, valid and test windows.</summary>
    public static int Truth(string data)
    {
        var config = MarketConfig.FromName(data)
            ?? throw new ArgumentException($"--data {data}: mtfm data truth knows {string.Join(", ", MarketConfig.Names)}.");
        var ds = MarketGenerator.Generate(config);
        Console.Write(ds.Store.Summary());
        foreach (var part in new[] { SplitPart.Train, SplitPart.Valid, SplitPart.Test }) Console.Write(ds.TruthTable(part));
        return 0;
    }
}
