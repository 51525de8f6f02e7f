using System.Globalization;
using System.Text;
using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Tests.Core;

/// <summary>Outcome of <see cref="GradCheck.Run"/>.</summary>
internal sealed record GradCheckResult(bool Passed, int Checked, int Failures, double MaxAbsError, string Report);

/// <summary>
/// Finite-difference gradient checker, reusable by every op test. The forward runs in fp32 on the backend; the scalar
/// objective J = Σ out·w (w fixed random weights in [-1, 1]) is accumulated on the host in float64. The analytical
/// gradient comes from <c>tape.Backward(out, w)</c>; the numerical one from central differences
/// (J(x+h) − J(x−h)) / (x₊ − x₋), where x₊/x₋ are the actually representable fp32 perturbed values (so the fp32
/// rounding of x ± eps does not bias the quotient).
/// <para>Tolerances: with eps = 3e-3 the truncation error is ~eps²·J'''/6 ≈ 1e-6·J''' and the fp32 rounding noise of J
/// is ~1e-7·Σ|out·w|, i.e. ~1e-5·Σ|out·w| after dividing by 2·eps. An element passes when
/// |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|), defaults atol 1e-3, rtol 1e-2: loose enough for
/// that noise, tight enough that a backward off by a few percent fails (tested).</para>
/// </summary>
internal static class GradCheck
{
    /// <summary>
    /// Checks the gradients of <paramref name="leaves"/> (plain variables with <c>RequiresGrad</c>, or parameters,
    /// dense or row-sparse) of the op graph built by <paramref name="forward"/>. Leaf values are perturbed in place and
    /// restored afterwards.
    /// </summary>
    public static GradCheckResult Run(IBackend backend, IReadOnlyList<Variable> leaves, Func<Tape, Variable> forward,
        int seed = 1, double eps = 3e-3, double atol = 1e-3, double rtol = 1e-2)
    {
        // Analytical gradients.
        foreach (var p in leaves.OfType<Parameter>()) p.ZeroGrad();
        float[] weights;
        var analytic = new double[leaves.Count][];
        using (var tape = new Tape(backend))
        {
            var output = forward(tape);
            var rng = new Random(seed);
            weights = new float[output.Value.Length];
            for (int i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextDouble() * 2 - 1);
            var seedGrad = tape.Allocate(output.Shape);
            backend.Upload<float>(weights, seedGrad);
            tape.Backward(output, seedGrad);
            for (int l = 0; l < leaves.Count; l++) analytic[l] = DenseGrad(backend, leaves[l]);
        }

        // Numerical gradients.
        var sb = new StringBuilder();
        int checkedCount = 0, failures = 0;
        double maxAbs = 0;
        for (int l = 0; l < leaves.Count; l++)
        {
            var v = leaves[l];
            var host = new float[v.Value.Length];
            backend.Download<float>(v.Value, host);
            for (int j = 0; j < host.Length; j++)
            {
                float orig = host[j];
                float xp = (float)(orig + eps), xm = (float)(orig - eps);
                host[j] = xp;
                backend.Upload<float>(host, v.Value);
                double jp = Objective(backend, forward, weights);
                host[j] = xm;
                backend.Upload<float>(host, v.Value);
                double jm = Objective(backend, forward, weights);
                host[j] = orig;
                double numeric = (jp - jm) / ((double)xp - xm);
                double a = analytic[l][j];
                double err = Math.Abs(a - numeric);
                maxAbs = Math.Max(maxAbs, err);
                checkedCount++;
                if (err > atol + rtol * Math.Max(Math.Abs(a), Math.Abs(numeric)))
                {
                    failures++;
                    if (failures <= 10)
                        sb.AppendLine(CultureInfo.InvariantCulture, $"leaf {l} ({v.Name ?? v.GetType().Name}{v.Value.ShapeString}) element {j}: analytic {a:G9}, numeric {numeric:G9}, |diff| {err:G3}");
                }
            }
            backend.Upload<float>(host, v.Value);
        }
        sb.Insert(0, $"{checkedCount} gradient elements checked, {failures} outside atol {atol} + rtol {rtol}; max |diff| {maxAbs:G3}.{Environment.NewLine}");
        return new GradCheckResult(failures == 0, checkedCount, failures, maxAbs, sb.ToString());
    }

    /// <summary>Runs <see cref="Run"/> and fails the test with the report when a gradient is off.</summary>
    public static GradCheckResult AssertGradients(IBackend backend, IReadOnlyList<Variable> leaves, Func<Tape, Variable> forward,
        int seed = 1, double eps = 3e-3, double atol = 1e-3, double rtol = 1e-2)
    {
        var r = Run(backend, leaves, forward, seed, eps, atol, rtol);
        Assert.True(r.Passed, r.Report);
        Assert.True(r.Checked > 0, "No gradient element was checked.");
        return r;
    }

    /// <summary>J = Σ out·w in float64 from an fp32 forward without recording.</summary>
    public static double Objective(IBackend backend, Func<Tape, Variable> forward, float[] weights)
    {
        using var tape = new Tape(backend, gradEnabled: false);
        var output = forward(tape);
        var host = new float[output.Value.Length];
        backend.Download<float>(output.Value, host);
        double j = 0;
        for (int i = 0; i < host.Length; i++) j += (double)host[i] * weights[i];
        return j;
    }

    /// <summary>The dense gradient of a leaf as doubles (zeros where none flowed; row-sparse gradients densified).</summary>
    private static double[] DenseGrad(IBackend backend, Variable v)
    {
        var result = new double[v.Value.Length];
        var host = new float[v.Value.Length];
        if (v.Grad is { } g)
        {
            backend.Download<float>(g, host);
            for (int i = 0; i < host.Length; i++) result[i] += host[i];
        }
        if (v is Parameter { SparseGradient: { } sg })
        {
            using var dense = backend.Allocate(DType.Float32, v.Shape, zero: true);
            sg.AddTo(dense);
            backend.Download<float>(dense, host);
            for (int i = 0; i < host.Length; i++) result[i] += host[i];
        }
        return result;
    }
}
