using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Attention;

public class HstuAttentionTimeBucketTests
{
    [Theory]
    [InlineData(0L, 0)]
    [InlineData(1L, 2)]       // 1 + floor(log2 2)
    [InlineData(2L, 2)]       // log2 3 = 1.58
    [InlineData(3L, 3)]       // log2 4 = 2
    [InlineData(6L, 3)]
    [InlineData(7L, 4)]
    [InlineData(-1L, 31 + 2)]
    [InlineData(-7L, 31 + 4)]
    [InlineData(1L << 29, 30)] // floor(log2(1 + 2^29)) = 29
    public void SmallCasesWithDefaults(long dt, int expected)
    {
        Assert.Equal(expected, HstuAttentionTimeBucket.Bucket(1_000_000_000_000 + dt, 1_000_000_000_000, 32, 1));
        Assert.Equal(expected, HstuDenseReference.Bucket(1_000_000_000_000 + dt, 1_000_000_000_000, 32, 1));
    }

    [Fact]
    public void SaturatesAtNbMinusOneInBothDirections()
    {
        Assert.Equal(31, HstuAttentionTimeBucket.Bucket(1L << 40, 0, 32, 1));
        Assert.Equal(62, HstuAttentionTimeBucket.Bucket(0, 1L << 40, 32, 1));
        // 2^30 - 1 seconds: floor(log2(2^30)) = 30 → m = 31 = NB - 1 exactly; one less stays at 30.
        Assert.Equal(31, HstuAttentionTimeBucket.Bucket((1L << 30) - 1, 0, 32, 1));
        Assert.Equal(30, HstuAttentionTimeBucket.Bucket((1L << 30) - 2, 0, 32, 1));
    }

    [Fact]
    public void ExtremeTimesDoNotOverflow()
    {
        Assert.Equal(31, HstuAttentionTimeBucket.Bucket(long.MaxValue, long.MinValue, 32, 1));
        Assert.Equal(62, HstuAttentionTimeBucket.Bucket(long.MinValue, long.MaxValue, 32, 1));
        Assert.Equal(65, HstuAttentionTimeBucket.Bucket(long.MaxValue, long.MinValue, 128, 1)); // 1 + 64
        Assert.Equal(127 + 65, HstuAttentionTimeBucket.Bucket(long.MinValue, long.MaxValue, 128, 1));
        Assert.Equal(64, HstuAttentionTimeBucket.Bucket(long.MaxValue, 0, 128, 1));            // 1 + floor(log2 2^63)
        // |dt| = 2^64 − 1, unit = 2^63 − 1: floor(|dt|/unit) = 2, floor(log2 3) = 1 → m = 2.
        Assert.Equal(2, HstuAttentionTimeBucket.Bucket(long.MaxValue, long.MinValue, 128, long.MaxValue));
        Assert.Equal(2, HstuDenseReference.Bucket(long.MaxValue, long.MinValue, 128, long.MaxValue));
    }

    [Fact]
    public void PowerOfTwoBoundariesMatchTheExactReference()
    {
        var rng = new Random(1);
        long[] units = [1, 2, 3, 60, 1000, 86400, 1L << 40];
        int[] nbs = [1, 2, 32, 64, 128];
        foreach (long unit in units)
            foreach (int nb in nbs)
            {
                for (int k = 0; k < 63; k++)
                {
                    foreach (long delta in new long[] { -1, 0, 1 })
                    {
                        // dt around (2^k − 1)·unit, where floor(log2(1 + dt/unit)) steps.
                        double approx = ((double)(1L << k) - 1) * unit;
                        if (approx > 4e18) continue;
                        long dt = ((1L << k) - 1) * unit + delta;
                        if (dt < 0) continue;
                        long tk = rng.NextInt64(-(1L << 60), 1L << 60);
                        Check(tk + dt, tk, nb, unit);
                        Check(tk, tk + dt, nb, unit);
                    }
                }
                for (int i = 0; i < 200; i++)
                {
                    long a = rng.NextInt64(long.MinValue, long.MaxValue), c = rng.NextInt64(long.MinValue, long.MaxValue);
                    Check(a, c, nb, unit);
                }
            }
    }

    private static void Check(long tq, long tk, int nb, long unit)
        => Assert.True(HstuDenseReference.Bucket(tq, tk, nb, unit) == HstuAttentionTimeBucket.Bucket(tq, tk, nb, unit),
            $"bucket({tq} − {tk}, NB {nb}, unit {unit}): kernel {HstuAttentionTimeBucket.Bucket(tq, tk, nb, unit)}, reference {HstuDenseReference.Bucket(tq, tk, nb, unit)}");

    [Fact]
    public unsafe void VectorisedRowEqualsScalarBucket()
    {
        var rng = new Random(3);
        long[] units = [1, 2, 64, 1L << 20, 3, 86400];
        foreach (long unit in units)
            foreach (int nb in new[] { 1, 8, 32, 128 })
                for (int rep = 0; rep < 20; rep++)
                {
                    int n = rng.Next(0, 50);
                    var tk = new long[n];
                    long tq = rep % 5 == 0 ? long.MinValue + rng.Next(3) : rng.NextInt64(-(1L << 40), 1L << 40);
                    for (int j = 0; j < n; j++)
                    {
                        tk[j] = rng.Next(8) switch
                        {
                            0 => tq,
                            1 => tq + rng.Next(-3, 4),
                            2 => long.MaxValue - rng.Next(3),
                            3 => long.MinValue + rng.Next(3),
                            4 => tq + ((1L << 52) - 1 - rng.Next(3)) * (rng.Next(2) * 2 - 1),
                            _ => tq + rng.NextInt64(-(1L << 35), 1L << 35),
                        };
                    }
                    var got = new int[n];
                    fixed (long* tp = tk) fixed (int* gp = got)
                        HstuAttentionTimeBucket.BucketRow(tq, tp, n, nb, unit, gp);
                    for (int j = 0; j < n; j++)
                        Assert.True(got[j] == HstuDenseReference.Bucket(tq, tk[j], nb, unit), $"tq {tq}, tk {tk[j]}, NB {nb}, unit {unit}: row {got[j]}, reference {HstuDenseReference.Bucket(tq, tk[j], nb, unit)}");
                }
    }

    [Fact]
    public unsafe void VectorisedRowEqualsScalarBucketAroundThe32BitPath()
    {
        // Rows of nearby keys take the 16-lane 32-bit path; a lane at or just past |dt| = 2^31 − 1 sends its 16 to the
        // 64-bit path. Either way every bucket must equal the reference.
        var rng = new Random(5);
        long[] units = [1, 2, 64, 1L << 20, 1L << 31, 1L << 32, 3];
        foreach (long unit in units)
            foreach (int nb in new[] { 1, 8, 32, 128 })
                for (int rep = 0; rep < 30; rep++)
                {
                    int n = rng.Next(0, 100);
                    var tk = new long[n];
                    long tq = rng.NextInt64(-(1L << 40), 1L << 40);
                    for (int j = 0; j < n; j++)
                    {
                        long edge = int.MaxValue - 1 + rng.Next(3); // 2^31 − 2 .. 2^31
                        tk[j] = rng.Next(rep % 3 == 0 ? 40 : 8) switch
                        {
                            0 => tq,
                            1 => tq + edge * (rng.Next(2) * 2 - 1),
                            2 => tq + ((1L << 24) - 2 + rng.Next(4)) * (rng.Next(2) * 2 - 1),
                            3 => tq + rng.Next(-3, 4),
                            _ => tq + rng.Next(int.MinValue + 1, int.MaxValue),
                        };
                    }
                    var got = new int[n];
                    fixed (long* tp = tk) fixed (int* gp = got)
                        HstuAttentionTimeBucket.BucketRow(tq, tp, n, nb, unit, gp);
                    for (int j = 0; j < n; j++)
                        Assert.True(got[j] == HstuDenseReference.Bucket(tq, tk[j], nb, unit), $"tq {tq}, tk {tk[j]}, NB {nb}, unit {unit}: row {got[j]}, reference {HstuDenseReference.Bucket(tq, tk[j], nb, unit)}");
                }
    }
}
