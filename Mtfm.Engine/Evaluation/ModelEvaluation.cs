using Mtfm.Engine.Data;
using Mtfm.Engine.Model;

namespace Mtfm.Engine.Evaluation;

/// <summary>Metrics of a model on one data part, and the synthetic data's Bayes-optimal metrics beside them.</summary>
internal sealed record EvaluationResult(IReadOnlyList<ScenarioTaskMetrics> Model, IReadOnlyList<ScenarioTaskMetrics>? Bayes);

/// <summary>Scores every exposure of a data part with a model and computes AUC, GAUC and log-loss per (scenario, task).</summary>
internal static class ModelEvaluation
{
    /// <summary>
    /// Scores every exposure of <paramref name="data"/> with <paramref name="model"/> (batches of at most
    /// <paramref name="batchTokens"/> tokens); with <paramref name="predictions"/> every exposure's probabilities are
    /// also collected there. Where the data carries true probabilities (synthetic data) their metrics come beside.
    /// </summary>
    public static EvaluationResult Evaluate(MtfmModel model, BatchBuilder data, int batchTokens = 8192, PredictionWriter? predictions = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        var layout = model.Layout;
        int tasks = layout.TaskCount;
        // Data with true probabilities (generated logs) brings them in every batch: the model's expected AUC too.
        bool known = data.HasTrueProbabilities;
        var acc = new MetricAccumulator(layout.ScenarioCount, tasks, known);
        var bayes = known ? new MetricAccumulator(layout.ScenarioCount, tasks) : null;
        foreach (var batch in data.Batches(batchTokens))
        {
            var probs = model.Score(batch);
            predictions?.Add(batch, probs);
            var users = new long[batch.TargetCount];
            for (int j = 0; j < users.Length; j++) users[j] = batch.TargetUser[j];
            var truth = known ? batch.TrueProbabilities! : default(ReadOnlySpan<float>);
            acc.Add(probs, batch.Labels, batch.LabelMask, users, batch.TargetScenario, truth);
            bayes?.Add(truth, batch.Labels, batch.LabelMask, users, batch.TargetScenario);
        }
        return new EvaluationResult(acc.ComputeAll(), bayes?.ComputeAll());
    }
}
