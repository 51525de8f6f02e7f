using System.Reflection;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Backends.Cpu;
using Mtfm.Engine.Tensors;
using Mtfm.Tests.Cuda;

namespace Mtfm.Tests.Backends;

/// <summary>
/// Runs <see cref="OpTable"/>: every forward case and every argument-error case on each backend kind — <c>cpu</c>
/// (2 worker threads), <c>emulated</c> (the CUDA kernels on the host emulation; skipped, saying how to build it, when the
/// library is missing) and <c>gpu</c> (a real device; skipped with the reason when there is none) — against a 1-thread
/// CPU backend, and every gradient case by central finite differences of the forward on that same backend.
/// </summary>
public sealed class OpTableTests
{
    public const string Cpu = "cpu";

    private static readonly string[] Kinds = [Cpu, CudaTestDevice.Emulated, CudaTestDevice.Gpu];

    public static TheoryData<string, string> ForwardRows() => Rows(OpTable.Cases.Select(c => c.Name));

    public static TheoryData<string, string> GradientRows() => Rows(OpTable.Gradients.Select(c => c.Name));

    public static TheoryData<string, string> ErrorRows() => Rows(OpTable.Errors.Select(c => c.Name));

    private static TheoryData<string, string> Rows(IEnumerable<string> names)
    {
        var rows = new TheoryData<string, string>();
        foreach (var name in names)
            foreach (var kind in Kinds)
                rows.Add(kind, name);
        return rows;
    }

    internal static IBackend Open(string kind) => kind == Cpu ? new CpuBackend(2) : CudaTestDevice.OpenBackend(kind);

    [Theory]
    [MemberData(nameof(ForwardRows))]
    public void ForwardMatchesTheCpu(string kind, string name)
    {
        var op = OpTable.Cases.Single(c => c.Name == name);
        using var backend = Open(kind);
        using var reference = new CpuBackend(1);
        using var rx = new OpContext(reference, Seed(name));
        using var bx = new OpContext(backend, Seed(name));
        var expected = op.Run(rx);
        var actual = op.Run(bx);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            string what = $"{name} on {kind}, output {i}";
            Assert.Equal(expected[i].ShapeString, actual[i].ShapeString);
            if (expected[i].DType == DType.Int32)
            {
                Assert.Equal(reference.ToHost<int>(expected[i]), backend.ToHost<int>(actual[i]));
                continue;
            }
            var e = reference.ToHost<float>(expected[i]);
            var a = backend.ToHost<float>(actual[i]);
            if (op.Rtol == 0 && op.Atol == 0)
            {
                for (int j = 0; j < e.Length; j++)
                    if (BitConverter.SingleToInt32Bits(e[j]) != BitConverter.SingleToInt32Bits(a[j]))
                        Assert.Fail($"{what}: element {j} is {a[j]:R}, expected exactly {e[j]:R}");
            }
            else
                CudaTestDevice.AssertClose(e, a, op.Rtol, op.Atol, what);
        }
    }

    public static TheoryData<string> KindRows() => new(Kinds);

    /// <summary>HstuAttentionBackward with overwrite writes dq, dk, dv over garbage exactly what it adds into zeros.</summary>
    [Theory]
    [MemberData(nameof(KindRows))]
    public void AttentionBackwardOverwriteEqualsAddingIntoZeros(string kind)
    {
        using var backend = Open(kind);
        foreach (bool target in new[] { false, true })
        {
            using var x = new OpContext(backend, 17);
            var a = OpTable.AttentionInputs(x, target);
            var dO = x.Rand(-1, 1, a.Rows, a.H * a.Dv);
            var added = new[] { x.Rand(0, 0, a.Rows, a.H * a.Dqk), x.Rand(0, 0, a.N, a.G * a.Dqk), x.Rand(0, 0, a.N, a.G * a.Dv) };
            var written = new[] { x.Rand(1e6f, 2e6f, a.Rows, a.H * a.Dqk), x.Rand(1e6f, 2e6f, a.N, a.G * a.Dqk), x.Rand(1e6f, 2e6f, a.N, a.G * a.Dv) };
            backend.HstuAttentionBackward(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, dO, added[0], added[1], added[2], null);
            backend.HstuAttentionBackward(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, dO, written[0], written[1], written[2], null, overwrite: true);
            for (int i = 0; i < 3; i++)
                Assert.Equal(backend.ToHost<float>(added[i]), backend.ToHost<float>(written[i]));
        }
    }

    [Theory]
    [MemberData(nameof(GradientRows))]
    public void BackwardMatchesFiniteDifferences(string kind, string name)
    {
        var grad = OpTable.Gradients.Single(c => c.Name == name);
        using var backend = Open(kind);
        using var x = new OpContext(backend, Seed(name));
        var failures = DirectionalCheck.Run(backend, grad.Make(x), x.Rng);
        Assert.True(failures.Count == 0, $"{name} on {kind}:\n{string.Join("\n", failures)}");
    }

    [Theory]
    [MemberData(nameof(ErrorRows))]
    public void BadArgumentsThrowTheCpusError(string kind, string name)
    {
        var err = OpTable.Errors.Single(c => c.Name == name);
        using var backend = Open(kind);
        using var reference = new CpuBackend(1);
        using var rx = new OpContext(reference, Seed(name));
        using var bx = new OpContext(backend, Seed(name));
        var expected = Capture(err.Make(rx));
        var actual = Capture(err.Make(bx));
        foreach (var (e, who) in new[] { (expected, "cpu reference"), (actual, kind) })
        {
            Assert.True(e is not null, $"{name}: {who} did not throw");
            Assert.IsType(err.Exception, e);
            Assert.Equal(err.Param, ((ArgumentException)e!).ParamName);
            if (err.MessageContains is { } m) Assert.Contains(m, e.Message);
        }
    }

    private static Exception? Capture(Action a)
    {
        try
        {
            a();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>
    /// Missing coverage is visible: every compute op of <see cref="IBackend"/> has at least one forward case, and every
    /// op with a backward is covered by a gradient case (as its forward or as the backward it names).
    /// </summary>
    [Fact]
    public void EveryBackendOpHasARowInTheTable()
    {
        var members = typeof(IBackend).GetMembers(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m is MethodInfo { IsSpecialName: false } || m is PropertyInfo)
            .Select(m => m.Name).Distinct().ToArray();
        var forward = OpTable.Cases.Select(c => c.Op).ToHashSet();
        var missing = members.Where(m => !OpTable.Infrastructure.Contains(m) && !forward.Contains(m)).ToArray();
        Assert.True(missing.Length == 0, "IBackend ops without an op-table case: " + string.Join(", ", missing));
        Assert.DoesNotContain(OpTable.Infrastructure, i => !members.Contains(i) && i != "Dispose");

        var graded = OpTable.Gradients.SelectMany(g => new[] { g.Op }.Concat(g.Variant.Split([' ', ',', ':', '(', ')'], StringSplitOptions.RemoveEmptyEntries))).ToHashSet();
        var backwards = members.Where(m => m.EndsWith("Backward", StringComparison.Ordinal)).ToArray();
        foreach (var b in backwards)
        {
            Assert.Contains(b, graded);
            Assert.Contains(b[..^"Backward".Length], graded);
        }
        Assert.Equal(OpTable.Cases.Length, OpTable.Cases.Select(c => c.Name).Distinct().Count());
        Assert.Equal(OpTable.Gradients.Length, OpTable.Gradients.Select(c => c.Name).Distinct().Count());
    }

    /// <summary>The gradient check itself fails on a backward that is off by 3 % (so a passing row means something).</summary>
    [Fact]
    public void TheGradientCheckFailsOnAWrongBackward()
    {
        using var backend = new CpuBackend(1);
        var rng = new Random(5);
        foreach (var factor in new[] { 1.03f, 0.97f })
        {
            var problem = new GradProblem
            {
                Inputs = [(Enumerable.Range(0, 40).Select(_ => rng.NextSingle() * 8 - 4).ToArray(), [8, 5])],
                Wrt = [0],
                Forward = (b, t) => { var y = b.Allocate(DType.Float32, [8, 5]); b.Silu(t[0], y); return y; },
                Backward = (b, t, dy, g) =>
                {
                    using var scaled = b.Allocate(DType.Float32, [8, 5]);
                    b.Scale(dy, factor, scaled);
                    b.SiluBackward(t[0], scaled, g[0]);
                },
            };
            Assert.NotEmpty(DirectionalCheck.Run(backend, problem, rng));
        }
    }

    private static int Seed(string name)
    {
        uint h = 2166136261;
        foreach (var ch in name) h = (h ^ ch) * 16777619;
        return (int)(h & 0x7fffffff);
    }
}

/// <summary>
/// Central finite differences along random directions: for L(x) = Σ w·f(x) (w random, accumulated in float64 on the
/// host), the backward's Σ_i ⟨∂L/∂x_i, v_i⟩ must equal (L(x + εv) − L(x − εv)) / 2ε for each differentiated input
/// separately, with v random in [−1, 1]. Three directions per input. Tolerance: 1e-3 relative plus the fp32 noise of L
/// divided by 2ε (1e-6·Σ|w·f| / 2ε).
/// </summary>
internal static class DirectionalCheck
{
    public static List<string> Run(IBackend b, GradProblem p, Random rng, double eps = 1e-2)
    {
        var failures = new List<string>();
        var inputs = p.Inputs.Select(i => b.FromHost<float>(i.Data, i.Shape)).ToArray();
        try
        {
            using var y0 = p.Forward(b, inputs);
            var w = new float[y0.Length];
            for (int i = 0; i < w.Length; i++) w[i] = rng.NextSingle() * 2 - 1;
            var yh = b.ToHost<float>(y0);
            double scale = 0;
            for (int i = 0; i < w.Length; i++) scale += Math.Abs((double)w[i] * yh[i]);
            using var dy = b.FromHost<float>(w, y0.Shape);
            var grads = p.Wrt.Select(j => b.Allocate(DType.Float32, p.Inputs[j].Shape, zero: true)).ToArray();
            try
            {
                p.Backward(b, inputs, dy, grads);
                for (int gi = 0; gi < p.Wrt.Length; gi++)
                {
                    int j = p.Wrt[gi];
                    var g = b.ToHost<float>(grads[gi]);
                    var x0 = p.Inputs[j].Data;
                    for (int dir = 0; dir < 3; dir++)
                    {
                        var v = new float[x0.Length];
                        for (int i = 0; i < v.Length; i++) v[i] = rng.NextSingle() * 2 - 1;
                        double analytic = 0;
                        for (int i = 0; i < v.Length; i++) analytic += (double)g[i] * v[i];
                        double lp = Objective(b, p, inputs, j, x0, v, +eps, w);
                        double lm = Objective(b, p, inputs, j, x0, v, -eps, w);
                        b.Upload<float>(x0, inputs[j]);
                        double numeric = (lp - lm) / (2 * eps);
                        double tol = 1e-3 * Math.Max(Math.Abs(analytic), Math.Abs(numeric)) + 1e-6 * scale / (2 * eps) + 1e-6;
                        if (!(Math.Abs(analytic - numeric) <= tol))
                            failures.Add($"input {j}, direction {dir}: backward gives {analytic:R}, finite differences {numeric:R} (tolerance {tol:G3})");
                    }
                }
            }
            finally
            {
                foreach (var g in grads) g.Dispose();
            }
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
        }
        return failures;
    }

    private static double Objective(IBackend b, GradProblem p, Tensor[] inputs, int j, float[] x0, float[] v, double step, float[] w)
    {
        var x = new float[x0.Length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(x0[i] + step * v[i]);
        b.Upload<float>(x, inputs[j]);
        using var y = p.Forward(b, inputs);
        var yh = b.ToHost<float>(y);
        double l = 0;
        for (int i = 0; i < yh.Length; i++) l += (double)w[i] * yh[i];
        return l;
    }
}
