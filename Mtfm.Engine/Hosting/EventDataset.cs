using Mtfm.Engine.Data;

namespace Mtfm.Engine.Hosting;

/// <summary>
/// An event log held in memory and described by a <see cref="DatasetSchema"/>: exposures (rows whose source is a
/// scenario, with labels) and behaviour events (rows whose source is a sequence). Load one from a schema file and a
/// CSV or Parquet log (<see cref="Load(string, string)"/>), from rows already in memory (<see cref="FromRows"/>), or generate the
/// built-in synthetic multi-scenario log (<see cref="Synthetic"/>). Malformed input is rejected with a
/// <see cref="DataFormatException"/> naming the file (or row source), the row and the column.
/// </summary>
public sealed class EventDataset
{
    private readonly EventStore _store;
    private readonly Lock _gate = new();
    private int[]? _order;
    private NumericStats? _stats;
    private readonly AggregatedInstances?[] _parts = new AggregatedInstances?[3];

    /// <param name="store">The events as read (from the raw schema).</param>
    /// <param name="description">Where they came from.</param>
    /// <param name="feedback">The schema whose feedback blocks apply (default: the store's own).</param>
    private EventDataset(EventStore store, string description, DatasetSchema? feedback = null)
    {
        // the feedback blocks, if any: tokens built as `mtfm train` builds them
        _store = FeedbackTokens.Derive(store, feedback ?? store.Layout.Schema);
        Description = description;
    }

    /// <summary>
    /// Reads the schema JSON at <paramref name="schemaPath"/> and the event log at <paramref name="eventsPath"/>: Parquet
    /// when the file name ends in <c>.parquet</c>, CSV (header row, comma separated, RFC-4180 quoting) otherwise. The
    /// first malformed row throws <see cref="DataFormatException"/> naming file, row and column.
    /// </summary>
    public static EventDataset Load(string schemaPath, string eventsPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(schemaPath);
        ArgumentException.ThrowIfNullOrEmpty(eventsPath);
        return Load(DatasetSchema.Load(schemaPath), eventsPath);
    }

    /// <summary>Reads the event log at <paramref name="eventsPath"/> (CSV, or Parquet by its <c>.parquet</c> name) described by <paramref name="schema"/>.</summary>
    public static EventDataset Load(DatasetSchema schema, string eventsPath)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentException.ThrowIfNullOrEmpty(eventsPath);
        if (!File.Exists(eventsPath)) throw new FileNotFoundException($"event log '{eventsPath}' does not exist.", eventsPath);
        schema.Validate();
        var store = new EventStore(new DataLayout(schema));
        if (eventsPath.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) ParquetEventReader.Read(eventsPath, store);
        else CsvEventReader.Read(eventsPath, store);
        return new EventDataset(store, eventsPath);
    }

    /// <summary>
    /// Builds a dataset from rows in memory: each row maps column names to cell text exactly as a CSV log would hold it
    /// (the schema's user, time and source columns, the source's feature columns and, for exposures, the label columns).
    /// A row without a column its source needs, or with a malformed cell, throws <see cref="DataFormatException"/> naming
    /// <paramref name="name"/>, the 1-based row and the column; an absent key counts as an empty cell only where the
    /// schema gives empty cells a meaning (<c>sourceMapping</c> columns, features with <c>missing: allow</c>).
    /// </summary>
    /// <param name="schema">The schema describing the rows.</param>
    /// <param name="rows">The events in log order (events with equal times keep this order).</param>
    /// <param name="name">A name for error messages.</param>
    public static EventDataset FromRows(DatasetSchema schema, IEnumerable<IReadOnlyDictionary<string, string>> rows, string name = "rows")
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(rows);
        schema.Validate(name);
        var store = new EventStore(new DataLayout(schema));
        // The header: every column the schema can read; a row only needs the ones of its own source.
        var columns = new List<string> { schema.UserColumn, schema.TimeColumn };
        if (schema.SourceMapping is { } map) columns.AddRange(map.Columns);
        else columns.Add(schema.SourceColumn);
        columns.AddRange(schema.Features.Select(f => f.ColumnName));
        columns.AddRange(schema.Scenarios.SelectMany(s => s.Labels.Values));
        string[] header = [.. columns.Distinct(StringComparer.Ordinal)];
        // An absent key reads as an empty cell where an empty cell means something (a sourceMapping column, a feature
        // with missing: allow); anywhere else it is an error naming the row and the column.
        var absentIsEmpty = new bool[header.Length];
        for (int c = 0; c < header.Length; c++)
            absentIsEmpty[c] = (schema.SourceMapping?.Columns.Contains(header[c]) ?? false)
                || schema.Features.Select((f, i) => (f, i)).Any(x => x.f.ColumnName == header[c] && schema.AllowsMissing(x.i));
        var decoder = new RowDecoder(store, name, header);
        long row = 0;
        foreach (var r in rows)
        {
            row++;
            if (r is null) throw new DataFormatException($"{name}: row {row}: is null");
            var cells = new DictionaryCells(r, header, absentIsEmpty, name, row);
            decoder.Decode(ref cells, row); // false: a row no sourceMapping rule matches, skipped as the schema says
        }
        return new EventDataset(store, name);
    }

    /// <summary>
    /// The built-in synthetic multi-scenario log (three scenarios, two behaviour sequences, known true probabilities):
    /// <c>tiny</c> (about 60 users, 4 days; seconds to train), <c>default</c> (8,000 users, 14 days) or <c>large</c>.
    /// The data is a pure function of <paramref name="size"/> and <paramref name="seed"/>.
    /// </summary>
    public static EventDataset Synthetic(string size = "tiny", ulong seed = 42)
    {
        ArgumentNullException.ThrowIfNull(size);
        var config = size switch
        {
            "tiny" => SyntheticConfig.Tiny,
            "default" => SyntheticConfig.Default,
            "large" => SyntheticConfig.Large,
            _ => throw new ArgumentException($"synthetic size '{size}': use tiny, default or large.", nameof(size)),
        } with { Seed = seed };
        return new EventDataset(SyntheticGenerator.Generate(config).Store, $"synthetic ({size}, seed {seed})");
    }

    /// <summary>
    /// This dataset with click feedback tokens, as <c>mtfm train</c> adds them by default (<c>--feedback auto</c>): each
    /// exposure of a scenario labelled with the first task also enters a feedback sequence as a token carrying its
    /// click outcome, visible to predictions strictly later (docs/data.md, "Feedback tokens"). Scoring such a model
    /// takes the user's past exposures with their outcomes in the request (<c>exposures</c>). Throws
    /// <see cref="InvalidOperationException"/> when the schema already declares feedback blocks.
    /// </summary>
    public EventDataset WithClickFeedback()
    {
        if (FeedbackTokens.Declared(_store.Layout.Schema))
            throw new InvalidOperationException($"{Description}: the schema already declares feedback blocks.");
        return new EventDataset(_store, Description + ", click feedback tokens", FeedbackTokens.WithClickFeedback(_store.Layout.Schema));
    }

    /// <summary>
    /// This dataset with the feedback blocks <paramref name="model"/> was trained with (none when it had none): how to
    /// evaluate or score a model on fresh data exactly as it was trained, whichever rule or statistics cap added its
    /// feedback tokens then (<see cref="WithClickFeedback"/> follows today's rule, which may differ from an older
    /// checkpoint's). Throws <see cref="InvalidOperationException"/> when this dataset's schema already declares
    /// feedback blocks.
    /// </summary>
    public EventDataset WithFeedbackOf(TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (FeedbackTokens.Declared(_store.Layout.Schema))
            throw new InvalidOperationException($"{Description}: the schema already declares feedback blocks.");
        var schema = FeedbackTokens.WithFeedbackOf(_store.Layout.Schema, model.Schema);
        return FeedbackTokens.Declared(schema) ? new EventDataset(_store, Description + ", the model's feedback tokens", schema) : this;
    }

    /// <summary>The schema the events were read with; with feedback blocks, expanded by their sequences and outcome features.</summary>
    public DatasetSchema Schema => _store.Layout.Schema;

    /// <summary>Where the events came from (a path, a row-source name, or the synthetic preset).</summary>
    public string Description { get; }

    /// <summary>Number of events (exposures and behaviour events).</summary>
    public int EventCount => _store.Count;

    /// <summary>Number of exposures (events of a scenario).</summary>
    public int ExposureCount => _store.ExposureCount;

    /// <summary>Number of distinct users.</summary>
    public int UserCount => _store.UserCount;

    /// <summary>A multi-line summary: users, time range, events per scenario and sequence, label rates.</summary>
    public override string ToString() => _store.Summary();

    internal EventStore Store => _store;

    /// <summary>The instances of one temporal part (user-level windows), aggregated once and kept.</summary>
    internal AggregatedInstances Part(DatasetPart part)
    {
        RequireSplit();
        lock (_gate)
        {
            _order ??= _store.SortedByUserTime();
            var p = part switch
            {
                DatasetPart.Train => SplitPart.Train,
                DatasetPart.Valid => SplitPart.Valid,
                DatasetPart.Test => SplitPart.Test,
                _ => throw new ArgumentOutOfRangeException(nameof(part), part, "use Train, Valid or Test."),
            };
            return _parts[(int)part] ??= UserLevelAggregator.Aggregate(_store, AggregationMode.UserWindow, p, _order);
        }
    }

    /// <summary>Numeric-feature statistics over the events before the validation part.</summary>
    internal NumericStats TrainingStatistics()
    {
        var split = RequireSplit();
        lock (_gate) return _stats ??= _store.ComputeNumericStats(split.ValidStart);
    }

    private SplitSpec RequireSplit() => Schema.Split
        ?? throw new InvalidOperationException($"{Description}: the dataset's schema has no temporal split (split.validStart/testStart); training and evaluation need one.");

    private readonly ref struct DictionaryCells(IReadOnlyDictionary<string, string> row, string[] header, bool[] absentIsEmpty, string name, long index) : IRowCells
    {
        public ReadOnlySpan<char> Text(int col) => Cell(col).AsSpan();

        public bool TryNumber(int col, out double v) =>
            double.TryParse(Cell(col), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out v);

        public bool IsTimestamp(int col) => false;

        private string Cell(int col) =>
            row.TryGetValue(header[col], out var s) && s is not null ? s
                : absentIsEmpty[col] ? ""
                : throw new DataFormatException($"{name}: row {index}, column '{header[col]}': missing (the row has no such column)");
    }
}
