using System.Buffers.Binary;
using System.Text.Json;
using Mtfm.Cli.Reporting;
using SkiaSharp;

namespace Mtfm.Tests.Cli;

[Collection(ConsoleCollection.Name)]
public sealed class ReportingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrainingCurves Curves()
    {
        var train = Enumerable.Range(0, 200).Select(i => new LossPoint(i * 10, 1.4 * Math.Exp(-i / 60.0) + 0.5 + 0.03 * Math.Sin(i))).ToList();
        var val = Enumerable.Range(1, 8).Select(i => new LossPoint(i * 250, 1.4 * Math.Exp(-i * 25 / 60.0) + 0.55)).ToList();
        return new TrainingCurves(train, val);
    }

    private static List<ScenarioMetricsRow> Rows() =>
    [
        new("home_feed", "ctr", 12000, 1800, 0.712, 0.655, 540, 0.3812, 0.781),
        new("group_buy", "ctr", 5000, 400, 0.688, 0.641, 210, 0.2561, 0.752),
        new("coupon", "ctr", 900, 30, 0.601, double.NaN, 0, 0.1498, 0.690),
        new("all", "ctr", 17900, 2230, 0.705, 0.650, 700, 0.3401, 0.771),
        new("home_feed", "ctcvr", 12000, 120, 0.801, 0.7, 40, 0.0671, double.NaN),
    ];

    /// <summary>Checks the PNG signature and IHDR, decodes it with Skia and returns (width, height, distinct colours).</summary>
    private static (int w, int h, int colours) InspectPng(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 2000, $"{path} is only {bytes.Length} bytes");
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        int w = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), h = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20));
        using var bmp = SKBitmap.Decode(bytes);
        Assert.NotNull(bmp);
        Assert.Equal(w, bmp.Width);
        Assert.Equal(h, bmp.Height);
        var colours = new HashSet<uint>();
        for (int y = 0; y < bmp.Height; y += 3)
            for (int x = 0; x < bmp.Width; x += 3)
                colours.Add((uint)bmp.GetPixel(x, y));
        return (w, h, colours.Count);
    }

    [Fact]
    public void LossCurvesRenderToAValidPng()
    {
        string path = Path.Combine(_dir, "loss.png");
        ReportPlots.LossCurves(Curves(), path, 800, 450);
        var (w, h, colours) = InspectPng(path);
        Assert.Equal((800, 450), (w, h));
        Assert.True(colours > 20, $"only {colours} colours: nothing drawn?");
    }

    [Fact]
    public void ScenarioAucBarsRenderToAValidPng()
    {
        string path = Path.Combine(_dir, "auc.png");
        ReportPlots.ScenarioAuc(Rows(), "ctr", path);
        var (w, h, colours) = InspectPng(path);
        Assert.Equal((900, 520), (w, h));
        Assert.True(colours > 20, $"only {colours} colours: nothing drawn?");
        Assert.Contains("no metrics rows for task 'cvr'", Assert.Throws<ArgumentException>(() => ReportPlots.ScenarioAuc(Rows(), "cvr", path)).Message);
    }

    [Fact]
    public void ReportWriterWritesMarkdownJsonAndPlots()
    {
        var report = new RunReport("MTFM synthetic run", new DateTimeOffset(2026, 11, 29, 18, 0, 0, TimeSpan.Zero),
            [new ReportSetting("d_model", "64"), new ReportSetting("device", "cpu | 2 threads")], Rows(), Curves(), 123.4, 45678);
        var files = ReportWriter.Write(report, Path.Combine(_dir, "out"));
        Assert.Equal(new[] { "loss.png", "auc-ctr.png", "auc-ctcvr.png", "metrics.json", "report.md" }, files.Select(Path.GetFileName).ToArray());
        foreach (var png in files.Where(f => f.EndsWith(".png", StringComparison.Ordinal))) InspectPng(png);
        // To look at the artefacts: MTFM_TEST_KEEP_REPORT=/some/dir dotnet test … --filter ReportWriter
        if (Environment.GetEnvironmentVariable("MTFM_TEST_KEEP_REPORT") is { Length: > 0 } keep)
        {
            Directory.CreateDirectory(keep);
            foreach (var f in files) File.Copy(f, Path.Combine(keep, Path.GetFileName(f)), overwrite: true);
        }

        string md = File.ReadAllText(Path.Combine(_dir, "out", "report.md"));
        Assert.Contains("# MTFM synthetic run", md);
        Assert.Contains("| home_feed | ctr | 12,000 | 1,800 | 0.7120 | 0.6550 | 540 | 0.3812 | 0.7810 |", md);
        Assert.Contains("| coupon | ctr | 900 | 30 | 0.6010 | n/a | 0 | 0.1498 | 0.6900 |", md);
        Assert.Contains("cpu \\| 2 threads", md);
        Assert.Contains("![Loss curves](loss.png)", md);
        Assert.Contains("45,678 exposures/s", md);

        string json = File.ReadAllText(Path.Combine(_dir, "out", "metrics.json"));
        using var doc = JsonDocument.Parse(json);
        var rows = doc.RootElement.GetProperty("metrics");
        Assert.Equal(5, rows.GetArrayLength());
        Assert.Equal(JsonValueKind.Null, rows[2].GetProperty("gauc").ValueKind);
        Assert.Equal(0.712, rows[0].GetProperty("auc").GetDouble());
        Assert.Equal("home_feed", rows[0].GetProperty("scenario").GetString());
        var back = JsonSerializer.Deserialize(json, ReportJsonContext.Default.RunReport)!;
        Assert.True(double.IsNaN(back.Metrics[2].Gauc));
        Assert.Equal(report.Metrics[0], back.Metrics[0]);
        Assert.Equal(200, back.Curves.Train.Count);
    }

    private sealed class ManualTime : TimeProvider
    {
        public long Ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Ticks;
        public void Advance(double seconds) => Ticks += (long)(seconds * TimeSpan.TicksPerSecond);
    }

    [Fact]
    public void AMissingNativeRendererCostsThePlotsOnlyAndIsNamedInTheReport()
    {
        // What ScottPlot throws where libSkiaSharp.so is absent (seen on the lent GPU machine's slimmed test pack).
        var missing = new TypeInitializationException("ScottPlot.Fonts",
            new TypeInitializationException("SkiaSharp.SKTypeface", new DllNotFoundException("Unable to load shared library 'libSkiaSharp'")));
        Assert.True(ReportWriter.IsMissingNativeRenderer(missing));
        Assert.False(ReportWriter.IsMissingNativeRenderer(new TypeInitializationException("X", new InvalidOperationException("bug"))));
        Assert.False(ReportWriter.IsMissingNativeRenderer(new IOException("disk full")));

        var report = new RunReport("run", new DateTimeOffset(2026, 12, 4, 0, 0, 0, TimeSpan.Zero), [], Rows(), Curves(), 1, 1);
        string md = ReportWriter.Markdown(report, [], "plots not drawn: the plotting library could not load its native renderer (libSkiaSharp)");
        Assert.Contains("Note: plots not drawn: the plotting library could not load its native renderer (libSkiaSharp)", md);
        Assert.DoesNotContain("![", md);
        Assert.Contains("| home_feed | ctr | 12,000 |", md);
    }

    [Fact]
    public void PlainProgressPrintsPeriodicLinesWithRateAndEta()
    {
        var time = new ManualTime();
        var sw = new StringWriter();
        var sink = new PlainProgressSink(sw, "train", 100_000, TimeSpan.FromSeconds(10), time);
        time.Advance(1);
        sink.Report(1_000, 0.69);           // first report always prints
        time.Advance(4);
        sink.Report(5_000, 0.6);            // 4 s later: throttled
        time.Advance(6);
        sink.Report(22_000, 0.5);           // 11 s after start, 10 s after the last line: prints
        time.Advance(1);
        sink.Report(24_000, 0.45);          // throttled
        sink.Complete();                    // final line always
        var lines = sw.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal(3, lines.Length);
        Assert.Equal("[train] 1.0% 1,000/100,000 exposures | loss 0.6900 | 1,000 exp/s | elapsed 00:00:01 | ETA 00:01:39", lines[0]);
        Assert.Equal("[train] 22.0% 22,000/100,000 exposures | loss 0.5000 | 2,000 exp/s | elapsed 00:00:11 | ETA 00:00:39", lines[1]);
        Assert.Equal("[train] 24.0% 24,000/100,000 exposures | loss 0.4500 | 2,000 exp/s | elapsed 00:00:12 | ETA 00:00:38", lines[2]);
    }

    [Fact]
    public void ThroughputMeterHandlesNothingDone()
    {
        var time = new ManualTime();
        var m = new ThroughputMeter(10, time);
        Assert.Null(m.Eta(0));
        Assert.Equal("--:--:--", ThroughputMeter.Format(m.Eta(0)));
        time.Advance(2);
        Assert.Equal(2.5, m.Rate(5));
        Assert.Equal(TimeSpan.FromSeconds(2), m.Eta(5));
    }

    [Fact]
    public void ProgressRunFallsBackToPlainLinesWhenNotATerminal()
    {
        // Under the test runner stdout is redirected, so Run picks the plain sink and returns the work's result.
        var original = Console.Out;
        var sw = new StringWriter();
        Console.SetOut(sw);
        try
        {
            int r = TrainingProgress.Run("eval", 10, sink => { sink.Report(5, 0.3); sink.Report(10, 0.2); return 42; }, TimeSpan.FromHours(1), forcePlain: true);
            Assert.Equal(42, r);
        }
        finally { Console.SetOut(original); }
        var lines = sw.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length); // first report + final line
        Assert.StartsWith("[eval] 100.0% 10/10 exposures | loss 0.2000", lines[1]);
    }
}
