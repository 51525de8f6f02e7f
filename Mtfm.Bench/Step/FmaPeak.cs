using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace Mtfm.Bench.Step;

/// <summary>
/// Measures the FMA peak of this machine: each thread runs 12 independent chains of 512-bit (or 256-bit) fused
/// multiply-adds (enough to cover the FMA latency on two pipes); GFLOP/s = 2 · lanes · FMAs / time, best of a few runs.
/// </summary>
internal static class FmaPeak
{
    public static double Measure(int threads, int repeats = 5)
    {
        double best = 0;
        for (int r = 0; r < repeats; r++)
        {
            const long iters = 20_000_000;
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Sink(Run(iters)));
            double s = sw.Elapsed.TotalSeconds;
            int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
            best = Math.Max(best, 2.0 * lanes * 12 * iters * threads / s / 1e9);
        }
        return best;
    }

    private static float s_sink;

    private static void Sink(float v) => s_sink += v;

    private static float Run(long iters)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(0.999999f); var a = Vector512.Create(1e-7f);
            Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long i = 0; i < iters; i++)
            {
                c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a); c2 = Vector512.FusedMultiplyAdd(c2, m, a);
                c3 = Vector512.FusedMultiplyAdd(c3, m, a); c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
                c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a); c8 = Vector512.FusedMultiplyAdd(c8, m, a);
                c9 = Vector512.FusedMultiplyAdd(c9, m, a); c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
            }
            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }
        var n = Vector256.Create(0.999999f); var b = Vector256.Create(1e-7f);
        Vector256<float> d0 = Vector256.Create(1f), d1 = d0, d2 = d0, d3 = d0, d4 = d0, d5 = d0, d6 = d0, d7 = d0, d8 = d0, d9 = d0, d10 = d0, d11 = d0;
        for (long i = 0; i < iters; i++)
        {
            d0 = Vector256.FusedMultiplyAdd(d0, n, b); d1 = Vector256.FusedMultiplyAdd(d1, n, b); d2 = Vector256.FusedMultiplyAdd(d2, n, b);
            d3 = Vector256.FusedMultiplyAdd(d3, n, b); d4 = Vector256.FusedMultiplyAdd(d4, n, b); d5 = Vector256.FusedMultiplyAdd(d5, n, b);
            d6 = Vector256.FusedMultiplyAdd(d6, n, b); d7 = Vector256.FusedMultiplyAdd(d7, n, b); d8 = Vector256.FusedMultiplyAdd(d8, n, b);
            d9 = Vector256.FusedMultiplyAdd(d9, n, b); d10 = Vector256.FusedMultiplyAdd(d10, n, b); d11 = Vector256.FusedMultiplyAdd(d11, n, b);
        }
        return Vector256.Sum(d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7 + d8 + d9 + d10 + d11);
    }
}
