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

        [SkipLocalsInit] // the SiLU-backward scratch blocks are written before they are read
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
                case Ew.Silu:
                    TensorPrimitives.Sigmoid(a, y);
                    TensorPrimitives.Multiply(y, a, y);
                    break;
                case Ew.SiluBackward:
                    {
                        // dx += dy·s·(1 + x·(1−s)), s = σ(x); a = x, B = dy.
                        Span<float> s = stackalloc float[ElementBlock];
                        Span<float> t = stackalloc float[ElementBlock];
                        s = s[..len];
                        t = t[..len];
                        TensorPrimitives.Sigmoid(a, s);
                        TensorPrimitives.Subtract(1f, s, t);            // 1 − s
                        TensorPrimitives.MultiplyAdd(a, t, 1f, t);      // 1 + x(1 − s)
                        TensorPrimitives.Multiply(t, s, t);
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(B + lo, len), t, y, y);
                        break;
                    }
            }
        }
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
