namespace Mtfm.Engine.Evaluation;

/// <summary>Shared input validation for the metrics: labels must be exactly 0 or 1, scores finite.</summary>
internal static class BinaryLabels
{
    /// <summary>Throws unless every label is exactly 0 or 1 and every score is finite; lengths must match.</summary>
    public static void Validate(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels, string scoresName, string labelsName)
    {
        if (scores.Length != labels.Length)
            throw new ArgumentException($"{labelsName} has {labels.Length} entries but {scoresName} has {scores.Length}.", labelsName);
        for (int i = 0; i < labels.Length; i++)
        {
            float y = labels[i];
            if (y != 0f && y != 1f)
                throw new ArgumentException($"{labelsName}[{i}] = {y}: labels must be exactly 0 or 1.", labelsName);
            if (!float.IsFinite(scores[i]))
                throw new ArgumentException($"{scoresName}[{i}] = {scores[i]}: scores must be finite.", scoresName);
        }
    }
}
