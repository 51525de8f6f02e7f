namespace Mtfm.Engine.Model;

/// <summary>Counts the forward floating-point operations of a pass (2 per multiply-add).</summary>
internal sealed class FlopCounter
{
    /// <summary>Forward flops counted so far.</summary>
    public double Forward { get; private set; }

    /// <summary>Adds a dense product: <paramref name="rows"/> rows of <paramref name="macsPerRow"/> multiply-adds.</summary>
    public void Dense(long rows, long macsPerRow) => Forward += 2.0 * rows * macsPerRow;

    /// <summary>Adds an attention pass over <paramref name="visiblePairs"/> (query, key) pairs.</summary>
    public void Attention(long visiblePairs, int heads, int dqk, int dv) => Forward += 2.0 * visiblePairs * heads * (dqk + dv);
}
