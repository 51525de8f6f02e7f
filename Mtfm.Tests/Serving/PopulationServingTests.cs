using System.Text.Json;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;

namespace Mtfm.Tests.Serving;

/// <summary>Population statistics through the product's serving path: encoder, checkpoint, scorer.</summary>
public sealed class PopulationServingTests(ServingFixture fx) : IClassFixture<ServingFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-pop-serve-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void CandidatesReadTheSavedStateAtTheRequestTime()
    {
        var state = PopulationStatistics.ForStore(fx.Store).FinalState;
        var enc = new RequestEncoder(fx.Store.Layout, fx.Stats, state);
        var l = fx.Store.Layout;
        int n = 0, nonZero = 0;
        foreach (var r in ServingTestData.TestWindowRequests(fx, 6))
        {
            var batch = enc.Encode(r).Batch;
            for (int j = 0; j < batch.TargetCount; j++)
            {
                int t = batch.TargetToken[j], g = batch.Group[t], row = batch.RowInGroup[t];
                var b = batch.Blocks[g];
                int s = l.Groups[g].Source;
                Assert.Equal(state.Width(s), b.PopulationWidth);
                var want = new float[b.PopulationWidth];
                state.Read(s, b.Categorical.AsSpan(row * b.CategoricalWidth, b.CategoricalWidth), batch.Time[t], want);
                Assert.True(want.AsSpan().SequenceEqual(b.Population.AsSpan(row * b.PopulationWidth, b.PopulationWidth)), $"request {n} candidate {j}");
                nonZero += want.Count(v => v != 0);
            }
            n++;
        }
        Assert.True(n > 20 && nonZero > 100, $"{n} requests, {nonZero} non-zero columns");
        // Without a state the encoder adds no columns, and a model that reads them refuses such a batch by name.
        var plain = new RequestEncoder(l, fx.Stats).Encode(ServingTestData.TestWindowRequests(fx, 1)[0]).Batch;
        Assert.All(plain.Blocks, b => Assert.Equal(0, b.PopulationWidth));
        using var backend = new CpuBackend(1);
        using var model = new MtfmModel(backend, MtfmConfig.Tiny with { PopulationStatistics = true }, l, seed: 3);
        var ex = Assert.Throws<ArgumentException>(() => model.Forward(new Engine.Autograd.Tape(backend), plain));
        Assert.Contains("population-statistics columns", ex.Message);
    }

    [Theory]
    [InlineData(10.0, false)]
    [InlineData(MtfmConfig.DefaultUserRecentRatePrior, false)]
    [InlineData(MtfmConfig.DefaultUserRecentRatePrior, true)]
    public void ACheckpointCarriesTheStateAndScoresBitForBitAfterReload(double userRecentPrior, bool atWindowStart)
    {
        using var backend = new CpuBackend(1);
        var config = MtfmConfig.Tiny with { PopulationStatistics = true, UserRecentRatePrior = userRecentPrior, UserRatesAtWindowStart = atWindowStart };
        using var model = new MtfmModel(backend, config, fx.Store.Layout, seed: 11);
        string file = Path.Combine(_dir, "model.safetensors");
        var none = Assert.Throws<InvalidOperationException>(() => MtfmCheckpoint.Save(file, model, fx.Stats));
        Assert.Contains("no state to save", none.Message);

        // A state read with another prior than the model's would score differently once reloaded: refused.
        double other = userRecentPrior == 10 ? 100 : 10;
        var mismatch = Assert.Throws<ArgumentException>(() => model.Population = PopulationStatistics.ForStore(fx.Store, other, atWindowStart).FinalState);
        Assert.Contains("UserRecentRatePrior", mismatch.Message);
        // So would one read with the other window rule.
        var rule = Assert.Throws<ArgumentException>(() => model.Population = PopulationStatistics.ForStore(fx.Store, userRecentPrior, !atWindowStart).FinalState);
        Assert.Contains($"user rates at window start {(atWindowStart ? "off" : "on")}", rule.Message);
        model.Population = PopulationStatistics.ForStore(fx.Store, userRecentPrior, atWindowStart).FinalState;
        MtfmCheckpoint.Save(file, model, fx.Stats);
        using var live = new Scorer(model, fx.Stats);
        using var loaded = Scorer.Load(file, threads: 1);
        // The same weights with an empty state: the columns must change the scores, else the check above proves nothing.
        using var emptyModel = new MtfmModel(backend, config, fx.Store.Layout, seed: 11)
        {
            Population = new PopulationStatistics(fx.Store.Layout, userRecentPrior, atWindowStart),
        };
        using var empty = new Scorer(emptyModel, fx.Stats);
        int n = 0, differ = 0;
        foreach (var r in ServingTestData.TestWindowRequests(fx, 8))
        {
            var want = live.ScoreProbabilities(r);
            Assert.True(want.AsSpan().SequenceEqual(loaded.ScoreProbabilities(r)), $"request {n}");
            if (!want.AsSpan().SequenceEqual(empty.ScoreProbabilities(r))) differ++;
            n++;
        }
        Assert.True(n > 20);
        Assert.True(differ > n / 2, $"{differ} of {n} requests scored differently without the state");
        Assert.Equal(userRecentPrior, loaded.Model.Config.UserRecentRatePrior);
        Assert.Equal(atWindowStart, loaded.Model.Config.UserRatesAtWindowStart);
        Assert.Equal(atWindowStart, loaded.Model.Population!.UserRatesAtWindowStart);
    }

    /// <summary>A configuration saved before <see cref="MtfmConfig.UserRecentRatePrior"/> existed reads with 10, the prior it was trained with; the training default is 100.</summary>
    [Fact]
    public void ConfigurationsWithoutTheUserRecentPriorReadWithTen()
    {
        string json = JsonSerializer.Serialize(MtfmConfig.Tiny with { PopulationStatistics = true }, ModelJsonContext.Default.MtfmConfig);
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        Assert.Equal(10, (double)node["userRecentRatePrior"]!);
        Assert.True(node.Remove("userRecentRatePrior"));
        string old = node.ToJsonString();
        Assert.DoesNotContain("ecentRatePrior", old);
        var back = MtfmCheckpoint.ReadConfig(old)!;
        Assert.Equal(100, MtfmCheckpoint.ReadConfig(JsonSerializer.Serialize(MtfmConfig.Tiny.WithDefaultPopulationStatistics(), ModelJsonContext.Default.MtfmConfig))!.UserRecentRatePrior);
        Assert.Equal(10, back.UserRecentRatePrior);
        Assert.True(back.PopulationStatistics);
        // Reading at the window start came later still: such configurations read per exposure, as they were trained.
        Assert.False(back.UserRatesAtWindowStart);
        Assert.True(MtfmConfig.Tiny.WithDefaultPopulationStatistics().UserRatesAtWindowStart);
        Assert.Equal(MtfmConfig.DefaultUserRecentRatePrior, MtfmConfig.Tiny.WithDefaultPopulationStatistics().UserRecentRatePrior);
        Assert.Equal(MtfmConfig.DefaultUserRecentRatePrior, MtfmConfig.Mmoe.WithDefaultPopulationStatistics().UserRecentRatePrior);
        Assert.False(MtfmConfig.Mmoe.WithDefaultPopulationStatistics().PopulationStatistics);
        Assert.Throws<ArgumentException>(() => (MtfmConfig.Tiny with { UserRecentRatePrior = 0 }).Validate());
        Assert.Throws<ArgumentException>(() => (MtfmConfig.Tiny with { UserRecentRatePrior = double.NaN }).Validate());
    }
}
