namespace Mtfm.Engine.Data;

/// <summary>
/// One token group: an H sequence, an R sequence or a scenario's T tokens. The model picks the tokenizer and the
/// Group-LayerNorm gamma/beta by group. Its tokens carry <see cref="CategoricalTables"/>.Length categorical ids (rows of
/// the given embedding tables) and <see cref="NumericWidth"/> numeric inputs: the <see cref="NumericFeatures"/>.Length
/// transformed values, then one presence indicator (1 = present, 0 = missing) per column listed in
/// <see cref="NumericPresence"/> (the numeric features whose schema policy is <c>missing: allow</c>); see
/// <see cref="NumericStats.EncodeToken"/>.
/// </summary>
/// <param name="Id">Group id (index in <see cref="DataLayout.Groups"/>).</param>
/// <param name="Name">Readable name, e.g. <c>H:click</c>, <c>R:click</c>, <c>T:feed</c>.</param>
/// <param name="Segment">Segment of its tokens.</param>
/// <param name="Source">Sequence index (H/R) or scenario index (T).</param>
/// <param name="CategoricalTables">Per categorical column: its global embedding table id (index in <see cref="DataLayout.Tables"/>).</param>
/// <param name="NumericFeatures">Per numeric column: the global feature index (index in <see cref="DatasetSchema.Features"/>).</param>
public sealed record TokenGroupInfo(int Id, string Name, SegmentKind Segment, int Source, int[] CategoricalTables, int[] NumericFeatures)
{
    /// <summary>Numeric columns (indices into <see cref="NumericFeatures"/>) that carry a presence indicator; empty when no numeric feature allows missing values.</summary>
    public int[] NumericPresence { get; init; } = [];

    /// <summary>Numeric inputs per token: the values, then the presence indicators.</summary>
    public int NumericWidth => NumericFeatures.Length + NumericPresence.Length;
}

/// <summary>An embedding table: one per categorical feature, shared by every group that uses the feature.</summary>
/// <param name="Id">Table id.</param>
/// <param name="Feature">Feature name.</param>
/// <param name="Rows">Number of rows (row 0 is the OOV bucket for categorical and id features; with <c>missing: allow</c> the last row is the missing value's).</param>
public sealed record EmbeddingTableInfo(int Id, string Feature, int Rows);
