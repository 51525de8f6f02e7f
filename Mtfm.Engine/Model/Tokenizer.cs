using Mtfm.Engine.Autograd;
using Mtfm.Engine.Data;
using Mtfm.Engine.Nn;
using Mtfm.Engine.Tensors;

namespace Mtfm.Engine.Model;

/// <summary>
/// The tokenizer of one token group (spec §3): concat(embeddings of its categorical features ‖ its numeric features)
/// → Linear → SiLU → Linear to d_model. Embedding tables belong to features, so groups sharing a feature share rows.
/// </summary>
internal sealed class Tokenizer
{
    private readonly TokenGroupInfo _group;
    private readonly Dense _hidden, _out;

    public Tokenizer(ParameterFactory f, TokenGroupInfo group, MtfmConfig config, int statisticsWidth = 0, int populationWidth = 0)
    {
        _group = group;
        int width = group.CategoricalTables.Length * config.EmbeddingDim + group.NumericWidth + statisticsWidth + populationWidth;
        if (width == 0) throw new ArgumentException($"Token group '{group.Name}' has no features: a tokenizer needs at least one.", nameof(group));
        string name = "tok." + group.Name.Replace(':', '.');
        _hidden = new Dense(f, name + ".hidden", width, config.TokenizerHidden);
        _out = new Dense(f, name + ".out", config.TokenizerHidden, config.DModel);
    }

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
        return _out.Forward(tape, tape.Silu(_hidden.Forward(tape, input)));
    }
}
