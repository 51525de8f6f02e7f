using System.Text.Json;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.Model;
using Mtfm.Engine.Serving;
using Mtfm.Engine.Training;
using Mtfm.Engine.IO;

namespace Mtfm.Engine.Hosting;

/// <summary>
/// An MTFM model with its weights on a device: trained with <see cref="Train"/> or loaded from a checkpoint with
/// <see cref="Load"/>. Evaluate it on a dataset part (<see cref="Evaluate"/>), save it (<see cref="Save"/>, the format
/// <c>mtfm train</c> writes and <see cref="Scorer.Load(string, int, int)"/> reads) and score requests through a <see cref="Scorer"/>
/// (<see cref="CreateScorer"/>). Dispose it to free the weights and the device. Not thread-safe.
/// </summary>
public sealed class TrainedModel : IDisposable
{
    private const string ModelFile = "model.safetensors";
    private readonly IBackend _backend;
    private readonly MtfmModel _model;
    private readonly NumericStats _stats;
    private bool _disposed;

    private TrainedModel(IBackend backend, MtfmModel model, NumericStats stats, ComputeDevice device, TrainingSummary? summary)
    {
        _backend = backend;
        _model = model;
        _stats = stats;
        Device = device;
        Summary = summary;
    }

    /// <summary>
    /// Trains a model on <paramref name="data"/>'s training part, validating on its validation part after every epoch
    /// (early stopping restores the best weights). <paramref name="progress"/> receives reports on the training thread;
    /// <paramref name="cancellationToken"/> is checked after every optimizer step and ends the run with an
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <param name="data">The events; its schema needs a temporal split.</param>
    /// <param name="settings">Network and optimisation settings; null = the defaults (the <c>tiny</c> preset).</param>
    /// <param name="device">Where to train; null = <see cref="ComputeDevice.Cpu"/> with one thread per core.</param>
    /// <param name="progress">Optional progress sink.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    /// <exception cref="ArgumentException">Inconsistent settings.</exception>
    /// <exception cref="InvalidOperationException">The schema has no split, the training part is empty, or the loss diverged.</exception>
    /// <exception cref="Native.CudaNotAvailableException">A CUDA device was asked for and none is usable.</exception>
    public static TrainedModel Train(EventDataset data, TrainingSettings? settings = null, ComputeDevice? device = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        settings ??= new TrainingSettings();
        device ??= ComputeDevice.Cpu();
        var config = settings.ResolveModel();
        var options = new TrainOptions { Epochs = settings.Epochs, BatchTokens = settings.BatchTokens, LearningRate = settings.LearningRate, EmbeddingLearningRate = settings.EmbeddingLearningRate,
            RankingLossWeight = settings.RankingLossWeight, Seed = settings.Seed };
        options.Validate();
        var train = data.Part(DatasetPart.Train);
        if (train.Count == 0) throw new InvalidOperationException($"{data.Description}: the training part (windows before split.validStart) holds no exposures.");
        var valid = data.Part(DatasetPart.Valid);
        var stats = data.TrainingStatistics();
        cancellationToken.ThrowIfCancellationRequested();
        var backend = device.Open();
        MtfmModel? model = null;
        try
        {
            model = new MtfmModel(backend, config, data.Store.Layout, settings.Seed);
            var trainer = new MtfmTrainer(model, options) { StepCompleted = _ => cancellationToken.ThrowIfCancellationRequested() };
            var r = trainer.Train(train, config.Batches(train, stats), config.Batches(valid, stats), p =>
                progress?.Report(new TrainingProgress(p.Epoch, p.Step, p.TotalSteps, p.Loss, p.ExposuresPerSecond, p.Elapsed, p.ValidGauc)));
            var summary = new TrainingSummary(r.Steps, r.Epochs, r.BestValidGauc, r.BestStep, r.TrainSeconds, r.ExposuresPerSecond);
            return new TrainedModel(backend, model, stats, device, summary);
        }
        catch
        {
            model?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint written by <see cref="Save"/> or <c>mtfm train</c>: a run directory (its
    /// <c>model.safetensors</c>) or the file itself. Throws <see cref="IO.CheckpointFormatException"/> naming the file
    /// when it is truncated, altered or not an MTFM checkpoint.
    /// </summary>
    /// <param name="path">A run directory or a <c>.safetensors</c> file.</param>
    /// <param name="device">Where to load the weights; null = the CPU with one thread per core.</param>
    public static TrainedModel Load(string path, ComputeDevice? device = null)
    {
        string file = ResolveFile(path);
        device ??= ComputeDevice.Cpu();
        var backend = device.Open();
        try
        {
            var (model, stats) = MtfmCheckpoint.Load(file, backend);
            return new TrainedModel(backend, model, stats, device, summary: null);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>The device the weights live on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>What training did; null for a model loaded from a checkpoint.</summary>
    public TrainingSummary? Summary { get; }

    /// <summary>The network configuration.</summary>
    public MtfmConfig Config => Live()._model.Config;

    /// <summary>The dataset schema the model was trained with (its vocabularies included).</summary>
    public DatasetSchema Schema => Live()._model.Layout.Schema;

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount => Live()._model.ParameterCount;

    /// <summary>
    /// Scores every exposure of <paramref name="data"/>'s <paramref name="part"/> and returns AUC, GAUC and log-loss
    /// per (scenario, task) pair, plus one row per task pooling every scenario (<see cref="TaskMetrics.Scenario"/> null).
    /// Pairs without labelled exposures are left out.
    /// </summary>
    /// <exception cref="ArgumentException">The dataset's schema differs from the model's.</exception>
    public IReadOnlyList<TaskMetrics> Evaluate(EventDataset data, DatasetPart part = DatasetPart.Test)
    {
        ArgumentNullException.ThrowIfNull(data);
        Live();
        if (data.Schema.ToJson() != _model.Layout.Schema.ToJson())
            throw new ArgumentException($"{data.Description}: the data's schema ({data.Schema.Name}) differs from the schema the model was trained with ({_model.Layout.Schema.Name}).", nameof(data));
        var eval = ModelEvaluation.Evaluate(_model, _model.Config.Batches(data.Part(part), _stats));
        var schema = _model.Layout.Schema;
        var rows = new List<TaskMetrics>(eval.Model.Count);
        for (int i = 0; i < eval.Model.Count; i++)
        {
            var m = eval.Model[i];
            if (m.Exposures == 0) continue;
            rows.Add(new TaskMetrics(m.Scenario < 0 ? null : schema.Scenarios[m.Scenario].Name, schema.Tasks[m.Task], m.Exposures, m.Positives,
                m.Auc, m.Gauc, m.GaucUsers, m.LogLoss, eval.Bayes?[i].Auc ?? double.NaN));
        }
        return rows;
    }

    /// <summary>
    /// Writes the checkpoint into the directory <paramref name="directory"/> (created when missing): <c>model.safetensors</c>
    /// (weights, numeric statistics, configuration and schema, a SHA-256 per tensor; written atomically) and
    /// <c>config.json</c>. The directory is what <see cref="Load"/>, <see cref="Scorer.Load(string, int, int)"/> and <c>mtfm score --model</c> read.
    /// </summary>
    /// <returns>The path of the written <c>model.safetensors</c>.</returns>
    public string Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Live();
        Directory.CreateDirectory(directory);
        string file = Path.Combine(directory, ModelFile);
        MtfmCheckpoint.Save(file, _model, _stats);
        File.WriteAllText(Path.Combine(directory, "config.json"), JsonSerializer.Serialize(_model.Config, ModelJsonContext.Default.MtfmConfig));
        return file;
    }

    /// <summary>
    /// A <see cref="Scorer"/> over a CPU copy of these weights (independent of this object: dispose both). Its scores are
    /// bit for bit those of <c>Scorer.Load</c> on the saved checkpoint with the same thread count.
    /// </summary>
    /// <param name="threads">CPU threads of the scorer (0 = one per core).</param>
    /// <param name="contextCacheMegabytes">Memory bound of cached H/R contexts (0 = no cache).</param>
    public Scorer CreateScorer(int threads = 0, int contextCacheMegabytes = 256)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        ArgumentOutOfRangeException.ThrowIfNegative(contextCacheMegabytes);
        Live();
        string dir = Path.Combine(Path.GetTempPath(), "mtfm-scorer-" + Guid.NewGuid().ToString("N"));
        try
        {
            return Scorer.Load(Save(dir), threads, contextCacheMegabytes);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Frees the weights and the device.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _model.Dispose();
        _backend.Dispose();
    }

    private TrainedModel Live()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return this;
    }

    private static string ResolveFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Directory.Exists(path) ? Path.Combine(path, ModelFile) : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"model '{file}' does not exist (expected a run directory or a .safetensors file).", file);
        return file;
    }
}
