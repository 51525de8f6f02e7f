using Mtfm.Engine.Training.Cuda;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Training;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// The stream scheduler of the CUDA training path (docs/cuda.md, "Stream scheduler"): batch inputs staged ahead on the
/// copy stream through the pinned ring, the loss summed on the device and read back asynchronously, clipping and the
/// optimizer on the device — so a training step makes no host synchronisation. Runs on the emulated device and,
/// unchanged, on a real GPU (skipped at run time with the reason when there is none).
/// </summary>
public sealed class CudaStreamSchedulerTests
{
    private const int WarmupSteps = 5;
    private const int MeasuredSteps = 20;


    private static readonly MtfmConfig SmallConfig = MtfmConfig.Tiny with
    {
        DModel = 16, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 8, TowerWidth = 8, EmbeddingDim = 8, TokenizerHidden = 16,
    };

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void TwentyTrainingStepsAfterWarmUpMakeNoHostSynchronisation(string kind)
    {
        using var gpu = OpenBackend(kind);
        using var cpu = new CpuBackend(1);
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 64 });
        var st = ds.Store;
        var train = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var valid = UserLevelAggregator.Aggregate(st, part: SplitPart.Valid);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var options = new TrainOptions { Epochs = 1, BatchTokens = 40, Seed = 7, Patience = 5 };
        int needed = WarmupSteps + MeasuredSteps + 1;
        long batches = new BatchBuilder(train, stats).Batches(options.BatchTokens).LongCount();
        Assert.True(batches >= needed, $"the epoch has {batches} steps, the test needs {needed}");

        var syncs = new Dictionary<long, long>();
        var lastCall = new Dictionary<long, string?>();
        var pinned = new Dictionary<long, long>();
        var poolAllocs = new Dictionary<long, long>();
        TrainResult Run(IBackend be)
        {
            using var model = new MtfmModel(be, SmallConfig, st.Layout, 3);
            var trainer = new MtfmTrainer(model, options);
            if (be is CudaBackend cb)
            {
                var probed = model.Parameters[0].Value;
                var probe = new float[probed.Length];
                trainer.StepCompleted = step =>
                {
                    // the negative control: a blocking read inserted after one step must show up in the count
                    if (step == WarmupSteps + MeasuredSteps + 1) cb.Download<float>(probed, probe);
                    syncs[step] = cb.Driver.SynchronizationCount;
                    lastCall[step] = cb.Driver.LastSynchronization;
                    pinned[step] = cb.PinnedAllocations;
                    poolAllocs[step] = cb.Pool.DriverAllocations;
                };
            }
            return trainer.Train(train, new BatchBuilder(train, stats), new BatchBuilder(valid, stats));
        }
        var rg = Run(gpu);
        var rc = Run(cpu);

        long w = WarmupSteps, e = WarmupSteps + MeasuredSteps;
        Assert.True(syncs[e] == syncs[w],
            $"{syncs[e] - syncs[w]} host synchronisations in steps {w + 1}..{e} (last call: {lastCall[e]})");
        Assert.Equal(syncs[e] + 1, syncs[e + 1]); // the inserted Download was counted: the assertion above can fail
        Assert.Equal(pinned[w], pinned[e]); // the pinned staging ring stopped growing after warm-up
        // the device memory pool stopped asking the driver for memory (cuMemAlloc may synchronise implicitly)
        Assert.True(poolAllocs[w] == poolAllocs[e], $"the pool allocated {poolAllocs[e] - poolAllocs[w]} times in steps {w + 1}..{e}");

        // The asynchronously read loss windows equal the CPU's per-step losses averaged over the same steps. The two
        // trajectories drift apart slowly (fp32 sums in another order, amplified by Adam on near-zero gradients: the
        // same gap with the copy stream and device readback disabled), ~2e-3 relative by step 30 and growing: hence 5e-3
        // on the windows up to step 30 (they cover the measured steps); later windows must exist at the same steps.
        Assert.Equal(rc.Steps, rg.Steps);
        Assert.True(rg.LossCurve.Count >= MeasuredSteps / 10, $"only {rg.LossCurve.Count} loss windows");
        Assert.Equal(rc.LossCurve.Select(x => x.Step), rg.LossCurve.Select(x => x.Step));
        for (int i = 0; i < rc.LossCurve.Count && rc.LossCurve[i].Step <= 30; i++)
            Assert.True(Math.Abs(rc.LossCurve[i].Loss - rg.LossCurve[i].Loss) <= 5e-3 * Math.Abs(rc.LossCurve[i].Loss),
                $"loss window ending at step {rc.LossCurve[i].Step}: cpu {rc.LossCurve[i].Loss} cuda {rg.LossCurve[i].Loss}");
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void LossReadbackAveragesEachWindowWithoutSynchronising(string kind)
    {
        using var gpu = OpenBackend(kind);
        float[] losses = [0.75f, 1.5f, -2.25f, 3f, 0.125f, float.NaN];
        using var readback = new CudaLossReadback(gpu);
        var tensors = losses.Select(v => gpu.FromHost<float>([v], 1)).ToArray();
        long syncs = gpu.Driver.SynchronizationCount;
        Assert.False(readback.TryTake(false, out _)); // nothing closed yet
        readback.Close(); // empty: no window
        for (int i = 0; i < 3; i++) readback.Add(tensors[i], i + 1);
        readback.Close();
        readback.Add(tensors[3], 4);
        readback.Add(tensors[4], 5);
        readback.Close();
        var got = new List<LossWindow>();
        while (readback.TryTake(false, out var w)) got.Add(w); // complete at once on the emulation; may lag on a GPU
        Assert.Equal(syncs, gpu.Driver.SynchronizationCount);
        readback.Add(tensors[5], 6);
        readback.Close();
        while (readback.TryTake(true, out var w)) got.Add(w);
        Assert.Equal(3, got.Count);
        Assert.Equal(new LossWindow(1, 3, (0.75 + 1.5 - 2.25) / 3), got[0] with { Mean = Math.Round(got[0].Mean, 6) });
        Assert.Equal((4L, 5L), (got[1].FirstStep, got[1].LastStep));
        Assert.Equal((3.0 + 0.125) / 2, got[1].Mean, 6);
        Assert.True(double.IsNaN(got[2].Mean)); // a non-finite loss reaches the host (the trainer throws there)
        Assert.True(readback.Slots <= 3);
        foreach (var t in tensors) t.Dispose();
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void StagedBatchInputsGoThroughTheCopyStreamOrderedByEvents(string kind)
    {
        ICudaDriver inner;
        using (var probe = OpenBackend(kind)) { } // skips with the reason when the device is missing
        inner = kind == Emulated ? EmulatedCudaDriver.Open(FindEmulationLibrary())
            : NativeCudaDriver.Open(0, new CudaKernelLoader(Path.Combine(Path.GetTempPath(), "mtfm-cuda-test-cache")));
        var rec = new RecordingCudaDriver(inner);
        using var gpu = new CudaBackend(rec);
        rec.Name(gpu.Stream, "compute");
        rec.Name(gpu.CopyStream, "copy");
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var batch = new BatchBuilder(agg, stats).Batches(maxTokens: 160, shuffleSeed: 3).First();
        using var model = new MtfmModel(gpu, SmallConfig, st.Layout, 11);

        // the category of every compute-stream upload, as named at its call site (no stack frames: those depend on inlining)
        var uploadCategories = new List<CudaUploadCategory>();
        gpu.ComputeStreamUploadObserved = uploadCategories.Add;

        // One training step (forward, backward) on the batch, plain or staged; the logs of the staging, the forward
        // and the whole step, and the callers of the step's uploads (in the order of its "h2d" entries).
        float Loss(bool staged, out List<string> stagingLog, out List<CudaUploadCategory> stagingCompute, out List<string> forwardLog,
            out List<string> stepLog, out List<CudaUploadCategory> stepCategories)
        {
            rec.Clear();
            uploadCategories.Clear();
            CudaBatchPrefetch? pf = staged ? new CudaBatchPrefetch(gpu, batch, st.Layout, SmallConfig) : null;
            stagingLog = [.. rec.Log];
            stagingCompute = [.. uploadCategories];
            rec.Clear();
            uploadCategories.Clear();
            float loss;
            using (var tape = new Tape(gpu))
            {
                var o = model.Forward(tape, batch, staged: pf?.Inputs);
                forwardLog = [.. rec.Log];
                Assert.Equal(staged, pf?.Taken ?? false);
                tape.Backward(o.Loss);
                stepLog = [.. rec.Log];
                stepCategories = [.. uploadCategories];
                loss = gpu.ToHost<float>(o.Loss.Value)[0];
            }
            pf?.Dispose();
            return loss;
        }
        float plain = Loss(false, out var noStaging, out _, out var plainForward, out var plainStep, out var plainCategories);
        long live = gpu.LiveAllocations; // the parameters' gradients now exist; the staged step accumulates into them
        float staged = Loss(true, out var staging, out var stagingCompute, out var stagedForward, out var stagedStep, out var stagedCategories);
        Assert.Empty(noStaging);
        Assert.Equal(plain, staged); // the same kernels on the same inputs: bitwise
        Assert.Equal(live, gpu.LiveAllocations); // the staged inputs were freed with their prefetch

        // staging: every copy on the copy stream, each after the copy stream waited for a fence of the compute stream
        var copies = staging.Select((e, i) => (e, i)).Where(x => x.e.StartsWith("h2d", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(copies);
        Assert.All(copies, c => Assert.Equal("h2d on copy", c.e));
        foreach (var (_, i) in copies)
        {
            int wait = staging.FindLastIndex(i, x => x.StartsWith("wait copy for", StringComparison.Ordinal));
            int fence = staging.FindLastIndex(i, x => x.StartsWith("record", StringComparison.Ordinal) && x.EndsWith(" on compute", StringComparison.Ordinal));
            Assert.True(fence >= 0 && wait > fence, $"copy at {i} is not ordered behind the compute stream: {string.Join("; ", staging)}");
        }
        Assert.DoesNotContain(staging, x => x.StartsWith("launch", StringComparison.Ordinal) || x.StartsWith("sync", StringComparison.Ordinal));
        Assert.Empty(stagingCompute); // the staging itself puts nothing on the compute stream (layout and tilings included)
        string done = staging[^1];
        Assert.StartsWith("record ", done);
        Assert.EndsWith(" on copy", done);
        string evt = done["record ".Length..^" on copy".Length];

        // the forward: the compute stream waits for that event before its first launch; no batch input is re-uploaded
        int firstLaunch = stagedForward.FindIndex(x => x == "launch on compute");
        int waitDone = stagedForward.IndexOf($"wait compute for {evt}");
        Assert.True(waitDone >= 0 && waitDone < firstLaunch, $"compute did not wait for the copies first: {string.Join("; ", stagedForward.Take(10))}");
        // what the plain step uploads = what the staged step uploads + what was staged (nothing uploaded twice)
        static int H2d(List<string> log) => log.Count(x => x.StartsWith("h2d", StringComparison.Ordinal));
        Assert.Equal(H2d(plainStep), H2d(stagedStep) + copies.Count);
        Assert.DoesNotContain(stagedStep, x => x == "h2d on copy");
        Assert.DoesNotContain(stagedStep, x => x.StartsWith("sync", StringComparison.Ordinal) || x.EndsWith("blocking", StringComparison.Ordinal));

        // Inside a staged step the compute stream uploads only what docs/cuda.md lists as unavoidable (host data derived
        // from index contents at the op, and the optimizer's pointer tables); batch inputs, the attention layout and its
        // tilings never. The plain step shows the classification can fail: it uploads those on the compute stream.
        var opt = new CudaOptimizerStep(gpu, model.Parameters);
        rec.Clear();
        uploadCategories.Clear();
        opt.Clip(1f);
        opt.Update(1, 1e-3f, 1e-3f, new AdamOptions(), new AdamOptions());
        var optimizerCategories = uploadCategories.ToList();
        Assert.Equal(rec.Log.Count(x => x == "h2d on compute"), optimizerCategories.Count);
        Assert.Equal(stagedStep.Count(x => x.StartsWith("h2d", StringComparison.Ordinal)), stagedCategories.Count);
        var unexpected = stagedCategories.Concat(optimizerCategories).Where(c => !Unavoidable(c)).ToList();
        Assert.True(unexpected.Count == 0, $"{unexpected.Count} uploads on the compute stream inside a staged step: {string.Join(", ", unexpected.Distinct())}");
        Assert.Contains(CudaUploadCategory.OptimizerTables, optimizerCategories);
        // the plain step shows the classification can fail: it uploads the batch inputs and the attention layout on the compute stream
        Assert.Contains(CudaUploadCategory.Tensor, plainCategories);
        Assert.Contains(CudaUploadCategory.AttentionLayout, plainCategories);
        Assert.Equal(plainStep.Count(x => x.StartsWith("h2d", StringComparison.Ordinal)), plainCategories.Count);
    }

    /// <summary>
    /// The compute-stream uploads a staged step may still make (docs/cuda.md, "Stream scheduler"): host data derived from
    /// index contents at the op, and the optimizer's pointer tables; batch inputs and the attention layout never.
    /// </summary>
    private static bool Unavoidable(CudaUploadCategory c) => c is CudaUploadCategory.ScatterAddSortMetadata
        or CudaUploadCategory.GroupLayerNormGradientSort or CudaUploadCategory.UniqueIndices or CudaUploadCategory.OptimizerTables;

    [Fact]
    public void AttentionTilingsFollowTheLayerFormsAndTheBackendsTileSizes()
    {
        // SmallConfig (HTA: full and target layers, dqk = dv = 8): forward and backward share tile 32
        Assert.Equal([(false, 32), (true, 32)], CudaBatchPrefetch.AttentionTilings(SmallConfig));
        // dqk = dv = 128: the forward fits tile 16 in 48 KiB, the backward 8
        var wide = SmallConfig with { DModel = 256, Heads = 2, KvHeads = 1 };
        Assert.Equal((16, 8), (CudaBackend.AttentionForwardTileSize(128, 128), CudaBackend.AttentionBackwardTileSize(128, 128)));
        Assert.Equal([(false, 16), (false, 8), (true, 16), (true, 8)], CudaBatchPrefetch.AttentionTilings(wide));
        Assert.Equal([(false, 16), (true, 16)], CudaBatchPrefetch.AttentionTilings(wide, backward: false));
        Assert.Equal([(false, 16), (false, 8)], CudaBatchPrefetch.AttentionTilings(wide with { Attention = AttentionMode.Full }));
        Assert.Empty(CudaBatchPrefetch.AttentionTilings(wide with { Blocks = 0 })); // MMoE baseline: no attention
        // The bf16 forward tiles by CudaOps.HstuAttentionBf16TileSize; the backward stays fp32.
        Assert.Equal([(false, CudaOps.HstuAttentionBf16TileSize), (false, 8), (true, CudaOps.HstuAttentionBf16TileSize), (true, 8)],
            CudaBatchPrefetch.AttentionTilings(wide, precision: CudaAttentionPrecision.Bf16));
    }

    [Fact]
    public void StagingAheadWaitsAtTheStepBoundaryOnlyWhenTheDeviceLagsTooFar()
    {
        var path = EmulationLibraryOrSkip();
        var rec = new RecordingCudaDriver(EmulatedCudaDriver.Open(path));
        using var gpu = new CudaBackend(rec);
        rec.Name(gpu.Stream, "compute");
        rec.Name(gpu.CopyStream, "copy");
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var batches = new BatchBuilder(agg, stats).Batches(maxTokens: 60, shuffleSeed: 3).Take(6).ToList();
        Assert.Equal(6, batches.Count);
        long live = gpu.LiveAllocations;
        int EventWaits() => rec.Log.Count(x => x.StartsWith("sync 0x", StringComparison.Ordinal));

        // a device that keeps up: no wait at all
        Assert.Equal(batches, CudaBatchPrefetch.StageAhead(gpu, st.Layout, batches, maxStepsInFlight: 2).Select(s => s.Batch).ToList());
        Assert.Equal(0, EventWaits());
        // a device that never catches up: after the 2 allowed steps in flight, one wait per step boundary (5 boundaries)
        rec.Log.Clear();
        rec.EventsPending = true;
        Assert.Equal(batches, CudaBatchPrefetch.StageAhead(gpu, st.Layout, batches, maxStepsInFlight: 2).Select(s => s.Batch).ToList());
        Assert.Equal(3, EventWaits());
        rec.EventsPending = false;
        Assert.Equal(live, gpu.LiveAllocations); // every staging freed, taken or not
    }
}
