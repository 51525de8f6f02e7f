using System.Globalization;
using nietras.SeparatedValues;

namespace Mtfm.Engine.Data;

/// <summary>
/// Imports a GroupLens MovieLens directory (<c>ratings.csv</c>, <c>movies.csv</c>, optional <c>tags.csv</c>) as a
/// multi-domain dataset. Each movie belongs to one domain, chosen from its genres by <see cref="DomainOfGenres"/>;
/// every rating is an exposure in its movie's domain with click = rating ≥ 4 and conversion = rating ≥ 4.5, and also a
/// behaviour event of sequence <c>rating</c> (H = ratings before the window, R = ratings inside it); every tag is a
/// behaviour event of sequence <c>tag</c>. Windows are one day from the unix epoch; the split puts the last 10% of
/// rating time (by quantile of rating timestamps, rounded down to a window start) in test, the 10% before in valid.
/// </summary>
internal static class MovieLensImporter
{
    /// <summary>Domain names (scenarios), in scenario order.</summary>
    public static readonly string[] Domains = ["action", "drama", "thriller", "family"];

    private static readonly Dictionary<string, int> GenreDomain = new(StringComparer.Ordinal)
    {
        ["Action"] = 0, ["Adventure"] = 0, ["Sci-Fi"] = 0, ["Fantasy"] = 0, ["War"] = 0, ["Western"] = 0, ["IMAX"] = 0,
        ["Drama"] = 1, ["Romance"] = 1, ["Film-Noir"] = 1,
        ["Crime"] = 2, ["Mystery"] = 2, ["Thriller"] = 2, ["Horror"] = 2,
        ["Comedy"] = 3, ["Children"] = 3, ["Animation"] = 3, ["Musical"] = 3, ["Documentary"] = 3,
    };

    /// <summary>The genre vocabulary (primary_genre feature).</summary>
    public static readonly string[] Genres =
        ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir",
         "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western", "(no genres listed)"];

    /// <summary>
    /// Domain index of a movie from its genres: the domain holding most of its genres (action, drama, thriller,
    /// family), ties broken in that order; no known genre → family.
    /// </summary>
    public static int DomainOfGenres(IEnumerable<string> genres)
    {
        Span<int> votes = stackalloc int[Domains.Length];
        foreach (var g in genres) if (GenreDomain.TryGetValue(g, out int d)) votes[d]++;
        int best = 3, bestV = 0;
        for (int d = 0; d < Domains.Length; d++) if (votes[d] > bestV) { best = d; bestV = votes[d]; }
        return best;
    }

    private static DatasetSchema Schema(int movies)
    {
        var labels = new Dictionary<string, string> { ["click"] = "click", ["conversion"] = "conversion" };
        return new DatasetSchema
        {
            Name = "movielens", UserColumn = "userId", TimeColumn = "timestamp", SourceColumn = "source", WindowSeconds = 86400,
            Features =
            [
                new FeatureSpec { Name = "movie_id", Kind = "id", Cardinality = movies },
                new FeatureSpec { Name = "primary_genre", Kind = "categorical", Vocabulary = [.. Genres] },
                new FeatureSpec { Name = "genre_count", Kind = "numeric", Transform = "standardize" },
                new FeatureSpec { Name = "year", Kind = "numeric", Transform = "standardize" },
                new FeatureSpec { Name = "rating", Kind = "numeric", Transform = "standardize" },
            ],
            Scenarios = Domains.Select(d => new ScenarioSpec
            {
                Name = d, ItemFeatures = d == "family" ? ["movie_id", "primary_genre"] : ["movie_id", "primary_genre", "genre_count", "year"],
                Labels = new(labels),
            }).ToList(),
            Sequences =
            [
                new SequenceSpec { Name = "rating", Features = ["movie_id", "primary_genre", "rating"], HistoryCap = 100 },
                new SequenceSpec { Name = "tag", Features = ["movie_id", "primary_genre"], HistoryCap = 20 },
            ],
        };
    }

    /// <summary>Imports the directory <paramref name="dir"/>; malformed rows throw <see cref="DataFormatException"/> naming file, row and column.</summary>
    public static EventStore Import(string dir, TextWriter? log = null)
    {
        string moviesPath = Path.Combine(dir, "movies.csv"), ratingsPath = Path.Combine(dir, "ratings.csv"), tagsPath = Path.Combine(dir, "tags.csv");
        if (!File.Exists(moviesPath)) throw new FileNotFoundException($"MovieLens movies file not found: {moviesPath}", moviesPath);
        if (!File.Exists(ratingsPath)) throw new FileNotFoundException($"MovieLens ratings file not found: {ratingsPath}", ratingsPath);
        var dense = new Dictionary<long, int>();
        var domain = new List<int>(); var genre = new List<int>(); var gcount = new List<float>(); var year = new List<float>();
        using (var r = Sep.New(',').Reader(o => o with { Unescape = true, DisableColCountCheck = true }).FromFile(moviesPath))
        {
            int cId = Col(r, moviesPath, "movieId"), cTitle = Col(r, moviesPath, "title"), cGen = Col(r, moviesPath, "genres");
            long row = 0;
            foreach (var rw in r)
            {
                row++;
                CheckCols(rw, r.Header.ColNames.Count, moviesPath, row);
                long id = ParseLong(rw[cId].Span, moviesPath, row, "movieId");
                if (!dense.TryAdd(id, dense.Count)) throw new DataFormatException($"{moviesPath}: row {row}, column 'movieId': duplicate movie id '{id}'");
                var gs = rw[cGen].ToString().Split('|');
                domain.Add(DomainOfGenres(gs));
                int gi = Array.IndexOf(Genres, gs[0]);
                genre.Add(gi + 1); // 0 = OOV bucket for unknown genres
                gcount.Add(gs.Length);
                var title = rw[cTitle].Span.TrimEnd();
                float y = float.NaN;
                if (title.Length >= 6 && title[^1] == ')' && title[^6] == '(' && int.TryParse(title[^5..^1], NumberStyles.None, CultureInfo.InvariantCulture, out int yy)) y = yy;
                year.Add(y);
            }
        }
        // Movies without a year in the title get the mean year of the dated movies (documented imputation).
        var dated = year.Where(float.IsFinite).ToList();
        float meanYear = dated.Count > 0 ? dated.Average() : 2000f;
        for (int i = 0; i < year.Count; i++) if (!float.IsFinite(year[i])) year[i] = meanYear;
        var layout = new DataLayout(Schema(dense.Count));
        var st = new EventStore(layout, 1 << 16);
        int nTasks = 2, ratingSeq = layout.ScenarioCount, tagSeq = layout.ScenarioCount + 1;
        long nRatings = 0, nTags = 0;
        using (var r = Sep.New(',').Reader(o => o with { Unescape = true, DisableColCountCheck = true }).FromFile(ratingsPath))
        {
            int cU = Col(r, ratingsPath, "userId"), cM = Col(r, ratingsPath, "movieId"), cR = Col(r, ratingsPath, "rating"), cT = Col(r, ratingsPath, "timestamp");
            long row = 0;
            foreach (var rw in r)
            {
                row++;
                CheckCols(rw, r.Header.ColNames.Count, ratingsPath, row);
                var userText = rw[cU].Span;
                if (userText.IsEmpty) throw new DataFormatException($"{ratingsPath}: row {row}, column 'userId': missing user id ''");
                long mid = ParseLong(rw[cM].Span, ratingsPath, row, "movieId");
                if (!dense.TryGetValue(mid, out int m)) throw new DataFormatException($"{ratingsPath}: row {row}, column 'movieId': movie not in movies.csv '{mid}'");
                if (!double.TryParse(rw[cR].Span, NumberStyles.Float, CultureInfo.InvariantCulture, out double rating) || !double.IsFinite(rating))
                    throw new DataFormatException($"{ratingsPath}: row {row}, column 'rating': unparsable number '{rw[cR].Span.ToString()}'");
                long t = ParseLong(rw[cT].Span, ratingsPath, row, "timestamp");
                int u = st.InternUser(userText);
                int dom = domain[m];
                st.BeginEvent(u, t, dom);
                st.CatValues.Add(m + 1); st.CatValues.Add(genre[m]);
                if (dom != 3) { st.NumValues.Add(gcount[m]); st.NumValues.Add(year[m]); }
                st.Labels.Add(rating >= 4 ? (byte)1 : (byte)0); st.Labels.Add(rating >= 4.5 ? (byte)1 : (byte)0);
                for (int k = 0; k < nTasks; k++) st.TrueProb.Add(float.NaN);
                st.BeginEvent(u, t, ratingSeq);
                st.CatValues.Add(m + 1); st.CatValues.Add(genre[m]); st.NumValues.Add((float)rating);
                nRatings++;
            }
        }
        if (File.Exists(tagsPath))
        {
            using var r = Sep.New(',').Reader(o => o with { Unescape = true, DisableColCountCheck = true }).FromFile(tagsPath);
            int cU = Col(r, tagsPath, "userId"), cM = Col(r, tagsPath, "movieId"), cT = Col(r, tagsPath, "timestamp");
            long row = 0;
            foreach (var rw in r)
            {
                row++;
                CheckCols(rw, r.Header.ColNames.Count, tagsPath, row);
                long mid = ParseLong(rw[cM].Span, tagsPath, row, "movieId");
                if (!dense.TryGetValue(mid, out int m)) throw new DataFormatException($"{tagsPath}: row {row}, column 'movieId': movie not in movies.csv '{mid}'");
                long t = ParseLong(rw[cT].Span, tagsPath, row, "timestamp");
                int u = st.InternUser(rw[cU].Span);
                st.BeginEvent(u, t, tagSeq);
                st.CatValues.Add(m + 1); st.CatValues.Add(genre[m]);
                nTags++;
            }
        }
        // Temporal split by rating-time quantiles, aligned to window starts.
        var times = new long[st.ExposureCount];
        for (int x = 0; x < times.Length; x++) times[x] = st.TimeOf(st.ExposureEvent.Items[x]);
        Array.Sort(times);
        var win = WindowSpec.From(layout.Schema);
        if (times.Length > 0)
        {
            long q80 = times[(int)(0.8 * (times.Length - 1))], q90 = times[(int)(0.9 * (times.Length - 1))];
            layout.Schema.Split = new SplitSpec { ValidStart = win.StartOf(win.IndexOf(q80)), TestStart = win.StartOf(win.IndexOf(q90)) };
        }
        log?.WriteLine($"MovieLens {dir}: {dense.Count} movies, {st.UserCount} users, {nRatings} ratings, {nTags} tags, {st.Count} events");
        return st;
    }

    private static int Col(SepReader r, string file, string name)
    {
        int i = r.Header.ColNames.ToList().IndexOf(name);
        if (i < 0) throw new DataFormatException($"{file}: header has no column '{name}'");
        return i;
    }

    private static void CheckCols(SepReader.Row rw, int expected, string file, long row)
    {
        if (rw.ColCount != expected) throw new DataFormatException($"{file}: row {row}, column '#{Math.Min(rw.ColCount, expected) + 1}': wrong column count '{rw.ColCount}' (header has {expected})");
    }

    private static long ParseLong(ReadOnlySpan<char> s, string file, long row, string col)
    {
        if (!long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
            throw new DataFormatException($"{file}: row {row}, column '{col}': unparsable integer '{s.ToString()}'");
        return v;
    }
}
