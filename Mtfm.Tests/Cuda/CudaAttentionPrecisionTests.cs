using Mtfm.Cli.Commands;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Backends.Cuda;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;
using Mtfm.Engine.Native;
using Mtfm.Engine.Tensors;
using static Mtfm.Tests.Cuda.CudaTestDevice;

namespace Mtfm.Tests.Cuda;

/// <summary>
/// <see cref="CudaBackend.AttentionPrecision"/>: Bf16 switches the attention forward to the tensor-core kernel (within
/// the bf16 range of Fp32, not bitwise equal), leaves the backward fp32 (bitwise the same gradients), falls back to
/// fp32 for head widths the bf16 kernel does not support, and carries through a whole MTFM forward; the CLI option
/// <c>--cuda-attention</c> maps onto it and is rejected for <c>--device cpu</c>.
/// </summary>
[Collection(ConsoleCollection.Name)]
public sealed class CudaAttentionPrecisionTests(ITestOutputHelper output)
{

    private static AttentionLayout Layout(Random rng, (int H, int R, int T)[] spec)
    {
        var offsets = new List<int> { 0 };
        var kind = new List<byte>();
        var time = new List<long>();
        foreach (var (h, r, t) in spec)
        {
            for (var i = 0; i < h; i++) { kind.Add(0); time.Add(1000 + rng.Next(0, 500)); }
            long tt = 2000;
            for (var i = 0; i < r; i++) { kind.Add(1); tt += rng.Next(0, 3) == 0 ? 0 : rng.Next(1, 300); time.Add(tt); }
            foreach (var x in Enumerable.Range(0, t).Select(_ => 2000L + rng.Next(0, 600)).Order()) { kind.Add(2); time.Add(x); }
            offsets.Add(kind.Count);
        }
        return new AttentionLayout([.. offsets], [.. kind], [.. time], 8, 7);
    }

    private static double RelNorm(float[] got, float[] want)
    {
        double num = 0, den = 0;
        for (var i = 0; i < want.Length; i++)
        {
            num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
            den += (double)want[i] * want[i];
        }
        return Math.Sqrt(num / den);
    }

    [Theory]
    [InlineData(Emulated, 16, 16)]
    [InlineData(Emulated, 300, 6)]
    [InlineData(Gpu, 16, 16)]
    [InlineData(Gpu, 300, 6)]
    public void Bf16SwitchesTheForwardOnlyAndFallsBackForWideHeads(string kind, int dqk, int dv)
    {
        using var gpu = OpenBackend(kind);
        var rng = new Random(3);
        const int h = 4, g = 2;
        using var layout = Layout(rng, [(3, 5, 2), (0, 0, 0), (40, 30, 9), (2, 9, 0), (1, 3, 4)]);
        var n = layout.TokenCount;
        foreach (var target in new[] { false, true })
        {
            var rows = target ? layout.TargetTokens.Length : n;
            Tensor T(int r, int c, float lo, float hi) => gpu.FromHost<float>(RandomFloats(rng, r * c, lo, hi), r, c);
            var q = T(rows, h * dqk, -1, 1);
            var k = T(n, g * dqk, -1, 1);
            var v = T(n, g * dv, -1, 1);
            var rab = T(h, layout.RabWidth, -0.5f, 0.5f);
            var dO = T(rows, h * dv, -1, 1);
            var results = new Dictionary<CudaAttentionPrecision, (float[] O, float[] Dq, float[] Dk)>();
            foreach (var precision in new[] { CudaAttentionPrecision.Fp32, CudaAttentionPrecision.Bf16 })
            {
                gpu.AttentionPrecision = precision;
                var o = gpu.FromHost<float>(Enumerable.Repeat(float.NaN, rows * h * dv).ToArray(), rows, h * dv);
                gpu.HstuAttention(layout, target, h, g, q, k, v, rab, o);
                var dq = gpu.FromHost<float>(new float[rows * h * dqk], rows, h * dqk);
                var dk = gpu.FromHost<float>(new float[n * g * dqk], n, g * dqk);
                gpu.HstuAttentionBackward(layout, target, h, g, q, k, v, rab, dO, dq, dk, null, null);
                results[precision] = (gpu.ToHost<float>(o), gpu.ToHost<float>(dq), gpu.ToHost<float>(dk));
            }
            gpu.AttentionPrecision = CudaAttentionPrecision.Fp32;
            var (o32, dq32, dk32) = results[CudaAttentionPrecision.Fp32];
            var (o16, dq16, dk16) = results[CudaAttentionPrecision.Bf16];
            Assert.All(o16, x => Assert.True(float.IsFinite(x)));
            Assert.Equal(dq32, dq16); // the backward is fp32 whatever the forward precision
            Assert.Equal(dk32, dk16);
            if (CudaOps.HstuAttentionBf16Supports(dqk, dv))
            {
                var err = RelNorm(o16, o32);
                output.WriteLine($"{kind} target={target} dqk={dqk}: bf16 vs fp32 forward rel-norm {err:E3}");
                Assert.True(err is > 1e-5 and < 1.5e-2, $"bf16 vs fp32 forward rel-norm {err:E3}");
            }
            else
            {
                Assert.Equal(o32, o16); // dqk > 256: the fp32 kernel ran
            }
        }
    }

    [Theory]
    [InlineData(Emulated)]
    [InlineData(Gpu)]
    public void MtfmForwardWithBf16AttentionStaysCloseToFp32(string kind)
    {
        using var gpu = OpenBackend(kind);
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(st.Layout.Schema.Split!.ValidStart);
        var batch = new BatchBuilder(agg, stats).Batches(maxTokens: 400, shuffleSeed: 3).First();
        var config = MtfmConfig.Tiny with { DModel = 32, Heads = 2, KvHeads = 1, Experts = 2, ExpertWidth = 8, TowerWidth = 8, EmbeddingDim = 8, TokenizerHidden = 16 };
        float Loss(CudaAttentionPrecision precision, out float[] gradW)
        {
            gpu.AttentionPrecision = precision;
            using var model = new MtfmModel(gpu, config, st.Layout, 11);
            using var tape = new Tape(gpu);
            var o = model.Forward(tape, batch);
            tape.Backward(o.Loss);
            var p = model.Parameters.First(x => x.Grad is not null && x.Grad.Length > 16);
            gradW = gpu.ToHost<float>(p.Grad!);
            return gpu.ToHost<float>(o.Loss.Value)[0];
        }
        var l32 = Loss(CudaAttentionPrecision.Fp32, out var g32);
        var l16 = Loss(CudaAttentionPrecision.Bf16, out var g16);
        gpu.AttentionPrecision = CudaAttentionPrecision.Fp32;
        output.WriteLine($"{kind}: MTFM loss fp32 {l32:R}, bf16 attention {l16:R}; a dense gradient differs by rel-norm {RelNorm(g16, g32):E3}");
        Assert.True(float.IsFinite(l16) && l16 > 0, $"bf16 loss {l16}");
        Assert.NotEqual(l32, l16); // the bf16 kernel ran
        Assert.True(Math.Abs(l16 - l32) <= 1e-2f * Math.Abs(l32), $"loss fp32 {l32:R} vs bf16 attention {l16:R}");
        Assert.True(RelNorm(g16, g32) < 5e-2, $"gradient rel-norm {RelNorm(g16, g32):E3}");
    }

    [Fact]
    public void CliOptionMapsOntoThePrecisionAndIsRejectedForTheCpu()
    {
        Assert.Equal(CudaAttentionPrecision.Fp32, TrainCommand.ParseCudaAttention("cuda", null));
        Assert.Equal(CudaAttentionPrecision.Fp32, TrainCommand.ParseCudaAttention("cpu", null));
        Assert.Equal(CudaAttentionPrecision.Fp32, TrainCommand.ParseCudaAttention("cuda", "fp32"));
        Assert.Equal(CudaAttentionPrecision.Bf16, TrainCommand.ParseCudaAttention("cuda-emulated", "bf16"));
        var e = Assert.Throws<ArgumentException>(() => TrainCommand.OpenBackend("cpu", 1, "bf16"));
        Assert.Contains("--cuda-attention bf16", e.Message);
        Assert.Contains("--device cpu", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => TrainCommand.ParseCudaAttention("cuda", "fp16"));
        Assert.Contains("--cuda-attention fp16: use fp32 or bf16", e2.Message);
        using (var cpu = TrainCommand.OpenBackend("cpu", 1))
            Assert.IsType<CpuBackend>(cpu);
        if (FindEmulationLibrary() is { } lib && Environment.GetEnvironmentVariable(EmulatedCudaDriver.LibraryVariable) is not null)
        {
            using var b = (CudaBackend)TrainCommand.OpenBackend("cuda-emulated", 1, "bf16");
            Assert.Equal(CudaAttentionPrecision.Bf16, b.AttentionPrecision);
            Assert.Contains("attention bf16", TrainCommand.DeviceText(b));
            Assert.NotNull(lib);
        }
    }

    [Fact]
    public void EvalRunsOnTheEmulatedDeviceWithBf16Attention()
    {
        var lib = EmulationLibraryOrSkip();
        Environment.SetEnvironmentVariable(EmulatedCudaDriver.LibraryVariable, lib);
        string dir = Directory.CreateTempSubdirectory("mtfm-bf16-eval").FullName;
        var stdout = Console.Out;
        var stderr = Console.Error;
        try
        {
            var log = new StringWriter();
            Console.SetOut(log);
            Console.SetError(log);
            var config = MtfmConfig.Tiny with { DModel = 16, Heads = 1, KvHeads = 1, Experts = 2, ExpertWidth = 4, TowerWidth = 4, EmbeddingDim = 4, TokenizerHidden = 8 };
            Assert.Equal(0, TrainCommand.Run(new TrainRequest
            {
                Data = "synthetic:tiny", Config = config, Epochs = 1, BatchTokens = 512, OutDir = dir, Name = "run", Threads = 1,
                Device = "cuda-emulated", CudaAttention = "bf16",
            }));
            Assert.Contains("attention bf16", log.ToString());
            var run = Path.Combine(dir, "run");
            Assert.Equal(0, EvalCommand.Run(run, new TrainRequest { Data = "synthetic:tiny", Threads = 1, Device = "cuda-emulated", CudaAttention = "bf16" }));
            var e = Assert.Throws<ArgumentException>(() =>
                EvalCommand.Run(run, new TrainRequest { Data = "synthetic:tiny", Threads = 1, Device = "cpu", CudaAttention = "bf16" }));
            Assert.Contains("--device cpu", e.Message);
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
            Directory.Delete(dir, true);
        }
    }
}
