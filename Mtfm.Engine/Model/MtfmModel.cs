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
    private readonly int[] _populationWidth; // per group: population-statistics columns its tokenizer reads (0 = none)
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
        var population = new PopulationStatistics(layout);
        _populationWidth = layout.Groups.Select(g => config.PopulationStatistics && g.Segment == SegmentKind.Target ? population.Width(g.Source) : 0).ToArray();
        int ns = layout.ScenarioCount, nt = layout.TaskCount;
        ScenarioPool = config.ScenarioPooling ? Pools(layout, _statisticsWidth, _populationWidth) : Enumerable.Range(0, ns).ToArray();
        _poolMembers = Enumerable.Range(0, ns).Select(l => Enumerable.Range(0, ns).Where(s => ScenarioPool[s] == l).ToArray()).ToArray();
        _tokenizers = new Tokenizer[layout.Groups.Count];
        foreach (var g in layout.Groups)
        {
            bool target = g.Segment == SegmentKind.Target;
            int leader = target ? ScenarioPool[g.Source] : -1;
            _tokenizers[g.Id] = target && leader != g.Source
                ? new Tokenizer(f, g, config, _tokenizers[layout.TargetGroup(leader)])
                : new Tokenizer(f, g, config, _statisticsWidth[g.Id], _populationWidth[g.Id],
                    target && _poolMembers[leader].Length > 1 ? "tok.T." + PoolName(leader) : null);
        }
        int groups = layout.Groups.Count;
        _layers = new HstuLayer[config.Layers];
        for (int l = 0; l < _layers.Length; l++) _layers[l] = new HstuLayer(f, $"layer{l}", config, groups, config.IsFullLayer(l));
        _finalGamma = f.Constant("final_gln.gamma", [groups, config.DModel], 1f);
        _finalBeta = f.Constant("final_gln.beta", [groups, config.DModel], 0f);
        _experts = new Dense(f, "mmoe.experts", config.DModel, config.Experts * config.ExpertWidth);
        _gates = new Dense[ns, nt];
        _towerHidden = new Dense[ns, nt];
        _towerOut = new Dense[ns, nt];
        for (int s = 0; s < ns; s++)
        {
            int leader = ScenarioPool[s];
            for (int k = 0; k < nt; k++)
            {
                if (leader != s)
                {
                    _gates[s, k] = _gates[leader, k];
                    _towerHidden[s, k] = _towerHidden[leader, k];
                    _towerOut[s, k] = _towerOut[leader, k];
                    continue;
                }
                string n = $"head.{PoolName(s)}.{layout.Schema.Tasks[k]}";
                _gates[s, k] = new Dense(f, n + ".gate", config.DModel, config.Experts);
                _towerHidden[s, k] = new Dense(f, n + ".tower1", config.ExpertWidth, config.TowerWidth);
                _towerOut[s, k] = new Dense(f, n + ".tower2", config.TowerWidth, 1);
            }
        }
        Parameters = f.All;
    }

    /// <summary>
    /// Per scenario, the first scenario of its pool (itself when it has a tokenizer and heads of its own): under
    /// <see cref="MtfmConfig.ScenarioPooling"/> scenarios whose T groups read the same tables, numeric columns and
    /// statistics widths share the first one's tokenizer weights, gates and towers.
    /// </summary>
    public int[] ScenarioPool { get; }

    private readonly int[][] _poolMembers; // per scenario: the scenarios whose pool it leads (empty unless it leads one)

    /// <summary>The pools of two or more scenarios (scenario indices, the leader first); empty when every scenario has its own tokenizer and heads.</summary>
    public IEnumerable<int[]> SharedPools => _poolMembers.Where(m => m.Length > 1);

    /// <summary>A pool's name in parameter names: its scenarios joined by '+' (a lone scenario: its name).</summary>
    private string PoolName(int leader) => string.Join("+", _poolMembers[leader].Select(s => Layout.Schema.Scenarios[s].Name));

    private static int[] Pools(DataLayout layout, int[] statisticsWidth, int[] populationWidth)
    {
        int ns = layout.ScenarioCount;
        var groupOf = new TokenGroupInfo[ns];
        foreach (var g in layout.Groups) if (g.Segment == SegmentKind.Target) groupOf[g.Source] = g;
        bool Same(TokenGroupInfo a, TokenGroupInfo b)
            => a.CategoricalTables.AsSpan().SequenceEqual(b.CategoricalTables) && a.NumericFeatures.AsSpan().SequenceEqual(b.NumericFeatures)
            && a.NumericPresence.AsSpan().SequenceEqual(b.NumericPresence)
            && statisticsWidth[a.Id] == statisticsWidth[b.Id] && populationWidth[a.Id] == populationWidth[b.Id];
        var pool = new int[ns];
        for (int s = 0; s < ns; s++)
        {
            pool[s] = s;
            for (int e = 0; e < s; e++)
            {
                if (pool[e] == e && Same(groupOf[e], groupOf[s])) { pool[s] = e; break; }
            }
        }
        return pool;
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
    /// <param name="rankingWeight">Weight of the within-user ranking term added to <see cref="MtfmOutput.Objective"/> (<see cref="Training.TrainOptions.RankingLossWeight"/>; 0 = none, then the objective is the loss).</param>
    public MtfmOutput Forward(Tape tape, JaggedBatch batch, FlopCounter? flops = null, BatchInputs? staged = null, float rankingWeight = 0f)
    {
        if (!(rankingWeight >= 0 && float.IsFinite(rankingWeight))) throw new ArgumentOutOfRangeException(nameof(rankingWeight), rankingWeight, "rankingWeight must be finite and ≥ 0.");
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
                _statisticsWidth[g] > 0 ? inp.GroupStatistics[g] : null, PopulationInput(g, inp.GroupPopulation[g])));
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
                scenParts.Add(HeadLogit(tape, s, k, tape.GatherRows(z, rows), tape.GatherRows(experts, rows), flops));
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
        var objective = loss!;
        if (rankingWeight > 0)
            for (int k = 0; k < tasks; k++)
            {
                var (pos, neg) = RankingPairs.For(batch, k);
                if (pos.Length == 0) continue;
                // softplus(−(z⁺ − z⁻)) per pair = BCE of the logit difference against label 1, mean over the pairs.
                var column = tape.Reshape(logits[k], nt, 1);
                var diff = tape.Add(tape.GatherRows(column, tape.Ids(pos, [pos.Length])),
                    tape.Scale(tape.GatherRows(column, tape.Ids(neg, [neg.Length])), -1f));
                var ones = new float[pos.Length];
                Array.Fill(ones, 1f);
                var target = tape.Input(ones, [pos.Length]).Value;
                var rank = tape.BceWithLogits(tape.Reshape(diff, pos.Length), target, target);
                objective = tape.Add(objective, tape.Scale(rank, rankingWeight));
            }
        return new MtfmOutput(logits, loss!, objective);
    }

    /// <summary>The head of (scenario <paramref name="s"/>, task <paramref name="k"/>): gate, expert mix and tower on rows of z and of the expert outputs; logits [m, 1].</summary>
    private Variable HeadLogit(Tape tape, int s, int k, Variable z, Variable experts, FlopCounter? flops)
    {
        int m = z.Value.RowCount;
        var gate = tape.Softmax(_gates[s, k].Forward(tape, z));                                    // [m, E]
        var mix = tape.Reshape(tape.BatchedMatMul(tape.Reshape(gate, m, 1, Config.Experts),
            tape.Reshape(experts, m, Config.Experts, Config.ExpertWidth)), m, Config.ExpertWidth);
        flops?.Dense(m, _gates[s, k].MacsPerRow + (long)Config.Experts * Config.ExpertWidth
            + _towerHidden[s, k].MacsPerRow + _towerOut[s, k].MacsPerRow);
        return _towerOut[s, k].Forward(tape, tape.Silu(_towerHidden[s, k].Forward(tape, mix)));
    }

    /// <summary>Tokens [rows, d_model] of group <paramref name="g"/>'s block, its inputs uploaded on the tape.</summary>
    private Variable Tokenize(Tape tape, int g, GroupBlock block)
    {
        var (cats, numeric, statistics, population) = BatchInputs.Upload(tape, block);
        return _tokenizers[g].Forward(tape, _tables, cats, numeric, null, _statisticsWidth[g] > 0 ? statistics : null, PopulationInput(g, population));
    }

    /// <summary>The population columns group <paramref name="g"/>'s tokenizer reads (null when it reads none); a batch without them is refused.</summary>
    private Variable? PopulationInput(int g, Variable? uploaded)
    {
        if (_populationWidth[g] == 0) return null;
        if (uploaded is null || uploaded.Value.Shape[1] != _populationWidth[g])
            throw new ArgumentException($"group {Layout.Groups[g].Name}: the model reads {_populationWidth[g]} population-statistics columns, the batch has "
                + (uploaded is null ? "none (built without a population source)" : uploaded.Value.Shape[1].ToString(System.Globalization.CultureInfo.InvariantCulture)) + ".");
        return uploaded;
    }

    /// <summary>
    /// The cross-user statistics state serving reads (<see cref="PopulationStatistics"/>): saved with the model when
    /// <see cref="MtfmConfig.PopulationStatistics"/> is on, the state at the end of the training log. Null otherwise.
    /// A state must read the user columns with the configuration's <see cref="MtfmConfig.UserRecentRatePrior"/> and
    /// <see cref="MtfmConfig.UserRatesAtWindowStart"/> (ArgumentException otherwise: a checkpoint saves the counts, and
    /// the reloaded model reads them with its config).
    /// </summary>
    public PopulationStatistics? Population
    {
        get => _population;
        internal set
        {
            if (value is not null && !value.ReadsWith(Config.UserRecentRatePrior, Config.UserRatesAtWindowStart))
                throw new ArgumentException($"the state reads the user columns with {value.RulesText}, the model's configuration " +
                    $"(MtfmConfig.UserRecentRatePrior, UserRatesAtWindowStart) with {Data.PopulationStatistics.Rules(Config.UserRecentRatePrior, Config.UserRatesAtWindowStart)}.", nameof(value));
            _population = value;
        }
    }

    private PopulationStatistics? _population;

    /// <summary>
    /// Rows a batched target forward (<see cref="ScoreTargets"/>) is padded to at least by the scorer (zero rows in an
    /// instance of their own, scored and dropped), so that a batch of one request and a batch of many take the same
    /// matrix-multiply paths: every per-row result is then independent of the other requests in the batch and batched
    /// scores equal sequential ones bit for bit.
    /// </summary>
    public const int MinTargetRows = 64;

    /// <summary>
    /// The first half of the cached forward (spec §6): runs the first <paramref name="contextTokens"/> tokens of
    /// <paramref name="batch"/> (the H and R tokens of one instance whose T tokens follow them) through every layer and
    /// keeps each layer's K and V of those rows. H/R tokens never attend to T tokens, so the result does not depend on
    /// the candidates. The result owns its memory.
    /// </summary>
    public EncodedContext EncodeContext(JaggedBatch batch, int contextTokens)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if ((uint)contextTokens > (uint)batch.TokenCount) throw new ArgumentOutOfRangeException(nameof(contextTokens), contextTokens, $"the batch has {batch.TokenCount} tokens.");
        int n = contextTokens;
        var kinds = batch.Segment.AsSpan(0, n).ToArray();
        var times = batch.Time.AsSpan(0, n).ToArray();
        var ctx = new EncodedContext(n, kinds, times, _layers.Length);
        if (n == 0 || _layers.Length == 0) return ctx;
        try
        {
            using var tape = new Tape(Backend, gradEnabled: false);
            var parts = new List<Variable>(); var where = new List<Tensor>();
            for (int g = 0; g < Layout.Groups.Count; g++)
            {
                var b = batch.Blocks[g];
                if (b.Rows == 0 || Layout.Groups[g].Segment == SegmentKind.Target) continue;
                parts.Add(Tokenize(tape, g, b));
                where.Add(tape.Ids(b.TokenIndex, [b.Rows]));
            }
            var x = tape.AssembleRows(n, parts.ToArray(), where.ToArray());
            var groupIds = tape.Ids(batch.Group.AsSpan(0, n).ToArray(), [n]);
            using var layout = new AttentionLayout([0, n], kinds, times, Config.TimeBuckets);
            for (int l = 0; l < _layers.Length; l++)
            {
                x = _layers[l].EncodeContext(tape, x, groupIds, layout, out var k, out var v);
                ctx.K[l] = Keep(k.Value);
                ctx.V[l] = Keep(v.Value);
            }
            return ctx;
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    /// <summary>An owned copy of a tape tensor (a context outlives the tape that computed it).</summary>
    private Tensor Keep(Tensor t)
    {
        var copy = Backend.Allocate(t.DType, t.Shape);
        Backend.Copy(t, copy);
        return copy;
    }

    /// <summary>
    /// The second half of the cached forward: probabilities [T_i, tasks] (row-major, all tasks) of the T tokens of each
    /// item's batch (all of scenario <paramref name="scenario"/>, after its context's tokens) in one forward. Each
    /// request's T tokens attend only to its own cached context and to themselves (one attention instance per item);
    /// tokenizer, projections, feed-forward and heads run on all T rows at once, padded with zero rows to at least
    /// <paramref name="minRows"/> rows.
    /// </summary>
    public float[][] ScoreTargets(IReadOnlyList<(EncodedContext Context, JaggedBatch Batch)> items, int scenario, int minRows = 0)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) return [];
        if ((uint)scenario >= (uint)Layout.ScenarioCount) throw new ArgumentOutOfRangeException(nameof(scenario), scenario, $"the model has {Layout.ScenarioCount} scenarios.");
        int tasks = Layout.TaskCount, tg = Layout.TargetGroup(scenario), m = items.Count;
        var tStart = new int[m + 1];
        int nAll = 0;
        for (int i = 0; i < m; i++)
        {
            var (ctx, b) = items[i];
            if (b.TokenCount != ctx.Count + b.TargetCount)
                throw new ArgumentException($"items[{i}]: batch has {b.TokenCount} tokens, the context {ctx.Count} and the targets {b.TargetCount}.", nameof(items));
            tStart[i + 1] = tStart[i] + b.TargetCount;
            nAll += b.TokenCount;
        }
        int nt = tStart[m], pad = Math.Max(0, minRows - nt), rows = nt + pad, n = nAll + pad;
        using var tape = new Tape(Backend, gradEnabled: false);
        var tokParts = new Variable[m]; var tokWhere = new Tensor[m];
        for (int i = 0; i < m; i++)
        {
            tokParts[i] = Tokenize(tape, tg, items[i].Batch.Blocks[tg]);
            var idx = new int[items[i].Batch.TargetCount];
            for (int j = 0; j < idx.Length; j++) idx[j] = tStart[i] + j;
            tokWhere[i] = tape.Ids(idx, [idx.Length]);
        }
        var x = m == 1 && pad == 0 ? tokParts[0] : tape.AssembleRows(rows, tokParts, tokWhere);   // padding rows stay zero
        var tGroups = new int[rows];
        Array.Fill(tGroups, tg);
        var tGroupIds = tape.Ids(tGroups, [rows]);
        if (_layers.Length > 0)
        {
            // One attention instance per item: its context rows, then its T rows; the padding rows form one more.
            var kinds = new byte[n]; var times = new long[n];
            var offsets = new int[m + (pad > 0 ? 2 : 1)];
            var ctxItems = new List<int>(m); var ctxRows = new List<Tensor>(m);
            var tRows = new int[rows];
            int at = 0;
            for (int i = 0; i < m; i++)
            {
                var (ctx, b) = items[i];
                offsets[i] = at;
                ctx.Kinds.CopyTo(kinds, at); ctx.Times.CopyTo(times, at);
                if (ctx.Count > 0)
                {
                    var cr = new int[ctx.Count];
                    for (int j = 0; j < cr.Length; j++) cr[j] = at + j;
                    ctxRows.Add(tape.Ids(cr, [cr.Length])); ctxItems.Add(i);
                }
                at += ctx.Count;
                for (int j = 0; j < b.TargetCount; j++, at++)
                {
                    kinds[at] = (byte)SegmentKind.Target; times[at] = b.Time[ctx.Count + j]; tRows[tStart[i] + j] = at;
                }
            }
            if (pad > 0)
            {
                offsets[m] = at;
                long tPad = items[m - 1].Batch.Time[items[m - 1].Batch.TokenCount - 1];
                for (int j = 0; j < pad; j++, at++) { kinds[at] = (byte)SegmentKind.Target; times[at] = tPad; tRows[nt + j] = at; }
            }
            offsets[^1] = at;
            using var layout = new AttentionLayout(offsets, kinds, times, Config.TimeBuckets);
            var tIdx = tape.Ids(tRows, [rows]);
            var where = ctxRows.ToArray();
            for (int l = 0; l < _layers.Length; l++)
            {
                var ck = new Variable[ctxItems.Count]; var cv = new Variable[ctxItems.Count];
                for (int c = 0; c < ck.Length; c++)
                {
                    var ctx = items[ctxItems[c]].Context;
                    ck[c] = new Variable(ctx.K[l] ?? throw new ObjectDisposedException(nameof(EncodedContext)));
                    cv[c] = new Variable(ctx.V[l]!);
                }
                x = _layers[l].ForwardTargets(tape, x, tGroupIds, layout, n, ck, cv, where, tIdx);
            }
        }
        var z = tape.GroupLayerNorm(x, _finalGamma, _finalBeta, tGroupIds);
        var experts = tape.Silu(_experts.Forward(tape, z));
        var result = new float[m][];
        for (int i = 0; i < m; i++) result[i] = new float[(tStart[i + 1] - tStart[i]) * tasks];
        var logits = new float[rows];
        for (int k = 0; k < tasks; k++)
        {
            Backend.Download<float>(HeadLogit(tape, scenario, k, z, experts, null).Value, logits);
            for (int i = 0; i < m; i++)
                for (int j = tStart[i]; j < tStart[i + 1]; j++) result[i][(j - tStart[i]) * tasks + k] = Probability(logits[j]);
        }
        return result;
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

/// <summary>
/// What <see cref="MtfmModel.Forward"/> returns: per task the logits [T tokens], in the batch's T order; <paramref name="Loss"/>, the sum over tasks of
/// the mean BCE (the reported training loss, on the validation loss's scale); <paramref name="Objective"/>, what the
/// step differentiates: the loss plus the weighted within-user ranking terms (the loss itself when the weight is 0).
/// </summary>
internal sealed record MtfmOutput(Variable[] TaskLogits, Variable Loss, Variable Objective);

/// <summary>
/// The H/R part of a request after every layer (<see cref="MtfmModel.EncodeContext"/>): per layer the K and V of its
/// rows (owned tensors), and the tokens' kinds and times. Reference-counted: the cache and every prepared request hold
/// it, and the tensors are freed when the last holder releases.
/// </summary>
internal sealed class EncodedContext(int count, byte[] kinds, long[] times, int layers) : IDisposable
{
    public int Count { get; } = count;
    public byte[] Kinds { get; } = kinds;
    public long[] Times { get; } = times;
    public Tensor?[] K { get; } = new Tensor?[layers];
    public Tensor?[] V { get; } = new Tensor?[layers];

    /// <summary>Bytes held: K/V, the token metadata and a nominal 64-byte overhead (so an empty context still counts).</summary>
    public long Bytes => 64 + Count * 9L + K.Sum(x => x is null ? 0 : x.Length * 4L) + V.Sum(x => x is null ? 0 : x.Length * 4L);

    private int _refs = 1;

    /// <summary>Adds a holder (the cache, a prepared request); each holder releases it with <see cref="Dispose"/>.</summary>
    public EncodedContext Retain()
    {
        if (Interlocked.Increment(ref _refs) <= 1) throw new ObjectDisposedException(nameof(EncodedContext));
        return this;
    }

    /// <summary>Releases one holder; the K/V tensors are freed when the last one releases.</summary>
    public void Dispose()
    {
        int left = Interlocked.Decrement(ref _refs);
        if (left > 0) return;
        if (left < 0) { Interlocked.Exchange(ref _refs, 0); return; }
        foreach (var t in K) t?.Dispose();
        foreach (var t in V) t?.Dispose();
        Array.Clear(K);
        Array.Clear(V);
    }
}
