using System.Globalization;
using System.Text;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Model;

/// <summary>
/// <see cref="MtfmConfig.ScenarioPooling"/>: scenarios with the same T-token inputs share one tokenizer (each with a
/// hidden bias of its own) and one gate and tower per task; scenarios with features of their own keep theirs.
/// </summary>
public class ScenarioPoolingTests
{
    // "home" and "search" take the same features; "promo" has its own set.
    internal const string Schema = """
        {
          "name": "pools", "userColumn": "uid", "timeColumn": "ts", "sourceColumn": "source",
          "windowSeconds": 1000, "windowOrigin": 0,
          "features": [
            { "name": "user_id", "kind": "id", "cardinality": 40 },
            { "name": "item_id", "kind": "id", "cardinality": 12 },
            { "name": "price", "kind": "numeric", "transform": "log1p_standardize" },
            { "name": "coupon", "kind": "categorical", "vocabulary": ["a", "b", "c"] }
          ],
          "scenarios": [
            { "name": "home", "userFeatures": ["user_id"], "itemFeatures": ["item_id", "price"], "labels": { "click": "c", "conversion": "v" } },
            { "name": "search", "userFeatures": ["user_id"], "itemFeatures": ["item_id", "price"], "labels": { "click": "c" } },
            { "name": "promo", "itemFeatures": ["coupon"], "labels": { "click": "c" } }
          ],
          "sequences": [ { "name": "click", "features": ["item_id"], "historyCap": 8 } ],
          "split": { "validStart": 2000, "testStart": 3000 }
        }
        """;

    /// <summary>A seeded log of 40 users over the three scenarios and the click sequence.</summary>
    internal static string Log()
    {
        var csv = new StringBuilder("uid,ts,source,user_id,item_id,price,coupon,c,v\n");
        var rng = new Random(4);
        string[] scen = ["home", "search", "promo"];
        for (int u = 0; u < 40; u++)
        {
            long ts = 100 + rng.Next(50);
            for (int e = 0; e < 16; e++, ts += 1 + rng.Next(400))
            {
                int item = rng.Next(12);
                string s = scen[rng.Next(3)];
                string click = (rng.NextDouble() < 0.2 + 0.05 * (item % 5)) ? "1" : "0";
                if (rng.NextDouble() < 0.3) csv.Append(CultureInfo.InvariantCulture, $"{u},{ts},click,,{item},,,,\n");
                else if (s == "promo") csv.Append(CultureInfo.InvariantCulture, $"{u},{ts},promo,,,,{"abc"[item % 3]},{click},\n");
                else csv.Append(CultureInfo.InvariantCulture, $"{u},{ts},{s},{u},{item},{1 + item * 3},,{click},{(s == "home" ? click : "")}\n");
            }
        }
        return csv.ToString();
    }

    private static readonly Lazy<(DataLayout Layout, AggregatedInstances Instances, NumericStats Stats, EventStore Store)> Data = new(() =>
    {
        var layout = new DataLayout(DatasetSchema.Parse(Schema));
        var store = new EventStore(layout);
        CsvEventReader.ReadText(Log(), "pools.csv", store);
        var inst = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.All, store.SortedByUserTime());
        return (layout, inst, store.ComputeNumericStats(), store);
    });

    private static MtfmConfig Config(bool pooling) => MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3,
        TokenizerHidden = 5, ScenarioPooling = pooling,
    };

    private static JaggedBatch Batch()
    {
        var d = Data.Value;
        return new BatchBuilder(d.Instances, d.Stats).Build(Enumerable.Range(0, Math.Min(12, d.Instances.Count)).ToArray());
    }

    [Fact]
    public void ScenariosWithTheSameInputsShareATokenizerAndHeadsAndKeepABiasOfTheirOwn()
    {
        using var be = new CpuBackend(1);
        using var pooled = new MtfmModel(be, Config(true), Data.Value.Layout, seed: 2);
        using var own = new MtfmModel(be, Config(false), Data.Value.Layout, seed: 2);
        Assert.Equal([0, 0, 2], pooled.ScenarioPool);
        Assert.Equal([0, 1, 2], own.ScenarioPool);
        var names = pooled.Parameters.Select(p => p.Name).ToHashSet();
        Assert.Contains("tok.T.home+search.hidden.w", names);
        Assert.Contains("tok.T.home.hidden.b", names);
        Assert.Contains("tok.T.search.hidden.b", names);
        Assert.DoesNotContain("tok.T.search.hidden.w", names);
        Assert.Contains("tok.T.promo.hidden.w", names);
        Assert.Contains("head.home+search.click.gate.w", names);
        Assert.DoesNotContain("head.search.click.gate.w", names);
        Assert.Contains("head.promo.click.tower2.w", names);
        // One tokenizer's weights and output layer and one set of heads fewer, one hidden bias more.
        var c = Config(true);
        int width = 2 * c.EmbeddingDim + 1; // user_id, item_id; price
        var statsWidth = new HistoryStatistics(Data.Value.Layout).Width(1);
        long saved = (long)(width + statsWidth) * c.TokenizerHidden + (long)c.TokenizerHidden * c.DModel + c.DModel
            + 2 * ((long)c.DModel * c.Experts + c.Experts + (long)c.ExpertWidth * c.TowerWidth + c.TowerWidth + c.TowerWidth + 1);
        Assert.Equal(own.ParameterCount - saved, pooled.ParameterCount);
    }

    [Fact]
    public void WithNoTwoScenariosAlikePoolingChangesNothing()
    {
        var data = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        using var be = new CpuBackend(1);
        using var on = new MtfmModel(be, Config(true), data.Store.Layout, seed: 6);
        using var off = new MtfmModel(be, Config(false), data.Store.Layout, seed: 6);
        Assert.Equal(Enumerable.Range(0, data.Store.Layout.ScenarioCount), on.ScenarioPool);
        Assert.Equal(off.Parameters.Select(p => p.Name), on.Parameters.Select(p => p.Name));
        Assert.Equal(off.Parameters.SelectMany(p => TestTensors.Read(p.Value)), on.Parameters.SelectMany(p => TestTensors.Read(p.Value)));
    }

    [Fact]
    public void SharedAndOwnParametersGetTheGradientsOfBothScenarios()
    {
        var batch = Batch();
        Assert.True(batch.Blocks[Data.Value.Layout.TargetGroup(0)].Rows > 0 && batch.Blocks[Data.Value.Layout.TargetGroup(1)].Rows > 0,
            "the batch must hold exposures of both pooled scenarios");
        using var be = new CpuBackend(2);
        using var model = new MtfmModel(be, Config(true), Data.Value.Layout, seed: 5);
        var rng = new Random(3);
        foreach (var p in model.Parameters.Where(p => p.Name!.EndsWith(".hidden.b", StringComparison.Ordinal) || p.Name.Contains("gln")))
        {
            var host = TestTensors.Read(p.Value);
            for (int i = 0; i < host.Length; i++) host[i] += (float)(rng.NextDouble() - 0.5) * 0.5f;
            be.Upload<float>(host, p.Value);
        }
        string[] picks = ["tok.T.home+search.hidden.w", "tok.T.home+search.out.w", "tok.T.home.hidden.b", "tok.T.search.hidden.b",
            "head.home+search.click.gate.w", "head.home+search.click.tower2.w", "head.home+search.conversion.tower1.w", "tok.T.promo.hidden.w"];
        var leaves = model.Parameters.Where(p => picks.Contains(p.Name)).Cast<Variable>().ToList();
        Assert.Equal(picks.Length, leaves.Count);
        GradCheck.AssertGradients(be, leaves, tape => model.Forward(tape, batch).Loss, eps: 1e-3, atol: 3e-3, rtol: 3e-2);
        // Each scenario's own bias is in its rows' path (a bias shared by mistake would get no gradient here).
        foreach (var leaf in leaves) Assert.True(TestTensors.Read(leaf.Grad!).Any(x => x != 0f), $"{((Parameter)leaf).Name} got no gradient");
    }

    [Fact]
    public void APooledCheckpointReloadsAndScoresBitForBit()
    {
        var batch = Batch();
        string dir = Directory.CreateTempSubdirectory("mtfm-pools").FullName;
        try
        {
            string path = Path.Combine(dir, "model.safetensors");
            float[] before;
            using (var be = new CpuBackend(2))
            using (var model = new MtfmModel(be, Config(true), Data.Value.Layout, seed: 8))
            {
                // Distinct scenario biases, so that the two pooled scenarios score differently.
                foreach (var p in model.Parameters.Where(p => p.Name!.EndsWith(".hidden.b", StringComparison.Ordinal)))
                {
                    var host = TestTensors.Read(p.Value);
                    for (int i = 0; i < host.Length; i++) host[i] = p.Name!.Contains("search") ? 0.7f : -0.4f;
                    be.Upload<float>(host, p.Value);
                }
                before = model.Score(batch);
                MtfmCheckpoint.Save(path, model, Data.Value.Stats);
            }
            using (var be = new CpuBackend(1))
            {
                var (model, _) = MtfmCheckpoint.Load(path, be);
                using (model)
                {
                    Assert.True(model.Config.ScenarioPooling);
                    Assert.Equal([0, 0, 2], model.ScenarioPool);
                    Assert.Equal(before, model.Score(batch));
                }
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// Serving (the full forward, and the cached context + target-only forward) runs the pool's tokenizer and heads with the
    /// scenario's own bias: for every exposure of the log, a request
    /// at its time with all of the user's behaviour and the instance's exposures of that scenario as candidates scores
    /// bit for bit what <see cref="MtfmModel.Score"/> gives on the training batch of its user-window instance.
    /// </summary>
    [Theory]
    [InlineData(0L)]
    [InlineData(64L << 20)] // the cached path: context encoded once, then the target-only forward
    public void ServingScoresPooledScenariosBitForBitAsTraining(long contextCacheBytes)
    {
        var (layout, inst, stats, st) = Data.Value;
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config(true), layout, seed: 7);
        Serving.ServingTestData.Perturb(model, 3);
        using var scorer = new Mtfm.Engine.Serving.Scorer(model, stats, contextCacheBytes);
        var uw = new BatchBuilder(inst, stats);
        var behaviour = Serving.ServingTestData.BehaviourByUser(st);
        int tasks = layout.TaskCount, differ = 0;
        var perScenario = new int[layout.ScenarioCount];
        for (int i = 0; i < inst.Count; i++)
        {
            var want = model.Score(uw.Build([i]));
            var events = inst.Events(i); var segs = inst.Segments(i);
            var targets = new List<int>();
            for (int p = 0; p < events.Length; p++) if (segs[p] == (byte)SegmentKind.Target) targets.Add(events[p]);
            for (int j = 0; j < targets.Count; j++)
            {
                int e = targets[j];
                var same = targets.Where(x => st.SourceOf(x) == st.SourceOf(e)).ToList();
                var request = Serving.ServingTestData.RequestFor(st, behaviour, same);
                request.Time = st.TimeOf(e);
                var got = scorer.ScoreProbabilities(request);
                int pos = same.IndexOf(e);
                for (int k = 0; k < tasks; k++)
                    if (BitConverter.SingleToInt32Bits(got[pos * tasks + k]) != BitConverter.SingleToInt32Bits(want[j * tasks + k])) differ++;
                perScenario[st.SourceOf(e)]++;
            }
        }
        Assert.True(perScenario.All(c => c > 20), $"exposures per scenario: {string.Join(", ", perScenario)}");
        Assert.Equal(0, differ);
    }
}
