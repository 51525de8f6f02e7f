using Mtfm.Engine.Backends;
using Mtfm.Engine.Native;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;
using Mtfm.Engine.Model;
using Mtfm.Engine.IO;

namespace Mtfm.Cli.Commands;

/// <summary>`mtfm eval`: reload a checkpoint and report its metrics on a dataset's test window.</summary>
internal static class EvalCommand
{
    public static int Run(string modelPath, TrainRequest r)
    {
        string file = Directory.Exists(modelPath) ? Path.Combine(modelPath, "model.safetensors") : modelPath;
        IBackend backend;
        try
        {
            backend = TrainCommand.OpenBackend(r.Device, r.Threads, r.CudaAttention);
        }
        catch (CudaNotAvailableException ex)
        {
            Console.Error.WriteLine($"mtfm: --device {r.Device}: {ex.Message}");
            return 2;
        }
        using var owned = backend;
        var (model, stats) = MtfmCheckpoint.Load(file, backend);
        using (model)
        {
            // Feedback tokens follow the model: a data schema without feedback blocks of its own takes the blocks the model
            // was trained with (whichever rule and statistics cap --feedback used then), one trained without gets none.
            var data = PreparedData.Load(r with { FeedbackOf = model.Layout.Schema }, Console.Out);
            if (data.Store.Layout.Schema.ToJson() != model.Layout.Schema.ToJson())
                throw new ArgumentException($"The data's schema ({data.Store.Layout.Schema.Name}) differs from the schema the model in '{file}' was trained with ({model.Layout.Schema.Name}).");
            var predictions = r.Predictions is null ? null : new PredictionWriter(data.Store);
            var eval = ModelEvaluation.Evaluate(model, model.Config.Batches(data.Test, stats), predictions: predictions);
            TrainCommand.PrintTable(TrainCommand.MetricRows(model.Layout, eval));
            TrainCommand.WritePredictions(predictions, r.Predictions);
        }
        return 0;
    }
}
