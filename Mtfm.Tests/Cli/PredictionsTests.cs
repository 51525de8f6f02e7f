using System.Globalization;
using System.Text.Json;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Data;
using Parquet;
using Parquet.Schema;

namespace Mtfm.Tests.Cli;

/// <summary>`--predictions`: one row per test exposure, from which a user recomputes exactly the metrics of metrics.json.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class PredictionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-pred").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>Mann–Whitney AUC with ties counted one half, in double (independent of the engine's implementation).</summary>
    private static double Auc(List<(double P, int Y)> rows)
    {
        var sorted = rows.OrderBy(r => r.P).ToList();
        double rankSumPos = 0; long pos = 0;
        for (int i = 0; i < sorted.Count;)
        {
            int j = i;
            while (j < sorted.Count && sorted[j].P == sorted[i].P) j++;
            double midRank = (i + 1 + j) / 2.0; // ranks i+1 .. j
            for (int k = i; k < j; k++) if (sorted[k].Y == 1) { rankSumPos += midRank; pos++; }
            i = j;
        }
        long neg = sorted.Count - pos;
        return (rankSumPos - pos * (pos + 1) / 2.0) / ((double)pos * neg);
    }

    [Fact]
    public async Task PredictionsFileReproducesTheMetricsAndEvalWritesParquet()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        string csv = Path.Combine(_dir, "events.csv"), schema = Path.Combine(_dir, "schema.json");
        EventLogWriter.WriteCsv(store, csv);
        File.WriteAllText(schema, store.Layout.Schema.ToJson());
        var tasks = store.Layout.Schema.Tasks;

        var stdout = Console.Out;
        string predCsv = Path.Combine(_dir, "out", "pred.csv"), predParquet = Path.Combine(_dir, "pred.parquet");
        try
        {
            Console.SetOut(new StringWriter());
            var request = new TrainRequest
            {
                Data = csv,
                Schema = schema,
                Epochs = 1,
                BatchTokens = 512,
                OutDir = _dir,
                Name = "p",
                Threads = 1,
                Predictions = predCsv,
                PredictionColumns = ["item_id"],
            };
            Assert.Equal(0, TrainCommand.Run(request));
            Assert.Equal(0, EvalCommand.Run(Path.Combine(_dir, "p"), request with { Predictions = predParquet }));
        }
        finally { Console.SetOut(stdout); }

        var lines = File.ReadAllLines(predCsv);
        string[] header = lines[0].Split(',');
        Assert.Equal(["user", "time", "scenario", "item_id", .. tasks.Select(t => "p_" + t), .. tasks.Select(t => "label_" + t)], header);
        var rows = lines.Skip(1).Select(l => l.Split(',')).ToList();
        var test = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Test, store.SortedByUserTime());
        Assert.Equal(test.TargetCount, rows.Count);
        var times = rows.Select(r => long.Parse(r[1], CultureInfo.InvariantCulture)).ToList();
        Assert.All(times, t => Assert.True(t >= store.Layout.Schema.Split!.TestStart));

        AssertReproducesMetrics(rows, Path.Combine(_dir, "p", "metrics.json"), tasks, keys: 1);

        // mtfm eval --predictions x.parquet: the same rows and keys, the reloaded model's probabilities.
        await using var fs = File.OpenRead(predParquet);
        await using var reader = await ParquetReader.CreateAsync(fs, cancellationToken: ct);
        var fields = reader.Schema.GetDataFields();
        Assert.Equal(header, fields.Select(f => f.Name));
        using var rg = reader.OpenRowGroupReader(0);
        Assert.Equal(rows.Count, rg.RowCount);
        var items = new string?[rows.Count];
        await rg.ReadAsync(fields[3], items.AsMemory(), null, ct);
        var p0 = new float[rows.Count];
        await rg.ReadAsync<float>(fields[4], p0.AsMemory(), null, ct);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(rows[i][3].Length == 0 ? null : rows[i][3], items[i]); // an empty key cell (coupon has no item_id) is null in Parquet
            Assert.True(Math.Abs(p0[i] - float.Parse(rows[i][4], CultureInfo.InvariantCulture)) < 1e-5, $"row {i}: {p0[i]} vs {rows[i][4]}");
        }
    }

    /// <summary>Recomputes AUC per (scenario, task) and pooled from the file's rows: equal to metrics.json, with the same exposure and positive counts.</summary>
    private static void AssertReproducesMetrics(List<string[]> rows, string metricsPath, List<string> tasks, int keys)
    {
        using var metrics = JsonDocument.Parse(File.ReadAllText(metricsPath));
        int checkedRows = 0, p = 3 + keys, y = 3 + keys + tasks.Count;
        foreach (var m in metrics.RootElement.GetProperty("metrics").EnumerateArray())
        {
            string scen = m.GetProperty("scenario").GetString()!, task = m.GetProperty("task").GetString()!;
            int k = tasks.IndexOf(task);
            var cells = rows.Where(r => (scen == "(all)" || r[2] == scen) && r[y + k].Length > 0)
                .Select(r => (P: (double)float.Parse(r[p + k], CultureInfo.InvariantCulture), Y: int.Parse(r[y + k], CultureInfo.InvariantCulture)))
                .ToList();
            Assert.Equal(m.GetProperty("exposures").GetInt64(), cells.Count);
            Assert.Equal(m.GetProperty("positives").GetInt64(), cells.Count(c => c.Y == 1));
            var auc = m.GetProperty("auc");
            if (auc.ValueKind == JsonValueKind.Null) continue;
            Assert.True(Math.Abs(auc.GetDouble() - Auc(cells)) < 1e-9, $"{scen}/{task}: metrics.json AUC {auc.GetDouble()} vs recomputed {Auc(cells)}");
            checkedRows++;
        }
        Assert.True(checkedRows >= 4, $"only {checkedRows} metric rows with an AUC");
    }

    /// <summary>`mtfm train --model lightgbm --predictions`: the baseline writes the same file, one row per test exposure, a probability for every task.</summary>
    [Fact]
    public void LightGbmBaselineWritesPredictionsThatReproduceItsMetrics()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        string csv = Path.Combine(_dir, "events.csv"), schema = Path.Combine(_dir, "schema.json"), pred = Path.Combine(_dir, "lgbm.csv");
        EventLogWriter.WriteCsv(store, csv);
        File.WriteAllText(schema, store.Layout.Schema.ToJson());
        var tasks = store.Layout.Schema.Tasks;
        var stdout = Console.Out;
        try
        {
            Console.SetOut(new StringWriter());
            Assert.Equal(0, TrainCommand.Run(new TrainRequest { Data = csv, Schema = schema, Model = "lightgbm", OutDir = _dir, Name = "g", Threads = 1, Predictions = pred }));
        }
        finally { Console.SetOut(stdout); }
        var lines = File.ReadAllLines(pred);
        Assert.Equal(["user", "time", "scenario", .. tasks.Select(t => "p_" + t), .. tasks.Select(t => "label_" + t)], lines[0].Split(','));
        var rows = lines.Skip(1).Select(l => l.Split(',')).ToList();
        var test = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Test, store.SortedByUserTime());
        Assert.Equal(test.TargetCount, rows.Count);
        // Every task has a probability on every row, also where the scenario has no such label (coupon: no conversion).
        Assert.All(rows, r => Assert.All(Enumerable.Range(0, tasks.Count), k => Assert.True(float.IsFinite(float.Parse(r[3 + k], CultureInfo.InvariantCulture)))));
        Assert.Contains(rows, r => r[3 + 2 * tasks.Count - 1].Length == 0);
        AssertReproducesMetrics(rows, Path.Combine(_dir, "g", "metrics.json"), tasks, keys: 0);
    }

    [Fact]
    public void PredictionColumnsNeedAnEventLog()
    {
        var e = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Predictions = "x.csv", PredictionColumns = ["item_id"] }));
        Assert.Contains("--predictions-columns", e.Message, StringComparison.Ordinal);
    }
}
