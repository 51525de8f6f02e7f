using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers.LightGbm;
using Mtfm.Engine.Data;
using Mtfm.Engine.Evaluation;

namespace Mtfm.Baselines;

/// <summary>Settings of the LightGBM baseline (defaults are generic, not tuned to a dataset).</summary>
internal sealed record LightGbmOptions
{
    /// <summary>Most boosting rounds per task (early stopping on the validation windows may end sooner).</summary>
    public int Iterations { get; init; } = 500;
    /// <summary>Leaves per tree.</summary>
    public int Leaves { get; init; } = 31;
    /// <summary>Shrinkage.</summary>
    public double LearningRate { get; init; } = 0.05;
    /// <summary>Minimum training exposures per leaf.</summary>
    public int MinExamplesPerLeaf { get; init; } = 50;
    /// <summary>Stop after this many rounds without a better validation log-loss (0 = never).</summary>
    public int EarlyStoppingRounds { get; init; } = 30;
    /// <summary>Seed of LightGBM's sampling.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Threads (0 = LightGBM's default).</summary>
    public int Threads { get; init; }
    /// <summary>The causal statistics settings.</summary>
    public CausalStatisticsOptions Statistics { get; init; } = new();
}

/// <summary>What <see cref="LightGbmBaseline.Train"/> produced.</summary>
internal sealed class LightGbmResult
{
    /// <summary>Predicted probability per (exposure index, task), row-major, for every exposure; NaN only for a task whose training windows hold one class (no model).</summary>
    public required float[] Probabilities { get; init; }
    /// <summary>Metrics on the test windows per (scenario, task), then pooled per task (<see cref="MetricAccumulator.ComputeAll"/>).</summary>
    public required IReadOnlyList<ScenarioTaskMetrics> Test { get; init; }
    /// <summary>Event ids of the test windows' exposures, in log order; their rows of <see cref="Probabilities"/> are at <see cref="EventStore.ExposureIndexOf"/>.</summary>
    public required int[] TestEvents { get; init; }
    /// <summary>The same metrics for the true probabilities, where the store has them (synthetic data); otherwise null.</summary>
    public IReadOnlyList<ScenarioTaskMetrics>? Bayes { get; init; }
    /// <summary>The feature columns.</summary>
    public required IReadOnlyList<string> FeatureNames { get; init; }
    /// <summary>Per task, the split gain of each feature column (null for a task that was not trained).</summary>
    public required float[]?[] FeatureGains { get; init; }
    /// <summary>Training exposures per task.</summary>
    public required long[] TrainExposures { get; init; }
    /// <summary>Seconds spent computing features.</summary>
    public double FeatureSeconds { get; init; }
    /// <summary>Seconds spent training (all tasks).</summary>
    public double TrainSeconds { get; init; }
}

/// <summary>
/// Gradient-boosted trees (LightGBM through ML.NET) on <see cref="CausalStatistics"/> features: one binary model per
/// task, trained on the exposures of the training windows that carry the task's label, early-stopped on the
/// validation windows, evaluated on the test windows with the same metrics as MTFM (AUC, GAUC by user, log-loss per
/// scenario and task). The split is the schema's: an exposure belongs to the part of its window's start.
/// </summary>
internal static class LightGbmBaseline
{
    /// <summary>Computes the features (unless given) and trains and evaluates one model per task.</summary>
    /// <param name="store">The events.</param>
    /// <param name="options">Settings (null = defaults).</param>
    /// <param name="log">Progress lines (optional).</param>
    /// <param name="features">Precomputed features ([exposure, column], from <see cref="CausalStatistics.Compute"/> with the same layout), or null.</param>
    public static LightGbmResult Train(EventStore store, LightGbmOptions? options = null, TextWriter? log = null, float[]? features = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        var o = options ?? new LightGbmOptions();
        var layout = store.Layout;
        var split = layout.Schema.Split ?? throw new ArgumentException("The dataset's schema has no temporal split (split.validStart/testStart).");
        var sw = Stopwatch.StartNew();
        var names = new CausalStatistics(layout, o.Statistics).FeatureNames;
        features ??= CausalStatistics.Compute(store, o.Statistics, out _);
        int w = names.Count, nx = store.ExposureCount, tasks = layout.TaskCount;
        if (features.Length != (long)nx * w) throw new ArgumentException($"features has {features.Length} entries, expected {nx}·{w}.", nameof(features));
        double featureSecs = sw.Elapsed.TotalSeconds;
        log?.WriteLine($"lightgbm: {w} causal statistics columns for {nx:N0} exposures in {featureSecs:F1} s");

        // Exposure index → event id, part (0 train, 1 valid, 2 test), user, scenario.
        var win = WindowSpec.From(layout.Schema);
        var evOf = new int[nx]; var part = new byte[nx];
        for (int ev = 0, x = 0; ev < store.Count; ev++)
        {
            if (!store.IsExposure(ev)) continue;
            long ws = win.StartOf(win.IndexOf(store.TimeOf(ev)));
            evOf[x] = ev; part[x] = ws < split.ValidStart ? (byte)0 : ws < split.TestStart ? (byte)1 : (byte)2;
            x++;
        }
        var ml = new MLContext(o.Seed);
        var def = SchemaDefinition.Create(typeof(Row));
        def["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, w);
        var probs = new float[(long)nx * tasks];
        Array.Fill(probs, float.NaN);
        var trainCounts = new long[tasks];
        var weights = new float[tasks][];
        sw.Restart();
        for (int t = 0; t < tasks; t++)
        {
            List<Row> Rows(int p)
            {
                var rows = new List<Row>();
                for (int x = 0; x < nx; x++)
                {
                    if ((p >= 0 && part[x] != p)) continue;
                    int lb = store.Label(evOf[x], t);
                    if (lb < 0 && p >= 0) continue; // training and validation rows need the label; scoring (p < 0) takes every exposure
                    rows.Add(new Row { Features = features.AsSpan(x * w, w).ToArray(), Label = lb == 1, Exposure = x });
                }
                return rows;
            }
            var train = Rows(0); var valid = Rows(1);
            trainCounts[t] = train.Count;
            if (train.Count == 0 || train.All(r => r.Label) || train.All(r => !r.Label))
            {
                log?.WriteLine($"lightgbm: task {layout.Schema.Tasks[t]}: the training windows hold one class only; skipped");
                continue;
            }
            var trainer = ml.BinaryClassification.Trainers.LightGbm(new LightGbmBinaryTrainer.Options
            {
                LabelColumnName = "Label",
                FeatureColumnName = "Features",
                NumberOfLeaves = o.Leaves,
                NumberOfIterations = o.Iterations,
                LearningRate = o.LearningRate,
                MinimumExampleCountPerLeaf = o.MinExamplesPerLeaf,
                Seed = o.Seed,
                Verbose = false,
                Silent = true,
                NumberOfThreads = o.Threads > 0 ? o.Threads : null,
                HandleMissingValue = true,
                EarlyStoppingRound = valid.Count > 0 ? o.EarlyStoppingRounds : 0,
            });
            var trainView = ml.Data.LoadFromEnumerable(train, def);
            var model = valid.Count > 0 && valid.Any(r => r.Label) && valid.Any(r => !r.Label)
                ? trainer.Fit(trainView, ml.Data.LoadFromEnumerable(valid, def))
                : trainer.Fit(trainView);
            train.Clear(); valid.Clear();
            var gains = default(VBuffer<float>);
            model.Model.SubModel.GetFeatureWeights(ref gains);
            var dense = gains.DenseValues().ToArray();
            weights[t] = dense;
            if (log is not null)
            {
                var top = Enumerable.Range(0, dense.Length).OrderByDescending(i => dense[i]).Take(8).Select(i => $"{names[i]} {dense[i]:G3}");
                log.WriteLine($"lightgbm: task {layout.Schema.Tasks[t]}: top gains: {string.Join(", ", top)}");
            }
            var all = Rows(-1);
            var scored = model.Transform(ml.Data.LoadFromEnumerable(all, def));
            var p = scored.GetColumn<float>("Probability").ToArray();
            for (int i = 0; i < all.Count; i++) probs[all[i].Exposure * tasks + t] = p[i];
            log?.WriteLine($"lightgbm: task {layout.Schema.Tasks[t]}: trained on {trainCounts[t]:N0} exposures ({sw.Elapsed.TotalSeconds:F1} s so far)");
        }
        double trainSecs = sw.Elapsed.TotalSeconds;

        var acc = new MetricAccumulator(layout.ScenarioCount, tasks, store.HasTrueProbability);
        MetricAccumulator? bayes = store.HasTrueProbability ? new MetricAccumulator(layout.ScenarioCount, tasks) : null;
        var pr = new float[tasks]; var lab = new float[tasks]; var pres = new byte[tasks]; var truth = new float[tasks];
        for (int x = 0; x < nx; x++)
        {
            if (part[x] != 2) continue;
            int ev = evOf[x];
            bool any = false;
            for (int t = 0; t < tasks; t++)
            {
                int lb = store.Label(ev, t);
                float q = probs[x * tasks + t];
                bool ok = lb >= 0 && !float.IsNaN(q);
                pres[t] = ok ? (byte)1 : (byte)0; lab[t] = ok ? lb : 0; pr[t] = ok ? q : 0;
                truth[t] = ok && bayes is not null ? store.TrueProbability(ev, t) : 0;
                any |= ok;
            }
            if (!any) continue;
            long[] user = [store.UserOf(ev)]; int[] scen = [store.SourceOf(ev)];
            acc.Add(pr, lab, pres, user, scen, bayes is null ? default : truth);
            bayes?.Add(truth, lab, pres, user, scen);
        }
        return new LightGbmResult
        {
            Probabilities = probs,
            TestEvents = Enumerable.Range(0, nx).Where(x => part[x] == 2).Select(x => evOf[x]).ToArray(),
            Test = acc.ComputeAll(),
            Bayes = bayes?.ComputeAll(),
            FeatureNames = names,
            TrainExposures = trainCounts,
            FeatureGains = weights,
            FeatureSeconds = featureSecs,
            TrainSeconds = trainSecs,
        };
    }

    /// <summary>One training or scoring row (public for ML.NET's reflection-based loader).</summary>
    public sealed class Row
    {
        /// <summary>The causal statistics of the exposure.</summary>
        public float[] Features { get; set; } = [];
        /// <summary>The label.</summary>
        public bool Label { get; set; }
        /// <summary>The exposure index (not a feature; not read by the trainer).</summary>
        public int Exposure { get; set; }
    }
}
