using CsCheck;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Gemm;

/// <summary>Random-shape property tests: every generated problem matches the float64 reference and 1 vs 2 threads agree.</summary>
public sealed class CpuGemmPropertyTests : IDisposable
{
    private readonly CpuWorkerPool _pool1 = new(1);
    private readonly CpuWorkerPool _pool2 = new(2);

    public void Dispose()
    {
        _pool1.Dispose();
        _pool2.Dispose();
    }

    private static readonly float[] Alphas = [1f, -0.5f, 2f, 0f];
    private static readonly float[] Betas = [0f, 1f, 0.25f, -1.5f];

    private static readonly Gen<(int M, int N, int K, int Flags, int Seed)> Problems =
        Gen.Select(Gen.Int[0, 90], Gen.Int[0, 90], Gen.Int[0, 140], Gen.Int[0, (1 << 12) - 1], Gen.Int[0, 1_000_000]);

    [Fact]
    public void RandomProblemsMatchReferenceAndAreThreadCountIndependent()
    {
        Problems.Sample(p =>
        {
            var (m, n, k, flags, seed) = p;
            bool ta = (flags & 1) != 0, tb = (flags & 2) != 0;
            int padA = (flags >> 2) & 3, padB = (flags >> 4) & 3, padC = (flags >> 6) & 3;
            float alpha = Alphas[(flags >> 8) & 3], beta = Betas[(flags >> 10) & 3];
            int lda = (ta ? m : k) + padA, ldb = (tb ? k : n) + padB, ldc = n + padC;
            var a = GemmReference.Random((ta ? k : m) * lda, seed);
            var b = GemmReference.Random((tb ? n : k) * ldb, seed + 1);
            var c = GemmReference.Random(m * ldc + 1, seed + 2);
            var (e, bound) = GemmReference.Compute(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            foreach (var isa in GemmReference.SupportedIsas)
            {
                var c1 = (float[])c.Clone();
                var c2 = (float[])c.Clone();
                GemmReference.Run(_pool1, isa, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
                GemmReference.Run(_pool2, isa, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
                GemmReference.AssertClose(e, bound, c1, c, m, n, ldc, $"{isa} {p}");
                Assert.True(c1.AsSpan().SequenceEqual(c2), $"{isa} {p}: 2 threads differ from 1");
            }
        }, iter: 150, seed: "0N0XIzNsQ0O2");
    }
}
