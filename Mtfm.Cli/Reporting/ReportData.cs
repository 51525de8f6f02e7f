namespace Mtfm.Cli.Reporting;

/// <summary>One point of a loss curve.</summary>
/// <param name="Step">Optimizer step (x axis).</param>
/// <param name="Loss">Loss value at that step.</param>
internal sealed record LossPoint(long Step, double Loss);

/// <summary>Training and validation loss over steps (validation is usually sparser).</summary>
internal sealed record TrainingCurves(IReadOnlyList<LossPoint> Train, IReadOnlyList<LossPoint> Validation);

/// <summary>Metrics of one (scenario, task) on the evaluation window, with the Bayes-optimal AUC where it is known (synthetic data).</summary>
/// <param name="Scenario">Scenario name ("all" for the pooled row).</param>
/// <param name="Task">Task name (ctr, ctcvr …).</param>
/// <param name="Exposures">Exposures carrying the label.</param>
/// <param name="Positives">Of which positive.</param>
/// <param name="Auc">AUC (NaN if undefined).</param>
/// <param name="Gauc">GAUC (NaN if undefined).</param>
/// <param name="GaucUsers">Users in GAUC.</param>
/// <param name="LogLoss">Log-loss.</param>
/// <param name="BayesOptimalAuc">AUC of the true probabilities, or NaN when unknown (real data).</param>
/// <param name="ExpectedAuc">The model's AUC in expectation over label draws from the true probabilities (free of the
/// one test draw's noise), or NaN when unknown (real data).</param>
internal sealed record ScenarioMetricsRow(string Scenario, string Task, long Exposures, long Positives, double Auc, double Gauc,
    int GaucUsers, double LogLoss, double BayesOptimalAuc, double ExpectedAuc = double.NaN);

/// <summary>A setting shown in the report (name → value as text).</summary>
internal sealed record ReportSetting(string Name, string Value);

/// <summary>Everything a run report shows.</summary>
/// <param name="Title">Report heading.</param>
/// <param name="CreatedUtc">When the report was written.</param>
/// <param name="Settings">Configuration and environment (model size, device, seed …).</param>
/// <param name="Metrics">Evaluation rows.</param>
/// <param name="Curves">Loss curves (may be empty).</param>
/// <param name="TrainSeconds">Wall time of training.</param>
/// <param name="ExposuresPerSecond">Training throughput.</param>
internal sealed record RunReport(string Title, DateTimeOffset CreatedUtc, IReadOnlyList<ReportSetting> Settings,
    IReadOnlyList<ScenarioMetricsRow> Metrics, TrainingCurves Curves, double TrainSeconds, double ExposuresPerSecond);
