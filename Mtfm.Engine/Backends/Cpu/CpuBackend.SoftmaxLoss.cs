using Mtfm.Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Mtfm.Engine.Backends.Cpu;

internal sealed unsafe partial class CpuBackend
{
    private struct SoftmaxBody : IRangeBody
    {
        public float* X, Y, Dy, Dx;
        public int Cols;
        public bool Backward;

        public void Run(int start, int end)
        {
            float[]? tmp = Backward ? new float[Cols] : null;
            for (int i = start; i < end; i++)
            {
                long o = (long)i * Cols;
                if (!Backward)
                {
                    TensorPrimitives.SoftMax(new ReadOnlySpan<float>(X + o, Cols), new Span<float>(Y + o, Cols));
                    continue;
                }
                var y = new ReadOnlySpan<float>(Y + o, Cols);
                var dy = new ReadOnlySpan<float>(Dy + o, Cols);
                float dot = TensorPrimitives.Dot(dy, y);
                TensorPrimitives.Subtract(dy, dot, tmp);
                var dx = new Span<float>(Dx + o, Cols);
                TensorPrimitives.MultiplyAdd(y, tmp, dx, dx);
            }
        }
    }

    /// <inheritdoc />
    public void Softmax(Tensor x, Tensor y)
    {
        float* px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, y, nameof(y));
        var body = new SoftmaxBody { X = px, Y = py, Cols = cols };
        _pool.For(rows, MinRows(cols), ref body);
    }

    /// <inheritdoc />
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx)
    {
        float* py = F(y, nameof(y)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, cols) = Matrix(y);
        CheckSameLength(y, dy, nameof(dy));
        CheckSameLength(y, dx, nameof(dx));
        var body = new SoftmaxBody { Y = py, Dy = pdy, Dx = pdx, Cols = cols, Backward = true };
        _pool.For(rows, MinRows(cols), ref body);
    }

    private void CheckBceInputs(Tensor logits, Tensor labels, Tensor mask, out float* z, out float* t, out float* m)
    {
        z = F(logits, nameof(logits));
        t = F(labels, nameof(labels));
        m = F(mask, nameof(mask));
        CheckSameLength(logits, labels, nameof(labels));
        CheckSameLength(logits, mask, nameof(mask));
        for (long i = 0; i < logits.Length; i++)
        {
            float mi = m[i];
            if (mi != 0f && mi != 1f) throw new ArgumentOutOfRangeException(nameof(mask), mi, $"mask[{i}] = {mi} must be 0 or 1.");
            if (mi == 0f) continue;
            float ti = t[i];
            if (!(ti >= 0f && ti <= 1f)) throw new ArgumentOutOfRangeException(nameof(labels), ti, $"labels[{i}] = {ti} must lie in [0, 1] where mask is 1.");
            // A non-finite logit is not refused: it gives a non-finite loss, which the trainer's guard skips and reports.
        }
    }

    /// <inheritdoc />
    public void BceWithLogits(Tensor logits, Tensor labels, Tensor mask, Tensor loss)
    {
        CheckBceInputs(logits, labels, mask, out float* z, out float* t, out float* m);
        float* pl = F(loss, nameof(loss));
        if (loss.Length != 1) throw new ArgumentException($"loss must hold one element, its shape is {loss.ShapeString}.", nameof(loss));
        double sum = 0, count = 0;
        for (long i = 0; i < logits.Length; i++)
        {
            if (m[i] == 0f) continue;
            double zi = z[i];
            sum += Math.Max(zi, 0) - zi * t[i] + Math.Log(1 + Math.Exp(-Math.Abs(zi)));
            count++;
        }
        pl[0] = count == 0 ? 0f : (float)(sum / count);
    }

    /// <inheritdoc />
    public void BceWithLogitsBackward(Tensor logits, Tensor labels, Tensor mask, Tensor dloss, Tensor dlogits)
    {
        CheckBceInputs(logits, labels, mask, out float* z, out float* t, out float* m);
        float* pd = F(dloss, nameof(dloss)), pdz = F(dlogits, nameof(dlogits));
        if (dloss.Length != 1) throw new ArgumentException($"dloss must hold one element, its shape is {dloss.ShapeString}.", nameof(dloss));
        CheckSameLength(logits, dlogits, nameof(dlogits));
        long count = 0;
        for (long i = 0; i < logits.Length; i++) if (m[i] != 0f) count++;
        if (count == 0) return;
        float scale = pd[0] / count;
        for (long i = 0; i < logits.Length; i++)
        {
            if (m[i] == 0f) continue;
            float sig = 1f / (1f + MathF.Exp(-z[i]));
            pdz[i] += scale * (sig - t[i]);
        }
    }
}
