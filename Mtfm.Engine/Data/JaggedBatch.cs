namespace Mtfm.Engine.Data;

/// <summary>
/// A training batch of whole instances, jagged (never padded). Layout:
/// <list type="bullet">
/// <item><see cref="Offsets"/>[i]..[i+1]: the tokens of instance i (token order H, R, T, each time-ordered).</item>
/// <item>Per token t: <see cref="Segment"/> (0 H, 1 R, 2 T), <see cref="Group"/> (index in <see cref="DataLayout.Groups"/>),
/// <see cref="Time"/> (unix seconds), <see cref="RowInGroup"/> (its row in <see cref="Blocks"/>[Group[t]]).</item>
/// <item>Per group g, <see cref="Blocks"/>[g]: its tokens' features as compact row-major matrices (categorical ids are
/// embedding-table rows of the tables in <see cref="TokenGroupInfo.CategoricalTables"/>; numeric values are already
/// transformed with training statistics).</item>
/// <item>Per T token j (in token order): <see cref="TargetToken"/>, <see cref="TargetInstance"/>, <see cref="TargetScenario"/>,
/// <see cref="TargetUser"/>, <see cref="Labels"/>[j·tasks + k] with <see cref="LabelMask"/> (1 = label present), and
/// <see cref="TrueProbabilities"/> (synthetic data only, else null).</item>
/// </list>
/// </summary>
internal sealed class JaggedBatch
{
    /// <summary>Number of instances.</summary>
    public int InstanceCount { get; init; }
    /// <summary>Number of tokens.</summary>
    public int TokenCount { get; init; }
    /// <summary>Number of T tokens.</summary>
    public int TargetCount { get; init; }
    /// <summary>Number of tasks (columns of <see cref="Labels"/>).</summary>
    public int TaskCount { get; init; }
    /// <summary>Token offsets per instance, length InstanceCount + 1.</summary>
    public required int[] Offsets { get; init; }
    /// <summary>Per token: segment kind (see <see cref="SegmentKind"/>).</summary>
    public required byte[] Segment { get; init; }
    /// <summary>Per token: token group id.</summary>
    public required int[] Group { get; init; }
    /// <summary>Per token: timestamp (unix seconds).</summary>
    public required long[] Time { get; init; }
    /// <summary>Per token: row within its group's block.</summary>
    public required int[] RowInGroup { get; init; }
    /// <summary>Per token: source event id in the <see cref="EventStore"/>.</summary>
    public required int[] EventId { get; init; }
    /// <summary>Per group: the feature matrices of its tokens.</summary>
    public required GroupBlock[] Blocks { get; init; }
    /// <summary>Per T token: its token index.</summary>
    public required int[] TargetToken { get; init; }
    /// <summary>Per T token: its instance index within the batch.</summary>
    public required int[] TargetInstance { get; init; }
    /// <summary>Per T token: scenario index.</summary>
    public required int[] TargetScenario { get; init; }
    /// <summary>Per T token: dense user index (for GAUC).</summary>
    public required int[] TargetUser { get; init; }
    /// <summary>Per T token and task: label 0/1 (0 where absent).</summary>
    public required float[] Labels { get; init; }
    /// <summary>Per T token and task: 1 where the label is present.</summary>
    public required byte[] LabelMask { get; init; }
    /// <summary>Per T token and task: the true probability (synthetic data), else null.</summary>
    public float[]? TrueProbabilities { get; init; }
}

/// <summary>The tokens of one group inside a <see cref="JaggedBatch"/>, as row-major matrices.</summary>
internal sealed class GroupBlock
{
    /// <summary>Number of rows (tokens of this group in the batch).</summary>
    public int Rows { get; init; }
    /// <summary>Categorical columns per row.</summary>
    public int CategoricalWidth { get; init; }
    /// <summary>Numeric columns per row.</summary>
    public int NumericWidth { get; init; }
    /// <summary>Per row: the token index in the batch.</summary>
    public required int[] TokenIndex { get; init; }
    /// <summary>Rows × CategoricalWidth embedding-table row indices.</summary>
    public required int[] Categorical { get; init; }
    /// <summary>Rows × NumericWidth transformed numeric values.</summary>
    public required float[] Numeric { get; init; }
    /// <summary>History-statistics columns per row (T groups only; see <see cref="HistoryStatistics"/>), else 0.</summary>
    public int StatisticsWidth { get; init; }
    /// <summary>Rows × StatisticsWidth history statistics of T tokens (<see cref="HistoryStatistics.Fill"/>).</summary>
    public float[] Statistics { get; init; } = [];
    /// <summary>Population-statistics columns per row (T groups of a batch built with a source; see <see cref="PopulationStatistics"/>), else 0.</summary>
    public int PopulationWidth { get; init; }
    /// <summary>Rows × PopulationWidth cross-user statistics of T tokens.</summary>
    public float[] Population { get; init; } = [];
}
