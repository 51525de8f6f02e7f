using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Backends.Cuda;

internal sealed unsafe partial class CudaBackend
{
    /// <inheritdoc />
    public void Softmax(Tensor x, Tensor y)
    {
        ulong px = F(x, nameof(x)), py = F(y, nameof(y));
        var (rows, cols) = Matrix(x);
        CheckSameLength(x, y, nameof(y));
        LaunchRows("reduce.cu", "mtfm_softmax_fwd", rows, (ref CudaKernelArgs k) => { k.Ptr(px); k.Ptr(py); k.I32(rows); k.I32(cols); });
    }

    /// <inheritdoc />
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx)
    {
        ulong py = F(y, nameof(y)), pdy = F(dy, nameof(dy)), pdx = F(dx, nameof(dx));
        var (rows, cols) = Matrix(y);
        CheckSameLength(y, dy, nameof(dy));
        CheckSameLength(y, dx, nameof(dx));
        LaunchRows("reduce.cu", "mtfm_softmax_bwd", rows, (ref CudaKernelArgs k) => { k.Ptr(py); k.Ptr(pdy); k.Ptr(pdx); k.I32(rows); k.I32(cols); });
    }

    /// <summary>
    /// (loss sum, count) of the masked BCE into a 2-float scratch buffer, on the device (bce.cu). Unlike the CPU backend,
    /// mask/label/logit values are not validated on the host: that would need a device round trip.
    /// </summary>
    private DeviceBuffer BceStats(Tensor logits, Tensor labels, Tensor mask, out int n)
    {
        ulong z = F(logits, nameof(logits)), t = F(labels, nameof(labels)), m = F(mask, nameof(mask));
        CheckSameLength(logits, labels, nameof(labels));
        CheckSameLength(logits, mask, nameof(mask));
        n = checked((int)logits.Length);
        var partials = Scratch(2 * CudaOps.BceMaxBlocks * sizeof(float));
        var stats = Scratch(2 * sizeof(float));
        Ops.BceForward(z, t, m, n, partials.Pointer, stats.Pointer, 0, _stream);
        Release(partials);
        return stats;
    }

    /// <inheritdoc />
    public void BceWithLogits(Tensor logits, Tensor labels, Tensor mask, Tensor loss)
    {
        ulong pl = F(loss, nameof(loss));
        if (loss.Length != 1) throw new ArgumentException($"loss must hold one element, its shape is {loss.ShapeString}.", nameof(loss));
        var stats = BceStats(logits, labels, mask, out _);
        var a = new CudaKernelArgs();
        a.Ptr(stats.Pointer); a.Ptr(pl);
        Ops.Launch("loss.cu", "mtfm_bce_mean", 1, 32, 0, _stream, ref a);
        Release(stats);
    }

    /// <inheritdoc />
    public void BceWithLogitsBackward(Tensor logits, Tensor labels, Tensor mask, Tensor dloss, Tensor dlogits)
    {
        ulong pd = F(dloss, nameof(dloss)), pdz = F(dlogits, nameof(dlogits));
        if (dloss.Length != 1) throw new ArgumentException($"dloss must hold one element, its shape is {dloss.ShapeString}.", nameof(dloss));
        CheckSameLength(logits, dlogits, nameof(dlogits));
        var stats = BceStats(logits, labels, mask, out int n);
        ulong z = Ptr(logits), t = Ptr(labels), m = Ptr(mask), s = stats.Pointer;
        Launch1D("loss.cu", "mtfm_bce_bwd_acc", n, (ref CudaKernelArgs k) => { k.Ptr(z); k.Ptr(t); k.Ptr(m); k.Ptr(s); k.Ptr(pd); k.Ptr(pdz); k.I32(n); });
        Release(stats);
    }
}
