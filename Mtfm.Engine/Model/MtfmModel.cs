using Mtfm.Engine.Autograd;
using Mtfm.Engine.Backends;
using Mtfm.Engine.Data;
using Mtfm.Engine.Nn;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Model;

/// <summary>
/// The MTFM network (spec §3–5): per-group tokenizers, a stack of HSTU layers (full or target attention, Group
/// LayerNorm, GQA, relative time bias), a final Group LayerNorm over the T tokens and MMoE heads with a gate and a
/// tower per (scenario, task). All parameters are created in a fixed order from one seed.
/// </summary>
internal sealed class MtfmModel : IDisposable
{
    private readonly Parameter[] _tables;
    private readonly Tokenizer[] _tokenizers;
    private readonly int[] _statisticsWidth; // per group: history-statistics columns its tokenizer reads (0 = none)
    private readonly HstuLayer[] _layers;
    private readonly Parameter _finalGamma, _finalBeta;
    private readonly Dense _experts;
    private readonly Dense[,] _gates;
    private readonly Dense[,] _towerHidden, _towerOut;

    public MtfmModel(IBackend backend, MtfmConfig config, DataLayout layout, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(layout);
        config.Validate();
        Backend = backend;
        Config = config;
        Layout = layout;
        var f = new ParameterFactory(backend, seed);
        _tables = layout.Tables.Select(t => f.Table("emb." + t.Feature, t.Rows, config.EmbeddingDim)).ToArray();
        var history = new HistoryStatistics(layout);
        _statisticsWidth = layout.Groups.Select(g => config.HistoryStatistics && g.Segment == SegmentKind.Target ? history.Width(g.Source) : 0).ToArray();
        _tokenizers = layout.Groups.Select(g => new Tokenizer(f, g, config, _statisticsWidth[g.Id])).ToArray();
        int groups = layout.Groups.Count;
        _layers = new HstuLayer[config.Layers];
        for (int l = 0; l < _layers.Length; l++) _layers[l] = new HstuLayer(f, $"layer{l}", config, groups, config.IsFullLayer(l));
        _finalGamma = f.Constant("final_gln.gamma", [groups, config.DModel], 1f);
        _finalBeta = f.Constant("final_gln.beta", [groups, config.DModel], 0f);
        _experts = new Dense(f, "mmoe.experts", config.DModel, config.Experts * config.ExpertWidth);
        int ns = layout.ScenarioCount, nt = layout.TaskCount;
        _gates = new Dense[ns, nt];
        _towerHidden = new Dense[ns, nt];
        _towerOut = new Dense[ns, nt];
        for (int s = 0; s < ns; s++)
        {
            for (int k = 0; k < nt; k++)
            {
                string n = $"head.{layout.Schema.Scenarios[s].Name}.{layout.Schema.Tasks[k]}";
                _gates[s, k] = new Dense(f, n + ".gate", config.DModel, config.Experts);
                _towerHidden[s, k] = new Dense(f, n + ".tower1", config.ExpertWidth, config.TowerWidth);
                _towerOut[s, k] = new Dense(f, n + ".tower2", config.TowerWidth, 1);
            }
        }
        Parameters = f.All;
    }

    public IBackend Backend { get; }

    public MtfmConfig Config { get; }

    public DataLayout Layout { get; }

    /// <summary>Every parameter in creation order.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>Total number of scalar parameters.</summary>
    public long ParameterCount => Parameters.Sum(p => p.Value.Length);

    /// <summary>
    /// Runs the network on <paramref name="batch"/>; with labels present also the loss (per task, mean BCE over the
    /// exposures carrying the label, summed over tasks).
    /// </summary>
    /// <param name="tape">The tape of the step.</param>
    /// <param name="batch">The batch.</param>
    /// <param name="flops">Counts the useful FLOPs when given.</param>
    /// <param name="staged">The batch's inputs uploaded ahead (<see cref="BatchInputs.MarkStaged"/>), or null to upload them now.</param>
    public MtfmOutput Forward(Tape tape, JaggedBatch batch, FlopCounter? flops = null, BatchInputs? staged = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var inp = BatchInputs.For(tape, batch, Layout, Config.TimeBuckets, staged);
        int n = batch.TokenCount, nt = batch.TargetCount, d = Config.DModel;

        // Tokenizers: one per group, placed at their tokens' positions. Without transformer layers (the MMoE
        // baseline) only the T groups are tokenized, straight into T order.
        bool sequences = _layers.Length > 0;
        var parts = new List<Variable>();
        var where = new List<Tensor>();
        for (int g = 0; g < _tokenizers.Length; g++)
        {
            var block = batch.Blocks[g];
            if (block.Rows == 0 || (!sequences && Layout.Groups[g].Segment != SegmentKind.Target)) continue;
            parts.Add(_tokenizers[g].Forward(tape, _tables, inp.GroupCategorical[g]!, inp.GroupNumeric[g], flops,
                _statisticsWidth[g] > 0 ? inp.GroupStatistics[g] : null));
            where.Add(sequences ? inp.GroupTokens[g]! : inp.GroupTargetRows(tape, g));
        }
        Variable xt;
        if (sequences)
        {
            var x = tape.AssembleRows(n, parts.ToArray(), where.ToArray());
            foreach (var layer in _layers) x = layer.Forward(tape, x, inp, flops);
            xt = tape.GatherRows(x, inp.TargetTokens);
        }
        else xt = tape.AssembleRows(nt, parts.ToArray(), where.ToArray());

        // Final Group LayerNorm over the T tokens, then MMoE.
        var z = tape.GroupLayerNorm(xt, _finalGamma, _finalBeta, inp.TargetGroups);
        var experts = tape.Silu(_experts.Forward(tape, z));
        flops?.Dense(nt, _experts.MacsPerRow);
        int tasks = Layout.TaskCount, ns = Layout.ScenarioCount;
        var logits = new Variable[tasks];
        for (int k = 0; k < tasks; k++)
        {
            var scenParts = new List<Variable>();
            var scenWhere = new List<Tensor>();
            for (int s = 0; s < ns; s++)
            {
                var rows = inp.ScenarioRows[s];
                if (rows is null) continue;
                int m = (int)rows.Length;
                var zs = tape.GatherRows(z, rows);
                var es = tape.GatherRows(experts, rows);
                var gate = tape.Softmax(_gates[s, k].Forward(tape, zs));                       // [m, E]
                var mix = tape.Reshape(tape.BatchedMatMul(tape.Reshape(gate, m, 1, Config.Experts),
                    tape.Reshape(es, m, Config.Experts, Config.ExpertWidth)), m, Config.ExpertWidth);
                var logit = _towerOut[s, k].Forward(tape, tape.Silu(_towerHidden[s, k].Forward(tape, mix)));
                flops?.Dense(m, _gates[s, k].MacsPerRow + (long)Config.Experts * Config.ExpertWidth
                    + _towerHidden[s, k].MacsPerRow + _towerOut[s, k].MacsPerRow);
                scenParts.Add(logit);
                scenWhere.Add(rows);
            }
            logits[k] = tape.Reshape(tape.AssembleRows(nt, scenParts.ToArray(), scenWhere.ToArray()), nt);
        }

        Variable? loss = null;
        for (int k = 0; k < tasks; k++)
        {
            var lk = tape.BceWithLogits(logits[k], inp.Labels[k], inp.LabelMask[k]);
            loss = loss is null ? lk : tape.Add(loss, lk);
        }
        return new MtfmOutput(logits, loss!);
    }

    /// <summary>
    /// Probabilities [T, tasks] (row-major) of the batch's exposures, without recording a graph: the one readout that
    /// evaluation, scoring and serving use.
    /// </summary>
    public float[] Score(JaggedBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int tasks = Layout.TaskCount, nt = batch.TargetCount;
        var probs = new float[nt * tasks];
        using var tape = new Tape(Backend, gradEnabled: false);
        var output = Forward(tape, batch);
        var logits = new float[nt];
        for (int k = 0; k < tasks; k++)
        {
            Backend.Download<float>(output.TaskLogits[k].Value, logits);
            for (int j = 0; j < nt; j++) probs[j * tasks + k] = Probability(logits[j]);
        }
        return probs;
    }

    /// <summary>The readout of a task logit: the logistic sigmoid, in single precision.</summary>
    public static float Probability(float logit) => 1f / (1f + MathF.Exp(-logit));

    public void Dispose()
    {
        foreach (var p in Parameters) p.Dispose();
    }
}

/// <summary>Logits per task ([T tokens] each, in the batch's T order) and the summed loss.</summary>
internal sealed record MtfmOutput(Variable[] TaskLogits, Variable Loss);
