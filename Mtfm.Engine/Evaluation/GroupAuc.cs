namespace Mtfm.Engine.Evaluation;

/// <summary>The result of <see cref="GroupAuc.Compute"/>.</summary>
/// <param name="Value">Σ_u n_u·AUC_u / Σ_u n_u over users with both classes; NaN when no user has both.</param>
/// <param name="UsersCounted">Users that have at least one positive and one negative (the ones averaged).</param>
/// <param name="UsersSkipped">Users with a single class (excluded: their AUC is undefined).</param>
/// <param name="ExposuresCounted">Σ n_u over the counted users (the denominator of the weights).</param>
internal readonly record struct GroupAucResult(double Value, int UsersCounted, int UsersSkipped, long ExposuresCounted);

/// <summary>
/// GAUC: per-user AUC averaged with exposure-count weights, over the users that have both classes. A user with only
/// positives or only negatives has no defined AUC and is excluded (counted in <see cref="GroupAucResult.UsersSkipped"/>),
/// and their exposures do not enter the weights. O(n log n).
/// </summary>
internal static class GroupAuc
{
    /// <summary>Computes GAUC of <paramref name="scores"/> vs <paramref name="labels"/> grouped by <paramref name="userIds"/>.</summary>
    /// <exception cref="ArgumentException">Lengths differ, a label is not 0/1, or a score is not finite.</exception>
    public static GroupAucResult Compute(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels, ReadOnlySpan<long> userIds)
    {
        BinaryLabels.Validate(scores, labels, nameof(scores), nameof(labels));
        if (userIds.Length != scores.Length)
            throw new ArgumentException($"userIds has {userIds.Length} entries but scores has {scores.Length}.", nameof(userIds));
        int n = scores.Length;
        // Sort an index permutation by (user, score); ties on score keep any order (AUC handles ties by groups).
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var users = userIds.ToArray();
        var sc = scores.ToArray();
        Array.Sort(order, (a, b) =>
        {
            int c = users[a].CompareTo(users[b]);
            return c != 0 ? c : sc[a].CompareTo(sc[b]);
        });
        var sortedScores = new float[n];
        var sortedLabels = new float[n];
        for (int i = 0; i < n; i++)
        {
            sortedScores[i] = sc[order[i]];
            sortedLabels[i] = labels[order[i]];
        }
        double weighted = 0;
        long exposures = 0;
        int counted = 0, skipped = 0;
        int start = 0;
        while (start < n)
        {
            long u = users[order[start]];
            int end = start + 1;
            while (end < n && users[order[end]] == u) end++;
            double auc = Auc.SortedAuc(sortedScores.AsSpan(start, end - start), sortedLabels.AsSpan(start, end - start));
            if (double.IsNaN(auc)) skipped++;
            else
            {
                counted++;
                long nu = end - start;
                exposures += nu;
                weighted += nu * auc;
            }
            start = end;
        }
        return new GroupAucResult(exposures == 0 ? double.NaN : weighted / exposures, counted, skipped, exposures);
    }
}
