namespace Mtfm.Engine.Data;

/// <summary>
/// One token group: an H sequence, an R sequence or a scenario's T tokens. The model picks the tokenizer and the
/// Group-LayerNorm gamma/beta by group. Its tokens carry <see cref="CategoricalTables"/>.Length categorical ids (rows of
/// the given embedding tables) and <see cref="NumericFeatures"/>.Length transformed numeric values.
/// </summary>
/// <param name="Id">Group id (index in <see cref="DataLayout.Groups"/>).</param>
/// <param name="Name">Readable name, e.g. <c>H:click</c>, <c>R:click</c>, <c>T:feed</c>.</param>
/// <param name="Segment">Segment of its tokens.</param>
/// <param name="Source">Sequence index (H/R) or scenario index (T).</param>
/// <param name="CategoricalTables">Per categorical column: its global embedding table id (index in <see cref="DataLayout.Tables"/>).</param>
/// <param name="NumericFeatures">Per numeric column: the global feature index (index in <see cref="DatasetSchema.Features"/>).</param>
internal sealed record TokenGroupInfo(int Id, string Name, SegmentKind Segment, int Source, int[] CategoricalTables, int[] NumericFeatures);

/// <summary>An embedding table: one per categorical feature, shared by every group that uses the feature.</summary>
/// <param name="Id">Table id.</param>
/// <param name="Feature">Feature name.</param>
/// <param name="Rows">Number of rows (row 0 is the OOV bucket for categorical and id features).</param>
internal sealed record EmbeddingTableInfo(int Id, string Feature, int Rows);
