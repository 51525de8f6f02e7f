namespace Mtfm.Engine.Serving;

/// <summary>A scoring request that cannot be scored. The message starts with the offending field's path, e.g. <c>candidates[3].item_id: 'abc' is not an integer</c>.</summary>
public sealed class ScoreRequestException : ArgumentException
{
    /// <summary>Creates the exception for field <paramref name="field"/>.</summary>
    public ScoreRequestException(string field, string problem) : base($"{field}: {problem}") => Field = field;

    /// <summary>Path of the offending field (<c>scenario</c>, <c>events[2].features.price</c>, <c>candidates[3].item_id</c>, …).</summary>
    public string Field { get; }
}
