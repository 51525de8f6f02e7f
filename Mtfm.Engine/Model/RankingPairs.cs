using Mtfm.Engine.Data;

namespace Mtfm.Engine.Model;

/// <summary>
/// The (positive, negative) exposure pairs of the within-user ranking term of the training objective
/// (<see cref="Training.TrainOptions.RankingLossWeight"/>): for one task, the T tokens of a batch that carry its label,
/// grouped by user; in a user's group with P positives and N negatives, positive number a (in T order) is paired with
/// the m = min(<see cref="PairsPerPositive"/>, N) negatives N[(a·m + t) mod N], t &lt; m (consecutive positives take
/// consecutive runs of negatives, so every negative is used once P·m ≥ N). A pure function of the batch: no random
/// draw, the same pairs on every backend and thread count.
/// </summary>
internal static class RankingPairs
{
    /// <summary>Negatives each positive is paired with at most (the cost stays linear in the batch).</summary>
    public const int PairsPerPositive = 8;

    /// <summary>The pairs of task <paramref name="task"/>: T-token indices, positive and negative, in matching order (both empty when no user has both labels).</summary>
    public static (int[] Positive, int[] Negative) For(JaggedBatch batch, int task)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int tasks = batch.TaskCount;
        if ((uint)task >= (uint)tasks) throw new ArgumentOutOfRangeException(nameof(task), task, $"task must lie in [0, {tasks}).");
        var groups = new Dictionary<int, (List<int> Pos, List<int> Neg)>();
        var order = new List<int>(); // users in order of their first labelled T token
        for (int j = 0; j < batch.TargetCount; j++)
        {
            if (batch.LabelMask[j * tasks + task] == 0) continue;
            int user = batch.TargetUser[j];
            if (!groups.TryGetValue(user, out var g))
            {
                groups[user] = g = (new List<int>(), new List<int>());
                order.Add(user);
            }
            (batch.Labels[j * tasks + task] > 0.5f ? g.Pos : g.Neg).Add(j);
        }
        var pos = new List<int>();
        var neg = new List<int>();
        foreach (int user in order)
        {
            var (p, n) = groups[user];
            if (p.Count == 0 || n.Count == 0) continue;
            int m = Math.Min(PairsPerPositive, n.Count);
            for (int a = 0; a < p.Count; a++)
                for (int t = 0; t < m; t++)
                {
                    pos.Add(p[a]);
                    neg.Add(n[(int)(((long)a * m + t) % n.Count)]);
                }
        }
        return (pos.ToArray(), neg.ToArray());
    }
}
