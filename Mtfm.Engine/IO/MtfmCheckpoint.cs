using System.Globalization;
using System.Text.Json;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

namespace Mtfm.Engine.IO;

/// <summary>
/// Saves and loads a trained <see cref="MtfmModel"/> as safetensors: every parameter by name, the numeric-feature
/// statistics, and in the metadata the model configuration, the dataset schema (with its vocabularies) and the seed.
/// The writer adds a SHA-256 per tensor; loading verifies them and refuses truncated or altered files.
/// </summary>
internal static class MtfmCheckpoint
{
    private const string ConfigKey = "mtfm.config";
    private const string SchemaKey = "mtfm.schema";
    private const string FormatKey = "mtfm.format";
    private const string FormatValue = "mtfm-model/1";

    /// <summary>Writes <paramref name="model"/> and <paramref name="stats"/> to <paramref name="path"/> (atomically).</summary>
    public static void Save(string path, MtfmModel model, NumericStats stats)
    {
        var w = new SafetensorsWriter();
        var host = new float[0];
        foreach (var p in model.Parameters)
        {
            if (host.Length != p.Value.Length) host = new float[p.Value.Length];
            model.Backend.Download<float>(p.Value, host);
            var shape = new long[p.Value.Rank];
            for (int i = 0; i < shape.Length; i++) shape[i] = p.Value.Shape[i];
            w.AddFloat32(p.Name!, host, shape);
        }
        w.AddFloat32("numeric.mean", stats.Mean, stats.Mean.Length);
        w.AddFloat32("numeric.std", stats.Std, stats.Std.Length);
        if (model.Config.PopulationStatistics)
        {
            var pop = model.Population ?? throw new InvalidOperationException(
                "the model reads population statistics but has no state to save with it (MtfmModel.Population is null).");
            PopulationCheckpoint.Write(pop, w);
        }
        w.SetMetadata(FormatKey, FormatValue);
        w.SetMetadata(ConfigKey, JsonSerializer.Serialize(model.Config, ModelJsonContext.Default.MtfmConfig));
        w.SetMetadata(SchemaKey, model.Layout.Schema.ToJson());
        w.SetMetadata("mtfm.parameters", model.ParameterCount.ToString(CultureInfo.InvariantCulture));
        w.Save(path);
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="Save"/> onto <paramref name="backend"/>. Throws
    /// <see cref="CheckpointFormatException"/> naming the file for anything missing, mis-shaped or altered.
    /// </summary>
    public static (MtfmModel Model, NumericStats Stats) Load(string path, IBackend backend)
    {
        var file = SafetensorsFile.Load(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata '{key}' is missing (not an MTFM model checkpoint?).");
        if (Meta(FormatKey) != FormatValue)
            throw new CheckpointFormatException(path, $"format '{Meta(FormatKey)}' is not '{FormatValue}'.");
        MtfmConfig config;
        DatasetSchema schema;
        try
        {
            config = ReadConfig(Meta(ConfigKey)) ?? throw new CheckpointFormatException(path, $"metadata '{ConfigKey}' is null.");
            schema = DatasetSchema.Parse(Meta(SchemaKey), $"{path}:{SchemaKey}");
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException(path, $"metadata does not parse: {ex.Message}");
        }
        var layout = new DataLayout(schema);
        var model = new MtfmModel(backend, config, layout, seed: 0);
        try
        {
            foreach (var p in model.Parameters)
            {
                if (!file.Contains(p.Name!)) throw new CheckpointFormatException(path, $"tensor '{p.Name}' is missing.");
                var info = file.GetInfo(p.Name!);
                if (!info.Shape.SequenceEqual(p.Value.Shape.ToArray().Select(x => (long)x)))
                    throw new CheckpointFormatException(path, $"tensor '{p.Name}' has shape [{string.Join(", ", info.Shape)}], the model expects {p.Value.ShapeString}.");
                backend.Upload<float>(file.ReadFloat32(p.Name!), p.Value);
            }
            var stats = new NumericStats(layout, file.ReadFloat32("numeric.mean"), file.ReadFloat32("numeric.std"));
            if (stats.Mean.Length != schema.Features.Count || stats.Std.Length != schema.Features.Count)
                throw new CheckpointFormatException(path, $"numeric statistics have {stats.Mean.Length} entries for {schema.Features.Count} features.");
            if (config.PopulationStatistics) model.Population = PopulationCheckpoint.Read(file, layout, path, config.UserRecentRatePrior, config.UserRatesAtWindowStart);
            return (model, stats);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The configuration of a checkpoint's metadata. A field added after the checkpoint was written is absent from its
    /// JSON, and the source-generated reader then leaves it at default(T) rather than at its initializer, so such fields
    /// get the value the checkpoint was trained with here: <see cref="MtfmConfig.UserRecentRatePrior"/> = <see cref="PopulationStatistics.PriorStrength"/> (10).
    /// </summary>
    internal static MtfmConfig? ReadConfig(string json)
    {
        var config = JsonSerializer.Deserialize(json, ModelJsonContext.Default.MtfmConfig);
        if (config is null) return null;
        using var doc = JsonDocument.Parse(json);
        if (!doc.RootElement.TryGetProperty("userRecentRatePrior", out _)) config = config with { UserRecentRatePrior = PopulationStatistics.PriorStrength };
        return config;
    }
}
