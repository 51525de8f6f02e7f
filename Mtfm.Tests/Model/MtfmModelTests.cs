using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;
using Mtfm.Tests.Core;

namespace Mtfm.Tests.Model;

/// <summary>The MTFM network end to end on the tiny synthetic data.</summary>
public class MtfmModelTests
{
    private static readonly Lazy<(SyntheticDataset Data, AggregatedInstances Train, AggregatedInstances Test, NumericStats Stats)> Tiny = new(() =>
    {
        var data = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var store = data.Store;
        var order = store.SortedByUserTime();
        var split = store.Layout.Schema.Split!;
        return (data,
            UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, order),
            UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Test, order),
            store.ComputeNumericStats(split.ValidStart));
    });

    private static MtfmConfig Small(AttentionMode mode = AttentionMode.Hta) => MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3,
        TokenizerHidden = 5, Attention = mode,
    };

    private static JaggedBatch FirstBatch(int instances)
    {
        var t = Tiny.Value;
        return new BatchBuilder(t.Train, t.Stats).Build(Enumerable.Range(0, instances).ToArray());
    }

    [Theory]
    [InlineData(AttentionMode.Hta)]
    [InlineData(AttentionMode.Full)]
    [InlineData(AttentionMode.TargetOnly)]
    public void LossGradientsOfEveryParameterKindMatchFiniteDifferences(AttentionMode mode)
    {
        var batch = FirstBatch(3);
        using var be = new CpuBackend(2);
        using var model = new MtfmModel(be, Small(mode), Tiny.Value.Data.Store.Layout, seed: 5);
        // Perturb the constant-initialised parameters (rab 0, GLN 1/0) so their gradients are generic.
        var rng = new Random(9);
        foreach (var p in model.Parameters.Where(p => p.Name!.Contains(".rab") || p.Name.Contains("gln")))
        {
            var host = TestTensors.Read(p.Value);
            for (int i = 0; i < host.Length; i++) host[i] += (float)(rng.NextDouble() - 0.5) * 0.5f;
            be.Upload<float>(host, p.Value);
        }
        string[] picks = ["layer0.rab", "layer0.w1_kv.w", "layer1.w1_uq.b", "layer0.gln.gamma", "final_gln.beta", "mmoe.experts.w",
            "head.feed.click.tower2.w", "emb.category", "tok.H.click.hidden.w"];
        var leaves = model.Parameters.Where(p => picks.Contains(p.Name)).Cast<Variable>().ToList();
        Assert.Equal(picks.Length, leaves.Count);
        // eps 1e-4: a query that sees only itself has O = SiLU(s)·V, and LN(O) (no affine, eps 1e-5) is nearly
        // singular where O passes near 0, so the loss has large curvature in the attention inputs; at eps 1e-2 the
        // central difference is off by 2× there while at 1e-4 it agrees with the analytic gradient to < 1 %.
        GradCheck.AssertGradients(be, leaves, tape => model.Forward(tape, batch).Loss, eps: 1e-4, atol: 3e-3, rtol: 3e-2);
    }

    [Fact]
    public void TrainingIsBitForBitReproducibleAndLowersTheLoss()
    {
        var t = Tiny.Value;
        float[] Run(out TrainResult result)
        {
            using var be = new CpuBackend(2);
            using var model = new MtfmModel(be, Small(), t.Data.Store.Layout, seed: 3);
            var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 3, BatchTokens = 256, Patience = 5, LearningRate = 5e-3f });
            result = trainer.Train(t.Train, new BatchBuilder(t.Train, t.Stats), new BatchBuilder(t.Test, t.Stats));
            return model.Parameters.SelectMany(p => TestTensors.Read(p.Value)).ToArray();
        }
        var a = Run(out var ra);
        var b = Run(out _);
        Assert.Equal(a, b);
        Assert.True(ra.LossCurve.Count >= 2, $"expected several loss points, got {ra.LossCurve.Count}");
        Assert.True(ra.LossCurve[^1].Loss < ra.LossCurve[0].Loss, $"loss went from {ra.LossCurve[0].Loss} to {ra.LossCurve[^1].Loss}");
    }

    [Fact]
    public void CheckpointReloadScoresBitForBitAndRefusesDamagedFiles()
    {
        var t = Tiny.Value;
        var batch = new BatchBuilder(t.Test, t.Stats).Build(Enumerable.Range(0, Math.Min(5, t.Test.Count)).ToArray());
        string dir = Directory.CreateTempSubdirectory("mtfm-ckpt").FullName;
        try
        {
            string path = Path.Combine(dir, "model.safetensors");
            float[] before;
            using (var be = new CpuBackend(2))
            using (var model = new MtfmModel(be, Small(), t.Data.Store.Layout, seed: 8))
            {
                before = model.Score(batch);
                MtfmCheckpoint.Save(path, model, t.Stats);
            }
            using (var be = new CpuBackend(2))
            {
                var (model, stats) = MtfmCheckpoint.Load(path, be);
                using (model)
                {
                    Assert.Equal(t.Stats.Mean, stats.Mean);
                    Assert.Equal(Small(), model.Config);
                    Assert.Equal(before, model.Score(batch));
                }
            }
            var bytes = File.ReadAllBytes(path);
            string truncated = Path.Combine(dir, "truncated.safetensors");
            File.WriteAllBytes(truncated, bytes[..(bytes.Length - 17)]);
            using (var be = new CpuBackend(1))
            {
                var ex = Assert.Throws<CheckpointFormatException>(() => MtfmCheckpoint.Load(truncated, be));
                Assert.Contains("truncated.safetensors", ex.Message);
            }
            string altered = Path.Combine(dir, "altered.safetensors");
            var flipped = (byte[])bytes.Clone();
            flipped[^5] ^= 0x40;
            File.WriteAllBytes(altered, flipped);
            using (var be = new CpuBackend(1))
            {
                var ex = Assert.Throws<CheckpointFormatException>(() => MtfmCheckpoint.Load(altered, be));
                Assert.Contains("altered.safetensors", ex.Message);
                Assert.Contains("SHA-256", ex.Message, StringComparison.OrdinalIgnoreCase);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MmoeBaselineUsesNoSequencesAndTrains()
    {
        var batch = FirstBatch(4);
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Small() with { Blocks = 0 }, Tiny.Value.Data.Store.Layout, seed: 2);
        Assert.DoesNotContain(model.Parameters, p => p.Name!.StartsWith("layer", StringComparison.Ordinal));
        var leaves = model.Parameters.Where(p => p.Name is "mmoe.experts.w" or "emb.item_id").Cast<Variable>().ToList();
        GradCheck.AssertGradients(be, leaves, tape => model.Forward(tape, batch).Loss, eps: 1e-4, atol: 3e-3, rtol: 3e-2);
    }

    [Fact]
    public void ConfigValidationNamesTheField()
    {
        var ex = Assert.Throws<ArgumentException>(() => (MtfmConfig.Tiny with { Heads = 3, KvHeads = 2 }).Validate());
        Assert.Equal("KvHeads", ex.ParamName);
        Assert.Throws<ArgumentException>(() => MtfmConfig.Preset("huge"));
    }

    /// <summary>
    /// Weight decay is a property of the parameter, set where it is created (dense weight matrices only); it equals the
    /// by-name rule the optimizers used before (rank 2, name ending in ".w") on every preset, so training is unchanged.
    /// </summary>
    [Theory]
    [InlineData("tiny")]
    [InlineData("small")]
    [InlineData("mmoe")]
    public void WeightDecayIsSetOnTheDenseWeightMatricesOnly(string preset)
    {
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, MtfmConfig.Preset(preset), Tiny.Value.Data.Store.Layout, seed: 1);
        Assert.Contains(model.Parameters, p => p.WeightDecay);
        Assert.Contains(model.Parameters, p => !p.WeightDecay && !p.SparseGrad);
        foreach (var p in model.Parameters)
            Assert.True(p.WeightDecay == (!p.SparseGrad && p.Value.Rank == 2 && p.Name!.EndsWith(".w", StringComparison.Ordinal)), p.Name);
    }
}
