using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

public class GeneratorAndBatchTests
{
    [Fact]
    public void GeneratorIsDeterministicAndRecordsTruth()
    {
        var a = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        var b = SyntheticGenerator.Generate(SyntheticConfig.Tiny).Store;
        Assert.Equal(a.Count, b.Count);
        Assert.True(a.Time.Span.SequenceEqual(b.Time.Span) && a.CatValues.Span.SequenceEqual(b.CatValues.Span) && a.Labels.Span.SequenceEqual(b.Labels.Span));
        Assert.True(a.TrueProb.Span.SequenceEqual(b.TrueProb.Span));
        var c = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Seed = 7 }).Store;
        Assert.False(a.Count == c.Count && a.Time.Span.SequenceEqual(c.Time.Span));
        // Three scenarios with different feature sets, all exposures carry p(click) in (0,1).
        var l = a.Layout;
        Assert.Equal(3, l.ScenarioCount);
        Assert.Equal(3, Enumerable.Range(0, 3).Select(s => string.Join(",", l.Schema.Scenarios[s].AllFeatures())).Distinct().Count());
        for (int e = 0; e < a.Count; e++)
            if (a.IsExposure(e)) { float p = a.TrueProbability(e, 0); Assert.True(p > 0 && p < 1); }
        Assert.True(Enumerable.Range(0, 3).All(s => Enumerable.Range(0, a.Count).Any(e => a.SourceOf(e) == s)), "every scenario has exposures");
    }

    [Fact]
    public void DefaultSizeHasLearnableSignalAndKnownBayesAuc()
    {
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Default with { Users = 500 });
        double auc = ds.BayesOptimalAuc(0, SplitPart.Test);
        Assert.InRange(auc, 0.65, 0.95);
        double aucCvr = ds.BayesOptimalAuc(1, SplitPart.Test);
        Assert.InRange(aucCvr, 0.65, 0.99);
        // Click rate moderate; labels drawn from the recorded probabilities (mean label ≈ mean probability).
        var st = ds.Store;
        double sumP = 0, sumY = 0; int n = 0;
        for (int e = 0; e < st.Count; e++) if (st.IsExposure(e)) { sumP += st.TrueProbability(e, 0); sumY += st.Label(e, 0); n++; }
        Assert.InRange(sumY / n, 0.05, 0.5);
        Assert.InRange(sumY / n - sumP / n, -0.01, 0.01);
        for (int sc = 0; sc < 3; sc++) Assert.InRange(ds.BayesOptimalAuc(0, SplitPart.Test, sc), 0.6, 0.97);
        Assert.True(double.IsNaN(ds.BayesOptimalAuc(1, SplitPart.Test, 2)), "coupon has no conversion label");
        var agg = UserLevelAggregator.Aggregate(st);
        Assert.True(agg.ExposuresPerInstance > 3, agg.ToString());
        var summary = st.Summary();
        Assert.Contains("scenario coupon:", summary);
        Assert.Contains("sequence order:", summary);
        Assert.Contains($"{st.Count} events ({st.ExposureCount} exposures), 500 users", summary);
        AggregatorTests.CheckInstanceInvariants(agg);
    }

    [Fact]
    public void TrueProbabilitiesAreAFunctionOfWhatTheModelSees()
    {
        // Recompute every exposure's p(click) and p(click ∧ conversion) from its aggregated instance alone: the
        // exposure's own features and the click tokens it may see (H, and R strictly earlier than the exposure).
        var cfg = SyntheticConfig.Tiny with { Users = 150, Days = 6 };
        var ds = SyntheticGenerator.Generate(cfg);
        var st = ds.Store;
        int clickSource = st.Layout.ScenarioCount; // the first behaviour sequence
        var agg = UserLevelAggregator.Aggregate(st);
        int checkedExposures = 0, withRecentClick = 0;
        var visible = new List<int>();
        for (int i = 0; i < agg.Count; i++)
        {
            var evs = agg.Events(i); var seg = agg.Segments(i);
            for (int q = 0; q < evs.Length; q++)
            {
                if (seg[q] != (byte)SegmentKind.Target) continue;
                int ev = evs[q]; long t = st.TimeOf(ev);
                visible.Clear();
                for (int k = 0; k < evs.Length; k++)
                    if (seg[k] != (byte)SegmentKind.Target && st.SourceOf(evs[k]) == clickSource && st.TimeOf(evs[k]) < t) visible.Add(evs[k]);
                Assert.True(visible.Zip(visible.Skip(1)).All(p => st.TimeOf(p.First) <= st.TimeOf(p.Second)), "click tokens are time-ordered");
                int scen = st.SourceOf(ev);
                var cat = st.Categorical(ev); var num = st.Numeric(ev);
                int category = cat[scen == 0 ? 3 : scen == 1 ? 2 : 1] - 1;
                int item = scen == 2 ? -1 : cat[scen == 0 ? 2 : 1] - 1;
                var memory = visible.Skip(Math.Max(0, visible.Count - cfg.InterestClicks)).ToList();
                int same = memory.Count(e => st.Categorical(e)[1] - 1 == category);
                double interest = SyntheticGenerator.Interest(same, memory.Count);
                bool sameAsLast = visible.Count > 0 && st.Categorical(visible[^1])[1] - 1 == category;
                double since = visible.Count > 0 ? t - st.TimeOf(visible[^1]) : 0;
                if (sameAsLast && since < SyntheticGenerator.RecencySeconds) withRecentClick++;
                double quality = item >= 0 ? ds.ItemQuality[item] : 0;
                double logit = SyntheticGenerator.ClickLogit(scen, interest, sameAsLast, since, quality,
                    scen == 0 ? cat[1] - 1 : 0, scen == 1 ? num[0] : 1, scen == 2 ? cat[0] - 1 : 0, scen == 2 ? num[0] : 0);
                double pClick = 1 / (1 + Math.Exp(-logit));
                Assert.Equal(pClick, st.TrueProbability(ev, 0), 1e-6);
                if (scen != 2)
                {
                    double pCvr = 1 / (1 + Math.Exp(-SyntheticGenerator.ConversionLogit(scen, interest, quality, scen == 1 ? num[0] : 1)));
                    Assert.Equal(pClick * pCvr, st.TrueProbability(ev, 1), 1e-6);
                }
                checkedExposures++;
            }
        }
        Assert.Equal(st.ExposureCount, checkedExposures);
        Assert.True(withRecentClick > 50, $"only {withRecentClick} exposures follow a same-category click within the recency time");
    }

    [Fact]
    public void NumericStatsUseTrainingEventsAndTheSchemaTransform()
    {
        var l = new DataLayout(AggregatorTests.RandomSchema(1, 1));
        var st = new EventStore(l);
        int u = st.InternUser("u");
        foreach (var (t, v) in new[] { (1L, 1f), (2L, 3f), (100L, 1000f) })
        {
            st.BeginEvent(u, t, 1); st.NumValues.Add(v); st.Labels.Add(0); st.Labels.Add(255); st.TrueProb.Add(0); st.TrueProb.Add(0);
        }
        var stats = st.ComputeNumericStats(beforeTime: 50); // the event at t=100 is not training data
        Assert.Equal(2f, stats.Mean[1]);
        Assert.Equal(1f, stats.Std[1]);
        Assert.Equal(1f, stats.Transform(1, 3f));
        l.Schema.Features[1].Transform = "log1p";
        Assert.Equal((float)Math.Log(4), stats.Transform(1, 3f), 6);
        Assert.Equal((float)-Math.Log(4), stats.Transform(1, -3f), 6);
    }

    [Fact]
    public void AucMatchesPairCounting()
    {
        var rng = new Random(3);
        var s = Enumerable.Range(0, 200).Select(_ => (float)Math.Round(rng.NextDouble(), 1)).ToArray();
        var y = s.Select(v => (byte)(rng.NextDouble() < v ? 1 : 0)).ToArray();
        double num = 0, den = 0;
        for (int i = 0; i < s.Length; i++) for (int j = 0; j < s.Length; j++)
            if (y[i] == 1 && y[j] == 0) { den++; num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0; }
        Assert.Equal(num / den, SyntheticDataset.Auc(s, y), 12);
    }

    [Fact]
    public void BatchesCarryEveryTokenWithItsFeatures()
    {
        var ds = SyntheticGenerator.Generate(SyntheticConfig.Tiny);
        var st = ds.Store; var l = st.Layout;
        var agg = UserLevelAggregator.Aggregate(st, part: SplitPart.Train);
        var stats = st.ComputeNumericStats(l.Schema.Split!.ValidStart);
        var bb = new BatchBuilder(agg, stats);
        int instances = 0, targets = 0; long tokens = 0;
        foreach (var b in bb.Batches(maxTokens: 500, shuffleSeed: 5))
        {
            Assert.True(b.TokenCount <= 500 || b.InstanceCount == 1);
            Assert.Equal(b.TokenCount, b.Offsets[^1]);
            instances += b.InstanceCount; targets += b.TargetCount; tokens += b.TokenCount;
            for (int g = 0; g < b.Blocks.Length; g++)
            {
                var blk = b.Blocks[g];
                Assert.Equal(l.Groups[g].CategoricalTables.Length, blk.CategoricalWidth);
                for (int r = 0; r < blk.Rows; r++)
                {
                    int t = blk.TokenIndex[r];
                    Assert.Equal(g, b.Group[t]); Assert.Equal(r, b.RowInGroup[t]);
                    Assert.Equal((byte)l.Groups[g].Segment, b.Segment[t]);
                    for (int c = 0; c < blk.CategoricalWidth; c++)
                    {
                        int row = blk.Categorical[r * blk.CategoricalWidth + c];
                        Assert.InRange(row, 0, l.Tables[l.Groups[g].CategoricalTables[c]].Rows - 1);
                        Assert.Equal(st.Categorical(b.EventId[t])[c], row);
                    }
                    for (int c = 0; c < blk.NumericWidth; c++)
                        Assert.Equal(stats.Transform(l.Groups[g].NumericFeatures[c], st.Numeric(b.EventId[t])[c]), blk.Numeric[r * blk.NumericWidth + c]);
                }
            }
            for (int j = 0; j < b.TargetCount; j++)
            {
                int t = b.TargetToken[j], ev = b.EventId[t];
                Assert.Equal(2, b.Segment[t]);
                Assert.InRange(t, b.Offsets[b.TargetInstance[j]], b.Offsets[b.TargetInstance[j] + 1] - 1);
                Assert.Equal(st.SourceOf(ev), b.TargetScenario[j]);
                for (int k = 0; k < b.TaskCount; k++)
                {
                    int lab = st.Label(ev, k);
                    Assert.Equal(lab >= 0 ? 1 : 0, b.LabelMask[j * b.TaskCount + k]);
                    Assert.Equal(Math.Max(lab, 0), b.Labels[j * b.TaskCount + k]);
                }
                Assert.Equal(st.TrueProbability(ev, 0), b.TrueProbabilities![j * b.TaskCount]);
            }
        }
        Assert.Equal(agg.Count, instances);
        Assert.Equal(agg.TargetCount, targets);
        Assert.Equal(agg.TokenCount, tokens);
    }

    [Fact]
    public void CsvAndParquetRoundTripTheStore()
    {
        var st = SyntheticGenerator.Generate(SyntheticConfig.Tiny with { Users = 15 }).Store;
        var dir = Directory.CreateTempSubdirectory("mtfm-data-").FullName;
        try
        {
            string csv = Path.Combine(dir, "e.csv"), pq = Path.Combine(dir, "e.parquet");
            EventLogWriter.WriteCsv(st, csv);
            EventLogWriter.WriteParquet(st, pq, rowGroupSize: 333);
            foreach (var (path, read) in new (string, Func<string, EventStore, ReadSummary>)[] { (csv, (p, s) => CsvEventReader.Read(p, s)), (pq, (p, s) => ParquetEventReader.Read(p, s)) })
            {
                var back = new EventStore(st.Layout);
                var sum = read(path, back);
                Assert.Equal(st.Count, sum.RowsUsed);
                Assert.Equal(st.ExposureCount, sum.Exposures);
                Assert.True(st.Time.Span.SequenceEqual(back.Time.Span), path);
                Assert.True(st.Source.Span.SequenceEqual(back.Source.Span), path);
                Assert.True(st.CatValues.Span.SequenceEqual(back.CatValues.Span), path);
                Assert.True(st.NumValues.Span.SequenceEqual(back.NumValues.Span), path);
                Assert.True(st.Labels.Span.SequenceEqual(back.Labels.Span), path);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ParquetMalformedRowNamesFileRowAndColumn()
    {
        var l = new DataLayout(AggregatorTests.RandomSchema(2, 2));
        var st = new EventStore(l);
        int u = st.InternUser("u");
        st.BeginEvent(u, 5, 2); st.CatValues.Add(3);
        st.BeginEvent(u, 6, 1); st.NumValues.Add(float.NaN); st.Labels.Add(1); st.Labels.Add(255); st.TrueProb.Add(0); st.TrueProb.Add(0);
        var pq = Path.Combine(Path.GetTempPath(), $"mtfm-bad-{Guid.NewGuid():N}.parquet");
        try
        {
            EventLogWriter.WriteParquet(st, pq);
            var e = Assert.Throws<DataFormatException>(() => ParquetEventReader.Read(pq, new EventStore(l)));
            Assert.Equal($"{pq}: row 2, column 'v': non-finite numeric value 'NaN'", e.Message);
        }
        finally { File.Delete(pq); }
    }

    [Theory]
    [InlineData("unix_seconds")]
    [InlineData("iso8601")]
    [InlineData("unix_millis")] // a typed timestamp is already seconds: the time format is for integer columns
    public async Task ParquetTimestampColumnsAreRead(string timeFormat)
    {
        var schema = AggregatorTests.RandomSchema(1, 1);
        schema.TimeFormat = timeFormat;
        var l = new DataLayout(schema);
        var pq = Path.Combine(Path.GetTempPath(), $"mtfm-ts-{Guid.NewGuid():N}.parquet");
        var ct = TestContext.Current.CancellationToken;
        try
        {
            var fields = new Parquet.Schema.DataField[] { new Parquet.Schema.DataField<string>("user_id"), new Parquet.Schema.DataField<DateTime>("ts"), new Parquet.Schema.DataField<string>("source"), new Parquet.Schema.DataField<long?>("x"), new Parquet.Schema.DataField<double?>("v"), new Parquet.Schema.DataField<int?>("c"), new Parquet.Schema.DataField<int?>("v2") };
            await using (var fs = File.Create(pq))
            await using (var w = await Parquet.ParquetWriter.CreateAsync(new Parquet.Schema.ParquetSchema(fields), fs, cancellationToken: ct))
            {
                using var rg = w.CreateRowGroup();
                await rg.WriteAsync(fields[0], new[] { "a", "b" });
                await rg.WriteAsync<DateTime>(fields[1], new[] { new DateTime(2025, 1, 1, 0, 0, 10, DateTimeKind.Utc), new DateTime(1969, 12, 31, 23, 59, 59, DateTimeKind.Utc) }.AsMemory(), null, null, ct);
                await rg.WriteAsync(fields[2], new[] { "s0", "s0" });
                await rg.WriteAsync<long>(fields[3], new long?[] { 3, 4 }.AsMemory(), null, null, ct);
                await rg.WriteAsync<double>(fields[4], new double?[] { null, null }.AsMemory(), null, null, ct);
                await rg.WriteAsync<int>(fields[5], new int?[] { null, null }.AsMemory(), null, null, ct);
                await rg.WriteAsync<int>(fields[6], new int?[] { null, null }.AsMemory(), null, null, ct);
            }
            var st = new EventStore(l);
            var sum = await ParquetEventReader.ReadAsync(pq, st, null, ct);
            Assert.Equal(2, sum.RowsUsed);
            Assert.Equal(1735689610L, st.TimeOf(0));
            Assert.Equal(-1L, st.TimeOf(1));
            Assert.Equal(4, st.Categorical(0)[0]);
        }
        finally { File.Delete(pq); }
    }

    [Fact]
    public void MovieLensSmallImports()
    {
        var st = MovieLensImporter.Import(DataTestPaths.MovieLensSmall());
        var l = st.Layout;
        int ratings = File.ReadLines(Path.Combine(DataTestPaths.MovieLensSmall(), "ratings.csv")).Count() - 1;
        Assert.Equal(ratings, st.ExposureCount);
        Assert.Equal(4, l.ScenarioCount);
        var sp = l.Schema.Split!;
        Assert.True(sp.ValidStart < sp.TestStart);
        var agg = UserLevelAggregator.Aggregate(st);
        Assert.Equal(ratings, agg.TargetCount);
        Assert.True(agg.ExposuresPerInstance > 2, agg.ToString());
        AggregatorTests.CheckInstanceInvariants(agg);
        // click = rating >= 4, conversion = rating >= 4.5 (the matching R event carries the rating).
        for (int e = 0; e + 1 < Math.Min(st.Count, 5000); e++)
            if (st.IsExposure(e))
            {
                float rating = st.Numeric(e + 1)[0];
                Assert.Equal(rating >= 4 ? 1 : 0, st.Label(e, 0));
                Assert.Equal(rating >= 4.5 ? 1 : 0, st.Label(e, 1));
            }
        Assert.Equal(0, MovieLensImporter.DomainOfGenres(["Action", "Comedy", "Sci-Fi"]));
        Assert.Equal(3, MovieLensImporter.DomainOfGenres(["Animation", "Children", "Drama"]));
        Assert.Equal(2, MovieLensImporter.DomainOfGenres(["Crime", "Thriller", "Drama"]));
        Assert.Equal(3, MovieLensImporter.DomainOfGenres(["(no genres listed)"]));
    }

    [Fact]
    public void MovieLensMalformedRatingIsNamed()
    {
        var dir = Directory.CreateTempSubdirectory("mtfm-ml-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "movies.csv"), "movieId,title,genres\n1,\"Toy Story, The (1995)\",Animation|Comedy\n");
            File.WriteAllText(Path.Combine(dir, "ratings.csv"), "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,1,four,200\n");
            var e = Assert.Throws<DataFormatException>(() => MovieLensImporter.Import(dir));
            Assert.Equal($"{Path.Combine(dir, "ratings.csv")}: row 2, column 'rating': unparsable number 'four'", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
