using System.Text.Json.Serialization;

namespace Mtfm.Engine.Serving;

/// <summary>Source-generated JSON for scoring requests and responses (AOT-safe, no reflection).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(ScoreRequest))]
[JsonSerializable(typeof(ScoreResponse))]
internal sealed partial class ServingJsonContext : JsonSerializerContext;
