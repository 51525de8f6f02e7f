using System.Text.Json;

namespace Mtfm.Engine.Serving;

/// <summary>Scores of one request: per candidate (in request order) the probability of every task the scenario labels.</summary>
public sealed class ScoreResponse
{
    /// <summary>The request's user.</summary>
    public string? User { get; set; }

    /// <summary>The request's scenario.</summary>
    public string? Scenario { get; set; }

    /// <summary>Per candidate: task name → probability (e.g. <c>click</c> = p(click), <c>conversion</c> = p(click ∧ conversion)).</summary>
    public List<Dictionary<string, float>> Scores { get; set; } = [];

    /// <summary>The response as one line of JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ServingJsonContext.Default.ScoreResponse);

    /// <summary>Parses a response written by <see cref="ToJson"/>.</summary>
    public static ScoreResponse Parse(string json) =>
        JsonSerializer.Deserialize(json, ServingJsonContext.Default.ScoreResponse) ?? throw new JsonException("response is null");
}
