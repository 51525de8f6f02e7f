using DuckDB.NET.Data;
using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class DuckDbCrossCheckTests
{
    private static string Sql(DatasetSchema s) =>
        ReferenceSql.UserWindowAggregation.Replace("{window}", s.WindowSeconds.ToString()).Replace("{origin}", s.WindowOrigin.ToString());

    private static DuckDBConnection Load(EventStore st)
    {
        var con = new DuckDBConnection("DataSource=:memory:");
        con.Open();
        using (var cmd = con.CreateCommand())
        {
            cmd.CommandText = "CREATE TABLE events(event_id BIGINT, user_id VARCHAR, ts BIGINT, is_exposure BOOLEAN, source VARCHAR, click INTEGER, conversion INTEGER); CREATE TABLE caps(source VARCHAR, cap INTEGER);";
            cmd.ExecuteNonQuery();
        }
        var l = st.Layout;
        using (var app = con.CreateAppender("events"))
            for (int e = 0; e < st.Count; e++)
                app.CreateRow().AppendValue((long)e).AppendValue(st.UserKey(st.UserOf(e))).AppendValue(st.TimeOf(e))
                    .AppendValue(st.IsExposure(e)).AppendValue(l.SourceName(st.SourceOf(e)))
                    .AppendValue(Lab(st, e, 0)).AppendValue(Lab(st, e, 1)).EndRow();
        using (var app = con.CreateAppender("caps"))
            foreach (var q in l.Schema.Sequences) app.CreateRow().AppendValue(q.Name).AppendValue(q.HistoryCap).EndRow();
        return con;
    }

    private static int? Lab(EventStore st, int e, int task) => st.IsExposure(e) && st.Label(e, task) >= 0 ? st.Label(e, task) : null;

    private static string Join(System.Collections.IList list) =>
        string.Join(',', list.Cast<object?>().Select(x => x?.ToString() ?? "null"));

    private static List<string> Rows(DuckDBConnection con, string sql)
    {
        using var cmd = con.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        var rows = new List<string>();
        while (r.Read())
        {
            var parts = new List<string> { r.GetString(0), Convert.ToInt64(r.GetValue(1)).ToString() };
            Assert.Equal(AggregatedParquetWriter.ColumnsFor(["click", "conversion"]), Enumerable.Range(0, r.FieldCount).Select(r.GetName));
            for (int c = 2; c < r.FieldCount; c++)
            {
                var name = r.GetName(c);
                parts.Add(name.EndsWith("_source") ? Join(r.GetFieldValue<List<string>>(c))
                    : name.EndsWith("_event_id") || name.EndsWith("_time") ? Join(r.GetFieldValue<List<long>>(c))
                    : Join(r.GetFieldValue<List<int?>>(c)));
            }
            rows.Add(string.Join('|', parts));
        }
        return rows;
    }

    private static List<string> CSharpRows(AggregatedInstances a)
    {
        var st = a.Store;
        var rows = new List<(string u, long w, string row)>();
        for (int i = 0; i < a.Count; i++)
        {
            var ev = a.Events(i).ToArray(); var sg = a.Segments(i).ToArray();
            var parts = new List<string> { st.UserKey(a.UserOf(i)), a.WindowStartOf(i).ToString() };
            for (int s = 0; s < 3; s++)
            {
                var sel = ev.Where((x, k) => sg[k] == s).ToArray();
                parts.Add(string.Join(',', sel));
                parts.Add(string.Join(',', sel.Select(st.TimeOf)));
                parts.Add(string.Join(',', sel.Select(x => st.Layout.SourceName(st.SourceOf(x)))));
            }
            var tsel = ev.Where((x, k) => sg[k] == 2).ToArray();
            for (int task = 0; task < 2; task++) parts.Add(string.Join(',', tsel.Select(x => Lab(st, x, task)?.ToString() ?? "null")));
            rows.Add((parts[0], a.WindowStartOf(i), string.Join('|', parts)));
        }
        return rows.OrderBy(x => x.u, StringComparer.Ordinal).ThenBy(x => x.w).Select(x => x.row).ToList();
    }

    private static void CrossCheck(EventStore st)
    {
        var agg = UserLevelAggregator.Aggregate(st);
        using var con = Load(st);
        var sqlRows = Rows(con, Sql(st.Layout.Schema));
        var csRows = CSharpRows(agg);
        Assert.Equal(csRows.Count, sqlRows.Count);
        for (int i = 0; i < csRows.Count; i++) Assert.Equal(sqlRows[i], csRows[i]);
        // The C# Parquet output, read back by DuckDB, is the same table.
        var path = Path.Combine(Path.GetTempPath(), $"mtfm-agg-{Guid.NewGuid():N}.parquet");
        try
        {
            AggregatedParquetWriter.Write(agg, path, rowGroupSize: 37);
            var fileRows = Rows(con, $"SELECT * FROM read_parquet('{path}') ORDER BY user_id, window_start");
            Assert.Equal(sqlRows, fileRows);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ReferenceSqlMatchesAggregatorOnRandomLogs()
    {
        for (ulong seed = 1; seed <= 8; seed++) CrossCheck(AggregatorTests.RandomStore(seed, 300));
    }

    [Fact]
    public void ReferenceSqlMatchesAggregatorOnSyntheticTiny() => CrossCheck(SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store);

    private static string DocText()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "docs", "data.md"))) return File.ReadAllText(Path.Combine(d.FullName, "docs", "data.md")).ReplaceLineEndings("\n");
        throw new InvalidOperationException("docs/data.md not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void DocumentationContainsTheExactSql() =>
        Assert.Contains(ReferenceSql.UserWindowAggregation.ReplaceLineEndings("\n"), DocText());

    [Fact]
    public void ReadmeContainsTheExactSql()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string readme = Path.Combine(d.FullName, "README.md");
            if (File.Exists(readme) && Directory.Exists(Path.Combine(d.FullName, "docs")))
            {
                Assert.Contains(ReferenceSql.UserWindowAggregation.ReplaceLineEndings("\n"), File.ReadAllText(readme).ReplaceLineEndings("\n"));
                return;
            }
        }
        Assert.Fail("README.md not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void DocumentationSchemaExampleIsValid()
    {
        var doc = DocText();
        int a = doc.IndexOf("```json\n", StringComparison.Ordinal) + 8, b = doc.IndexOf("```", a, StringComparison.Ordinal);
        var schema = DatasetSchema.Parse(doc[a..b], "docs/data.md");
        var l = new DataLayout(schema);
        Assert.Equal(3, l.ScenarioCount);
        Assert.Equal(7, l.Groups.Count); // H and R for two sequences, T for three scenarios
        // Shared features share one table: item_id is used by feed, groupbuy and both sequences.
        int itemTable = l.Tables.Single(t => t.Feature == "item_id").Id;
        Assert.Equal(6, l.Groups.Count(g => g.CategoricalTables.Contains(itemTable))); // T:feed, T:groupbuy, H/R of click and order
    }
}
