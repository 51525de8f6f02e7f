using Mtfm.Engine.Data;
using Mtfm.Engine.Serving;
using Parquet;
using Parquet.Schema;

namespace Mtfm.Tests.Data;

/// <summary>Logs as they come: missing values (<c>missing: allow</c>) and a source derived from several columns (<c>sourceMapping</c>).</summary>
public sealed class LogsAsTheyComeTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mtfm-logs-" + Guid.NewGuid().ToString("N"));

    public LogsAsTheyComeTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // user_id, item_id, color and price allow missing values (the schema default); shop keeps "error".
    private const string MissingSchema = """
        {
          "name": "gaps", "userColumn": "uid", "timeColumn": "ts", "sourceColumn": "source",
          "windowSeconds": 1000, "windowOrigin": 0, "missing": "allow",
          "features": [
            { "name": "user_id", "kind": "id", "cardinality": 10 },
            { "name": "item_id", "kind": "hashed", "buckets": 50 },
            { "name": "color", "kind": "categorical", "vocabulary": ["red", "green"], "oov": "error" },
            { "name": "shop", "kind": "id", "cardinality": 5, "oov": "error", "missing": "error" },
            { "name": "price", "kind": "numeric", "transform": "standardize" }
          ],
          "scenarios": [
            { "name": "feed", "userFeatures": ["user_id"], "itemFeatures": ["item_id", "color", "price"], "labels": { "click": "c", "conversion": "v" } },
            { "name": "shopad", "itemFeatures": ["shop"], "labels": { "click": "c" } }
          ],
          "sequences": [ { "name": "click", "features": ["item_id", "price"], "historyCap": 5 } ]
        }
        """;

    private const string MissingCsv = """
        uid,ts,source,user_id,item_id,color,shop,price,c,v
        u1,100,click,,i1,,,4,,
        u1,110,click,,,,,,,
        u1,200,feed,3,i2,,,2,1,0
        u1,210,feed,,i3,red,,,0,0
        u2,300,feed,4,,green,,6,1,1
        u2,310,shopad,,,,2,,0,
        """;

    private static DataLayout MissingLayout(string? replace = null) =>
        new(DatasetSchema.Parse(replace is null ? MissingSchema : MissingSchema.Replace("\"missing\": \"allow\",", replace, StringComparison.Ordinal)));

    [Fact]
    public void EmptyCellsAreMissingValuesWithTheirOwnRowAndAPresenceIndicator()
    {
        var l = MissingLayout();
        const int price = 4;
        // Categorical kinds get one extra row, the last, for the missing value; "error" features do not.
        Assert.Equal([12, 51, 4, 6], l.Tables.Select(t => t.Rows));
        Assert.Equal([11, 50, 3, -1, -1], l.MissingRow);
        var feed = l.Groups[l.TargetGroup(0)];
        Assert.Equal([0], feed.NumericPresence);
        Assert.Equal(2, feed.NumericWidth);
        Assert.Equal(0, l.Groups[l.TargetGroup(1)].NumericWidth);

        var st = new EventStore(l);
        var sum = CsvEventReader.ReadText(MissingCsv, "gaps.csv", st);
        Assert.Equal(6, sum.RowsUsed);
        Assert.Equal([StableHash.Bucket("i1", 50)], st.Categorical(0).ToArray());
        Assert.Equal([50], st.Categorical(1).ToArray());                       // empty hashed cell: the missing row, not hash("")
        Assert.True(float.IsNaN(st.Numeric(1)[0]));
        Assert.Equal([4, StableHash.Bucket("i2", 50), 3], st.Categorical(2).ToArray()); // empty color: row 3
        Assert.Equal([11, StableHash.Bucket("i3", 50), 1], st.Categorical(3).ToArray()); // empty user_id: row 11
        Assert.True(float.IsNaN(st.Numeric(3)[0]));
        Assert.Equal([3], st.Categorical(5).ToArray());

        // Statistics over present values only: price 4, 2, 6 → mean 4, std sqrt(8/3).
        var stats = st.ComputeNumericStats();
        Assert.Equal(4f, stats.Mean[price], 5);
        Assert.Equal(MathF.Sqrt(8f / 3f), stats.Std[price], 5);

        // Batches: value 0 plus presence 0 where missing, (transformed value, 1) where present.
        var inst = UserLevelAggregator.Aggregate(st, AggregationMode.UserWindow, SplitPart.All, st.SortedByUserTime());
        var b = new BatchBuilder(inst, stats).Build(Enumerable.Range(0, inst.Count).ToArray());
        var seen = new Dictionary<int, float[]>();
        for (int t = 0; t < b.TokenCount; t++)
        {
            var blk = b.Blocks[b.Group[t]];
            if (blk.NumericWidth == 0) continue;
            seen[b.EventId[t]] = blk.Numeric.AsSpan(b.RowInGroup[t] * blk.NumericWidth, blk.NumericWidth).ToArray();
        }
        Assert.Equal([0f, 1f], seen[0]);                              // price 4 = the mean
        Assert.Equal([0f, 0f], seen[1]);                              // missing
        Assert.Equal([stats.Transform(price, 2), 1f], seen[2]);
        Assert.Equal([0f, 0f], seen[3]);
        Assert.Equal([stats.Transform(price, 6), 1f], seen[4]);
    }

    [Fact]
    public void MissingErrorKeepsTodaysBehaviour()
    {
        // Without the schema default, every feature is "missing: error": the same empty cells are rejected as before.
        var l = MissingLayout(replace: "");
        Assert.All(l.Groups, g => Assert.Empty(g.NumericPresence));
        Assert.Equal([11, 50, 3, 6], l.Tables.Select(t => t.Rows));
        var e = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText(MissingCsv, "gaps.csv", new EventStore(l)));
        Assert.Equal("gaps.csv: row 2, column 'price': unparsable number ''", e.Message);
        // A "missing: error" feature of an "allow" schema rejects its empty cell, naming file, row and column.
        var csv = MissingCsv.Replace("u2,310,shopad,,,,2,,0,", "u2,310,shopad,,,,,,0,", StringComparison.Ordinal);
        var e2 = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText(csv, "gaps.csv", new EventStore(MissingLayout())));
        Assert.Equal("gaps.csv: row 6, column 'shop': value outside the vocabulary of feature 'shop' (oov policy: error) ''", e2.Message);
        Assert.Throws<DataFormatException>(() => DatasetSchema.Parse(MissingSchema.Replace("\"missing\": \"allow\"", "\"missing\": \"maybe\"", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task ParquetNullsAreMissingValuesLikeEmptyCsvCells()
    {
        var ct = TestContext.Current.CancellationToken;
        string path = Path.Combine(_dir, "gaps.parquet");
        var fields = new DataField[]
        {
            new DataField<string>("uid"), new DataField<long>("ts"), new DataField<string>("source"), new DataField<long?>("user_id"),
            new DataField<string>("item_id", true), new DataField<string>("color", true), new DataField<long?>("shop"), new DataField<double?>("price"),
            new DataField<int?>("c"), new DataField<int?>("v"),
        };
        await using (var fs = File.Create(path))
        await using (var w = await ParquetWriter.CreateAsync(new ParquetSchema(fields), fs, cancellationToken: ct))
        using (var rg = w.CreateRowGroup())
        {
            await rg.WriteAsync(fields[0], new[] { "u1", "u1", "u1", "u1", "u2", "u2" });
            await rg.WriteAsync<long>(fields[1], new long[] { 100, 110, 200, 210, 300, 310 }.AsMemory(), null, null, ct);
            await rg.WriteAsync(fields[2], new[] { "click", "click", "feed", "feed", "feed", "shopad" });
            await rg.WriteAsync<long>(fields[3], new long?[] { null, null, 3, null, 4, null }.AsMemory(), null, null, ct);
            await rg.WriteAsync(fields[4], new[] { "i1", null, "i2", "i3", null, null });
            await rg.WriteAsync(fields[5], new[] { null, null, null, "red", "green", null });
            await rg.WriteAsync<long>(fields[6], new long?[] { null, null, null, null, null, 2 }.AsMemory(), null, null, ct);
            await rg.WriteAsync<double>(fields[7], new double?[] { 4, null, 2, null, 6, null }.AsMemory(), null, null, ct);
            await rg.WriteAsync<int>(fields[8], new int?[] { null, null, 1, 0, 1, 0 }.AsMemory(), null, null, ct);
            await rg.WriteAsync<int>(fields[9], new int?[] { null, null, 0, 0, 1, null }.AsMemory(), null, null, ct);
        }
        var fromParquet = new EventStore(MissingLayout());
        await ParquetEventReader.ReadAsync(path, fromParquet, ct: ct);
        var fromCsv = new EventStore(MissingLayout());
        CsvEventReader.ReadText(MissingCsv, "gaps.csv", fromCsv);
        Assert.Equal(fromCsv.Count, fromParquet.Count);
        for (int e = 0; e < fromCsv.Count; e++)
        {
            Assert.Equal(fromCsv.Categorical(e).ToArray(), fromParquet.Categorical(e).ToArray());
            Assert.Equal(fromCsv.Numeric(e).ToArray(), fromParquet.Numeric(e).ToArray()); // NaN equals NaN here
        }
        Assert.Contains(Enumerable.Range(0, fromParquet.Count), e => fromParquet.Numeric(e).Length > 0 && float.IsNaN(fromParquet.Numeric(e)[0]));
    }

    [Fact]
    public void ServingEncodesMissingValuesExactlyAsTraining()
    {
        var l = MissingLayout();
        var st = new EventStore(l);
        CsvEventReader.ReadText(MissingCsv, "gaps.csv", st);
        var stats = st.ComputeNumericStats();
        var inst = UserLevelAggregator.Aggregate(st, AggregationMode.UserWindow, SplitPart.All, st.SortedByUserTime());
        int u1 = Enumerable.Range(0, inst.Count).Single(i => st.UserKey(inst.UserOf(i)) == "u1");
        var train = new BatchBuilder(inst, stats).Build([u1]);

        // The exposure at 210 (user_id, price missing) as a request, with the two earlier clicks (item and price missing
        // in the second one: absent, null and "" all mean missing).
        var req = ScoreRequest.Parse("""
            {"user":"u1","scenario":"feed","time":210,
             "events":[{"sequence":"click","time":100,"features":{"item_id":"i1","price":4}},
                       {"sequence":"click","time":110,"features":{"item_id":null,"price":""}}],
             "candidates":[{"item_id":"i3","color":"red","price":null}]}
            """);
        var served = new RequestEncoder(l, stats).Encode(req).Batch;

        int Token(Mtfm.Engine.Data.JaggedBatch b, Func<int, bool> pick) => Enumerable.Range(0, b.TokenCount).Single(pick);
        void SameRow(int tTrain, int tServed)
        {
            var bt = train.Blocks[train.Group[tTrain]]; var bs = served.Blocks[served.Group[tServed]];
            Assert.Equal(train.Group[tTrain], served.Group[tServed]);
            Assert.Equal(bt.Categorical.AsSpan(train.RowInGroup[tTrain] * bt.CategoricalWidth, bt.CategoricalWidth).ToArray(),
                bs.Categorical.AsSpan(served.RowInGroup[tServed] * bs.CategoricalWidth, bs.CategoricalWidth).ToArray());
            Assert.Equal(bt.Numeric.AsSpan(train.RowInGroup[tTrain] * bt.NumericWidth, bt.NumericWidth).ToArray(),
                bs.Numeric.AsSpan(served.RowInGroup[tServed] * bs.NumericWidth, bs.NumericWidth).ToArray());
        }
        SameRow(Token(train, t => train.EventId[t] == 3), Token(served, t => served.Segment[t] == (byte)SegmentKind.Target));
        SameRow(Token(train, t => train.EventId[t] == 0), Token(served, t => served.Segment[t] == (byte)SegmentKind.Realtime && served.Time[t] == 100));
        SameRow(Token(train, t => train.EventId[t] == 1), Token(served, t => served.Segment[t] == (byte)SegmentKind.Realtime && served.Time[t] == 110));
        var target = served.Blocks[l.TargetGroup(0)];
        Assert.Equal([0f, 0f], target.Numeric);           // the candidate's price is missing
        Assert.Equal(11, target.Categorical[0]);          // user_id absent → the missing row

        // A "missing: error" feature still rejects an absent value, naming the field.
        var strict = new RequestEncoder(MissingLayout(replace: ""), stats);
        var ex = Assert.Throws<ScoreRequestException>(() => strict.Encode(req));
        Assert.Contains("user_id", ex.Message, StringComparison.Ordinal);
    }

    private const string MappingSchema = """
        {
          "name": "mapped", "userColumn": "uid", "timeColumn": "ts", "windowSeconds": 1000, "windowOrigin": 0,
          "features": [ { "name": "item_id", "kind": "hashed", "buckets": 50 } ],
          "scenarios": [
            { "name": "feed", "itemFeatures": ["item_id"], "labels": { "click": "c" } },
            { "name": "search", "itemFeatures": ["item_id"], "labels": { "click": "c" } }
          ],
          "sequences": [
            { "name": "click", "features": ["item_id"] },
            { "name": "organic", "features": ["item_id"] }
          ],
          "sourceMapping": {
            "columns": ["page", "event", "is_organic"],
            "rules": [
              { "when": { "page": "home", "event": "impression" }, "source": "feed" },
              { "when": { "page": "search", "event": "impression" }, "source": "search" },
              { "when": { "event": "click", "is_organic": "1" }, "source": "organic" },
              { "when": { "event": "click" }, "source": "click" }
            ],
            "unmapped": "UNMAPPED"
          }
        }
        """;

    private const string MappingCsv = """
        uid,ts,page,event,is_organic,item_id,c
        u1,100,home,impression,,i1,1
        u1,101,home,click,,i1,
        u1,102,search,impression,0,i2,0
        u1,103,home,scroll,,,
        u1,104,search,click,1,i2,
        """;

    [Fact]
    public void SourceMappingDerivesTheSourceFromSeveralColumns()
    {
        var l = new DataLayout(DatasetSchema.Parse(MappingSchema.Replace("UNMAPPED", "skip", StringComparison.Ordinal)));
        var st = new EventStore(l);
        var log = new StringWriter();
        var sum = CsvEventReader.ReadText(MappingCsv, "mapped.csv", st, new ReadOptions { Log = log });
        Assert.Equal(5, sum.RowsRead);
        Assert.Equal(4, sum.RowsUsed);
        Assert.Equal(1, sum.RowsSkipped);
        Assert.Equal(0, sum.RowsRejected);
        Assert.Contains("1 skipped (no sourceMapping rule)", log.ToString(), StringComparison.Ordinal);
        Assert.Equal(["feed", "click", "search", "organic"], Enumerable.Range(0, st.Count).Select(e => l.SourceName(st.SourceOf(e))));

        // unmapped: error names file, row and column (the first mapping column) and shows every mapping cell.
        var strict = new DataLayout(DatasetSchema.Parse(MappingSchema.Replace("UNMAPPED", "error", StringComparison.Ordinal)));
        var e = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText(MappingCsv, "mapped.csv", new EventStore(strict)));
        Assert.Equal("mapped.csv: row 4, column 'page': no sourceMapping rule matches (page='home', event='scroll', is_organic=''; unmapped: error) 'home'", e.Message);
        // With an error budget the row is rejected (counted as rejected, not skipped).
        var sum2 = CsvEventReader.ReadText(MappingCsv, "mapped.csv", new EventStore(strict), new ReadOptions { MaxErrors = 1 });
        Assert.Equal((4L, 1L, 0L), (sum2.RowsUsed, sum2.RowsRejected, sum2.RowsSkipped));

        // A mapping column missing from the header is named.
        var h = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText(MappingCsv.Replace("is_organic", "organic", StringComparison.Ordinal), "mapped.csv", new EventStore(strict)));
        Assert.Contains("header has no column 'is_organic' (sourceMapping.columns)", h.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"source\": \"feed\" }", "\"source\": \"banner\" }", "sourceMapping.rules[0].source 'banner' is not a scenario or sequence name")]
    [InlineData("{ \"page\": \"home\", \"event\": \"impression\" }", "{ \"pg\": \"home\" }", "sourceMapping.rules[0].when names column 'pg', which is not in sourceMapping.columns")]
    [InlineData("\"UNMAPPED\"", "\"drop\"", "sourceMapping.unmapped 'drop' (expected error or skip)")]
    public void SourceMappingIsValidated(string from, string to, string expected)
    {
        var json = MappingSchema.Replace(from, to, StringComparison.Ordinal).Replace("UNMAPPED", "error", StringComparison.Ordinal);
        var e = Assert.Throws<DataFormatException>(() => DatasetSchema.Parse(json, "s.json"));
        Assert.Equal("s.json: " + expected, e.Message);
    }

    [Fact]
    public void CodeBuiltSchemasAreUnchanged()
    {
        // No policy given = "error" everywhere: no presence columns, no extra rows, the schema JSON has no new keys.
        var store = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var l = store.Layout;
        Assert.All(l.Groups, g => Assert.Equal(g.NumericFeatures.Length, g.NumericWidth));
        Assert.All(Enumerable.Range(0, l.Schema.Features.Count), f => Assert.Equal(-1, l.MissingRow[f]));
        Assert.DoesNotContain("missing", l.Schema.ToJson(), StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("sourceMapping", l.Schema.ToJson(), StringComparison.Ordinal);
    }
}
