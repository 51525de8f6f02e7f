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

        // Recompute AUC per (scenario, task) and pooled from the file: equal to metrics.json.
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "p", "metrics.json")));
        int checkedRows = 0;
        foreach (var m in metrics.RootElement.GetProperty("metrics").EnumerateArray())
        {
            string scen = m.GetProperty("scenario").GetString()!, task = m.GetProperty("task").GetString()!;
            int k = tasks.IndexOf(task);
            var cells = rows.Where(r => (scen == "(all)" || r[2] == scen) && r[4 + tasks.Count + k].Length > 0)
                .Select(r => (P: (double)float.Parse(r[4 + k], CultureInfo.InvariantCulture), Y: int.Parse(r[4 + tasks.Count + k], CultureInfo.InvariantCulture)))
                .ToList();
            Assert.Equal(m.GetProperty("exposures").GetInt64(), cells.Count);
            Assert.Equal(m.GetProperty("positives").GetInt64(), cells.Count(c => c.Y == 1));
            var auc = m.GetProperty("auc");
            if (auc.ValueKind == JsonValueKind.Null) continue;
            Assert.True(Math.Abs(auc.GetDouble() - Auc(cells)) < 1e-9, $"{scen}/{task}: metrics.json AUC {auc.GetDouble()} vs recomputed {Auc(cells)}");
            checkedRows++;
        }
        Assert.True(checkedRows >= 4, $"only {checkedRows} metric rows with an AUC");

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

    [Fact]
    public void PredictionColumnsNeedAnEventLog()
    {
        var e = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Predictions = "x.csv", PredictionColumns = ["item_id"] }));
        Assert.Contains("--predictions-columns", e.Message, StringComparison.Ordinal);
    }
}
