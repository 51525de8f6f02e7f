using Mtfm.Engine.Autograd;
using Mtfm.Engine.Data;
using Mtfm.Engine.Nn;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Model;

/// <summary>
/// The tokenizer of one token group (spec §3): concat(embeddings of its categorical features ‖ its numeric features)
/// → Linear → SiLU → Linear to d_model. Embedding tables belong to features, so groups sharing a feature share rows.
/// Under <see cref="MtfmConfig.ScenarioPooling"/> the T groups of scenarios with the same inputs share both Linear
/// layers' weights and the output bias; each keeps its own hidden-layer bias (the effect of a one-hot scenario input).
/// </summary>
internal sealed class Tokenizer
{
    private readonly TokenGroupInfo _group;
    private readonly Dense _hidden, _out;
    private readonly Parameter _hiddenBias;

    /// <summary>A tokenizer of its own; <paramref name="name"/> names its weights when they are a pool's (default: the group's own prefix).</summary>
    public Tokenizer(ParameterFactory f, TokenGroupInfo group, MtfmConfig config, int statisticsWidth = 0, int populationWidth = 0, string? name = null)
    {
        _group = group;
        int width = InputWidth(group, config, statisticsWidth, populationWidth);
        if (width == 0) throw new ArgumentException($"Token group '{group.Name}' has no features: a tokenizer needs at least one.", nameof(group));
        string own = BaseName(group);
        name ??= own;
        _hidden = new Dense(f, name + ".hidden", width, config.TokenizerHidden, own + ".hidden.b");
        _out = new Dense(f, name + ".out", config.TokenizerHidden, config.DModel);
        _hiddenBias = _hidden.Bias;
    }

    /// <summary>A pooled group's tokenizer: <paramref name="shared"/>'s weights, a hidden-layer bias of its own (created here, zero).</summary>
    public Tokenizer(ParameterFactory f, TokenGroupInfo group, MtfmConfig config, Tokenizer shared)
    {
        _group = group;
        _hidden = shared._hidden;
        _out = shared._out;
        _hiddenBias = f.Constant(BaseName(group) + ".hidden.b", [config.TokenizerHidden], 0f);
    }

    /// <summary>Parameter-name prefix of a group's own tokenizer, e.g. <c>tok.T.feed</c>.</summary>
    private static string BaseName(TokenGroupInfo group) => "tok." + group.Name.Replace(':', '.');

    /// <summary>Inputs per token: embeddings, numeric values and presence columns, statistics.</summary>
    private static int InputWidth(TokenGroupInfo group, MtfmConfig config, int statisticsWidth, int populationWidth)
        => group.CategoricalTables.Length * config.EmbeddingDim + group.NumericWidth + statisticsWidth + populationWidth;

    /// <summary>Tokens of the group: [rows, d_model].</summary>
    public Variable Forward(Tape tape, Parameter[] tables, Tensor[] categorical, Variable? numeric, FlopCounter? flops, Variable? statistics = null,
        Variable? population = null)
    {
        var cols = new List<Variable>(categorical.Length + 3);
        for (int c = 0; c < categorical.Length; c++) cols.Add(tape.Embedding(tables[_group.CategoricalTables[c]], categorical[c]));
        if (numeric is not null) cols.Add(numeric);
        if (statistics is not null) cols.Add(statistics);
        if (population is not null) cols.Add(population);
        var input = cols.Count == 1 ? cols[0] : tape.Concat(cols.ToArray());
        int rows = input.Value.RowCount;
        flops?.Dense(rows, _hidden.MacsPerRow + _out.MacsPerRow);
        return _out.Forward(tape, tape.Silu(tape.Linear(input, _hidden.Weight, _hiddenBias)));
    }
}
