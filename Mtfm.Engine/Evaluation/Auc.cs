namespace Mtfm.Engine.Evaluation;

/// <summary>
/// Exact area under the ROC curve: the probability that a random positive scores above a random negative, ties
/// counting one half (the Mann–Whitney U statistic with rank-averaged ties). O(n log n): one sort, one pass.
/// </summary>
internal static class Auc
{
    /// <summary>
    /// AUC of <paramref name="scores"/> against <paramref name="labels"/> (each exactly 0 or 1). Returns
    /// <see cref="double.NaN"/> when the set holds only one class (or is empty): AUC is undefined there.
    /// </summary>
    /// <param name="scores">Any monotone score (probability or logit); must be finite.</param>
    /// <param name="labels">0 or 1 per exposure, same length as <paramref name="scores"/>.</param>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, or a score is not finite.</exception>
    public static double Compute(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels)
    {
        BinaryLabels.Validate(scores, labels, nameof(scores), nameof(labels));
        if (scores.Length == 0) return double.NaN;
        var keys = scores.ToArray();
        var ys = labels.ToArray();
        Array.Sort(keys, ys);
        return SortedAuc(keys, ys);
    }

    /// <summary>AUC of already ascending-sorted scores; labels validated by the caller. NaN if one class only.</summary>
    internal static double SortedAuc(ReadOnlySpan<float> sortedScores, ReadOnlySpan<float> labels)
    {
        // Walk tie groups in ascending score order. A positive beats every negative strictly below it and half of the
        // negatives tied with it: U = Σ_groups pos_g · (neg_below + neg_g / 2).
        double u = 0, negBelow = 0, pos = 0;
        int n = sortedScores.Length;
        int i = 0;
        while (i < n)
        {
            int j = i;
            double pg = 0, ng = 0;
            float s = sortedScores[i];
            while (j < n && sortedScores[j] == s)
            {
                if (labels[j] == 1f) pg++; else ng++;
                j++;
            }
            u += pg * (negBelow + 0.5 * ng);
            negBelow += ng;
            pos += pg;
            i = j;
        }
        double neg = negBelow;
        if (pos == 0 || neg == 0) return double.NaN;
        return u / (pos * neg);
    }
}
