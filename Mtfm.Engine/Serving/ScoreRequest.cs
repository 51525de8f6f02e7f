using System.Text.Json;

namespace Mtfm.Engine.Serving;

/// <summary>
/// One scoring request (spec §6): a user, the scenario to score in, the request time, the user's behaviour events and
/// the candidates. Feature values are raw (as in an event log): numbers or strings, encoded by the model's schema.
/// JSON (camelCase, unknown keys rejected) through <see cref="Parse"/> / <see cref="ToJson"/>; see docs/serving.md.
/// </summary>
public sealed class ScoreRequest
{
    /// <summary>User key (echoed in the response; the model sees users only through features such as <c>user_id</c>).</summary>
    public string? User { get; set; }

    /// <summary>Scenario name (one of the schema's scenarios); every candidate is scored in it.</summary>
    public string? Scenario { get; set; }

    /// <summary>Request time in unix seconds: the candidates' token time. It fixes the window (H = events before the window, R = events inside it strictly before this time).</summary>
    public long? Time { get; set; }

    /// <summary>Optional feature values shared by every candidate (typically the scenario's user and context features); a feature may not appear both here and in a candidate.</summary>
    public Dictionary<string, JsonElement>? Features { get; set; }

    /// <summary>The user's behaviour events, any sequence, in log order (events with equal times keep this order). Events at or after <see cref="Time"/> are validated but not visible to the candidates, so they do not enter the instance.</summary>
    public List<BehaviorEvent>? Events { get; set; }

    /// <summary>
    /// The user's earlier exposures with their outcomes, in log order, for scenarios whose schema declares a
    /// <c>feedback</c> block: each becomes the same feedback tokens as in training (docs/data.md, "Feedback tokens"), carrying only the
    /// outcomes observable at each token's time (an outcome revealed by a behaviour is matched among <see cref="Events"/>).
    /// </summary>
    public List<PastExposure>? Exposures { get; set; }

    /// <summary>The candidates: raw values of the scenario's features by feature name (at least one candidate).</summary>
    public List<Dictionary<string, JsonElement>>? Candidates { get; set; }

    /// <summary>Parses one request from JSON; malformed JSON raises <see cref="ScoreRequestException"/> naming the JSON path.</summary>
    public static ScoreRequest Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        ScoreRequest? r;
        try
        {
            r = JsonSerializer.Deserialize(json, ServingJsonContext.Default.ScoreRequest);
        }
        catch (JsonException ex)
        {
            string path = string.IsNullOrEmpty(ex.Path) || ex.Path == "$" ? "request" : ex.Path.StartsWith("$.", StringComparison.Ordinal) ? ex.Path[2..] : ex.Path;
            if (path.Length == 0 || path.EndsWith('.')) path += "\"\""; // an empty key (found by fuzzing): name it "" rather than nothing
            throw new ScoreRequestException(path, Explain(path, ex.Message));
        }
        return r ?? throw new ScoreRequestException("request", "is null");
    }

    /// <summary>The request as one line of JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ServingJsonContext.Default.ScoreRequest);

    private static string Explain(string path, string message)
    {
        if (message.Contains("could not be mapped to any .NET member", StringComparison.Ordinal))
            return path.Contains('.', StringComparison.Ordinal)
                ? path.StartsWith("exposures", StringComparison.Ordinal) ? "unknown field (an exposure has scenario, time, features, labels)"
                : "unknown field (an event has sequence, time, features)"
                : "unknown field (a request has user, scenario, time, features, events, exposures, candidates)";
        if (message.Contains("could not be converted", StringComparison.Ordinal))
        {
            string last = path[(path.LastIndexOfAny(['.', ']']) + 1)..];
            string expected = last switch
            {
                "time" => "an integer (unix seconds)",
                "user" or "scenario" or "sequence" => "a string",
                "features" => "an object of feature values",
                "events" => "an array of events",
                "exposures" => "an array of exposures",
                "labels" => "an object of labels (0, 1 or null by task)",
                "candidates" => "an array of objects of feature values",
                "" => path.StartsWith("events", StringComparison.Ordinal) ? "an event object"
                    : path.StartsWith("exposures", StringComparison.Ordinal) && path.IndexOf('.') < 0 ? "an exposure object" : "an object of feature values",
                _ => "another type",
            };
            return path == "request" ? "expected a JSON object" : $"wrong JSON type, expected {expected}";
        }
        int i = message.IndexOf(" Path:", StringComparison.Ordinal);
        return "invalid JSON: " + (i > 0 ? message[..i].TrimEnd() : message);
    }
}

/// <summary>One behaviour event of the user: its sequence, its time and its raw feature values.</summary>
public sealed class BehaviorEvent
{
    /// <summary>Sequence name (one of the schema's sequences).</summary>
    public string? Sequence { get; set; }

    /// <summary>Event time in unix seconds.</summary>
    public long? Time { get; set; }

    /// <summary>Raw values of the sequence's features by feature name.</summary>
    public Dictionary<string, JsonElement>? Features { get; set; }
}

/// <summary>
/// One earlier exposure of the user with its outcomes (a request's <see cref="ScoreRequest.Exposures"/>): the scenario,
/// the exposure time, the raw values of the features its feedback tokens take (and of any <c>match</c> features), and
/// the labels known for it.
/// </summary>
public sealed class PastExposure
{
    /// <summary>Scenario name; the scenario must declare a <c>feedback</c> block.</summary>
    public string? Scenario { get; set; }

    /// <summary>Exposure time in unix seconds.</summary>
    public long? Time { get; set; }

    /// <summary>Raw values of the scenario's features by feature name (at least those its feedback block names).</summary>
    public Dictionary<string, JsonElement>? Features { get; set; }

    /// <summary>
    /// Outcome labels by task name: 0, 1 (or false, true), or null / absent when not known. Each outcome enters the tokens
    /// only from the time the schema says it is observable (at the exposure, after <c>delaySeconds</c>, or at the first
    /// matching <c>revealedBy</c> behaviour among the request's events).
    /// </summary>
    public Dictionary<string, JsonElement>? Labels { get; set; }
}
