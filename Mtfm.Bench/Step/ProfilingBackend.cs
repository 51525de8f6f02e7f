using System.Diagnostics;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Tensors;

namespace Mtfm.Bench.Step;

/// <summary>
/// An <see cref="IBackend"/> that forwards every call to an inner backend and adds the call's wall time to a row of a
/// profile (GEMMs by shape, attention forward/backward by layer kind, GLN/LN, element-wise, rows (gather/scatter),
/// allocation, uploads). Tensors belong to the inner backend, so kernels that go to it directly (parameter gradients
/// allocated by the parameter itself) are not seen; <see cref="Phase"/> prefixes nothing but lets the harness attribute
/// whole phases itself. Timing adds two Stopwatch reads per call (≈ 50 ns), negligible against ≥ µs kernels.
/// </summary>
internal sealed class ProfilingBackend(IBackend inner) : IBackend
{
    private readonly Dictionary<string, Row> _rows = new(StringComparer.Ordinal);

    internal sealed class Row
    {
        public long Ticks;
        public long Calls;
        /// <summary>The slowest single call (an outlier against Ticks / Calls points at a page fault, a wake-up or a cold operand).</summary>
        public long MaxTicks;
        public string Category = "";
    }

    public IBackend Inner { get; } = inner;

    /// <summary>Rows of the profile: key (op and shape) → time, calls, category.</summary>
    public IReadOnlyDictionary<string, Row> Rows => _rows;

    /// <summary>Backend allocations (Allocate calls) so far.</summary>
    public long AllocationCalls { get; private set; }

    /// <summary>Bytes requested by Allocate so far.</summary>
    public long AllocatedBytes { get; private set; }

    /// <summary>Largest <see cref="IBackend.LiveBytes"/> of the inner backend seen after an allocation.</summary>
    public long PeakLiveBytes { get; private set; }

    /// <summary>When false, calls are forwarded without timing.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Clears the profile (rows, allocation counters, peak).</summary>
    public void Reset()
    {
        _rows.Clear();
        AllocationCalls = 0;
        AllocatedBytes = 0;
        PeakLiveBytes = Inner.LiveBytes;
    }

    /// <summary>Resets only the peak to the current live bytes.</summary>
    public void ResetPeak() => PeakLiveBytes = Inner.LiveBytes;

    private void Add(string category, string key, long start)
    {
        if (!Enabled) return;
        long dt = Stopwatch.GetTimestamp() - start;
        if (!_rows.TryGetValue(key, out var r)) _rows[key] = r = new Row { Category = category };
        r.Ticks += dt;
        r.Calls++;
        if (dt > r.MaxTicks) r.MaxTicks = dt;
    }

    private static string Shape(Tensor t) => t.ShapeString;

    public string Name => Inner.Name;
    public long LiveAllocations => Inner.LiveAllocations;
    public long LiveBytes => Inner.LiveBytes;

    public Tensor Allocate(DType dtype, ReadOnlySpan<int> shape, bool zero = false)
    {
        long s = Stopwatch.GetTimestamp();
        var t = Inner.Allocate(dtype, shape, zero);
        AllocationCalls++;
        AllocatedBytes += t.Length * dtype.SizeOf();
        if (Inner.LiveBytes > PeakLiveBytes) PeakLiveBytes = Inner.LiveBytes;
        Add("allocation", zero ? "Allocate (zeroed)" : "Allocate", s);
        return t;
    }

    public void Upload<T>(ReadOnlySpan<T> src, Tensor dst) where T : unmanaged
    { long s = Stopwatch.GetTimestamp(); Inner.Upload(src, dst); Add("batch upload", "Upload", s); }

    public void Download<T>(Tensor src, Span<T> dst) where T : unmanaged
    { long s = Stopwatch.GetTimestamp(); Inner.Download(src, dst); Add("other", "Download", s); }

    public void Copy(Tensor src, Tensor dst) { long s = Stopwatch.GetTimestamp(); Inner.Copy(src, dst); Add("element-wise", "Copy", s); }
    public void Fill(Tensor dst, float value) { long s = Stopwatch.GetTimestamp(); Inner.Fill(dst, value); Add("element-wise", "Fill", s); }

    private static string GemmKey(string op, bool ta, bool tb, Tensor a, Tensor b, Tensor c)
    {
        int k = ta ? a.Shape[^2] : a.Shape[^1];
        return $"{op} {c.Shape[^2]}x{c.Shape[^1]}x{k} {(ta ? 'T' : 'N')}{(tb ? 'T' : 'N')}{(c.Rank == 3 ? $" x{c.Shape[0]}" : "")}";
    }

    public void Gemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    { long s = Stopwatch.GetTimestamp(); Inner.Gemm(transA, transB, alpha, a, b, beta, c); Add("GEMM", GemmKey("Gemm", transA, transB, a, b, c), s); }

    public void BatchedGemm(bool transA, bool transB, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    { long s = Stopwatch.GetTimestamp(); Inner.BatchedGemm(transA, transB, alpha, a, b, beta, c); Add("GEMM (batched, MMoE mix)", GemmKey("BatchedGemm", transA, transB, a, b, c), s); }

    public void Add(Tensor a, Tensor b, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Add(a, b, y); Add("element-wise", "Add", s); }
    public void Mul(Tensor a, Tensor b, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Mul(a, b, y); Add("element-wise", "Mul", s); }
    public void MulAccumulate(Tensor a, Tensor b, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.MulAccumulate(a, b, y); Add("element-wise", "MulAccumulate", s); }
    public void Scale(Tensor x, float alpha, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Scale(x, alpha, y); Add("element-wise", "Scale", s); }
    public void Axpy(float alpha, Tensor x, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Axpy(alpha, x, y); Add("element-wise", "Axpy", s); }
    public void AddBias(Tensor x, Tensor bias, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.AddBias(x, bias, y); Add("element-wise", "AddBias", s); }
    public void Silu(Tensor x, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Silu(x, y); Add("element-wise", "Silu", s); }
    public void SiluBackward(Tensor x, Tensor dy, Tensor dx) { long s = Stopwatch.GetTimestamp(); Inner.SiluBackward(x, dy, dx); Add("element-wise", "SiluBackward", s); }
    public void LayerNormMul(Tensor o, Tensor u, float eps, Tensor z, Tensor mean, Tensor rstd) { long s = Stopwatch.GetTimestamp(); Inner.LayerNormMul(o, u, eps, z, mean, rstd); Add("LN(O)", "LayerNormMul", s); }
    public void LayerNormMulBackward(Tensor o, Tensor u, Tensor mean, Tensor rstd, float eps, Tensor dz, Tensor? du, bool accumulateDu, Tensor? dO, bool accumulateDo) { long s = Stopwatch.GetTimestamp(); Inner.LayerNormMulBackward(o, u, mean, rstd, eps, dz, du, accumulateDu, dO, accumulateDo); Add("LN(O)", "LayerNormMulBackward", s); }
    public void SiluColumns(Tensor x, int xCol, Tensor y, int yCol, int cols) { long s = Stopwatch.GetTimestamp(); Inner.SiluColumns(x, xCol, y, yCol, cols); Add("element-wise", "SiluColumns", s); }
    public void SiluSplit(Tensor x, Tensor[] parts) { long s = Stopwatch.GetTimestamp(); Inner.SiluSplit(x, parts); Add("element-wise", "SiluSplit", s); }
    public void SiluSplitBackward(Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx, bool accumulate) { long s = Stopwatch.GetTimestamp(); Inner.SiluSplitBackward(x, widths, partGrads, dx, accumulate); Add("element-wise", "SiluSplitBackward", s); }
    public void SiluColumnsBackward(Tensor x, int xCol, Tensor dy, int dyCol, Tensor dx, int dxCol, int cols, bool accumulate) { long s = Stopwatch.GetTimestamp(); Inner.SiluColumnsBackward(x, xCol, dy, dyCol, dx, dxCol, cols, accumulate); Add("element-wise", "SiluColumnsBackward", s); }

    public void SumAll(Tensor x, float alpha, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.SumAll(x, alpha, y); Add("reduction", "SumAll", s); }
    public void AddScalar(Tensor dy, float alpha, Tensor dx) { long s = Stopwatch.GetTimestamp(); Inner.AddScalar(dy, alpha, dx); Add("reduction", "AddScalar", s); }
    public void SumLastAxis(Tensor x, float alpha, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.SumLastAxis(x, alpha, y); Add("reduction", "SumLastAxis", s); }
    public void SumLastAxisBackward(Tensor dy, float alpha, Tensor dx) { long s = Stopwatch.GetTimestamp(); Inner.SumLastAxisBackward(dy, alpha, dx); Add("reduction", "SumLastAxisBackward", s); }
    public void SumRows(Tensor x, Tensor y, bool accumulate) { long s = Stopwatch.GetTimestamp(); Inner.SumRows(x, y, accumulate); Add("reduction (bias grad)", "SumRows " + Shape(x), s); }

    public void LayerNorm(Tensor x, Tensor? gamma, Tensor? beta, Tensor? groupIds, float eps, Tensor y, Tensor mean, Tensor rstd)
    { long s = Stopwatch.GetTimestamp(); Inner.LayerNorm(x, gamma, beta, groupIds, eps, y, mean, rstd); Add(gamma is null ? "LN(O)" : "GLN", (gamma is null ? "LayerNorm fwd " : "GroupLayerNorm fwd ") + Shape(x), s); }

    public void LayerNormBackward(Tensor x, Tensor mean, Tensor rstd, Tensor? gamma, Tensor? groupIds, Tensor dy, Tensor? dx, Tensor? dgamma, Tensor? dbeta)
    { long s = Stopwatch.GetTimestamp(); Inner.LayerNormBackward(x, mean, rstd, gamma, groupIds, dy, dx, dgamma, dbeta); Add(gamma is null ? "LN(O)" : "GLN", (gamma is null ? "LayerNorm bwd " : "GroupLayerNorm bwd ") + Shape(x), s); }

    public void Softmax(Tensor x, Tensor y) { long s = Stopwatch.GetTimestamp(); Inner.Softmax(x, y); Add("heads (softmax, BCE)", "Softmax", s); }
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx) { long s = Stopwatch.GetTimestamp(); Inner.SoftmaxBackward(y, dy, dx); Add("heads (softmax, BCE)", "SoftmaxBackward", s); }
    public void BceWithLogits(Tensor logits, Tensor labels, Tensor mask, Tensor loss) { long s = Stopwatch.GetTimestamp(); Inner.BceWithLogits(logits, labels, mask, loss); Add("heads (softmax, BCE)", "BceWithLogits", s); }
    public void BceWithLogitsBackward(Tensor logits, Tensor labels, Tensor mask, Tensor dloss, Tensor dlogits) { long s = Stopwatch.GetTimestamp(); Inner.BceWithLogitsBackward(logits, labels, mask, dloss, dlogits); Add("heads (softmax, BCE)", "BceWithLogitsBackward", s); }

    public void GatherRows(Tensor src, Tensor index, Tensor dst, string indexName = "index") { long s = Stopwatch.GetTimestamp(); Inner.GatherRows(src, index, dst, indexName); Add(indexName == "ids" ? "embedding gather/scatter" : "rows (gather/scatter)", "GatherRows " + (indexName == "ids" ? "(embedding) " : "") + Shape(dst), s); }
    public void ScatterAddRows(Tensor src, Tensor index, Tensor dst, string indexName = "index") { long s = Stopwatch.GetTimestamp(); Inner.ScatterAddRows(src, index, dst, indexName); Add(indexName is "inverse" or "ids" ? "embedding gather/scatter" : "rows (gather/scatter)", "ScatterAddRows " + (indexName is "inverse" or "ids" ? "(embedding) " : "") + Shape(src), s); }
    public void ScatterRows(Tensor src, Tensor index, Tensor dst, string indexName = "index") { long s = Stopwatch.GetTimestamp(); Inner.ScatterRows(src, index, dst, indexName); Add("rows (gather/scatter)", "ScatterRows " + Shape(src), s); }
    public void FillRows(Tensor dst, Tensor index, float value, string indexName = "index") { long s = Stopwatch.GetTimestamp(); Inner.FillRows(dst, index, value, indexName); Add("rows (gather/scatter)", "FillRows", s); }
    public (Tensor Unique, Tensor Inverse) UniqueIndices(Tensor index) { long s = Stopwatch.GetTimestamp(); var r = Inner.UniqueIndices(index); Add("embedding gather/scatter", "UniqueIndices", s); return r; }
    public void CopyColumns(Tensor src, int srcCol, Tensor dst, int dstCol, int cols, bool accumulate) { long s = Stopwatch.GetTimestamp(); Inner.CopyColumns(src, srcCol, dst, dstCol, cols, accumulate); Add("split/concat (CopyColumns)", "CopyColumns " + (accumulate ? "acc " : "") + $"[{src.RowCount}, {cols}]", s); }

    public void HstuAttention(AttentionLayout layout, bool targetQueries, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, Tensor rab, Tensor o)
    { long s = Stopwatch.GetTimestamp(); Inner.HstuAttention(layout, targetQueries, heads, kvHeads, q, k, v, rab, o); Add("attention fwd", targetQueries ? "HstuAttention fwd target" : "HstuAttention fwd full", s); }

    public void HstuAttentionBackward(AttentionLayout layout, bool targetQueries, int heads, int kvHeads, Tensor q, Tensor k, Tensor v, Tensor rab, Tensor dO, Tensor? dq, Tensor? dk, Tensor? dv, Tensor? drab, bool overwrite = false)
    { long s = Stopwatch.GetTimestamp(); Inner.HstuAttentionBackward(layout, targetQueries, heads, kvHeads, q, k, v, rab, dO, dq, dk, dv, drab, overwrite); Add("attention bwd", targetQueries ? "HstuAttention bwd target" : "HstuAttention bwd full", s); }

    /// <summary>Adds an externally timed phase (optimizer, batch building, autograd bookkeeping).</summary>
    public void AddPhase(string category, string key, long ticks)
    {
        if (!_rows.TryGetValue(key, out var r)) _rows[key] = r = new Row { Category = category };
        r.Ticks += ticks;
        r.Calls++;
    }

    public void Dispose() { }
}
