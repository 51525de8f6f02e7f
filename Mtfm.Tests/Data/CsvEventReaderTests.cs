using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class CsvEventReaderTests
{
    private static DataLayout Layout() => new(DatasetSchema.Load(DataTestPaths.Malformed("schema.json")));

    [Fact]
    public void ReadsValidFileWithSummary()
    {
        var st = new EventStore(Layout());
        var log = new StringWriter();
        var sum = CsvEventReader.Read(DataTestPaths.Malformed("valid.csv"), st, new ReadOptions { Log = log });
        Assert.Equal(4, sum.RowsRead);
        Assert.Equal(4, sum.RowsUsed);
        Assert.Equal(0, sum.RowsRejected);
        Assert.Equal(3, sum.Exposures);
        Assert.Contains("4 rows read, 4 used (3 exposures, 1 behaviour events), 0 rejected", log.ToString());
        Assert.Equal(2, st.UserCount);
        // feed row: hashed item id, vocabulary row of "low" = 1.
        Assert.Equal(StableHash.Bucket("i1", 1000), st.Categorical(0)[0]);
        Assert.Equal(1, st.Categorical(0)[1]);
        Assert.Equal(1, st.Label(0, 0));
        Assert.Equal(0, st.Label(0, 1));
        // coupon row: OOV bucket for "cashback" (policy bucket), conversion label absent.
        Assert.Equal(0, st.Categorical(2)[0]);
        Assert.Equal(9.5f, st.Numeric(2)[0]);
        Assert.Equal(-1, st.Label(2, 1));
        Assert.False(st.IsExposure(1));
    }

    [Theory]
    [InlineData("wrong_column_count.csv", "row 2, column 'coupon_type': wrong column count '5' (header has 9)")]
    [InlineData("unparsable_number.csv", "row 2, column 'price': unparsable number '12x5'")]
    [InlineData("unparsable_timestamp.csv", "row 2, column 'ts': unparsable timestamp (unix_seconds integer expected) 'yesterday'")]
    [InlineData("millis_timestamp.csv", "row 2, column 'ts': timestamp beyond the year 5000 as unix seconds: the column looks like milliseconds (set \"timeFormat\": \"unix_millis\" in the schema) '1700000000123'")]
    [InlineData("unknown_scenario.csv", "row 2, column 'source': unknown scenario or sequence 'banner'")]
    [InlineData("nan_numeric.csv", "row 2, column 'price': non-finite numeric value 'NaN'")]
    [InlineData("inf_numeric.csv", "row 2, column 'price': non-finite numeric value 'Infinity'")]
    [InlineData("missing_label.csv", "row 2, column 'conv': missing label for task 'conversion' ''")]
    [InlineData("bad_label.csv", "row 2, column 'click': label for task 'click' is not 0/1/true/false 'yes'")]
    [InlineData("oov_error.csv", "row 2, column 'price_band': value outside the vocabulary of feature 'price_band' (oov policy: error) 'huge'")]
    public void MalformedRowNamesFileRowAndColumn(string file, string expected)
    {
        var path = DataTestPaths.Malformed(file);
        var st = new EventStore(Layout());
        var e = Assert.Throws<DataFormatException>(() => CsvEventReader.Read(path, st));
        Assert.Equal($"{path}: {expected}", e.Message);
        // With an error budget the row is rejected and counted, never silently dropped.
        var st2 = new EventStore(Layout());
        var sum = CsvEventReader.Read(path, st2, new ReadOptions { MaxErrors = 5 });
        Assert.Equal(2, sum.RowsRead);
        Assert.Equal(1, sum.RowsUsed);
        Assert.Equal(1, sum.RowsRejected);
        Assert.Equal(1, st2.Count);
        Assert.Equal($"{path}: {expected}", Assert.Single(sum.Errors));
    }

    [Fact]
    public void MissingHeaderColumnIsNamed()
    {
        var st = new EventStore(Layout());
        var e = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText("user_id,ts,source\nu,1,feed\n", "mem.csv", st));
        Assert.Contains("mem.csv: header has no column 'item_id' (feature 'item_id')", e.Message);
    }

    [Fact]
    public void DuplicateHeaderColumnIsADataError()
    {
        var st = new EventStore(Layout());
        var e = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText("user_id,ts,ts\nu,1,2\n", "dup.csv", st));
        Assert.StartsWith("dup.csv: invalid header row: ", e.Message);
        Assert.Contains("'ts'", e.Message);
    }

    [Fact]
    public void EmptyAggregationWritesAnEmptyParquetFile()
    {
        var st = new EventStore(Layout());
        CsvEventReader.ReadText("user_id,ts,source,item_id,price_band,coupon_type,price,click,conv\nu,1,clicks,a,,,,,\n", "b.csv", st);
        var agg = UserLevelAggregator.Aggregate(st);
        Assert.Equal(0, agg.Count);
        var path = Path.Combine(Path.GetTempPath(), $"mtfm-empty-{Guid.NewGuid():N}.parquet");
        try
        {
            AggregatedParquetWriter.Write(agg, path);
            using var con = new DuckDB.NET.Data.DuckDBConnection("DataSource=:memory:");
            con.Open();
            using var cmd = con.CreateCommand();
            cmd.CommandText = $"SELECT count(*) FROM read_parquet('{path}')";
            Assert.Equal(0L, Convert.ToInt64(cmd.ExecuteScalar()));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Iso8601AndMillisTimes()
    {
        var s = DatasetSchema.Load(DataTestPaths.Malformed("schema.json"));
        s.TimeFormat = "iso8601";
        var st = new EventStore(new DataLayout(s));
        CsvEventReader.ReadText("user_id,ts,source,item_id,price_band,coupon_type,price,click,conv\nu,2025-01-01T00:00:10Z,clicks,a,,,,,\n", "m.csv", st);
        Assert.Equal(1735689610L, st.TimeOf(0));
        s.TimeFormat = "unix_millis";
        var st2 = new EventStore(new DataLayout(s));
        CsvEventReader.ReadText("user_id,ts,source,item_id,price_band,coupon_type,price,click,conv\nu,-1500,clicks,a,,,,,\n", "m.csv", st2);
        Assert.Equal(-2L, st2.TimeOf(0));
    }

    [Theory]
    [InlineData("bucket", "7", 8)]
    [InlineData("bucket", "50", 0)]
    [InlineData("bucket", "x", 0)]
    [InlineData("error", "-1", -1)]
    [InlineData("error", "3.5", -1)]
    public void IdFeatureOutOfRangeFollowsThePolicy(string oov, string cell, int expectedRow)
    {
        var s = AggregatorTests.RandomSchema(1, 1);
        s.Features[0].Oov = oov;
        var st = new EventStore(new DataLayout(s));
        const string header = "user_id,ts,source,x,v,c,v2\n";
        if (expectedRow >= 0)
        {
            CsvEventReader.ReadText(header + $"u,1,s0,{cell},,,\n", "ids.csv", st);
            Assert.Equal(expectedRow, st.Categorical(0)[0]);
        }
        else
        {
            var e = Assert.Throws<DataFormatException>(() => CsvEventReader.ReadText(header + $"u,1,s0,{cell},,,\n", "ids.csv", st));
            Assert.Equal($"ids.csv: row 1, column 'x': value outside the vocabulary of feature 'x' (oov policy: error) '{cell}'", e.Message);
        }
    }

    [Fact]
    public void StableHashIsFnv1a()
    {
        // Reference values of 64-bit FNV-1a.
        Assert.Equal(0xcbf29ce484222325UL, StableHash.Fnv1a64(""));
        Assert.Equal(0xaf63dc4c8601ec8cUL, StableHash.Fnv1a64("a"));
        Assert.Equal(0x85944171f73967e8UL, StableHash.Fnv1a64("foobar"));
    }

    [Fact]
    public void SchemaErrorsNameTheEntry()
    {
        var e = Assert.Throws<DataFormatException>(() => DatasetSchema.Parse("""{"features":[{"name":"a","kind":"weird"}],"scenarios":[{"name":"s","labels":{"click":"c"}}]}""", "x.json"));
        Assert.Equal("x.json: feature 'a' has kind 'weird' (expected categorical, id, hashed or numeric)", e.Message);
        var e2 = Assert.Throws<DataFormatException>(() => DatasetSchema.Parse("""{"scenarios":[{"name":"s","itemFeatures":["nope"],"labels":{"click":"c"}}]}""", "y.json"));
        Assert.Equal("y.json: scenario 's' uses unknown feature 'nope'", e2.Message);
        var round = DatasetSchema.Parse(DatasetSchema.Load(DataTestPaths.Malformed("schema.json")).ToJson());
        Assert.Equal(4, round.Features.Count);
    }
}
