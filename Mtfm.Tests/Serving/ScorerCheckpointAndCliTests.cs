using System.CommandLine;
using Mtfm.Cli;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Engine.IO;

namespace Mtfm.Tests.Serving;

public sealed class ScorerCheckpointAndCliTests(ServingFixture fx) : IClassFixture<ServingFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-serve-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private List<ScoreRequest> Requests(int instances) => ServingTestData.TestWindowRequests(fx, instances);

    /// <summary>A model whose every parameter (GLN, rab and heads included) is moved off its initial value, saved to model.safetensors in a run directory.</summary>
    private string SavePerturbedModel(out MtfmModel model, CpuBackend backend)
    {
        model = new MtfmModel(backend, MtfmConfig.Tiny, fx.Store.Layout, seed: 11);
        ServingTestData.Perturb(model, 5);
        string run = Path.Combine(_dir, "run");
        Directory.CreateDirectory(run);
        MtfmCheckpoint.Save(Path.Combine(run, "model.safetensors"), model, fx.Stats);
        return run;
    }

    [Fact]
    public void ReloadedCheckpointScoresIdenticallyBitForBit()
    {
        using var backend = new CpuBackend(1);
        string run = SavePerturbedModel(out var model, backend);
        using var _ = model;
        using var live = new Scorer(model, fx.Stats);
        using var fromDir = Scorer.Load(run, threads: 1);
        using var fromFile = Scorer.Load(Path.Combine(run, "model.safetensors"), threads: 1);
        Assert.Equal(fx.Store.Layout.Schema.ToJson(), fromDir.Schema.ToJson());
        int n = 0;
        foreach (var r in Requests(12))
        {
            var want = live.ScoreProbabilities(r);
            var a = fromDir.ScoreProbabilities(r);
            var b = fromFile.ScoreProbabilities(r);
            Assert.True(want.AsSpan().SequenceEqual(a) && want.AsSpan().SequenceEqual(b), $"request {n}");
            // Through JSON both ways: the response's floats round-trip exactly.
            var resp = ScoreResponse.Parse(fromDir.Score(ScoreRequest.Parse(r.ToJson())).ToJson());
            var tasks = fromDir.TasksOf(r.Scenario!);
            Assert.Equal(r.Candidates!.Count, resp.Scores.Count);
            for (int c = 0; c < resp.Scores.Count; c++)
            {
                Assert.Equal(tasks, resp.Scores[c].Keys);
                foreach (var t in tasks) Assert.Equal(want[c * fx.Store.Layout.TaskCount + fx.Store.Layout.Schema.Tasks.IndexOf(t)], resp.Scores[c][t]);
            }
            n++;
        }
        Assert.True(n > 20);
        Assert.Equal(["click"], fromDir.TasksOf("coupon"));     // coupon has no conversion label
        Assert.Throws<FileNotFoundException>(() => Scorer.Load(Path.Combine(_dir, "missing")));
    }

    private static int Invoke(StringWriter stdout, StringWriter stderr, params string[] args) =>
        new RootCommand { Program.BuildScore() }.Parse(["score", .. args]).Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });

    [Fact]
    public void ScoreCommandScoresJsonLinesAndReportsBadLines()
    {
        using var backend = new CpuBackend(1);
        string run = SavePerturbedModel(out var model, backend);
        using var _ = model;
        using var live = new Scorer(model, fx.Stats);
        var requests = Requests(3);
        var lines = requests.Select(r => r.ToJson()).ToList();
        lines.Insert(2, "");                                                   // blank: skipped
        lines.Insert(3, lines[0].Replace("\"scenario\":\"", "\"scenario\":\"x", StringComparison.Ordinal)); // line 4: bad
        string input = Path.Combine(_dir, "requests.jsonl"), output = Path.Combine(_dir, "scores.jsonl");
        File.WriteAllLines(input, lines);
        string badScenario = "x" + requests[0].Scenario;

        var o = new StringWriter(); var e = new StringWriter();
        Assert.Equal(1, Invoke(o, e, "--model", run, "--input", input, "--output", output, "--threads", "1"));
        var got = File.ReadAllLines(output);
        Assert.Equal(requests.Count, got.Length);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(live.Score(requests[i]).ToJson(), got[i]);
        Assert.StartsWith("{\"user\":\"" + requests[0].User + "\",\"scenario\":\"" + requests[0].Scenario + "\",\"scores\":[{\"click\":", got[0]);
        Assert.Equal($"line 4: scenario: '{badScenario}' is unknown (scenarios: feed, groupbuy, coupon){Environment.NewLine}" +
            $"mtfm score: 1 of {requests.Count + 1} requests failed; {requests.Count} scored.{Environment.NewLine}", e.ToString());
        Assert.Equal("", o.ToString());

        // --fail-fast: stops at line 4, keeps the two responses before it.
        o = new StringWriter(); e = new StringWriter();
        Assert.Equal(1, Invoke(o, e, "--model", run, "--input", input, "--output", output, "--threads", "1", "--fail-fast"));
        Assert.Equal(got[..2], File.ReadAllLines(output));
        Assert.StartsWith("line 4: scenario: ", e.ToString());
        Assert.Contains("stopped at line 4 (--fail-fast); 2 requests scored before it.", e.ToString());

        // No bad line, responses on standard output: exit 0.
        File.WriteAllLines(input, lines.Where((_, i) => i != 3));
        o = new StringWriter(); e = new StringWriter();
        Assert.Equal(0, Invoke(o, e, "--model", Path.Combine(run, "model.safetensors"), "--input", input, "--threads", "1", "--context-cache-mb", "0"));
        Assert.Equal(got, o.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("", e.ToString());

        // Missing model or input: exit 1 (message on the console's error stream).
        Assert.Equal(1, Invoke(o, e, "--model", Path.Combine(_dir, "nope"), "--input", input));
        Assert.Equal(1, Invoke(o, e, "--model", run, "--input", Path.Combine(_dir, "nope.jsonl")));
        Assert.Equal(1, Invoke(o, e, "--model", run, "--input", input, "--context-cache-mb", "-1"));
    }
}
