using Mtfm.Engine.Training;

namespace Mtfm.Tests.Training;

public class OptimizerTests
{
    /// <summary>Textbook AdamW in double (PyTorch formulation), one element at a time.</summary>
    private sealed class DoubleAdamW(int n, double b1, double b2, double eps, double wd)
    {
        public readonly double[] M = new double[n], V = new double[n];

        public void Step(double[] p, double[] g, int t, double lr)
        {
            for (int i = 0; i < p.Length; i++)
            {
                p[i] *= 1 - lr * wd;
                M[i] = b1 * M[i] + (1 - b1) * g[i];
                V[i] = b2 * V[i] + (1 - b2) * g[i] * g[i];
                double mh = M[i] / (1 - Math.Pow(b1, t));
                double vh = V[i] / (1 - Math.Pow(b2, t));
                p[i] -= lr * mh / (Math.Sqrt(vh) + eps);
            }
        }
    }

    private static float[] RandomFloats(Random r, int n, double scale) =>
        Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();

    [Theory]
    [InlineData(0f)]
    [InlineData(0.1f)]
    public void AdamWMatchesDoubleReferenceOverSeveralSteps(float weightDecay)
    {
        var r = new Random(1);
        const int n = 103; // vector body + scalar tail
        var opt = new AdamOptions { Beta1 = 0.9f, Beta2 = 0.99f, Epsilon = 1e-8f, WeightDecay = weightDecay };
        var p = RandomFloats(r, n, 1);
        var pd = p.Select(x => (double)x).ToArray();
        var state = new AdamWState(n);
        var reference = new DoubleAdamW(n, 0.9f, 0.99f, 1e-8f, weightDecay);
        for (int t = 1; t <= 6; t++)
        {
            var g = RandomFloats(r, n, t * 0.3);
            float lr = 0.01f * t;
            state.Update(p, g, lr, opt);
            reference.Step(pd, g.Select(x => (double)x).ToArray(), t, lr);
        }
        Assert.Equal(6, state.Step);
        for (int i = 0; i < n; i++)
        {
            Assert.True(Math.Abs(p[i] - pd[i]) <= 2e-6 * Math.Max(1, Math.Abs(pd[i])), $"param {i}: {p[i]} vs {pd[i]}");
            Assert.True(Math.Abs(state.FirstMoment[i] - reference.M[i]) <= 1e-6, $"m {i}: {state.FirstMoment[i]} vs {reference.M[i]}");
            Assert.True(Math.Abs(state.SecondMoment[i] - reference.V[i]) <= 1e-6 * Math.Max(1e-2, Math.Abs(reference.V[i])), $"v {i}: {state.SecondMoment[i]} vs {reference.V[i]}");
        }
    }

    [Fact]
    public void FirstStepMovesEachParameterByAboutLearningRate()
    {
        // With bias correction, step 1 is lr·g/(|g|+eps) ≈ lr·sign(g).
        var p = new float[40];
        var g = Enumerable.Range(0, 40).Select(i => i % 2 == 0 ? 0.3f : -2f).ToArray();
        new AdamWState(40).Update(p, g, 0.05f, new AdamOptions());
        for (int i = 0; i < 40; i++) Assert.Equal(-0.05 * Math.Sign(g[i]), p[i], 6);
    }

    [Fact]
    public void VectorPathsAreBitIdenticalToScalarKernel()
    {
        var r = new Random(3);
        foreach (int n in new[] { 1, 7, 8, 16, 31, 64, 1000 })
        {
            var p0 = RandomFloats(r, n, 2); var p1 = (float[])p0.Clone(); var p2 = (float[])p0.Clone();
            var m0 = RandomFloats(r, n, 0.1); var m1 = (float[])m0.Clone(); var m2 = (float[])m0.Clone();
            var v0 = RandomFloats(r, n, 0.1).Select(MathF.Abs).ToArray(); var v1 = (float[])v0.Clone(); var v2 = (float[])v0.Clone();
            var g = RandomFloats(r, n, 1);
            var c = AdamW.Coefficients.For(5, 0.003f, new AdamOptions { WeightDecay = 0.05f });
            AdamW.Kernel(p1, g, m1, v1, c);
            AdamW.ScalarKernel(p2, g, m2, v2, c);
            Assert.Equal(p2, p1);
            Assert.Equal(m2, m1);
            Assert.Equal(v2, v1);
            // Each vector width explicitly (the dispatcher only takes the widest the machine accelerates).
            foreach (var body in new (bool ok, Func<float[], float[], float[], int> run)[]
            {
                (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated, (p, m, v) => AdamW.Body512(p, g, m, v, c)),
                (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, (p, m, v) => AdamW.Body256(p, g, m, v, c)),
            })
            {
                if (!body.ok) continue;
                var p3 = (float[])p0.Clone(); var m3 = (float[])m0.Clone(); var v3 = (float[])v0.Clone();
                int done = body.run(p3, m3, v3);
                AdamW.ScalarKernel(p3.AsSpan(done), g.AsSpan(done), m3.AsSpan(done), v3.AsSpan(done), c);
                Assert.Equal(p2, p3);
                Assert.Equal(m2, m3);
                Assert.Equal(v2, v3);
            }
        }
    }

    [Fact]
    public void WeightDecayIsDecoupled()
    {
        var p = new float[] { 2f, -4f };
        var state = new AdamWState(2);
        state.Update(p, new float[2], 0.1f, new AdamOptions { WeightDecay = 0.5f });
        Assert.Equal(2f * 0.95f, p[0], 6);
        Assert.Equal(-4f * 0.95f, p[1], 6);
        Assert.All(state.FirstMoment, x => Assert.Equal(0f, x));
        Assert.All(state.SecondMoment, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void AdamWRejectsBadArguments()
    {
        var e = Assert.Throws<ArgumentException>(() => AdamW.Step(new float[3], new float[2], new float[3], new float[3], 1, 0.1f, new AdamOptions()));
        Assert.Contains("gradients has 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => AdamW.Step(new float[1], new float[1], new float[1], new float[1], 0, 0.1f, new AdamOptions()));
        Assert.Throws<ArgumentOutOfRangeException>(() => AdamW.Step(new float[1], new float[1], new float[1], new float[1], 1, float.NaN, new AdamOptions()));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new AdamOptions { Beta1 = 1f }.Validate());
        Assert.Equal("Beta1", ex.ParamName);
    }

    [Fact]
    public void RowSparseAdamTouchesOnlyGivenRowsAndUsesPerRowStepCounts()
    {
        var r = new Random(9);
        const int rows = 50, dim = 19;
        var opt = new AdamOptions { Beta1 = 0.8f, Beta2 = 0.95f, WeightDecay = 0.01f };
        var table = RandomFloats(r, rows * dim, 1);
        var state = new RowSparseAdamState(rows, dim);
        // Per-row double references: each row is its own AdamW with its own step count.
        var refs = Enumerable.Range(0, rows).Select(_ => new DoubleAdamW(dim, 0.8f, 0.95f, 1e-8f, 0.01f)).ToArray();
        var refRows = Enumerable.Range(0, rows).Select(i => table.AsSpan(i * dim, dim).ToArray().Select(x => (double)x).ToArray()).ToArray();
        var steps = new int[rows];
        int[][] touched = [[3, 17, 40], [17], [0, 3, 49], [17, 3]];
        for (int s = 0; s < touched.Length; s++)
        {
            var ids = touched[s];
            var g = RandomFloats(r, ids.Length * dim, 1);
            var before = (float[])table.Clone();
            var mBefore = (float[])state.FirstMoment.Clone();
            var vBefore = (float[])state.SecondMoment.Clone();
            float lr = 0.02f;
            state.Update(table, ids, g, lr, opt);
            for (int k = 0; k < ids.Length; k++)
                refs[ids[k]].Step(refRows[ids[k]], g.AsSpan(k * dim, dim).ToArray().Select(x => (double)x).ToArray(), ++steps[ids[k]], lr);
            for (int row = 0; row < rows; row++)
            {
                if (ids.Contains(row)) continue;
                // Untouched rows: parameters and moments identical bit for bit.
                Assert.True(table.AsSpan(row * dim, dim).SequenceEqual(before.AsSpan(row * dim, dim)), $"row {row} moved");
                Assert.True(state.FirstMoment.AsSpan(row * dim, dim).SequenceEqual(mBefore.AsSpan(row * dim, dim)));
                Assert.True(state.SecondMoment.AsSpan(row * dim, dim).SequenceEqual(vBefore.AsSpan(row * dim, dim)));
            }
        }
        Assert.Equal(steps, state.RowSteps);
        Assert.Equal(3, state.RowSteps[17]);
        Assert.Equal(0, state.RowSteps[1]);
        for (int row = 0; row < rows; row++)
            for (int j = 0; j < dim; j++)
                Assert.True(Math.Abs(table[row * dim + j] - refRows[row][j]) <= 2e-6 * Math.Max(1, Math.Abs(refRows[row][j])), $"row {row} col {j}");
    }

    [Fact]
    public void RowSparseAdamRejectsDuplicateAndOutOfRangeIdsWithoutModifying()
    {
        var table = new float[] { 1, 2, 3, 4, 5, 6 };
        var state = new RowSparseAdamState(3, 2);
        var e = Assert.Throws<ArgumentException>(() => state.Update(table, [0, 2, 0], new float[6], 0.1f, new AdamOptions()));
        Assert.Contains("rowIds[2] = 0 is repeated", e.Message);
        e = Assert.Throws<ArgumentException>(() => state.Update(table, [1, 3], new float[4], 0.1f, new AdamOptions()));
        Assert.Contains("rowIds[1] = 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => state.Update(table, [1], new float[3], 0.1f, new AdamOptions()));
        Assert.Contains("rowGradients", e.Message);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, table);
        Assert.Equal(new int[3], state.RowSteps);
    }

    [Fact]
    public void CoalesceSumsRepeatedRows()
    {
        RowSparseGradient.Coalesce([5, 2, 5, 9], [1, 1, 2, 2, 10, 20, 3, 3], 2, out var ids, out var g);
        Assert.Equal(new[] { 2, 5, 9 }, ids);
        Assert.Equal(new float[] { 2, 2, 11, 21, 3, 3 }, g);
        Assert.Throws<ArgumentException>(() => RowSparseGradient.Coalesce([-1], [1f], 1, out _, out _));
    }
}
