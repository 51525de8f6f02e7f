using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Data;

/// <summary><see cref="BatchPrefetch"/>: the trainer's next batch built on a background thread.</summary>
public class BatchPrefetchTests
{
    private sealed class Source(int count, int throwAt = -1)
    {
        public bool Disposed;
        public int Produced;

        public IEnumerable<int> Items()
        {
            try
            {
                for (int i = 0; i < count; i++)
                {
                    if (i == throwAt) throw new InvalidDataException($"item {i} is bad");
                    Produced++;
                    yield return i;
                }
            }
            finally { Disposed = true; }
        }
    }

    [Fact]
    public void ItemsComeInTheSourceOrder()
    {
        var s = new Source(1000);
        Assert.Equal(Enumerable.Range(0, 1000), BatchPrefetch.Ahead(s.Items()).ToList());
        Assert.True(s.Disposed);
    }

    [Fact]
    public void AnErrorOfTheSourceReachesTheConsumerAfterTheItemsBeforeIt()
    {
        var s = new Source(100, throwAt: 37);
        var seen = new List<int>();
        var ex = Assert.Throws<InvalidDataException>(() => { foreach (var i in BatchPrefetch.Ahead(s.Items())) seen.Add(i); });
        Assert.Equal("item 37 is bad", ex.Message);
        Assert.Equal(Enumerable.Range(0, 37), seen);
    }

    [Fact]
    public void LeavingTheLoopEarlyStopsTheProducer()
    {
        var s = new Source(1_000_000);
        foreach (var i in BatchPrefetch.Ahead(s.Items(), depth: 2))
            if (i == 5) break;
        // The consumer's dispose waited for the producer: the source was disposed and ran at most depth + 2 items past the break.
        Assert.True(s.Disposed);
        Assert.InRange(s.Produced, 6, 6 + 3);
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentNullException>(() => BatchPrefetch.Ahead<int>(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => BatchPrefetch.Ahead(new[] { 1 }, depth: 0));
    }

    [Fact]
    public void TrainingWithPrefetchIsBitIdenticalToTrainingWithout()
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var order = store.SortedByUserTime();
        var train = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, order);
        var valid = UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Valid, order);
        var stats = store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart);
        var config = MtfmConfig.Tiny with { DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3, TokenizerHidden = 5 };

        float[][] Run(bool prefetch)
        {
            using var be = new CpuBackend(2);
            using var model = new MtfmModel(be, config, store.Layout, seed: 3);
            var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 2, BatchTokens = 128, PrefetchBatches = prefetch });
            var (tb, vb) = (new BatchBuilder(train, stats), new BatchBuilder(valid, stats));
            bool sawPool = false;
            trainer.BeforeStep = (_, _) => sawPool |= tb.Parallel is not null;
            var r = trainer.Train(train, tb, vb);
            Assert.True(r.Steps > 10);
            Assert.Equal(!prefetch, sawPool); // without prefetch the batches' statistics are filled on the CPU pool
            Assert.Null(tb.Parallel);         // and the builders get their own setting back after training
            Assert.Null(vb.Parallel);
            return model.Parameters.Select(p => be.ToHost<float>(p.Value)).ToArray();
        }

        var on = Run(true);
        var off = Run(false);
        Assert.Equal(off.Length, on.Length);
        for (int i = 0; i < on.Length; i++) Assert.Equal(off[i], on[i]);
    }
}
