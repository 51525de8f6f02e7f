using System.Runtime.CompilerServices;
using Mtfm.Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    /// <summary>Elements per parallel work item of an element-wise kernel.</summary>
    private const int ElementBlock = 4096;

    private enum Ew { Add, Mul, MulAcc, Scale, Axpy, Silu, SiluBackward, AddScalar }

    private struct ElementwiseBody : IRangeBody
    {
        public Ew Op;
        public float* A, B, Y;
        public float Alpha;
        public long N;

        public void Run(int start, int end)
        {
            for (int blk = start; blk < end; blk++) RunBlock(blk);
        }

        private void RunBlock(int blk)
        {
            long lo = (long)blk * ElementBlock, hi = Math.Min(N, lo + ElementBlock);
            int len = (int)(hi - lo);
            var a = new ReadOnlySpan<float>(A + lo, len);
            var y = new Span<float>(Y + lo, len);
            switch (Op)
            {
                case Ew.Add: TensorPrimitives.Add(a, new ReadOnlySpan<float>(B + lo, len), y); break;
                case Ew.Mul: TensorPrimitives.Multiply(a, new ReadOnlySpan<float>(B + lo, len), y); break;
                case Ew.MulAcc: TensorPrimitives.MultiplyAdd(a, new ReadOnlySpan<float>(B + lo, len), y, y); break;
                case Ew.Scale: TensorPrimitives.Multiply(a, Alpha, y); break;
                case Ew.Axpy: TensorPrimitives.MultiplyAdd(a, Alpha, y, y); break;
                case Ew.AddScalar: TensorPrimitives.Add(y, Alpha, y); break;
                case Ew.Silu: CpuSilu.Forward(A + lo, Y + lo, len); break;
                case Ew.SiluBackward: CpuSilu.Backward(A + lo, B + lo, Y + lo, len, accumulate: true); break;
            }
        }
    }

    /// <summary>SiLU (or its backward, added or written) of a column range, row by row.</summary>
    private struct SiluColumnsBody : IRangeBody
    {
        public float* X, Dy, Y; // each at its first column
        public int XCols, DyCols, YCols, Cols;
        public bool Backward, Accumulate;

        public readonly void Run(int start, int end)
        {
            for (int r = start; r < end; r++)
            {
                if (Backward) CpuSilu.Backward(X + (long)r * XCols, Dy + (long)r * DyCols, Y + (long)r * YCols, Cols, Accumulate);
                else CpuSilu.Forward(X + (long)r * XCols, Y + (long)r * YCols, Cols);
            }
        }
    }

    /// <inheritdoc />
    public void SiluColumns(Tensor x, int xCol, Tensor y, int yCol, int cols)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        if (px == py) throw new ArgumentException("SiluColumns cannot run in place: y is x.", nameof(y));
        var (rows, xc) = ColumnRanges.Check(x, nameof(x), xCol, nameof(xCol), cols);
        var (_, yc) = ColumnRanges.Check(y, nameof(y), yCol, nameof(yCol), cols, rows, $"x {x.ShapeString}");
        var body = new SiluColumnsBody { X = px + xCol, Y = py + yCol, XCols = xc, YCols = yc, Cols = cols };
        _pool.For(rows, MinRows(Math.Max(1, cols)), ref body);
    }

    /// <inheritdoc />
    public void SiluColumnsBackward(Tensor x, int xCol, Tensor dy, int dyCol, Tensor dx, int dxCol, int cols, bool accumulate)
    {
        float* px = F(x, nameof(x)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, xc) = ColumnRanges.Check(x, nameof(x), xCol, nameof(xCol), cols);
        var (_, dyc) = ColumnRanges.Check(dy, nameof(dy), dyCol, nameof(dyCol), cols, rows, $"x {x.ShapeString}");
        var (_, dxc) = ColumnRanges.Check(dx, nameof(dx), dxCol, nameof(dxCol), cols, rows, $"x {x.ShapeString}");
        var body = new SiluColumnsBody
        {
            X = px + xCol, Dy = pdy + dyCol, Y = pdx + dxCol, XCols = xc, DyCols = dyc, YCols = dxc, Cols = cols, Backward = true,
            Accumulate = accumulate,
        };
        _pool.For(rows, MinRows(Math.Max(1, cols)), ref body);
    }

    /// <summary>Every part of a SiLU split (or its backward) row by row: one pass over each row of x.</summary>
    private struct SiluSplitBody : IRangeBody
    {
        public float* X, Dx;
        public int XCols;
        public nint[] Parts; // part i at its first element (null in the backward: no gradient)
        public int[] Widths;
        public bool Backward, Accumulate;

        public readonly void Run(int start, int end)
        {
            for (int r = start; r < end; r++)
            {
                long xo = (long)r * XCols;
                for (int i = 0, off = 0; i < Widths.Length; off += Widths[i], i++)
                {
                    int w = Widths[i];
                    float* p = (float*)Parts[i];
                    if (p == null || w == 0) continue;
                    if (Backward) CpuSilu.Backward(X + xo + off, p + (long)r * w, Dx + xo + off, w, Accumulate);
                    else CpuSilu.Forward(X + xo + off, p + (long)r * w, w);
                }
            }
        }
    }

    /// <inheritdoc />
    public void SiluSplit(Tensor x, Tensor[] parts)
    {
        int[] widths = SiluSplitCheck.Forward(x, parts);
        float* px = F(x, nameof(x));
        var ptrs = new nint[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            ptrs[i] = (nint)F(parts[i], nameof(parts));
            if (ptrs[i] == (nint)px) throw new ArgumentException($"SiluSplit cannot run in place: parts[{i}] is x's storage.", nameof(parts));
        }
        int cols = x.LastDim, rows = ColumnRanges.Rows(x);
        var body = new SiluSplitBody { X = px, XCols = cols, Parts = ptrs, Widths = widths };
        _pool.For(rows, MinRows(Math.Max(1, cols)), ref body);
    }

    /// <inheritdoc />
    public void SiluSplitBackward(Tensor x, int[] widths, Tensor?[] partGrads, Tensor dx, bool accumulate)
    {
        SiluSplitCheck.Backward(x, widths, partGrads, dx);
        float* px = F(x, nameof(x)), pdx = F(dx, nameof(dx));
        var ptrs = new nint[widths.Length];
        for (int i = 0; i < widths.Length; i++) ptrs[i] = partGrads[i] is { } g ? (nint)F(g, nameof(partGrads)) : 0;
        int cols = x.LastDim, rows = ColumnRanges.Rows(x);
        var body = new SiluSplitBody { X = px, Dx = pdx, XCols = cols, Parts = ptrs, Widths = widths, Backward = true, Accumulate = accumulate };
        _pool.For(rows, MinRows(Math.Max(1, cols)), ref body);
    }

    private void RunElementwise(Ew op, float* a, float* b, float* y, float alpha, long n)
    {
        var body = new ElementwiseBody { Op = op, A = a, B = b, Y = y, Alpha = alpha, N = n };
        int blocks = checked((int)((n + ElementBlock - 1) / ElementBlock));
        _pool.For(blocks, 4, ref body);
    }

    private void Binary(Ew op, Tensor a, Tensor b, Tensor y)
    {
        float* pa = F(a, nameof(a)), pb = F(b, nameof(b)), py = F(y, nameof(y));
        CheckSameLength(a, b, nameof(b));
        CheckSameLength(a, y, nameof(y));
        RunElementwise(op, pa, pb, py, 0f, a.Length);
    }

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor y) => Binary(Ew.Add, a, b, y);

    /// <inheritdoc />
    public void Mul(Tensor a, Tensor b, Tensor y) => Binary(Ew.Mul, a, b, y);

    /// <inheritdoc />
    public void MulAccumulate(Tensor a, Tensor b, Tensor y) => Binary(Ew.MulAcc, a, b, y);

    /// <inheritdoc />
    public void Scale(Tensor x, float alpha, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        RunElementwise(Ew.Scale, px, null, py, alpha, x.Length);
    }

    /// <inheritdoc />
    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        RunElementwise(Ew.Axpy, px, null, py, alpha, x.Length);
    }

    /// <inheritdoc />
    public void Silu(Tensor x, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        CheckSameLength(x, y, nameof(y));
        if (px == py) throw new ArgumentException("Silu cannot run in place: y aliases x.", nameof(y));
        RunElementwise(Ew.Silu, px, null, py, 0f, x.Length);
    }

    /// <inheritdoc />
    public void SiluBackward(Tensor x, Tensor dy, Tensor dx)
    {
        float* px = F(x, nameof(x)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        CheckSameLength(x, dy, nameof(dy));
        CheckSameLength(x, dx, nameof(dx));
        RunElementwise(Ew.SiluBackward, px, pdy, pdx, 0f, x.Length);
    }

    /// <inheritdoc />
    public void AddScalar(Tensor dy, float alpha, Tensor dx)
    {
        float* pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        if (dy.Length != 1) throw new ArgumentException($"dy must hold one element, its shape is {dy.ShapeString}.", nameof(dy));
        RunElementwise(Ew.AddScalar, pdx, null, pdx, alpha * pdy[0], dx.Length);
    }

    private struct AddBiasBody : IRangeBody
    {
        public float* X, Bias, Y;
        public int Cols;

        public void Run(int start, int end)
        {
            var bias = new ReadOnlySpan<float>(Bias, Cols);
            for (int i = start; i < end; i++)
                TensorPrimitives.Add(new ReadOnlySpan<float>(X + (long)i * Cols, Cols), bias, new Span<float>(Y + (long)i * Cols, Cols));
        }
    }

    /// <inheritdoc />
    public void AddBias(Tensor x, Tensor bias, Tensor y)
    {
        float* px = F(x, nameof(x)), pb = F(bias, nameof(bias)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (bias.Length != cols) throw new ArgumentException($"bias {bias.ShapeString} must hold {cols} elements (the last dimension of x {x.ShapeString}).", nameof(bias));
        CheckSameLength(x, y, nameof(y));
        var body = new AddBiasBody { X = px, Bias = pb, Y = py, Cols = cols };
        _pool.For(rows, MinRows(cols), ref body);
    }

    /// <summary>Rows per parallel chunk so that a chunk holds at least ~16K elements.</summary>
    private static int MinRows(int cols) => Math.Max(1, 16384 / Math.Max(1, cols));
}
