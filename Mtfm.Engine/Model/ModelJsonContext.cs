using System.Text.Json.Serialization;

namespace Mtfm.Engine.Model;

/// <summary>Source-generated JSON for model configuration (AOT-safe).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(MtfmConfig))]
internal sealed partial class ModelJsonContext : JsonSerializerContext;

