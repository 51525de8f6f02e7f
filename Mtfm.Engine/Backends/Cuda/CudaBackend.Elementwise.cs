using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

internal sealed unsafe partial class CudaBackend
{
    private void Binary(string kernel, Tensor a, Tensor b, Tensor y)
    {
        ulong pa = F(a, nameof(a)), pb = F(b, nameof(b)), py = F(y, nameof(y));
        CheckSameLength(a, b, nameof(b));
        CheckSameLength(a, y, nameof(y));
        long n = a.Length;
        Launch1D("elementwise.cu", kernel, n, (ref CudaKernelArgs k) => { k.Ptr(pa); k.Ptr(pb); k.Ptr(py); k.I64(n); });
    }

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor y) => Binary("mtfm_add", a, b, y);

    /// <inheritdoc />
    public void Mul(Tensor a, Tensor b, Tensor y) => Binary("mtfm_mul", a, b, y);

    /// <inheritdoc />
    public void MulAccumulate(Tensor a, Tensor b, Tensor y) => Binary("mtfm_mul_acc", a, b, y);

    /// <inheritdoc />
    public void Scale(Tensor x, float alpha, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        long n = x.Length;
        Launch1D("elementwise.cu", "mtfm_scale", n, (ref CudaKernelArgs k) => { k.Ptr(px); k.F32(alpha); k.Ptr(py); k.I64(n); });
    }

    /// <inheritdoc />
    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        long n = x.Length;
        Launch1D("elementwise.cu", "mtfm_axpy", n, (ref CudaKernelArgs k) => { k.F32(alpha); k.Ptr(px); k.Ptr(py); k.I64(n); });
    }

    /// <inheritdoc />
    public void AddBias(Tensor x, Tensor bias, Tensor y)
    {
        ulong px = F(x, nameof(x)), pb = F(bias, nameof(bias)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (bias.Length != cols) throw new ArgumentException($"bias {bias.ShapeString} must hold {cols} elements (the last dimension of x {x.ShapeString}).", nameof(bias));
        CheckSameLength(x, y, nameof(y));
        Ops.BiasAdd(px, pb, py, rows, cols, _stream);
    }

    /// <inheritdoc />
    public void Silu(Tensor x, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        if (px == py) throw new ArgumentException("Silu cannot run in place: y aliases x.", nameof(y));
        Ops.SiluForward(px, py, x.Length, _stream);
    }

    /// <inheritdoc />
    public void SiluBackward(Tensor x, Tensor dy, Tensor dx)
    {
        ulong px = F(x, nameof(x)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        CheckSameLength(x, dy, nameof(dy));
        CheckSameLength(x, dx, nameof(dx));
        long n = x.Length;
        Launch1D("elementwise.cu", "mtfm_silu_bwd_acc", n, (ref CudaKernelArgs k) => { k.Ptr(px); k.Ptr(pdy); k.Ptr(pdx); k.I64(n); });
    }

    /// <inheritdoc />
    public void SiluColumns(Tensor x, int xCol, Tensor y, int yCol, int cols)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        if (px == py) throw new ArgumentException("SiluColumns cannot run in place: y is x.", nameof(y));
        var (rows, xc) = ColumnRanges.Check(x, nameof(x), xCol, nameof(xCol), cols);
        var (_, yc) = ColumnRanges.Check(y, nameof(y), yCol, nameof(yCol), cols, rows, $"x {x.ShapeString}");
        Launch1D("elementwise.cu", "mtfm_silu_columns", (long)rows * cols,
            (ref CudaKernelArgs a) => { a.Ptr(px); a.I32(xc); a.I32(xCol); a.Ptr(py); a.I32(yc); a.I32(yCol); a.I32(rows); a.I32(cols); });
    }

    /// <inheritdoc />
    public void SiluColumnsBackward(Tensor x, int xCol, Tensor dy, int dyCol, Tensor dx, int dxCol, int cols, bool accumulate)
    {
        ulong px = F(x, nameof(x)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, xc) = ColumnRanges.Check(x, nameof(x), xCol, nameof(xCol), cols);
        var (_, dyc) = ColumnRanges.Check(dy, nameof(dy), dyCol, nameof(dyCol), cols, rows, $"x {x.ShapeString}");
        var (_, dxc) = ColumnRanges.Check(dx, nameof(dx), dxCol, nameof(dxCol), cols, rows, $"x {x.ShapeString}");
        int acc = accumulate ? 1 : 0;
        Launch1D("elementwise.cu", "mtfm_silu_columns_bwd_acc", (long)rows * cols, (ref CudaKernelArgs a) =>
        {
            a.Ptr(px); a.I32(xc); a.I32(xCol); a.Ptr(pdy); a.I32(dyc); a.I32(dyCol); a.Ptr(pdx); a.I32(dxc); a.I32(dxCol); a.I32(rows); a.I32(cols); a.I32(acc);
        });
    }

    /// <inheritdoc />
    public void SiluSplit(Tensor x, Tensor[] parts)
    {
        int[] widths = SiluSplitCheck.Forward(x, parts);
        for (int i = 0, off = 0; i < parts.Length; off += widths[i], i++) SiluColumns(x, off, parts[i], 0, widths[i]);
    }

    /// <inheritdoc />
    public void SiluSplitBackward(Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx, bool accumulate)
    {
        SiluSplitCheck.Backward(x, widths, partGrads, dx);
        for (int i = 0, off = 0; i < widths.Length; off += widths[i], i++)
            if (partGrads[i] is { } d) SiluColumnsBackward(x, off, d, 0, dx, off, widths[i], accumulate);
    }

    /// <inheritdoc />
    public void AddScalar(Tensor dy, float alpha, Tensor dx)
    {
        ulong pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        if (dy.Length != 1) throw new ArgumentException($"dy must hold one element, its shape is {dy.ShapeString}.", nameof(dy));
        long n = dx.Length;
        Launch1D("elementwise.cu", "mtfm_add_scalar", n, (ref CudaKernelArgs k) => { k.Ptr(pdy); k.F32(alpha); k.Ptr(pdx); k.I64(n); });
    }

    // ------------------------------------------------------------------ reductions

    /// <summary>Blocks of the first pass of <see cref="SumAll"/> (fixed for a given length: deterministic).</summary>
    private const int SumMaxBlocks = 256;

    /// <inheritdoc />
    public void SumAll(Tensor x, float alpha, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        if (y.Length != 1) throw new ArgumentException($"y must hold one element, its shape is {y.ShapeString}.", nameof(y));
        long n = x.Length;
        int blocks = (int)Math.Clamp((n + Threads - 1) / Threads, 1, SumMaxBlocks);
        var partials = Scratch(blocks * sizeof(float));
        var a = new CudaKernelArgs();
        a.Ptr(px); a.I64(n); a.Ptr(partials.Pointer);
        Ops.Launch("reduce.cu", "mtfm_sum_partials", (uint)blocks, Threads, 0, _stream, ref a);
        var f = new CudaKernelArgs();
        f.Ptr(partials.Pointer); f.I32(blocks); f.F32(alpha); f.Ptr(py);
        Ops.Launch("reduce.cu", "mtfm_sum_finalize", 1, Threads, 0, _stream, ref f);
        Release(partials);
    }

    /// <inheritdoc />
    public void SumLastAxis(Tensor x, float alpha, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (y.Length != rows) throw new ArgumentException($"y {y.ShapeString} must hold {rows} elements (one per row of x {x.ShapeString}).", nameof(y));
        LaunchRows("reduce.cu", "mtfm_row_sum", rows, (ref CudaKernelArgs k) => { k.Ptr(px); k.I32(rows); k.I32(cols); k.F32(alpha); k.Ptr(py); });
    }

    /// <inheritdoc />
    public void SumLastAxisBackward(Tensor dy, float alpha, Tensor dx)
    {
        ulong pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, cols) = Matrix(dx);
        if (dy.Length != rows) throw new ArgumentException($"dy {dy.ShapeString} must hold {rows} elements (one per row of dx {dx.ShapeString}).", nameof(dy));
        Launch1D("reduce.cu", "mtfm_row_sum_bwd", (long)rows * cols,
            (ref CudaKernelArgs k) => { k.Ptr(pdy); k.I32(rows); k.I32(cols); k.F32(alpha); k.Ptr(pdx); });
    }

    /// <inheritdoc />
    public void SumRows(Tensor x, Tensor y, bool accumulate)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (y.Length != cols) throw new ArgumentException($"y {y.ShapeString} must hold {cols} elements (the last dimension of x {x.ShapeString}).", nameof(y));
        Ops.BiasGrad(px, py, rows, cols, accumulate, _stream);
    }
}
