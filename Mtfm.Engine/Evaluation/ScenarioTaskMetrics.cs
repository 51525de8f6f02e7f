namespace Mtfm.Engine.Evaluation;

/// <summary>Metrics of one (scenario, task) cell, or of one task pooled over all scenarios (<see cref="Scenario"/> = -1).</summary>
/// <param name="Scenario">Scenario id, or -1 for the pooled row of a task.</param>
/// <param name="Task">Task index (e.g. 0 = CTR, 1 = CTCVR).</param>
/// <param name="Exposures">Exposures that carried this task's label.</param>
/// <param name="Positives">Of those, exposures with label 1.</param>
/// <param name="Auc">Exact AUC; NaN if the cell holds one class only.</param>
/// <param name="Gauc">Exposure-weighted per-user AUC over users with both classes; NaN if there are none.</param>
/// <param name="GaucUsers">Users that entered GAUC.</param>
/// <param name="LogLoss">Mean clipped log-loss (eps <see cref="Evaluation.LogLoss.DefaultEpsilon"/>); NaN if empty.</param>
internal sealed record ScenarioTaskMetrics(int Scenario, int Task, long Exposures, long Positives, double Auc, double Gauc, int GaucUsers, double LogLoss)
{
    /// <summary>
    /// Expected AUC over label draws from the data's true probabilities (<see cref="BayesOptimalAuc.Expected(ReadOnlySpan{float}, ReadOnlySpan{float})"/>),
    /// where the data has them (generated logs); NaN otherwise.
    /// </summary>
    public double ExpectedAuc { get; init; } = double.NaN;
}
