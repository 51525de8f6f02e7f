using Mtfm.Engine.Evaluation;

namespace Mtfm.Engine.Training;

/// <summary>
/// The training objective evaluated on a data part, on the scale of the training loss: per task the mean binary
/// cross-entropy over the exposures carrying its label, pooled across scenarios (or over the one trained scenario),
/// summed over tasks (weights 1) — what <see cref="Model.MtfmModel.Forward"/> minimises per batch. Training and
/// validation loss curves report this same quantity, so they can be compared directly.
/// </summary>
internal static class TrainingObjective
{
    /// <summary>The objective from evaluation metrics: Σ over tasks of the log-loss of the pooled row (Scenario −1), or of <paramref name="onlyScenario"/>'s rows. Tasks without labelled exposures add nothing (as in training, where their mean is over an empty mask).</summary>
    public static double FromMetrics(IReadOnlyList<ScenarioTaskMetrics> metrics, int? onlyScenario = null)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        int watched = onlyScenario ?? -1;
        double sum = 0;
        foreach (var m in metrics)
            if (m.Scenario == watched && m.Exposures > 0 && double.IsFinite(m.LogLoss)) sum += m.LogLoss;
        return sum;
    }
}
