using System.Globalization;
using Mtfm.Cli.Commands;
using Mtfm.Engine.Data;

namespace Mtfm.Tests.Cli;

/// <summary>`mtfm train` / `mtfm eval` end to end on a log with holes and no source column (missing: allow + sourceMapping).</summary>
[Collection(ConsoleCollection.Name)]
public sealed class LogsAsTheyComeCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-logs-cli").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void TrainsAndReloadsOnALogWithMissingValuesAndMappedSources()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        string exported = Path.Combine(_dir, "exported.csv");
        EventLogWriter.WriteCsv(store, exported);
        var lines = File.ReadAllLines(exported);
        var header = lines[0].Split(',');
        int src = Array.IndexOf(header, "source"), price = Array.IndexOf(header, "price"), item = Array.IndexOf(header, "item_id");
        // The source becomes two columns (kind, name); every 3rd price and every 5th item id is blanked; heartbeat rows
        // match no rule and are skipped.
        var rows = new List<string> { string.Join(',', header.Select((h, i) => i == src ? "kind,name" : h)) };
        int blankedPrices = 0;
        for (int r = 1; r < lines.Length; r++)
        {
            var c = lines[r].Split(',');
            bool exposure = store.Layout.Schema.Scenarios.Any(s => s.Name == c[src]);
            if (r % 3 == 0 && c[price].Length > 0) { c[price] = ""; blankedPrices++; }
            if (r % 5 == 0) c[item] = "";
            rows.Add(string.Join(',', c.Select((v, i) => i == src ? (exposure ? "exposure," : "behaviour,") + v : v)));
            if (r % 50 == 0) rows.Add(string.Join(',', c.Select((v, i) => i == src ? "heartbeat," : "")));
        }
        string csv = Path.Combine(_dir, "events.csv");
        File.WriteAllLines(csv, rows);
        Assert.True(blankedPrices > 10);

        var schema = DatasetSchema.Parse(store.Layout.Schema.ToJson());
        schema.Missing = "allow";
        schema.SourceMapping = new SourceMappingSpec
        {
            Columns = ["kind", "name"],
            Unmapped = "skip",
            Rules = [.. schema.Scenarios.Select(s => new SourceRule { When = new() { ["kind"] = "exposure", ["name"] = s.Name }, Source = s.Name }),
                     .. schema.Sequences.Select(s => new SourceRule { When = new() { ["kind"] = "behaviour", ["name"] = s.Name }, Source = s.Name })],
        };
        string schemaPath = Path.Combine(_dir, "schema.json");
        File.WriteAllText(schemaPath, schema.ToJson());

        var stdout = Console.Out;
        var log = new StringWriter();
        string p1 = Path.Combine(_dir, "train.csv"), p2 = Path.Combine(_dir, "eval.csv");
        try
        {
            Console.SetOut(log);
            var request = new TrainRequest { Data = csv, Schema = schemaPath, Epochs = 1, BatchTokens = 512, OutDir = _dir, Name = "m", Threads = 1, Predictions = p1 };
            Assert.Equal(0, TrainCommand.Run(request));
            Assert.Equal(0, EvalCommand.Run(Path.Combine(_dir, "m"), request with { Predictions = p2 }));
        }
        finally { Console.SetOut(stdout); }
        Assert.Contains($"{(lines.Length - 1) / 50} skipped (no sourceMapping rule)", log.ToString(), StringComparison.Ordinal);

        // The reloaded checkpoint (schema with missing: allow → presence inputs, extra rows) scores as the trained model.
        var a = File.ReadAllLines(p1); var b = File.ReadAllLines(p2);
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Length > 100);
        int pCol = Array.IndexOf(a[0].Split(','), "p_click");
        for (int i = 1; i < a.Length; i++)
        {
            float x = float.Parse(a[i].Split(',')[pCol], CultureInfo.InvariantCulture), y = float.Parse(b[i].Split(',')[pCol], CultureInfo.InvariantCulture);
            Assert.True(float.IsFinite(x) && Math.Abs(x - y) < 1e-5, $"row {i}: train {x} vs eval {y}");
        }
    }
}
