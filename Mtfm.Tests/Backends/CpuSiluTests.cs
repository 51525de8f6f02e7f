using System.Runtime.Intrinsics;
using Mtfm.Engine.Backends.Cpu;

namespace Mtfm.Tests.Backends;

/// <summary>The CPU SiLU's own exp: accuracy against float64, the same bits wherever a value sits in a run, NaN kept.</summary>
public sealed unsafe class CpuSiluTests
{
    private static float[] Values(int n, int seed, float range)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)((rng.NextDouble() * 2 - 1) * range);
        return x;
    }

    [Fact]
    public void SiluSigmoidAndGradientAreWithinAFewUlpOfFloat64()
    {
        var x = Values(20000, 1, 20f);
        var dy = Values(x.Length, 2, 1f);
        var y = new float[x.Length];
        var s = new float[x.Length];
        var dx = Values(x.Length, 3, 1f);
        var dx0 = (float[])dx.Clone();
        fixed (float* px = x, py = y, ps = s, pdy = dy, pdx = dx)
        {
            CpuSilu.Forward(px, py, x.Length);
            CpuSilu.Sigmoid(px, ps, x.Length);
            CpuSilu.Backward(px, pdy, pdx, x.Length, accumulate: true);
        }
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i], sig = 1 / (1 + Math.Exp(-v));
            double silu = v * sig, grad = dx0[i] + dy[i] * sig * (1 + v * (1 - sig));
            Assert.True(Math.Abs(y[i] - silu) <= 4e-7 * Math.Abs(silu) + 1e-37, $"SiLU({v}) = {y[i]}, float64 {silu}");
            Assert.True(Math.Abs(s[i] - sig) <= 4e-7 * sig + 1e-37, $"σ({v}) = {s[i]}, float64 {sig}");
            Assert.True(Math.Abs(dx[i] - grad) <= 1e-6 * (Math.Abs(dx0[i]) + Math.Abs(dy[i])) + 1e-30, $"grad at {v}: {dx[i]}, float64 {grad}");
        }
    }

    [Fact]
    public void AValueGetsTheSameBitsAtAnyPositionAndRunLength()
    {
        var x = Values(37, 4, 10f);
        var whole = new float[x.Length];
        fixed (float* px = x, pw = whole) CpuSilu.Forward(px, pw, x.Length);
        for (int start = 0; start < x.Length; start++)
        {
            for (int len = 1; start + len <= x.Length; len += 5)
            {
                var part = new float[len];
                fixed (float* px = x, pp = part) CpuSilu.Forward(px + start, pp, len);
                for (int j = 0; j < len; j++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(whole[start + j]), BitConverter.SingleToInt32Bits(part[j]));
            }
        }
    }

    [Fact]
    public void AWrittenGradientEqualsOneAddedIntoZerosBitForBit()
    {
        foreach (int n in new[] { 5, 16, 37 })
        {
            var x = Values(n, 7, 6f);
            var dy = Values(n, 8, 1f);
            var added = new float[n];
            var written = Values(n, 9, 100f); // garbage: every element must be overwritten
            fixed (float* px = x, pdy = dy, pa = added, pw = written)
            {
                CpuSilu.Backward(px, pdy, pa, n, accumulate: true);
                CpuSilu.Backward(px, pdy, pw, n, accumulate: false);
            }
            Assert.True(added.AsSpan().SequenceEqual(written), $"n = {n}");
        }
    }

    [Fact]
    public void NaNPropagatesAndLargeInputsSaturate()
    {
        float[] x = [float.NaN, 1000f, -1000f, 0f, 88.5f, -88.5f];
        var y = new float[x.Length];
        var dx = new float[x.Length];
        var dy = new float[x.Length];
        Array.Fill(dy, 1f);
        fixed (float* px = x, py = y, pdy = dy, pdx = dx)
        {
            CpuSilu.Forward(px, py, x.Length);
            CpuSilu.Backward(px, pdy, pdx, x.Length, accumulate: true);
        }
        Assert.True(float.IsNaN(y[0]));
        Assert.True(float.IsNaN(dx[0]));
        Assert.Equal(1000f, y[1]);
        Assert.True(Math.Abs(y[2]) < 1e-30f);
        Assert.Equal(0f, y[3]);
        Assert.Equal(88.5f, y[4]);
        Assert.Equal(1f, dx[1]);
        Assert.True(Math.Abs(dx[2]) < 1e-30f);
        Assert.Equal(0.5f, dx[3]);
    }

    [Fact]
    public void ExpScalesByTwoToTheNExactly()
    {
        // The vector exp multiplies its polynomial by 2^n in one scale instruction where AVX-512 has it: every input must
        // give the bits of the product with 2^n built in the exponent field (what the other paths compute). Inputs: one
        // float bit pattern in 1,021 across all of them, so every exponent and both signs are covered.
        if (!Vector512.IsHardwareAccelerated) Assert.Skip("no AVX-512 on this machine: the scale path does not run");
        var idx = Vector512<int>.Indices * 1021;
        for (long bits = 0; bits < (1L << 32); bits += 16 * 1021)
        {
            var t = (Vector512.Create((int)(uint)bits) + idx).AsSingle();
            var got = CpuSilu.Exp(t);
            var want = ExpByExponentField(t);
            for (int l = 0; l < 16; l++)
            {
                if (float.IsNaN(t[l])) continue;
                Assert.True(BitConverter.SingleToInt32Bits(got[l]) == BitConverter.SingleToInt32Bits(want[l]), $"e^{t[l]:R}: {got[l]:R}, exponent-field product {want[l]:R}");
            }
        }
    }

    /// <summary>The same range reduction and polynomial, then p times 2^n assembled in the exponent field.</summary>
    private static Vector512<float> ExpByExponentField(Vector512<float> t)
    {
        var v = Vector512.MinNative(Vector512.MaxNative(t, Vector512.Create(-87f)), Vector512.Create(88f));
        var lanes = new float[16];
        for (int l = 0; l < 16; l++)
        {
            float x = v[l];
            float n = MathF.Round(x * 1.44269504088896341f);
            float r = MathF.FusedMultiplyAdd(n, -0.693359375f, x);
            r = MathF.FusedMultiplyAdd(n, 2.12194440e-4f, r);
            float p = MathF.FusedMultiplyAdd(1.9875691500e-4f, r, 1.3981999507e-3f);
            p = MathF.FusedMultiplyAdd(p, r, 8.3334519073e-3f);
            p = MathF.FusedMultiplyAdd(p, r, 4.1665795894e-2f);
            p = MathF.FusedMultiplyAdd(p, r, 1.6666665459e-1f);
            p = MathF.FusedMultiplyAdd(p, r, 5.0000001201e-1f);
            p = MathF.FusedMultiplyAdd(p, r * r, r + 1f);
            lanes[l] = p * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
        }
        return Vector512.Create(lanes);
    }
}
