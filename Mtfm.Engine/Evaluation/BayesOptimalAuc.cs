namespace Mtfm.Engine.Evaluation;

/// <summary>
/// The best AUC any model can reach on a synthetic set whose true click probabilities are known: the AUC of the
/// true probability used as the score against the labels that were actually drawn. A model's AUC above it on the
/// same exposures means leakage or luck; the gap below it is what is left to learn.
/// </summary>
internal static class BayesOptimalAuc
{
    /// <summary>AUC of <paramref name="trueProbabilities"/> as the score against the drawn <paramref name="labels"/>; NaN if one class only.</summary>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, or a probability is outside [0, 1].</exception>
    public static double Compute(ReadOnlySpan<float> trueProbabilities, ReadOnlySpan<float> labels)
    {
        for (int i = 0; i < trueProbabilities.Length; i++)
        {
            float p = trueProbabilities[i];
            if (!(p >= 0f && p <= 1f))
                throw new ArgumentException($"trueProbabilities[{i}] = {p}: must be in [0, 1].", nameof(trueProbabilities));
        }
        return Auc.Compute(trueProbabilities, labels);
    }

    /// <summary>
    /// The expected Bayes-optimal AUC before labels are drawn (ratio of expectations): Σ_{i≠j} p_i(1−p_j)·[p_i &gt; p_j or ½ if equal]
    /// / Σ_{i≠j} p_i(1−p_j). Independent of the label draw, so it is a noise-free anchor for small evaluation sets. O(n log n).
    /// NaN when every probability is 0 or every one is 1.
    /// </summary>
    /// <exception cref="ArgumentException">A probability is outside [0, 1].</exception>
    public static double Expected(ReadOnlySpan<float> trueProbabilities) => Expected(trueProbabilities, trueProbabilities);

    /// <summary>
    /// The expected AUC of <paramref name="scores"/> when each label is drawn from <paramref name="trueProbabilities"/>
    /// (ratio of expectations): Σ_{i≠j} p_i(1−p_j)·[s_i &gt; s_j or ½ if equal] / Σ_{i≠j} p_i(1−p_j). Independent of the
    /// label draw that one test set happens to hold, so two models scored on the same exposures compare without the
    /// draw's noise; with the true probabilities as the scores it is the expected Bayes-optimal AUC. O(n log n). NaN when
    /// every probability is 0 or every one is 1.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths differ, a probability is outside [0, 1], or a score is NaN.</exception>
    public static double Expected(ReadOnlySpan<float> scores, ReadOnlySpan<float> trueProbabilities)
    {
        int n = trueProbabilities.Length;
        if (scores.Length != n) throw new ArgumentException($"scores has {scores.Length} entries, trueProbabilities {n}.", nameof(scores));
        var p = trueProbabilities.ToArray();
        var s = scores.ToArray();
        for (int i = 0; i < n; i++)
        {
            if (!(p[i] >= 0f && p[i] <= 1f))
                throw new ArgumentException($"trueProbabilities[{i}] = {p[i]}: must be in [0, 1].", nameof(trueProbabilities));
            if (float.IsNaN(s[i])) throw new ArgumentException($"scores[{i}] is NaN.", nameof(scores));
        }
        Array.Sort(s, p);
        double num = 0, negBelow = 0, totalPos = 0, totalNeg = 0, self = 0;
        int a = 0;
        while (a < n)
        {
            int b = a;
            double pg = 0, ng = 0, selfG = 0;
            while (b < n && s[b] == s[a])
            {
                double pi = p[b];
                pg += pi;
                ng += 1 - pi;
                selfG += pi * (1 - pi);
                b++;
            }
            // Pairs inside the group (i≠j) are ties: half credit; remove the i=j terms.
            num += pg * negBelow + 0.5 * (pg * ng - selfG);
            negBelow += ng;
            totalPos += pg;
            totalNeg += ng;
            self += selfG;
            a = b;
        }
        double den = totalPos * totalNeg - self;
        return den > 0 ? num / den : double.NaN;
    }
}
