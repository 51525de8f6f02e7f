using System.Diagnostics;
using System.Runtime.InteropServices;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Bench;

/// <summary>
/// A quick Stopwatch GFLOP/s table for the SGEMM (best of several repetitions), for tuning between BenchmarkDotNet runs:
/// <c>dotnet run -c Release --project Mtfm.Bench -- gemm-quick [threads] [Avx512|Avx2|Scalar]</c>.
/// </summary>
internal static unsafe class GemmQuick
{
    public static void Run(string[] args)
    {
        int threads = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1;
        var isa = args.Length > 2 ? Enum.Parse<GemmIsa>(args[2], ignoreCase: true) : GemmIsaSupport.Best;
        using var pool = new CpuWorkerPool(threads);
        Console.WriteLine($"isa={isa} threads={threads}");
#if MTFM_TORCHSHARP
        GemmTorchSharpPatch.Apply();
        TorchSharp.torch.set_num_threads(threads);
#endif
        foreach (var s in GemmShape.All)
        {
            float* a = Alloc((long)s.M * s.K), b = Alloc((long)s.K * s.N), c = Alloc((long)s.M * s.N);
            int lda = s.TransA ? s.M : s.K, ldb = s.TransB ? s.K : s.N;
            double best = double.MaxValue;
            long flops = 2L * s.M * s.N * s.K;
            int reps = (int)Math.Clamp(2e10 / flops, 8, 300);
            for (int r = 0; r < reps; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                CpuGemm.Sgemm(pool, isa, s.TransA, s.TransB, s.M, s.N, s.K, 1f, a, lda, b, ldb, 0f, c, s.N);
                best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
            // Cold: the operands evicted from every cache level first (64 MB streamed through), as a step finds
            // activations written long before; median of 7.
            var cold = new double[7];
            for (int r = 0; r < cold.Length; r++)
            {
                Evict();
                long t0 = Stopwatch.GetTimestamp();
                CpuGemm.Sgemm(pool, isa, s.TransA, s.TransB, s.M, s.N, s.K, 1f, a, lda, b, ldb, 0f, c, s.N);
                cold[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            Array.Sort(cold);
            double coldMedian = cold[cold.Length / 2];
            string peer = "";
#if MTFM_TORCHSHARP
            using (var ta = s.TransA ? TorchSharp.torch.randn(s.K, s.M).t() : TorchSharp.torch.randn(s.M, s.K))
            using (var tb = s.TransB ? TorchSharp.torch.randn(s.N, s.K).t() : TorchSharp.torch.randn(s.K, s.N))
            {
                double bestTorch = double.MaxValue;
                for (int r = 0; r < reps + 1; r++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    using var tc = TorchSharp.torch.mm(ta, tb);
                    if (r > 0) bestTorch = Math.Min(bestTorch, Stopwatch.GetElapsedTime(t0).TotalSeconds);
                }
                peer = $"  torch.mm {flops / bestTorch / 1e9,8:F1} GFLOP/s  (CpuGemm/torch = {bestTorch / best:F2}x)";
            }
#endif
            Console.WriteLine($"{s.Name,-32} {s,-18} {flops / best / 1e9,8:F1} GFLOP/s  ({best * 1e3:F2} ms best of {reps}; cold {flops / coldMedian / 1e9:F1} GFLOP/s, {coldMedian * 1e3:F2} ms median of {cold.Length}){peer}");
            NativeMemory.AlignedFree(a); NativeMemory.AlignedFree(b); NativeMemory.AlignedFree(c);
        }
    }

    private static float[]? _evict;

    private static void Evict()
    {
        _evict ??= new float[16 << 20];
        var e = _evict;
        for (int i = 0; i < e.Length; i += 16) e[i] += 1f;
    }

    internal static float* Alloc(long count)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        var rng = new Random(1);
        for (long i = 0; i < count; i++) p[i] = (float)(rng.NextDouble() - 0.5);
        return p;
    }
}
