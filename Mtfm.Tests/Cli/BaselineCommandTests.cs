using System.Text.Json;
using Mtfm.Cli.Commands;

namespace Mtfm.Tests.Cli;

/// <summary>`mtfm train --model lightgbm` end to end on synthetic:market-small.</summary>
[Collection(ConsoleCollection.Name)]
public class BaselineCommandTests
{
    [Fact]
    public void LightGbmWritesTheSameRunDirectoryAsMtfm()
    {
        string dir = Directory.CreateTempSubdirectory("mtfm-lgbm").FullName;
        var stdout = Console.Out;
        try
        {
            var log = new StringWriter();
            Console.SetOut(log);
            int rc = TrainCommand.Run(new TrainRequest { Data = "synthetic:market-small", Model = "lightgbm", OutDir = dir, Name = "g", Threads = 1 });
            Assert.Equal(0, rc);
            string run = Path.Combine(dir, "g");
            foreach (var f in new[] { "metrics.json", "report.md", "features.txt", "auc-click.png" })
                Assert.True(File.Exists(Path.Combine(run, f)), $"{f} missing; output:\n{log}");
            string text = log.ToString();
            Assert.Contains("no-recency", text); // the market truth table
            Assert.Contains("Bayes AUC", text);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
            var rows = json.RootElement.GetProperty("metrics").EnumerateArray().ToList();
            foreach (var s in new[] { "home", "search", "local", "promo", "(all)" })
            {
                var click = rows.Single(r => r.GetProperty("scenario").GetString() == s && r.GetProperty("task").GetString() == "click");
                double auc = click.GetProperty("auc").GetDouble(), bayes = click.GetProperty("bayes_optimal_auc").GetDouble();
                Assert.InRange(auc, 0.7, bayes);
            }
            Assert.DoesNotContain(rows, r => r.GetProperty("scenario").GetString() == "promo" && r.GetProperty("task").GetString() == "conversion");
        }
        finally
        {
            Console.SetOut(stdout);
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AnUnknownModelIsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new TrainRequest { Data = "synthetic:tiny", Model = "xgboost" }));
        Assert.Contains("--model xgboost", ex.Message);
    }
}
