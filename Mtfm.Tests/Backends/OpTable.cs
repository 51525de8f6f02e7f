using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Tests.Backends;

/// <summary>
/// What one op-table case runs on: a backend, a seeded random source (the same seed on every backend, so every backend
/// sees the same inputs) and the tensors the case creates (freed with the context).
/// </summary>
internal sealed class OpContext(IBackend backend, int seed) : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    public IBackend B { get; } = backend;

    public Random Rng { get; } = new(seed);

    public T Own<T>(T x) where T : IDisposable
    {
        _owned.Add(x);
        return x;
    }

    /// <summary>A new fp32 tensor of uniform values in [lo, hi) (lo == hi gives a constant).</summary>
    public Tensor Rand(float lo, float hi, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var data = new float[n];
        for (long i = 0; i < n; i++) data[i] = lo + (hi - lo) * Rng.NextSingle();
        return F(data, shape);
    }

    public Tensor F(float[] data, params int[] shape) => Own(B.FromHost<float>(data, shape));

    public Tensor I(int[] data, params int[] shape) => Own(B.FromHost<int>(data, shape));

    public Tensor L(long[] data, params int[] shape) => Own(B.FromHost<long>(data, shape));

    /// <summary>An Int32 or Int64 index tensor (the two index dtypes every row op accepts).</summary>
    public Tensor Index(int[] data, bool int64) => int64 ? L(data.Select(i => (long)i).ToArray(), data.Length) : I(data, data.Length);

    public int[] Ints(int count, int max) => Enumerable.Range(0, count).Select(_ => Rng.Next(max)).ToArray();

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
    }
}

/// <summary>
/// One forward case: <see cref="Run"/> creates its inputs from the context's random source, runs one
/// <see cref="IBackend"/> op and returns the tensors to compare with the reference CPU backend (fp32 or Int32). A
/// tolerance of (0, 0) means bitwise equal; otherwise |x − ref| ≤ atol + rtol·|ref| per element.
/// </summary>
internal sealed record OpCase(string Op, string Variant, float Rtol, float Atol, Func<OpContext, Tensor[]> Run)
{
    public string Name => $"{Op}: {Variant}";
}

/// <summary>
/// One gradient case: <see cref="Make"/> builds a problem whose backward op must be the derivative of its forward op,
/// checked by central finite differences of the forward on the same backend.
/// </summary>
internal sealed record GradCase(string Op, string Variant, Func<OpContext, GradProblem> Make)
{
    public string Name => $"{Op}: {Variant}";
}

/// <summary>
/// Inputs (host values and shapes), which of them to differentiate, a forward writing one output tensor from the input
/// tensors, and a backward ADDING the gradients of Σ dy·y into zero-filled gradient tensors (one per <see cref="Wrt"/>).
/// </summary>
internal sealed class GradProblem
{
    public required (float[] Data, int[] Shape)[] Inputs { get; init; }

    public required int[] Wrt { get; init; }

    public required Func<IBackend, Tensor[], Tensor> Forward { get; init; }

    public required Action<IBackend, Tensor[], Tensor, Tensor[]> Backward { get; init; }
}

/// <summary>An op applied to bad arguments: every backend must throw <see cref="Exception"/> naming <see cref="Param"/>.</summary>
internal sealed record ErrorCase(string Op, string Variant, Type Exception, string Param, string? MessageContains,
    Func<OpContext, Action> Make)
{
    public string Name => $"{Op}: {Variant}";
}

/// <summary>
/// The op table (in the manner of ggml's test-backend-ops): every <see cref="IBackend"/> op as cases of shapes, inputs and
/// tolerance, run by <see cref="OpTableTests"/> on the CPU (2 threads), the emulated CUDA device and a real GPU when
/// present, each compared with a 1-thread <c>CpuBackend</c>; every backward op also against finite differences of its
/// forward on every backend. Sizes are odd (never tile multiples); gradient outputs are pre-filled so "backward
/// accumulates" is checked too.
/// <para>Tolerances: ops with one rounding per element in the same order (add, mul, scale, copies, gathers, the
/// scatter-add, which sums in ascending position) are exact; transcendental ops (SiLU, softmax, BCE: host libm vs
/// vectorised approximations, a few ulp) rtol 1e-5; reductions and GEMMs sum in another order than the CPU's blocked
/// partition, so they get rtol 1e-5 plus an absolute term scaled by the number of terms summed.</para>
/// </summary>
internal static class OpTable
{
    /// <summary>Members of <see cref="IBackend"/> that are not compute ops (tested in the memory and transfer tests).</summary>
    public static readonly string[] Infrastructure =
        ["Name", "Allocate", "LiveAllocations", "LiveBytes", "Upload", "Download", "Dispose"];

    public static readonly OpCase[] Cases = BuildCases().ToArray();

    public static readonly GradCase[] Gradients = BuildGradients().ToArray();

    public static readonly ErrorCase[] Errors = BuildErrors().ToArray();

    private static OpCase Exact(string op, string variant, Func<OpContext, Tensor[]> run) => new(op, variant, 0f, 0f, run);

    private static IEnumerable<OpCase> BuildCases()
    {
        const int r = 17, c = 59;
        // ---------------------------------------------------------------- copies and fills
        yield return Exact("Copy", "fp32 [19,11]", x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            var y = x.Rand(0, 1, 19, 11);
            x.B.Copy(a, y);
            return [y];
        });
        yield return Exact("Copy", "Int32 -> Int64 -> Int32", x =>
        {
            var ids = x.I(x.Ints(47, 1000), 47);
            var wide = x.Own(x.B.Allocate(DType.Int64, [47]));
            x.B.Copy(ids, wide);
            var back = x.Own(x.B.Allocate(DType.Int32, [47]));
            x.B.Copy(wide, back);
            var src = x.Rand(-1, 1, 1000, 3);
            var g = x.Rand(0, 1, 47, 3);
            x.B.GatherRows(src, back, g); // the copied ids index correctly (device mirrors follow copies)
            return [back, g];
        });
        yield return Exact("Fill", $"[{r},{c}]", x =>
        {
            var y = x.Rand(-1, 1, r, c);
            x.B.Fill(y, 2.5f);
            return [y];
        });
        yield return Exact("Fill", "a row view at an offset", x =>
        {
            var y = x.Rand(-1, 1, r, c);
            x.B.Fill(y.Rows(3, 5), -1f);
            return [y];
        });

        // ---------------------------------------------------------------- GEMM
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
            {
                int m = 37, n = 29, k = 43;
                yield return new OpCase("Gemm", $"transA={ta} transB={tb} [{m},{k}]x[{k},{n}]", 1e-5f, 1e-6f * k, x =>
                {
                    var a = ta ? x.Rand(-1, 1, k, m) : x.Rand(-1, 1, m, k);
                    var b = tb ? x.Rand(-1, 1, n, k) : x.Rand(-1, 1, k, n);
                    var y = x.Rand(-1, 1, m, n);
                    x.B.Gemm(ta, tb, 0.7f, a, b, 0.3f, y);
                    return [y];
                });
                int bt = 3, bm = 5, bn = 17, bk = 19;
                yield return new OpCase("BatchedGemm", $"transA={ta} transB={tb} {bt}x[{bm},{bk}]x[{bk},{bn}]", 1e-5f, 1e-6f * bk, x =>
                {
                    var a = ta ? x.Rand(-1, 1, bt, bk, bm) : x.Rand(-1, 1, bt, bm, bk);
                    var b = tb ? x.Rand(-1, 1, bt, bn, bk) : x.Rand(-1, 1, bt, bk, bn);
                    var y = x.Rand(-1, 1, bt, bm, bn);
                    x.B.BatchedGemm(ta, tb, 1f, a, b, 1f, y);
                    return [y];
                });
            }
        yield return new OpCase("Gemm", "beta = 0 overwrites NaN garbage", 1e-5f, 1e-5f, x =>
        {
            var a = x.Rand(-1, 1, 3, 4);
            var b = x.Rand(-1, 1, 4, 5);
            var y = x.F(Enumerable.Repeat(float.NaN, 15).ToArray(), 3, 5);
            x.B.Gemm(false, false, 1f, a, b, 0f, y);
            return [y];
        });

        // ---------------------------------------------------------------- element-wise
        Tensor[] Binary(OpContext x, Action<IBackend, Tensor, Tensor, Tensor> op, float lo = -1)
        {
            var a = x.Rand(-3, 3, r, c);
            var b = x.Rand(-3, 3, r, c);
            var y = x.Rand(lo, 1, r, c);
            op(x.B, a, b, y);
            return [y];
        }
        yield return Exact("Add", $"[{r},{c}]", x => Binary(x, (b, p, q, y) => b.Add(p, q, y)));
        yield return Exact("Mul", $"[{r},{c}]", x => Binary(x, (b, p, q, y) => b.Mul(p, q, y)));
        yield return new OpCase("MulAccumulate", $"[{r},{c}] into pre-filled y", 1e-6f, 1e-6f, x => Binary(x, (b, p, q, y) => b.MulAccumulate(p, q, y)));
        yield return Exact("Scale", $"[{r},{c}]", x => Binary(x, (b, p, _, y) => b.Scale(p, -0.37f, y)));
        yield return new OpCase("Axpy", $"[{r},{c}]", 1e-6f, 1e-6f, x => Binary(x, (b, p, _, y) => b.Axpy(0.61f, p, y)));
        yield return Exact("AddBias", $"[{r},{c}] + [{c}]", x =>
        {
            var a = x.Rand(-3, 3, r, c);
            var bias = x.Rand(-1, 1, c);
            var y = x.Rand(-1, 1, r, c);
            x.B.AddBias(a, bias, y);
            return [y];
        });
        yield return new OpCase("Silu", $"[{r},{c}]", 1e-5f, 1e-6f, x => Binary(x, (b, p, _, y) => b.Silu(p, y)));
        yield return new OpCase("SiluBackward", $"[{r},{c}] accumulating", 1e-5f, 1e-5f, x => Binary(x, (b, p, q, y) => b.SiluBackward(p, q, y)));

        // ---------------------------------------------------------------- reductions
        foreach (var (rr, cc) in new[] { (37, 45), (300, 7), (1, 1) })
        {
            yield return new OpCase("SumAll", $"[{rr},{cc}]", 1e-5f, 1e-6f * rr * cc, x =>
            {
                var a = x.Rand(-1, 1, rr, cc);
                var y = x.F([3f], 1);
                x.B.SumAll(a, 0.5f, y);
                return [y];
            });
            yield return new OpCase("SumLastAxis", $"[{rr},{cc}]", 1e-5f, 1e-6f * cc, x =>
            {
                var a = x.Rand(-1, 1, rr, cc);
                var y = x.Rand(-1, 1, rr);
                x.B.SumLastAxis(a, 1.5f, y);
                return [y];
            });
            yield return new OpCase("SumLastAxisBackward", $"[{rr},{cc}] accumulating", 1e-6f, 1e-6f, x =>
            {
                var dy = x.Rand(-1, 1, rr);
                var dx = x.Rand(-1, 1, rr, cc);
                x.B.SumLastAxisBackward(dy, -0.5f, dx);
                return [dx];
            });
            foreach (var accumulate in new[] { false, true })
                yield return new OpCase("SumRows", $"[{rr},{cc}] accumulate={accumulate}", 1e-5f, 1e-6f * rr, x =>
                {
                    var a = x.Rand(-1, 1, rr, cc);
                    var y = x.Rand(-1, 1, cc);
                    x.B.SumRows(a, y, accumulate);
                    return [y];
                });
        }
        yield return Exact("SumAll", "of nothing is 0", x =>
        {
            var a = x.F([], 0);
            var y = x.F([7f], 1);
            x.B.SumAll(a, 1f, y);
            return [y];
        });
        yield return new OpCase("AddScalar", $"[{r},{c}] accumulating", 1e-6f, 1e-6f, x =>
        {
            var dy = x.F([0.75f], 1);
            var dx = x.Rand(-1, 1, r, c);
            x.B.AddScalar(dy, -2f, dx);
            return [dx];
        });

        // ---------------------------------------------------------------- (group) LayerNorm
        foreach (var mode in new[] { "plain", "affine", "group Int32 ids", "group Int64 ids" })
        {
            yield return new OpCase("LayerNorm", $"{mode} [45,37]", 1e-4f, 1e-5f, x =>
            {
                var (a, gamma, beta, ids) = LayerNormInputs(x, mode);
                var y = x.Rand(0, 1, 45, 37);
                var mean = x.Rand(0, 1, 45);
                var rstd = x.Rand(0, 1, 45);
                x.B.LayerNorm(a, gamma, beta, ids, 1e-5f, y, mean, rstd);
                return [y, mean, rstd];
            });
            yield return new OpCase("LayerNormBackward", $"{mode} [45,37] accumulating dx, dgamma, dbeta", 1e-4f, 1e-5f * 45, x =>
            {
                var (a, gamma, beta, ids) = LayerNormInputs(x, mode);
                var y = x.Rand(0, 1, 45, 37);
                var mean = x.Rand(0, 1, 45);
                var rstd = x.Rand(0, 1, 45);
                x.B.LayerNorm(a, gamma, beta, ids, 1e-5f, y, mean, rstd);
                var dy = x.Rand(-1, 1, 45, 37);
                var dx = x.Rand(-1, 1, 45, 37);
                int g = gamma?.RowCount ?? 1;
                var dg = gamma is null ? null : x.Rand(-1, 1, g, 37);
                var db = gamma is null ? null : x.Rand(-1, 1, g, 37);
                x.B.LayerNormBackward(a, mean, rstd, gamma, ids, dy, dx, dg, db);
                return gamma is null ? [dx] : [dx, dg!, db!];
            });
            if (mode != "plain")
                yield return new OpCase("LayerNormBackward", $"{mode}: dbeta alone", 1e-4f, 1e-5f * 45, x =>
                {
                    var (a, gamma, beta, ids) = LayerNormInputs(x, mode);
                    var y = x.Rand(0, 1, 45, 37);
                    var mean = x.Rand(0, 1, 45);
                    var rstd = x.Rand(0, 1, 45);
                    x.B.LayerNorm(a, gamma, beta, ids, 1e-5f, y, mean, rstd);
                    var dy = x.Rand(-1, 1, 45, 37);
                    var db = x.Rand(-1, 1, gamma!.RowCount, 37);
                    x.B.LayerNormBackward(a, mean, rstd, gamma, ids, dy, null, null, db);
                    return [db];
                });
        }

        // ---------------------------------------------------------------- softmax and BCE
        foreach (var (rr, cc) in new[] { (23, 37), (5, 70), (9, 3) })
        {
            yield return new OpCase("Softmax", $"[{rr},{cc}]", 1e-5f, 1e-7f, x =>
            {
                var a = x.Rand(-5, 5, rr, cc);
                var y = x.Rand(0, 1, rr, cc);
                x.B.Softmax(a, y);
                return [y];
            });
            yield return new OpCase("SoftmaxBackward", $"[{rr},{cc}] accumulating", 1e-5f, 1e-6f, x =>
            {
                var a = x.Rand(-5, 5, rr, cc);
                var y = x.Rand(0, 1, rr, cc);
                x.B.Softmax(a, y);
                var dy = x.Rand(-1, 1, rr, cc);
                var dx = x.Rand(-1, 1, rr, cc);
                x.B.SoftmaxBackward(y, dy, dx);
                return [dx];
            });
        }
        foreach (var (n, maskP) in new[] { (1001, 0.6), (37, 0.0), (300, 1.0) })
        {
            yield return new OpCase("BceWithLogits", $"n={n} mask p={maskP}", 1e-5f, 1e-6f, x =>
            {
                var (z, t, mask) = BceInputs(x, n, maskP);
                var loss = x.F([3f], 1);
                x.B.BceWithLogits(z, t, mask, loss);
                return [loss];
            });
            yield return new OpCase("BceWithLogitsBackward", $"n={n} mask p={maskP} accumulating", 1e-5f, 1e-6f, x =>
            {
                var (z, t, mask) = BceInputs(x, n, maskP);
                var dloss = x.F([1.7f], 1);
                var dz = x.Rand(-1, 1, n);
                x.B.BceWithLogitsBackward(z, t, mask, dloss, dz);
                return [dz];
            });
        }

        // ---------------------------------------------------------------- rows and columns
        foreach (var int64 in new[] { false, true })
        {
            const int n = 31, d = 13, m = 47;
            yield return Exact("GatherRows", $"[{n},{d}] by {m} ids, Int64={int64}", x =>
            {
                var src = x.Rand(-1, 1, n, d);
                var ids = x.Index(x.Ints(m, n), int64);
                var g = x.Rand(-1, 1, m, d);
                x.B.GatherRows(src, ids, g);
                return [g];
            });
            yield return Exact("ScatterAddRows", $"{m} rows into [{n},{d}] with repeats, Int64={int64}", x =>
            {
                var g = x.Rand(-1, 1, m, d);
                var ids = x.Index(x.Ints(m, n), int64);
                var acc = x.Rand(-1, 1, n, d);
                x.B.ScatterAddRows(g, ids, acc);
                return [acc];
            });
            // the sorting path: a target with many rows for the ids (n > 4·m + 4096); id 7 repeats
            yield return Exact("ScatterAddRows", $"57 rows into a wide [20000,3] table, Int64={int64}", x =>
            {
                var idx = Enumerable.Range(0, 57).Select(i => i % 5 == 0 ? 7 : x.Rng.Next(20_000)).ToArray();
                var ids = x.Index(idx, int64);
                var g = x.Rand(-1, 1, 57, 3);
                var acc = x.Rand(-1, 1, 20_000, 3);
                x.B.ScatterAddRows(g, ids, acc);
                return [acc];
            });
            // strictly increasing ids (the T-row lists): the CPU backend skips its sort
            yield return Exact("ScatterAddRows", $"19 increasing rows into [{n},{d}], Int64={int64}", x =>
            {
                var idx = Enumerable.Range(0, n).Where(i => i % 3 != 1).Take(19).ToArray();
                var ids = x.Index(idx, int64);
                var g = x.Rand(-1, 1, 19, d);
                var acc = x.Rand(-1, 1, n, d);
                x.B.ScatterAddRows(g, ids, acc);
                return [acc];
            });
            yield return Exact("FillRows", $"[{n},{d}] at {m} ids, Int64={int64}", x =>
            {
                var acc = x.Rand(-1, 1, n, d);
                var ids = x.Index(x.Ints(m, n), int64);
                x.B.FillRows(acc, ids, -3f);
                return [acc];
            });
            yield return Exact("ScatterRows", $"11 distinct rows into [{n},{d}], Int64={int64}", x =>
            {
                var acc = x.Rand(-1, 1, n, d);
                var perm = Enumerable.Range(0, n).OrderBy(_ => x.Rng.Next()).Take(11).ToArray();
                var ids = x.Index(perm, int64);
                var src = x.Rand(-1, 1, 11, d);
                x.B.ScatterRows(src, ids, acc);
                return [acc];
            });
            yield return Exact("UniqueIndices", $"{m} ids with repeats, Int64={int64}", x =>
            {
                var ids = x.Index(x.Ints(m, n), int64);
                var (u, inv) = x.B.UniqueIndices(ids);
                return [x.Own(u), x.Own(inv)];
            });
        }
        yield return Exact("GatherRows", "through row views of the source and the index", x =>
        {
            var src = x.Rand(-1, 1, 31, 13);
            var ids = x.I(x.Ints(47, 20), 47);
            var g = x.Rand(-1, 1, 10, 13);
            x.B.GatherRows(src.Rows(2, 20), ids.Rows(30, 10), g);
            return [g];
        });
        yield return new OpCase("LayerNormMul", "[45,37]: z, mean, rstd", 1e-4f, 1e-5f, x =>
        {
            var o = x.Rand(-2, 2, 45, 37);
            var u = x.Rand(-1, 1, 45, 37);
            var z = x.Rand(0, 1, 45, 37);
            var mean = x.Rand(0, 1, 45);
            var rstd = x.Rand(0, 1, 45);
            x.B.LayerNormMul(o, u, 1e-5f, z, mean, rstd);
            return [z, mean, rstd];
        });
        foreach (var accumulate in new[] { false, true })
            yield return new OpCase("LayerNormMulBackward", $"[45,37]: du, dO, accumulate={accumulate}", 1e-4f, 1e-5f * 45, x =>
            {
                var o = x.Rand(-2, 2, 45, 37);
                var u = x.Rand(-1, 1, 45, 37);
                var dz = x.Rand(-1, 1, 45, 37);
                var ln = x.Rand(0, 1, 45, 37);
                var mean = x.Rand(0, 1, 45);
                var rstd = x.Rand(0, 1, 45);
                x.B.LayerNorm(o, null, null, null, 1e-5f, ln, mean, rstd);
                var du = x.Rand(-1, 1, 45, 37);
                var dO = x.Rand(-1, 1, 45, 37);
                x.B.LayerNormMulBackward(o, u, mean, rstd, 1e-5f, dz, du, accumulate, dO, accumulate);
                return [du, dO];
            });
        yield return new OpCase("SiluColumns", "[19,11] cols 2..9 -> [19,23] col 9 (other columns untouched)", 1e-5f, 1e-6f, x =>
        {
            var a = x.Rand(-4, 4, 19, 11);
            var b = x.Rand(-1, 1, 19, 23);
            x.B.SiluColumns(a, 2, b, 9, 7);
            return [b];
        });
        foreach (var accumulate in new[] { false, true })
            yield return new OpCase("SiluColumnsBackward", $"[19,11] cols 2..9, dy [19,23] col 9 -> dx [19,30] col 20, accumulate={accumulate}", 1e-5f, 1e-5f, x =>
            {
                var a = x.Rand(-4, 4, 19, 11);
                var dy = x.Rand(-1, 1, 19, 23);
                var dx = x.Rand(-1, 1, 19, 30);
                x.B.SiluColumnsBackward(a, 2, dy, 9, dx, 20, 7, accumulate);
                return [dx];
            });
        yield return new OpCase("SiluSplit", "[19,27] -> [19,7] [19,16] [19,0] [19,4]", 1e-5f, 1e-6f, x =>
        {
            var a = x.Rand(-4, 4, 19, 27);
            Tensor[] parts = [x.Rand(-1, 1, 19, 7), x.Rand(-1, 1, 19, 16), x.Rand(-1, 1, 19, 0), x.Rand(-1, 1, 19, 4)];
            x.B.SiluSplit(a, parts);
            return parts;
        });
        foreach (var accumulate in new[] { false, true })
            yield return new OpCase("SiluSplitBackward", $"[19,27] widths 7,16,0,4, the 16 without a gradient, accumulate={accumulate}", 1e-5f, 1e-5f, x =>
            {
                var a = x.Rand(-4, 4, 19, 27);
                var dx = x.Rand(-1, 1, 19, 27);
                x.B.SiluSplitBackward(a, [7, 16, 0, 4], [x.Rand(-1, 1, 19, 7), null, x.Rand(-1, 1, 19, 0), x.Rand(-1, 1, 19, 4)], dx, accumulate);
                return [dx];
            });
        foreach (var accumulate in new[] { false, true })
            yield return Exact("CopyColumns", $"[19,11] cols 2..9 -> [19,23] col 9, accumulate={accumulate}", x =>
            {
                var a = x.Rand(-1, 1, 19, 11);
                var b = x.Rand(-1, 1, 19, 23);
                x.B.CopyColumns(a, 2, b, 9, 7, accumulate);
                return [b];
            });

        // ---------------------------------------------------------------- fused jagged HSTU attention
        foreach (var target in new[] { false, true })
        {
            yield return new OpCase("HstuAttention", $"GQA 4/2 heads, 5 jagged instances, targetQueries={target}", 1e-4f, 1e-5f, x =>
            {
                var a = AttentionInputs(x, target);
                var o = x.Rand(0, 1, a.Rows, a.H * a.Dv);
                x.B.HstuAttention(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, o);
                return [o];
            });
            yield return new OpCase("HstuAttentionBackward", $"GQA 4/2 heads, targetQueries={target}, accumulating dq dk dv drab", 1e-4f, 1e-4f, x =>
            {
                var a = AttentionInputs(x, target);
                var dO = x.Rand(-1, 1, a.Rows, a.H * a.Dv);
                var dq = x.Rand(-1, 1, a.Rows, a.H * a.Dqk);
                var dk = x.Rand(-1, 1, a.N, a.G * a.Dqk);
                var dv = x.Rand(-1, 1, a.N, a.G * a.Dv);
                var drab = x.Rand(-1, 1, a.H, a.Layout.RabWidth);
                x.B.HstuAttentionBackward(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, dO, dq, dk, dv, drab);
                return [dq, dk, dv, drab];
            });
            yield return new OpCase("HstuAttentionBackward", $"targetQueries={target}, overwriting dq dk dv (garbage before), dv null", 1e-4f, 1e-4f, x =>
            {
                var a = AttentionInputs(x, target);
                var dO = x.Rand(-1, 1, a.Rows, a.H * a.Dv);
                var dq = x.Rand(1e6f, 2e6f, a.Rows, a.H * a.Dqk);
                var dk = x.Rand(1e6f, 2e6f, a.N, a.G * a.Dqk);
                var drab = x.Rand(-1, 1, a.H, a.Layout.RabWidth);
                x.B.HstuAttentionBackward(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, dO, dq, dk, null, drab, overwrite: true);
                return [dq, dk, drab];
            });
            yield return new OpCase("HstuAttentionBackward", $"targetQueries={target}, dk only (others null)", 1e-4f, 1e-5f, x =>
            {
                var a = AttentionInputs(x, target);
                var dO = x.Rand(-1, 1, a.Rows, a.H * a.Dv);
                var dk = x.Rand(-1, 1, a.N, a.G * a.Dqk);
                x.B.HstuAttentionBackward(a.Layout, target, a.H, a.G, a.Q, a.K, a.V, a.Rab, dO, null, dk, null, null);
                return [dk];
            });
        }
    }

    private static (Tensor X, Tensor? Gamma, Tensor? Beta, Tensor? Ids) LayerNormInputs(OpContext x, string mode)
    {
        const int r = 45, d = 37, groups = 3;
        var ids = x.Ints(r, groups);
        var a = x.Rand(-2, 2, r, d);
        int g = mode.StartsWith("group", StringComparison.Ordinal) ? groups : 1;
        var gamma = mode == "plain" ? null : x.Rand(0.5f, 1.5f, g, d);
        var beta = mode == "plain" ? null : x.Rand(-0.5f, 0.5f, g, d);
        var gid = mode switch
        {
            "group Int32 ids" => x.Index(ids, int64: false),
            "group Int64 ids" => x.Index(ids, int64: true),
            _ => null,
        };
        return (a, gamma, beta, gid);
    }

    private static (Tensor Z, Tensor T, Tensor Mask) BceInputs(OpContext x, int n, double maskP)
    {
        var z = x.Rand(-6, 6, n);
        var t = x.F(Enumerable.Range(0, n).Select(_ => (float)x.Rng.Next(2)).ToArray(), n);
        var mask = x.F(Enumerable.Range(0, n).Select(_ => x.Rng.NextDouble() < maskP ? 1f : 0f).ToArray(), n);
        return (z, t, mask);
    }

    internal sealed record AttentionProblem(AttentionLayout Layout, int H, int G, int Dqk, int Dv, int Rows, int N,
        Tensor Q, Tensor K, Tensor V, Tensor Rab);

    /// <summary>
    /// Five jagged instances (H, R, T counts including empty segments), times with ties and gaps, 8 buckets at a 7 s
    /// unit, 4 query heads over 2 key/value heads.
    /// </summary>
    internal static AttentionLayout AttentionLayoutFor(Random rng, (int H, int R, int T)[] spec, int nb = 8)
    {
        var offsets = new List<int> { 0 };
        var kind = new List<byte>();
        var time = new List<long>();
        foreach (var (h, r, t) in spec)
        {
            for (int i = 0; i < h; i++) { kind.Add(0); time.Add(1000 + rng.Next(0, 500)); }
            long tt = 2000;
            for (int i = 0; i < r; i++) { kind.Add(1); tt += rng.Next(0, 3) == 0 ? 0 : rng.Next(1, 300); time.Add(tt); }
            var tt2 = Enumerable.Range(0, t).Select(_ => 2000L + rng.Next(0, 600)).Order().ToArray(); // T tokens time-ordered
            foreach (var v in tt2) { kind.Add(2); time.Add(v); }
            offsets.Add(kind.Count);
        }
        return new AttentionLayout([.. offsets], [.. kind], [.. time], nb, 7);
    }

    internal static AttentionProblem AttentionInputs(OpContext x, bool target)
    {
        const int h = 4, g = 2, dqk = 5, dv = 3;
        var layout = x.Own(AttentionLayoutFor(x.Rng, [(3, 5, 2), (0, 1, 1), (6, 0, 3), (2, 9, 0), (1, 3, 4)]));
        int n = layout.TokenCount;
        int rows = target ? layout.TargetTokens.Length : n;
        var q = x.Rand(-1, 1, rows, h * dqk);
        var k = x.Rand(-1, 1, n, g * dqk);
        var v = x.Rand(-1, 1, n, g * dv);
        var rab = x.Rand(-0.5f, 0.5f, h, layout.RabWidth);
        return new AttentionProblem(layout, h, g, dqk, dv, rows, n, q, k, v, rab);
    }

    // ==================================================================== gradients

    private static float[] RandomData(Random rng, int n, float lo, float hi)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.NextSingle();
        return a;
    }

    private static (float[], int[]) In(Random rng, float lo, float hi, params int[] shape) =>
        (RandomData(rng, shape.Aggregate(1, (p, d) => p * d), lo, hi), shape);

    private static Tensor Out(IBackend b, params int[] shape) => b.Allocate(DType.Float32, shape, zero: true);

    private static IEnumerable<GradCase> BuildGradients()
    {
        yield return new GradCase("Gemm", "dA = dC·Bᵀ, dB = Aᵀ·dC (the transposed GEMMs)", x => new GradProblem
        {
            Inputs = [In(x.Rng, -1, 1, 7, 11), In(x.Rng, -1, 1, 11, 5)],
            Wrt = [0, 1],
            Forward = (b, t) => { var y = Out(b, 7, 5); b.Gemm(false, false, 1f, t[0], t[1], 0f, y); return y; },
            Backward = (b, t, dy, g) => { b.Gemm(false, true, 1f, dy, t[1], 1f, g[0]); b.Gemm(true, false, 1f, t[0], dy, 1f, g[1]); },
        });
        yield return new GradCase("BatchedGemm", "transB: dA = dC·B, dB = dCᵀ·A", x => new GradProblem
        {
            Inputs = [In(x.Rng, -1, 1, 3, 5, 9), In(x.Rng, -1, 1, 3, 7, 9)],
            Wrt = [0, 1],
            Forward = (b, t) => { var y = Out(b, 3, 5, 7); b.BatchedGemm(false, true, 1f, t[0], t[1], 0f, y); return y; },
            Backward = (b, t, dy, g) => { b.BatchedGemm(false, false, 1f, dy, t[1], 1f, g[0]); b.BatchedGemm(true, false, 1f, dy, t[0], 1f, g[1]); },
        });
        yield return new GradCase("Mul", "MulAccumulate is its backward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -2, 2, 13, 9), In(x.Rng, -2, 2, 13, 9)],
            Wrt = [0, 1],
            Forward = (b, t) => { var y = Out(b, 13, 9); b.Mul(t[0], t[1], y); return y; },
            Backward = (b, t, dy, g) => { b.MulAccumulate(dy, t[1], g[0]); b.MulAccumulate(dy, t[0], g[1]); },
        });
        yield return new GradCase("Add", "Axpy(1) of dy into both inputs; Scale's backward is Axpy(alpha)", x => new GradProblem
        {
            Inputs = [In(x.Rng, -2, 2, 13, 9), In(x.Rng, -2, 2, 13, 9)],
            Wrt = [0, 1],
            Forward = (b, t) =>
            {
                var y = Out(b, 13, 9);
                b.Add(t[0], t[1], y);
                using var s = Out(b, 13, 9);
                b.Scale(t[1], -0.4f, s);
                b.Axpy(1f, s, y);
                return y;
            },
            Backward = (b, t, dy, g) => { b.Axpy(1f, dy, g[0]); b.Axpy(1f - 0.4f, dy, g[1]); },
        });
        yield return new GradCase("AddBias", "dx = dy, dbias = SumRows(dy)", x => new GradProblem
        {
            Inputs = [In(x.Rng, -2, 2, 21, 9), In(x.Rng, -1, 1, 9)],
            Wrt = [0, 1],
            Forward = (b, t) => { var y = Out(b, 21, 9); b.AddBias(t[0], t[1], y); return y; },
            Backward = (b, t, dy, g) => { b.Axpy(1f, dy, g[0]); b.SumRows(dy, g[1], accumulate: true); },
        });
        yield return new GradCase("Silu", "SiluBackward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -4, 4, 17, 11)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 17, 11); b.Silu(t[0], y); return y; },
            Backward = (b, t, dy, g) => b.SiluBackward(t[0], dy, g[0]),
        });
        yield return new GradCase("SumAll", "AddScalar", x => new GradProblem
        {
            Inputs = [In(x.Rng, -1, 1, 23, 7)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 1); b.SumAll(t[0], 0.3f, y); return y; },
            Backward = (b, t, dy, g) => b.AddScalar(dy, 0.3f, g[0]),
        });
        yield return new GradCase("SumLastAxis", "SumLastAxisBackward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -1, 1, 23, 7)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 23); b.SumLastAxis(t[0], -1.5f, y); return y; },
            Backward = (b, t, dy, g) => b.SumLastAxisBackward(dy, -1.5f, g[0]),
        });
        foreach (var grouped in new[] { false, true })
            yield return new GradCase("LayerNorm", grouped ? "LayerNormBackward, 3 groups: dx, dgamma, dbeta" : "LayerNormBackward, affine: dx, dgamma, dbeta", x =>
            {
                var ids = Enumerable.Range(0, 19).Select(_ => (float)x.Rng.Next(3)).ToArray();
                int g = grouped ? 3 : 1;
                return new GradProblem
                {
                    Inputs = [In(x.Rng, -2, 2, 19, 13), In(x.Rng, 0.5f, 1.5f, g, 13), In(x.Rng, -0.5f, 0.5f, g, 13), (ids, [19])],
                    Wrt = [0, 1, 2],
                    Forward = (b, t) =>
                    {
                        var y = Out(b, 19, 13);
                        using var mean = Out(b, 19);
                        using var rstd = Out(b, 19);
                        using var gid = grouped ? GroupIds(b, t[3]) : null;
                        b.LayerNorm(t[0], t[1], t[2], gid, 1e-5f, y, mean, rstd);
                        return y;
                    },
                    Backward = (b, t, dy, gr) =>
                    {
                        using var y = Out(b, 19, 13);
                        using var mean = Out(b, 19);
                        using var rstd = Out(b, 19);
                        using var gid = grouped ? GroupIds(b, t[3]) : null;
                        b.LayerNorm(t[0], t[1], t[2], gid, 1e-5f, y, mean, rstd);
                        b.LayerNormBackward(t[0], mean, rstd, t[1], gid, dy, gr[0], gr[1], gr[2]);
                    },
                };
            });
        yield return new GradCase("Softmax", "SoftmaxBackward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -3, 3, 9, 14)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 9, 14); b.Softmax(t[0], y); return y; },
            Backward = (b, t, dy, g) =>
            {
                using var y = Out(b, 9, 14);
                b.Softmax(t[0], y);
                b.SoftmaxBackward(y, dy, g[0]);
            },
        });
        yield return new GradCase("BceWithLogits", "BceWithLogitsBackward, masked", x =>
        {
            var labels = Enumerable.Range(0, 101).Select(_ => (float)x.Rng.Next(2)).ToArray();
            var mask = Enumerable.Range(0, 101).Select(_ => x.Rng.NextDouble() < 0.7 ? 1f : 0f).ToArray();
            return new GradProblem
            {
                Inputs = [In(x.Rng, -5, 5, 101), (labels, [101]), (mask, [101])],
                Wrt = [0],
                Forward = (b, t) => { var y = Out(b, 1); b.BceWithLogits(t[0], t[1], t[2], y); return y; },
                Backward = (b, t, dy, g) => b.BceWithLogitsBackward(t[0], t[1], t[2], dy, g[0]),
            };
        });
        yield return new GradCase("GatherRows", "ScatterAddRows (ids repeat)", x =>
        {
            var ids = x.Ints(29, 11);
            return new GradProblem
            {
                Inputs = [In(x.Rng, -1, 1, 11, 6)],
                Wrt = [0],
                Forward = (b, t) =>
                {
                    var y = Out(b, 29, 6);
                    using var index = b.FromHost<int>(ids, 29);
                    b.GatherRows(t[0], index, y);
                    return y;
                },
                Backward = (b, t, dy, g) =>
                {
                    using var index = b.FromHost<int>(ids, 29);
                    b.ScatterAddRows(dy, index, g[0]);
                },
            };
        });
        yield return new GradCase("LayerNormMul", "LayerNormMulBackward: du, dO", x => new GradProblem
        {
            Inputs = [In(x.Rng, -2, 2, 9, 11), In(x.Rng, -1, 1, 9, 11)],
            Wrt = [0, 1],
            Forward = (b, t) =>
            {
                var z = Out(b, 9, 11);
                using var mean = Out(b, 9);
                using var rstd = Out(b, 9);
                b.LayerNormMul(t[0], t[1], 1e-5f, z, mean, rstd);
                return z;
            },
            Backward = (b, t, dy, g) =>
            {
                using var z = Out(b, 9, 11);
                using var mean = Out(b, 9);
                using var rstd = Out(b, 9);
                b.LayerNormMul(t[0], t[1], 1e-5f, z, mean, rstd);
                b.LayerNormMulBackward(t[0], t[1], mean, rstd, 1e-5f, dy, g[1], true, g[0], true);
            },
        });
        yield return new GradCase("SiluColumns", "SiluColumnsBackward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -4, 4, 9, 11)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 9, 20); b.SiluColumns(t[0], 2, y, 5, 8); return y; },
            Backward = (b, t, dy, g) => b.SiluColumnsBackward(t[0], 2, dy, 5, g[0], 2, 8, accumulate: true),
        });
        yield return new GradCase("SiluSplit", "SiluSplitBackward", x => new GradProblem
        {
            Inputs = [In(x.Rng, -4, 4, 9, 11)],
            Wrt = [0],
            Forward = (b, t) =>
            {
                Tensor[] parts = [Out(b, 9, 3), Out(b, 9, 8)];
                b.SiluSplit(t[0], parts);
                var y = Out(b, 9, 11);
                b.CopyColumns(parts[0], 0, y, 0, 3, accumulate: false);
                b.CopyColumns(parts[1], 0, y, 3, 8, accumulate: false);
                return y;
            },
            Backward = (b, t, dy, g) =>
            {
                var d0 = Out(b, 9, 3);
                var d1 = Out(b, 9, 8);
                b.CopyColumns(dy, 0, d0, 0, 3, accumulate: false);
                b.CopyColumns(dy, 3, d1, 0, 8, accumulate: false);
                b.SiluSplitBackward(t[0], [3, 8], [d0, d1], g[0], accumulate: true);
            },
        });
        yield return new GradCase("CopyColumns", "split is the accumulating copy back", x => new GradProblem
        {
            Inputs = [In(x.Rng, -1, 1, 9, 11)],
            Wrt = [0],
            Forward = (b, t) => { var y = Out(b, 9, 20); b.CopyColumns(t[0], 2, y, 5, 8, accumulate: false); return y; },
            Backward = (b, t, dy, g) => b.CopyColumns(dy, 5, g[0], 2, 8, accumulate: true),
        });
        foreach (var target in new[] { false, true })
            yield return new GradCase("HstuAttention", $"HstuAttentionBackward: dq dk dv drab, targetQueries={target}", x =>
            {
                int seed = x.Rng.Next();
                using var probe = AttentionLayoutFor(new Random(seed), Spec);
                int n = probe.TokenCount, rows = target ? probe.TargetTokens.Length : n;
                const int h = 2, g = 1, dqk = 4, dv = 3;
                return new GradProblem
                {
                    Inputs = [In(x.Rng, -1, 1, rows, h * dqk), In(x.Rng, -1, 1, n, g * dqk), In(x.Rng, -1, 1, n, g * dv), In(x.Rng, -0.5f, 0.5f, h, probe.RabWidth)],
                    Wrt = [0, 1, 2, 3],
                    Forward = (b, t) =>
                    {
                        using var layout = AttentionLayoutFor(new Random(seed), Spec);
                        var o = Out(b, rows, h * dv);
                        b.HstuAttention(layout, target, h, g, t[0], t[1], t[2], t[3], o);
                        return o;
                    },
                    Backward = (b, t, dy, gr) =>
                    {
                        using var layout = AttentionLayoutFor(new Random(seed), Spec);
                        b.HstuAttentionBackward(layout, target, h, g, t[0], t[1], t[2], t[3], dy, gr[0], gr[1], gr[2], gr[3]);
                    },
                };
            });
    }

    private static readonly (int, int, int)[] Spec = [(3, 4, 2), (0, 2, 1), (4, 0, 2)];

    private static Tensor GroupIds(IBackend b, Tensor idsAsFloat)
    {
        var f = b.ToHost<float>(idsAsFloat);
        return b.FromHost<int>(f.Select(v => (int)v).ToArray(), f.Length);
    }

    // ==================================================================== argument errors

    private static IEnumerable<ErrorCase> BuildErrors()
    {
        yield return new ErrorCase("Silu", "output aliases the input", typeof(ArgumentException), "y", null, x =>
        {
            var a = x.Rand(-1, 1, 5, 7);
            return () => x.B.Silu(a, a);
        });
        yield return new ErrorCase("Add", "b of another length", typeof(ArgumentException), "b", null, x =>
        {
            var a = x.Rand(-1, 1, 5, 7);
            var b = x.Rand(-1, 1, 7);
            var y = x.Rand(-1, 1, 5, 7);
            return () => x.B.Add(a, b, y);
        });
        yield return new ErrorCase("Gemm", "inner dimensions differ", typeof(ArgumentException), "b", null, x =>
        {
            var a = x.Rand(-1, 1, 3, 4);
            var y = x.Rand(-1, 1, 3, 5);
            return () => x.B.Gemm(false, false, 1f, a, a, 0f, y);
        });
        yield return new ErrorCase("LayerNorm", "a group id outside [0, G)", typeof(ArgumentOutOfRangeException), "groupIds", "groupIds[7] = 5", x =>
        {
            var a = x.Rand(-1, 1, 45, 37);
            var g = x.Rand(-1, 1, 3, 37);
            var ids = x.I(Enumerable.Range(0, 45).Select(i => i == 7 ? 5 : 0).ToArray(), 45);
            var y = x.Rand(0, 1, 45, 37);
            var m = x.Rand(0, 1, 45);
            var s = x.Rand(0, 1, 45);
            return () => x.B.LayerNorm(a, g, g, ids, 1e-5f, y, m, s);
        });
        yield return new ErrorCase("GatherRows", "an index past the table", typeof(ArgumentOutOfRangeException), "ids", "ids[2]", x =>
        {
            var src = x.Rand(-1, 1, 31, 13);
            var ids = x.I([0, 3, 35], 3);
            var y = x.Rand(0, 1, 3, 13);
            return () => x.B.GatherRows(src, ids, y, "ids");
        });
        yield return new ErrorCase("GatherRows", "an index past a row view of the table", typeof(ArgumentOutOfRangeException), "ids", null, x =>
        {
            var src = x.Rand(-1, 1, 31, 13);
            var ids = x.I(Enumerable.Range(0, 47).Select(i => i % 30).ToArray(), 47);
            var y = x.Rand(0, 1, 10, 13);
            return () => x.B.GatherRows(src.Rows(2, 5), ids.Rows(30, 10), y, "ids");
        });
        yield return new ErrorCase("ScatterRows", "a repeated index", typeof(ArgumentException), "ids", "repeats", x =>
        {
            var src = x.Rand(-1, 1, 2, 13);
            var ids = x.I([4, 4], 2);
            var y = x.Rand(0, 1, 31, 13);
            return () => x.B.ScatterRows(src, ids, y, "ids");
        });
        yield return new ErrorCase("CopyColumns", "columns past the destination", typeof(ArgumentOutOfRangeException), "dstCol", null, x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            var b = x.Rand(-1, 1, 19, 23);
            return () => x.B.CopyColumns(a, 0, b, 20, 7, false);
        });
        yield return new ErrorCase("SiluColumns", "columns past x", typeof(ArgumentOutOfRangeException), "xCol", null, x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            var b = x.Rand(-1, 1, 19, 23);
            return () => x.B.SiluColumns(a, 6, b, 0, 7);
        });
        yield return new ErrorCase("SiluSplit", "widths that do not sum to x's columns", typeof(ArgumentException), "parts", "sum to", x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            return () => x.B.SiluSplit(a, [x.Rand(-1, 1, 19, 4), x.Rand(-1, 1, 19, 6)]);
        });
        yield return new ErrorCase("SiluSplitBackward", "a part gradient with other rows", typeof(ArgumentException), "partGrads[1]", "rows", x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            var dx = x.Rand(-1, 1, 19, 11);
            return () => x.B.SiluSplitBackward(a, [4, 7], [x.Rand(-1, 1, 19, 4), x.Rand(-1, 1, 18, 7)], dx, true);
        });
        yield return new ErrorCase("SiluColumnsBackward", "dx with other rows", typeof(ArgumentException), "dx", "rows", x =>
        {
            var a = x.Rand(-1, 1, 19, 11);
            var dy = x.Rand(-1, 1, 19, 7);
            var dx = x.Rand(-1, 1, 18, 11);
            return () => x.B.SiluColumnsBackward(a, 0, dy, 0, dx, 0, 7, true);
        });
        yield return new ErrorCase("Copy", "Int64 -> Int32 out of range", typeof(ArgumentOutOfRangeException), "src", "src[1]", x =>
        {
            var huge = x.L([1L, 1L << 40], 2);
            var dst = x.Own(x.B.Allocate(DType.Int32, [2]));
            return () => x.B.Copy(huge, dst);
        });
    }
}
