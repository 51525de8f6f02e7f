using BenchmarkDotNet.Attributes;
using Mtfm.Engine.Data;

namespace Mtfm.Bench;

/// <summary>
/// Data pipeline rates on the synthetic default (events/s = store.Count / mean time; one core):
/// CSV read, Parquet read, user-level aggregation, per-exposure aggregation, generation.
/// Run: dotnet run -c Release --project Mtfm.Bench -- --filter '*DataPipelineBench*' --job short
/// </summary>
[MemoryDiagnoser]
public class DataPipelineBench
{
    private SyntheticDataset _ds = null!;
    private int[] _order = null!;
    private string _dir = null!, _csv = null!, _pq = null!;

    [GlobalSetup]
    public void Setup()
    {
        _ds = SyntheticGenerator.Generate(SyntheticConfig.Default);
        _order = _ds.Store.SortedByUserTime();
        _dir = Directory.CreateTempSubdirectory("mtfm-bench-").FullName;
        _csv = Path.Combine(_dir, "events.csv"); _pq = Path.Combine(_dir, "events.parquet");
        EventLogWriter.WriteCsv(_ds.Store, _csv);
        EventLogWriter.WriteParquet(_ds.Store, _pq);
        var agg = UserLevelAggregator.Aggregate(_ds.Store, sortedOrder: _order);
        var per = UserLevelAggregator.Aggregate(_ds.Store, AggregationMode.PerExposure, sortedOrder: _order);
        Console.WriteLine($"// synthetic default: {_ds.Store.Count} events, {_ds.Store.ExposureCount} exposures, {_ds.Store.UserCount} users; " +
            $"bayes AUC click (test) {_ds.BayesOptimalAuc(0):F4}, ctcvr {_ds.BayesOptimalAuc(1):F4}");
        Console.WriteLine($"// {agg}");
        Console.WriteLine($"// {per}");
        var ml = FindMovieLens();
        if (ml is not null)
        {
            var st = MovieLensImporter.Import(ml);
            var a = UserLevelAggregator.Aggregate(st);
            var p = UserLevelAggregator.Aggregate(st, AggregationMode.PerExposure);
            Console.WriteLine($"// movielens {ml}: {st.Count} events; {a}; {p}");
        }
    }

    private static string? FindMovieLens()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var c = Path.Combine(d.FullName, "shared", "data", "movielens-latest-small");
            if (Directory.Exists(c)) return c;
        }
        return null;
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_dir, true);

    /// <summary>Events per operation (divide by the mean time for events/s).</summary>
    public int Events => _ds.Store.Count;

    [Benchmark]
    public int CsvRead() { var st = new EventStore(_ds.Store.Layout, _ds.Store.Count); CsvEventReader.Read(_csv, st); return st.Count; }

    [Benchmark]
    public int ParquetRead() { var st = new EventStore(_ds.Store.Layout, _ds.Store.Count); ParquetEventReader.Read(_pq, st); return st.Count; }

    [Benchmark]
    public int AggregateUserWindow() => UserLevelAggregator.Aggregate(_ds.Store, sortedOrder: _order).Count;

    [Benchmark]
    public int AggregateUserWindowWithSort() => UserLevelAggregator.Aggregate(_ds.Store).Count;

    [Benchmark]
    public int AggregatePerExposure() => UserLevelAggregator.Aggregate(_ds.Store, AggregationMode.PerExposure, sortedOrder: _order).Count;

    [Benchmark]
    public int Generate() => SyntheticGenerator.Generate(SyntheticConfig.Default).Store.Count;
}
