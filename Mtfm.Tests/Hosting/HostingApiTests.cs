using Mtfm.Engine.Data;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Hosting;
using Mtfm.Engine.Native;
using Mtfm.Engine.Serving;
using Mtfm.Tests.Cuda;
using Mtfm.Tests.Serving;
using nietras.SeparatedValues;

namespace Mtfm.Tests.Hosting;

/// <summary>The public hosting API (Mtfm.Engine.Hosting) on the tiny synthetic log.</summary>
public sealed class HostingApiTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mtfm-hosting-" + Guid.NewGuid().ToString("N")[..12]);

    public HostingApiTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly TrainingSettings OneEpoch = new() { Preset = "tiny", Epochs = 1 };

    [Fact]
    public void TrainEvaluateSaveLoadAndScoreRoundTrip()
    {
        var data = EventDataset.Synthetic("tiny");
        var reports = new List<TrainingProgress>();
        using var model = TrainedModel.Train(data, OneEpoch, ComputeDevice.Cpu(1), new ListProgress(reports), Ct);
        var summary = model.Summary!;
        Assert.True(summary.Steps > 0);
        Assert.NotEmpty(reports);
        Assert.Equal(summary.Steps, reports[^1].Step);
        Assert.All(reports, r => Assert.True(double.IsFinite(r.Loss) && r.Step <= r.TotalSteps));

        var metrics = model.Evaluate(data, DatasetPart.Test);
        var pooled = Assert.Single(metrics, m => m.Scenario is null && m.Task == "click");
        Assert.InRange(pooled.Auc, 0, 1);
        Assert.InRange(pooled.BayesOptimalAuc, 0.5, 1); // synthetic data knows its true probabilities
        Assert.Contains(metrics, m => m.Scenario == "coupon" && m.Task == "click");
        Assert.DoesNotContain(metrics, m => m.Scenario == "coupon" && m.Task == "conversion"); // coupon has no conversion label
        Assert.Equal(metrics.Where(m => m.Scenario is not null && m.Task == "click").Sum(m => m.Exposures), pooled.Exposures);

        string file = model.Save(_dir);
        Assert.Equal(Path.Combine(_dir, "model.safetensors"), file);
        Assert.True(File.Exists(Path.Combine(_dir, "config.json")));
        using (var loaded = TrainedModel.Load(_dir, ComputeDevice.Cpu(1)))
        {
            Assert.Null(loaded.Summary);
            Assert.Equal(model.Config, loaded.Config);
            Assert.Equal(model.ParameterCount, loaded.ParameterCount);
            Assert.Equal(metrics, loaded.Evaluate(data, DatasetPart.Test)); // same weights, same statistics: same metrics
        }

        var st = data.Store;
        var behaviour = ServingTestData.BehaviourByUser(st);
        int e0 = Enumerable.Range(0, st.Count).First(e => st.IsExposure(e) && st.TimeOf(e) >= data.Schema.Split!.TestStart);
        var request = ServingTestData.RequestFor(st, behaviour, [e0]);
        using var fromModel = model.CreateScorer(threads: 1);
        using var fromFile = Scorer.Load(_dir, threads: 1);
        string a = fromModel.Score(request).ToJson(), b = fromFile.Score(request).ToJson();
        Assert.Equal(b, a);
        Assert.Contains("\"click\":", a);
    }

    /// <summary>The host's way to the CLI's default click feedback: the same tokens `mtfm train` derives; twice is refused.</summary>
    [Fact]
    public void WithClickFeedbackAddsTheTokensMtfmTrainAdds()
    {
        var data = EventDataset.Synthetic("tiny");
        var fb = data.WithClickFeedback();
        Assert.False(FeedbackTokens.Declared(data.Schema));
        Assert.True(FeedbackTokens.Declared(fb.Schema));
        Assert.Equal(data.EventCount + data.ExposureCount, fb.EventCount); // one click token per exposure (click seen at once)
        var cli = Mtfm.Cli.Commands.PreparedData.LoadStore(new Mtfm.Cli.Commands.TrainRequest { Data = "synthetic:tiny" }, TextWriter.Null, out _);
        Assert.Equal(cli.Layout.Schema.ToJson(), fb.Schema.ToJson());
        Assert.Equal(cli.Count, fb.EventCount);
        Assert.Contains("feedback blocks", Assert.Throws<InvalidOperationException>(() => fb.WithClickFeedback()).Message);
        using var model = TrainedModel.Train(fb, OneEpoch, ComputeDevice.Cpu(1), progress: null, Ct);
        Assert.True(model.Summary!.Steps > 0);
        // Fresh data takes the trained model's blocks (what an older checkpoint needs once the default rule changes).
        var again = data.WithFeedbackOf(model);
        Assert.Equal(model.Schema.ToJson(), again.Schema.ToJson());
        Assert.NotEmpty(model.Evaluate(again));
        Assert.Contains("feedback blocks", Assert.Throws<InvalidOperationException>(() => fb.WithFeedbackOf(model)).Message);
    }

    [Fact]
    public void CancellationEndsTrainingAfterTheCurrentStep()
    {
        var data = EventDataset.Synthetic("tiny");
        using var cts = new CancellationTokenSource();
        var reports = new List<TrainingProgress>();
        var progress = new ListProgress(reports, onReport: () => cts.Cancel());
        Assert.ThrowsAny<OperationCanceledException>(() => TrainedModel.Train(data, OneEpoch, ComputeDevice.Cpu(1), progress, cts.Token));
        Assert.Single(reports); // the step after the first report was not taken
        Assert.ThrowsAny<OperationCanceledException>(() => TrainedModel.Train(data, OneEpoch, ComputeDevice.Cpu(1), cancellationToken: cts.Token));
    }

    [Fact]
    public void RowsInMemoryAreReadLikeTheSameCsv()
    {
        var synthetic = EventDataset.Synthetic("tiny");
        string csv = Path.Combine(_dir, "events.csv");
        EventLogWriter.WriteCsv(synthetic.Store, csv);
        var rows = new List<Dictionary<string, string>>();
        using (var reader = Sep.New(',').Reader(o => o with { HasHeader = true, Unescape = true }).FromFile(csv))
        {
            var header = reader.Header.ColNames.ToArray();
            foreach (var r in reader)
            {
                var d = new Dictionary<string, string>(StringComparer.Ordinal);
                for (int c = 0; c < header.Length; c++) d[header[c]] = r[c].ToString();
                rows.Add(d);
            }
        }
        var fromCsv = EventDataset.Load(synthetic.Schema, csv);
        var fromRows = EventDataset.FromRows(synthetic.Schema, rows);
        Assert.Equal(synthetic.EventCount, fromRows.EventCount);
        Assert.Equal(fromCsv.ExposureCount, fromRows.ExposureCount);
        Assert.Equal(fromCsv.UserCount, fromRows.UserCount);
        var x = fromCsv.Store; var y = fromRows.Store;
        for (int e = 0; e < x.Count; e++)
        {
            Assert.Equal(x.UserKey(x.UserOf(e)), y.UserKey(y.UserOf(e)));
            Assert.Equal(x.TimeOf(e), y.TimeOf(e));
            Assert.Equal(x.SourceOf(e), y.SourceOf(e));
            Assert.True(x.Categorical(e).SequenceEqual(y.Categorical(e)));
            Assert.True(x.Numeric(e).SequenceEqual(y.Numeric(e)));
            if (x.IsExposure(e))
                for (int t = 0; t < x.Layout.TaskCount; t++) Assert.Equal(x.Label(e, t), y.Label(e, t));
        }

        // A schema with feedback blocks: the dataset holds the feedback tokens exactly as `mtfm train` derives them.
        var fbSchema = Data.FeedbackTokenTests.WithFeedback(synthetic.Schema);
        var withFeedback = EventDataset.Load(fbSchema, csv);
        var expected = FeedbackTokens.Derive(fromCsv.Store, fbSchema);
        Assert.Contains(withFeedback.Schema.Sequences, q => q.Name == "fb");
        Assert.True(withFeedback.EventCount > fromCsv.EventCount, "no feedback tokens");
        Assert.Equal(expected.Count, withFeedback.EventCount);
        Assert.Equal(expected.Layout.Schema.ToJson(), withFeedback.Schema.ToJson());
        Assert.Equal(withFeedback.EventCount, EventDataset.FromRows(fbSchema, rows).EventCount);

        // A row without a column its source needs is rejected with the row and the column, nothing filled in.
        int bad = rows.FindIndex(r => r["source"] == "feed");
        rows[bad].Remove("hour");
        var ex = Assert.Throws<DataFormatException>(() => EventDataset.FromRows(synthetic.Schema, rows, "my-rows"));
        Assert.Equal($"my-rows: row {bad + 1}, column 'hour': missing (the row has no such column)", ex.Message);
        rows[bad]["hour"] = "7";
        int priced = rows.FindIndex(r => r["source"] == "groupbuy");
        rows[priced]["price"] = "cheap";
        ex = Assert.Throws<DataFormatException>(() => EventDataset.FromRows(synthetic.Schema, rows, "my-rows"));
        Assert.Equal($"my-rows: row {priced + 1}, column 'price': unparsable number 'cheap'", ex.Message);
    }

    [Fact]
    public void RowsInMemoryFollowTheSourceMapping()
    {
        var synthetic = EventDataset.Synthetic("tiny");
        var schema = DatasetSchema.Parse(synthetic.Schema.ToJson());
        var sources = schema.Scenarios.Select(x => x.Name).Concat(schema.Sequences.Select(x => x.Name)).ToList();
        schema.SourceMapping = new SourceMappingSpec
        {
            Columns = ["kind"], Unmapped = "skip",
            Rules = [.. sources.Select(n => new SourceRule { When = new() { ["kind"] = "k_" + n }, Source = n })],
        };
        string csv = Path.Combine(_dir, "events.csv");
        EventLogWriter.WriteCsv(synthetic.Store, csv);
        var rows = new List<Dictionary<string, string>>();
        using (var reader = Sep.New(',').Reader(o => o with { HasHeader = true, Unescape = true }).FromFile(csv))
        {
            var header = reader.Header.ColNames.ToArray();
            foreach (var r in reader)
            {
                var d = new Dictionary<string, string>(StringComparer.Ordinal);
                for (int c = 0; c < header.Length; c++) d[header[c]] = r[c].ToString();
                d["kind"] = "k_" + d["source"];
                d.Remove("source");
                rows.Add(d);
            }
        }
        rows[3].Remove("kind"); // no kind: an empty cell, which no rule maps: skipped as the schema says
        var data = EventDataset.FromRows(schema, rows);
        Assert.Equal(synthetic.EventCount - 1, data.EventCount);
    }

    [Fact]
    public void ParquetLogLoadsLikeTheCsvLog()
    {
        var synthetic = EventDataset.Synthetic("tiny");
        string csv = Path.Combine(_dir, "events.csv"), parquet = Path.Combine(_dir, "events.parquet");
        EventLogWriter.WriteCsv(synthetic.Store, csv);
        EventLogWriter.WriteParquet(synthetic.Store, parquet);
        string schema = Path.Combine(_dir, "schema.json");
        File.WriteAllText(schema, synthetic.Schema.ToJson());
        var a = EventDataset.Load(schema, csv);
        var b = EventDataset.Load(schema, parquet);
        Assert.Equal(synthetic.EventCount, b.EventCount);
        Assert.Equal(a.ToString(), b.ToString());
        Assert.Equal(parquet, b.Description);
    }

    [Fact]
    public void BadInputIsRefusedWithAMessage()
    {
        var data = EventDataset.Synthetic("tiny");
        Assert.Throws<ArgumentException>(() => EventDataset.Synthetic("huge"));
        Assert.Throws<ArgumentException>(() => TrainedModel.Train(data, new TrainingSettings { Preset = "gigantic" }, cancellationToken: Ct));
        Assert.Throws<ArgumentException>(() => TrainedModel.Train(data, OneEpoch with { Epochs = -1 }, cancellationToken: Ct));
        Assert.Throws<ArgumentOutOfRangeException>(() => ComputeDevice.Cpu(-1));
        Assert.Throws<FileNotFoundException>(() => TrainedModel.Load(Path.Combine(_dir, "nothing-here")));

        var noSplit = DatasetSchema.Parse(data.Schema.ToJson());
        noSplit.Split = null;
        string csv = Path.Combine(_dir, "events.csv");
        EventLogWriter.WriteCsv(data.Store, csv);
        var unsplit = EventDataset.Load(noSplit, csv);
        var ex = Assert.Throws<InvalidOperationException>(() => TrainedModel.Train(unsplit, OneEpoch, ComputeDevice.Cpu(1), cancellationToken: Ct));
        Assert.Contains("no temporal split", ex.Message);
    }

    [Fact]
    public void EvaluatingOnAnotherSchemaIsRefused()
    {
        var data = EventDataset.Synthetic("tiny");
        using var model = TrainedModel.Train(data, OneEpoch with { Model = Engine.Model.MtfmConfig.Mmoe }, ComputeDevice.Cpu(1), cancellationToken: Ct);
        var schema = DatasetSchema.Parse(data.Schema.ToJson());
        schema.Name = "renamed";
        string csv = Path.Combine(_dir, "events.csv");
        EventLogWriter.WriteCsv(data.Store, csv); // the same events under a schema that differs in its name only
        var ex = Assert.Throws<ArgumentException>(() => model.Evaluate(EventDataset.Load(schema, csv)));
        Assert.Contains("differs from the schema the model was trained with", ex.Message);
    }

    [Fact]
    public void CudaWithoutAGpuIsRefusedWithAClearMessage()
    {
        try { CudaTestDevice.OpenGpuBackend().Dispose(); Assert.Skip("a GPU is usable here: the 'CUDA not available' refusal cannot be exercised"); }
        catch (CudaNotAvailableException) { }
        var data = EventDataset.Synthetic("tiny");
        var ex = Assert.Throws<CudaNotAvailableException>(() => TrainedModel.Train(data, OneEpoch, ComputeDevice.Cuda(), cancellationToken: Ct));
        Assert.StartsWith("CUDA not available: ", ex.Message);
        Assert.Equal("cuda", ComputeDevice.Cuda().Kind);
    }

    private sealed class ListProgress(List<TrainingProgress> into, Action? onReport = null) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            into.Add(value);
            onReport?.Invoke();
        }
    }
}
