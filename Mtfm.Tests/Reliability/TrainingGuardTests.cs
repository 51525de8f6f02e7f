using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Data;
using Mtfm.Engine.IO;
using Mtfm.Engine.Model;
using Mtfm.Engine.Training;

namespace Mtfm.Tests.Reliability;

/// <summary>The non-finite step guard, the memory estimate and checkpoint writes that fail.</summary>
public class TrainingGuardTests
{
    private static readonly Lazy<(AggregatedInstances Train, AggregatedInstances Valid, NumericStats Stats, DataLayout Layout)> Data = new(() =>
    {
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var order = store.SortedByUserTime();
        return (UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Train, order),
            UserLevelAggregator.Aggregate(store, AggregationMode.UserWindow, SplitPart.Valid, order),
            store.ComputeNumericStats(store.Layout.Schema.Split!.ValidStart), store.Layout);
    });

    private static readonly MtfmConfig Config = MtfmConfig.Tiny with
    {
        DModel = 8, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 3, EmbeddingDim = 3, TokenizerHidden = 5,
    };

    private static void PoisonNumeric(JaggedBatch b)
    {
        var block = b.Blocks.First(x => x.Numeric.Length > 0);
        block.Numeric[0] = float.NaN;
    }

    private static float[][] Weights(MtfmModel m) => m.Parameters.Select(p => m.Backend.ToHost<float>(p.Value)).ToArray();

    [Fact]
    public void ANaNInABatchSkipsThatStepAndNamesTheFirstNonFiniteParameter()
    {
        var d = Data.Value;
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, d.Layout, seed: 3);
        var log = new List<string>();
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 1, BatchTokens = 128, MaxSteps = 4 }) { Log = log.Add };
        var after = new Dictionary<long, float[][]>();
        trainer.BeforeStep = (s, b) => { if (s == 2) PoisonNumeric(b); };
        trainer.StepCompleted = s => after[s] = Weights(model);
        var result = trainer.Train(d.Train, new BatchBuilder(d.Train, d.Stats), new BatchBuilder(d.Valid, d.Stats));
        Assert.Equal(4, result.Steps);
        Assert.Equal(1, trainer.SkippedSteps);
        var msg = Assert.Single(log);
        Assert.StartsWith("step 2 skipped", msg);
        Assert.Matches("first non-finite gradient in parameter '[^']+'", msg);
        // The skipped step changed nothing; the steps around it did.
        for (int i = 0; i < after[1].Length; i++) Assert.Equal(after[1][i], after[2][i]);
        Assert.Contains(Enumerable.Range(0, after[2].Length), i => !after[2][i].SequenceEqual(after[3][i]));
        Assert.All(Weights(model), w => Assert.All(w, x => Assert.True(float.IsFinite(x))));
    }

    [Fact]
    public void ConsecutiveNonFiniteStepsAbortWithAClearMessage()
    {
        var d = Data.Value;
        using var be = new CpuBackend(1);
        using var model = new MtfmModel(be, Config, d.Layout, seed: 3);
        var log = new List<string>();
        var trainer = new MtfmTrainer(model, new TrainOptions { Epochs = 2, BatchTokens = 128, MaxConsecutiveNonFiniteSteps = 3 }) { Log = log.Add };
        trainer.BeforeStep = (s, b) => { if (s >= 2) PoisonNumeric(b); };
        var ex = Assert.Throws<InvalidOperationException>(() => trainer.Train(d.Train, new BatchBuilder(d.Train, d.Stats), new BatchBuilder(d.Valid, d.Stats)));
        Assert.Contains("training stopped at step 4", ex.Message);
        Assert.Contains("3 consecutive steps", ex.Message);
        Assert.Contains("parameter '", ex.Message);
        Assert.Equal(3, log.Count);
    }

    [Fact]
    public void TheMemoryEstimateCoversWhatAStepHoldsAndRefusesOverTheLimit()
    {
        var d = Data.Value;
        using var be = new CpuBackend(1);
        var config = MtfmConfig.Tiny;
        using var model = new MtfmModel(be, config, d.Layout, seed: 3);
        const int tokens = 512;
        var est = MemoryEstimate.For(config, d.Layout, model.ParameterCount, tokens, checkpoints: true);
        Assert.Equal(model.ParameterCount * 4, est.ParameterBytes);
        long before = be.LiveBytes;
        long held;
        var batch = new BatchBuilder(d.Train, d.Stats).Batches(tokens).First();
        using (var tape = new Tape(be))
        {
            var output = model.Forward(tape, batch);
            tape.Backward(output.Loss);
            held = be.LiveBytes - before; // activations, their gradients and the parameter gradients
        }
        Assert.True(est.ActivationBytes + est.GradientBytes >= held, $"estimate {est.Describe()} below the {held:N0} bytes a step holds");
        Assert.True(est.ActivationBytes + est.GradientBytes <= 20 * held, $"estimate {est.Describe()} is over 20× the {held:N0} bytes a step holds");

        var ex = Assert.Throws<InsufficientMemoryException>(() => est.EnsureFits(est.TotalBytes - 1, 0));
        Assert.Contains("--max-memory", ex.Message);
        Assert.Contains(MemoryEstimate.Format(est.TotalBytes - 1), ex.Message);
        Assert.Contains("activations", ex.Message);
        est.EnsureFits(est.TotalBytes, est.TotalBytes);
        Assert.Throws<InsufficientMemoryException>(() => est.EnsureFits(0, est.TotalBytes - 1));
        Assert.Equal(512L << 20, MemoryEstimate.ParseSize("512M"));
        Assert.Equal(3L << 30, MemoryEstimate.ParseSize("3GiB"));
        Assert.Equal(1000, MemoryEstimate.ParseSize("1000"));
        Assert.Throws<ArgumentException>(() => MemoryEstimate.ParseSize("-1G"));
        Assert.Throws<ArgumentException>(() => MemoryEstimate.ParseSize("lots"));
    }

    [Fact]
    public void AnUnwritableFolderFailsBeforeTrainingWithOneClearError()
    {
        string file = Path.GetTempFileName();
        try
        {
            var store = new CheckpointStore(Path.Combine(file, "checkpoints"), 2); // a folder under a regular file
            var ex = Assert.Throws<IOException>(store.EnsureWritable);
            Assert.Contains("is not writable", ex.Message);
            Assert.Contains(Path.Combine(file, "checkpoints"), ex.Message);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void AReadOnlyFolderFailsBeforeTrainingWithOneClearError()
    {
        if (OperatingSystem.IsWindows()) { Assert.Skip("Unix permission bits are not available on Windows"); return; }
        Assert.SkipWhen(Environment.UserName == "root", "root ignores permission bits: a folder it cannot write cannot be made (run the suite as a normal user to exercise this)");
        string dir = Directory.CreateTempSubdirectory("mtfm-ro").FullName;
        try
        {
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            var ex = Assert.Throws<IOException>(new CheckpointStore(dir, 2).EnsureWritable);
            Assert.Contains("is not writable", ex.Message);
        }
        finally
        {
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AFailedWriteLeavesThePreviousCheckpointAsTheNewestAndNoTemporaryFile()
    {
        string dir = Directory.CreateTempSubdirectory("mtfm-full").FullName;
        try
        {
            var store = new CheckpointStore(dir, 3);
            store.Save(10, Writer(1f));
            store.WrapStream = s => new FullDiskStream(s, 100);
            var ex = Assert.Throws<IOException>(() => store.Save(20, Writer(2f)));
            Assert.Contains("step-0000000020", ex.Message);
            Assert.Contains("No space left on device", ex.Message);
            Assert.Empty(Directory.EnumerateFiles(dir, ".*"));
            var newest = store.LoadNewestValid(null);
            Assert.NotNull(newest);
            Assert.Equal(1f, newest.ReadFloat32("x")[0]);
            Assert.Equal([10L], store.List().Select(c => c.Step));
        }
        finally { Directory.Delete(dir, true); }

        static SafetensorsWriter Writer(float v)
        {
            var w = new SafetensorsWriter();
            w.AddFloat32("x", Enumerable.Repeat(v, 1000).ToArray(), 1000);
            return w;
        }
    }

    [Fact]
    public void OnlyTheNewestCheckpointsAreKept()
    {
        string dir = Directory.CreateTempSubdirectory("mtfm-keep").FullName;
        try
        {
            var store = new CheckpointStore(dir, 2);
            foreach (long s in new long[] { 3, 6, 9, 12 })
            {
                var w = new SafetensorsWriter();
                w.AddInt64("s", [s], 1);
                store.Save(s, w);
            }
            Assert.Equal([12L, 9L], store.List().Select(c => c.Step));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A disk that fills up after <c>capacity</c> bytes.</summary>
    private sealed class FullDiskStream(Stream inner, long capacity) : Stream
    {
        private long _written;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > capacity) throw new IOException("No space left on device");
            inner.Write(buffer);
            _written += buffer.Length;
        }
    }
}
