using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Autograd;

internal static partial class Ops
{
    /// <summary>Default LayerNorm epsilon.</summary>
    public const float LayerNormEps = 1e-5f;

    /// <summary>
    /// LayerNorm over the last axis of x [n,d]; affine when <paramref name="gamma"/>/<paramref name="beta"/> ([d]) are
    /// given, plain normalisation when both are null.
    /// </summary>
    public static Variable LayerNorm(this Tape tape, Variable x, Variable? gamma, Variable? beta, float eps = LayerNormEps)
    {
        if ((gamma is null) != (beta is null)) throw new ArgumentException("gamma and beta must both be given or both be null.", gamma is null ? nameof(gamma) : nameof(beta));
        if (gamma is not null && gamma.Value.Length != x.Value.LastDim)
            throw new ArgumentException($"gamma {gamma.Value.ShapeString} must hold {x.Value.LastDim} elements (the feature width of x {x.Value.ShapeString}).", nameof(gamma));
        return LayerNormCore(tape, x, gamma, beta, null, eps);
    }

    /// <summary>
    /// Group LayerNorm: per token i, normalise x[i,:] and apply gamma[g]/beta[g] with g = <paramref name="groupIds"/>[i]
    /// (Int32/Int64 [n], each in [0, G)); gamma, beta are [G, d]. Gradients of gamma/beta accumulate per group.
    /// </summary>
    public static Variable GroupLayerNorm(this Tape tape, Variable x, Variable gamma, Variable beta, Tensor groupIds, float eps = LayerNormEps)
    {
        ArgumentNullException.ThrowIfNull(groupIds);
        if (gamma.Value.Rank != 2 || gamma.Value.LastDim != x.Value.LastDim)
            throw new ArgumentException($"gamma {gamma.Value.ShapeString} must be [groups, {x.Value.LastDim}].", nameof(gamma));
        RequireSameShape(gamma, beta, nameof(beta));
        if (groupIds.Length != x.Value.RowCount)
            throw new ArgumentException($"groupIds {groupIds.ShapeString} must hold one id per row of x {x.Value.ShapeString}.", nameof(groupIds));
        return LayerNormCore(tape, x, gamma, beta, groupIds, eps);
    }

    private static Variable LayerNormCore(Tape tape, Variable x, Variable? gamma, Variable? beta, Tensor? groupIds, float eps)
    {
        var be = tape.Backend;
        int rows = x.Value.LastDim == 0 ? 0 : (int)(x.Value.Length / x.Value.LastDim);
        var y = tape.Output(tape.Allocate(x.Shape));
        var mean = tape.Allocate(rows);
        var rstd = tape.Allocate(rows);
        be.LayerNorm(x.Value, gamma?.Value, beta?.Value, groupIds, eps, y.Value, mean, rstd);
        Variable[] inputs = gamma is null ? [x] : [x, gamma, beta!];
        tape.Record([y], inputs, () =>
        {
            var dx = tape.GradFor(x);
            var dg = gamma is null ? null : tape.GradFor(gamma);
            var db = beta is null ? null : tape.GradFor(beta);
            be.LayerNormBackward(x.Value, mean, rstd, gamma?.Value, groupIds, y.Grad!, dx, dg, db);
        });
        return y;
    }
}
