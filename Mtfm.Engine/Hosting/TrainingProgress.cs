namespace Mtfm.Engine.Hosting;

/// <summary>A progress report of <see cref="TrainedModel.Train"/>, sent after optimizer steps.</summary>
/// <param name="Epoch">The epoch, from 0.</param>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Steps the run would take without early stopping.</param>
/// <param name="Loss">Mean training loss of the latest steps.</param>
/// <param name="ExposuresPerSecond">Training throughput so far (validation time excluded).</param>
/// <param name="Elapsed">Training time so far.</param>
/// <param name="ValidGauc">The latest validation CTR GAUC; null before the first validation.</param>
public readonly record struct TrainingProgress(int Epoch, long Step, long TotalSteps, double Loss, double ExposuresPerSecond,
    TimeSpan Elapsed, double? ValidGauc);

/// <summary>What a training run did.</summary>
/// <param name="Steps">Optimizer steps taken.</param>
/// <param name="Epochs">Epochs begun (early stopping may end a run before <see cref="TrainingSettings.Epochs"/>).</param>
/// <param name="BestValidGauc">The best validation CTR GAUC; the model holds the weights of that evaluation.</param>
/// <param name="BestStep">The step of <paramref name="BestValidGauc"/>.</param>
/// <param name="TrainSeconds">Training time in seconds (validation excluded).</param>
/// <param name="ExposuresPerSecond">Training throughput.</param>
public sealed record TrainingSummary(long Steps, int Epochs, double BestValidGauc, long BestStep, double TrainSeconds, double ExposuresPerSecond);

/// <summary>The metrics of one (scenario, task) pair on a dataset part.</summary>
/// <param name="Scenario">The scenario name; null for the row that pools every scenario.</param>
/// <param name="Task">The task name (e.g. <c>click</c>, <c>conversion</c>).</param>
/// <param name="Exposures">Labelled exposures counted.</param>
/// <param name="Positives">Positive labels among them.</param>
/// <param name="Auc">ROC AUC (NaN when a class is missing).</param>
/// <param name="Gauc">Exposure-weighted mean of per-user AUCs over users with both classes (NaN when none).</param>
/// <param name="GaucUsers">Users that entered <paramref name="Gauc"/>.</param>
/// <param name="LogLoss">Mean binary cross-entropy.</param>
/// <param name="BayesOptimalAuc">The AUC of the true probabilities (synthetic data only; NaN otherwise).</param>
public sealed record TaskMetrics(string? Scenario, string Task, long Exposures, long Positives, double Auc, double Gauc,
    int GaucUsers, double LogLoss, double BayesOptimalAuc);
