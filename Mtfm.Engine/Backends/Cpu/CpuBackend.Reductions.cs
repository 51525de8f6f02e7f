using Mtfm.Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    /// <summary>Rows per partial sum in column reductions: a fixed partition, so sums do not depend on threads.</summary>
    private const int ReduceRowBlock = 256;

    private struct BlockSumBody : IRangeBody
    {
        public float* X;
        public double* Partial;
        public long N;

        public void Run(int start, int end)
        {
            for (int b = start; b < end; b++)
            {
                long lo = (long)b * ElementBlock;
                int len = (int)Math.Min(ElementBlock, N - lo);
                Partial[b] = TensorPrimitives.Sum(new ReadOnlySpan<float>(X + lo, len));
            }
        }
    }

    /// <inheritdoc />
    public void SumAll(Tensor x, float alpha, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        if (y.Length != 1) throw new ArgumentException($"y must hold one element, its shape is {y.ShapeString}.", nameof(y));
        int blocks = checked((int)((x.Length + ElementBlock - 1) / ElementBlock));
        var partial = new double[blocks];
        fixed (double* pp = partial)
        {
            var body = new BlockSumBody { X = px, Partial = pp, N = x.Length };
            _pool.For(blocks, 4, ref body);
        }
        double s = 0;
        for (int b = 0; b < blocks; b++) s += partial[b];
        py[0] = (float)(alpha * s);
    }

    private struct RowSumBody : IRangeBody
    {
        public float* X, Y;
        public int Cols;
        public float Alpha;
        public bool Backward;

        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                if (Backward)
                {
                    var row = new Span<float>(Y + (long)i * Cols, Cols);
                    TensorPrimitives.Add(row, Alpha * X[i], row);
                }
                else Y[i] = Alpha * TensorPrimitives.Sum(new ReadOnlySpan<float>(X + (long)i * Cols, Cols));
            }
        }
    }

    /// <inheritdoc />
    public void SumLastAxis(Tensor x, float alpha, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (y.Length != rows) throw new ArgumentException($"y {y.ShapeString} must hold {rows} elements (one per row of x {x.ShapeString}).", nameof(y));
        var body = new RowSumBody { X = px, Y = py, Cols = cols, Alpha = alpha };
        _pool.For(rows, MinRows(cols), ref body);
    }

    /// <inheritdoc />
    public void SumLastAxisBackward(Tensor dy, float alpha, Tensor dx)
    {
        float* pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, cols) = Matrix(dx);
        if (dy.Length != rows) throw new ArgumentException($"dy {dy.ShapeString} must hold {rows} elements (one per row of dx {dx.ShapeString}).", nameof(dy));
        var body = new RowSumBody { X = pdy, Y = pdx, Cols = cols, Alpha = alpha, Backward = true };
        _pool.For(rows, MinRows(cols), ref body);
    }

    private struct ColumnPartialBody : IRangeBody
    {
        public float* X, Partial;
        public int Rows, Cols;

        public void Run(int start, int end)
        {
            for (int b = start; b < end; b++)
            {
                var acc = new Span<float>(Partial + (long)b * Cols, Cols);
                acc.Clear();
                int hi = Math.Min(Rows, (b + 1) * ReduceRowBlock);
                for (int i = b * ReduceRowBlock; i < hi; i++)
                    TensorPrimitives.Add(acc, new ReadOnlySpan<float>(X + (long)i * Cols, Cols), acc);
            }
        }
    }

    private struct ColumnReduceBody : IRangeBody
    {
        public float* Partial, Y;
        public int Blocks, Cols;
        public bool Accumulate;

        public void Run(int start, int end)
        {
            for (int j = start; j < end; j++)
            {
                float s = Accumulate ? Y[j] : 0f;
                float blockSum = 0f;
                for (int b = 0; b < Blocks; b++) blockSum += Partial[(long)b * Cols + j];
                Y[j] = s + blockSum;
            }
        }
    }

    /// <inheritdoc />
    public void SumRows(Tensor x, Tensor y, bool accumulate)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        if (y.Length != cols) throw new ArgumentException($"y {y.ShapeString} must hold {cols} elements (the last dimension of x {x.ShapeString}).", nameof(y));
        ReduceColumns(px, rows, cols, py, accumulate);
    }

    /// <summary>y[j] (+)= Σ_i x[i,j] with fixed row blocks reduced in order.</summary>
    private void ReduceColumns(float* x, int rows, int cols, float* y, bool accumulate)
    {
        int blocks = (rows + ReduceRowBlock - 1) / ReduceRowBlock;
        var partial = System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, blocks * cols)); // every block's row is cleared before use
        try
        {
            fixed (float* pp = partial)
            {
                var pbody = new ColumnPartialBody { X = x, Partial = pp, Rows = rows, Cols = cols };
                _pool.For(blocks, 1, ref pbody);
                var rbody = new ColumnReduceBody { Partial = pp, Y = y, Blocks = blocks, Cols = cols, Accumulate = accumulate };
                _pool.For(cols, Math.Max(1, 4096 / Math.Max(1, blocks)), ref rbody);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(partial); }
    }
}
