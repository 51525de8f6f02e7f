using System.Text.Json;
using System.Text.Json.Serialization;

namespace Mtfm.Cli.Reporting;

/// <summary>Source-generated JSON for metrics.json (AOT-safe). NaN is written as null (JSON has no NaN) and read back as NaN.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    Converters = [typeof(NanAsNullConverter)])]
[JsonSerializable(typeof(RunReport))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;

/// <summary>Writes NaN/±∞ doubles as null and reads null as NaN.</summary>
internal sealed class NanAsNullConverter : JsonConverter<double>
{
    public override bool HandleNull => true;

    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.Null ? double.NaN : reader.GetDouble();

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
    {
        if (double.IsFinite(value)) writer.WriteNumberValue(value);
        else writer.WriteNullValue();
    }
}
