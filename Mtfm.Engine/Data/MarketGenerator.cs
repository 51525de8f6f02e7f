using System.Globalization;

namespace Mtfm.Engine.Data;

/// <summary>AUC on one scenario (or "(all)") of the true click probability and of two weaker oracles.</summary>
/// <param name="Scenario">Scenario name, or "(all)" for every exposure of the part.</param>
/// <param name="Exposures">Exposures counted.</param>
/// <param name="BayesAuc">AUC of the true p(click) against the drawn clicks: what no model beats in expectation.</param>
/// <param name="NoUserAuc">AUC of the truth's logit without its user terms (latent affinity, interest, recency).</param>
/// <param name="NoRecencyAuc">AUC of the truth's logit without its recency term.</param>
/// <param name="BayesCtcvrAuc">AUC of the true p(click ∧ conversion) (NaN where the scenario has no conversion label).</param>
internal sealed record MarketTruthRow(string Scenario, long Exposures, double BayesAuc, double NoUserAuc, double NoRecencyAuc, double BayesCtcvrAuc);

/// <summary>A <c>synthetic:market</c> dataset with its truth and two oracles per exposure.</summary>
internal sealed class MarketDataset
{
    /// <summary>The events; exposures carry their true probabilities (task 0 = p(click), task 1 = p(click ∧ conversion)).</summary>
    public required EventStore Store { get; init; }
    /// <summary>The configuration that produced it.</summary>
    public required MarketConfig Config { get; init; }
    internal float[] NoUser { get; init; } = [];     // per exposure index: sigmoid of the truth's logit without the user terms
    internal float[] NoRecency { get; init; } = [];  // per exposure index: sigmoid of the truth's logit without the recency term

    /// <summary>Per scenario and pooled: the Bayes AUC of the clicks and the AUC of the two oracles, on the windows of <paramref name="part"/>.</summary>
    public IReadOnlyList<MarketTruthRow> TruthReport(SplitPart part = SplitPart.Test)
    {
        var st = Store; var l = st.Layout; var sp = l.Schema.Split!; var win = WindowSpec.From(l.Schema);
        var rows = new List<MarketTruthRow>();
        for (int sc = -1; sc < l.ScenarioCount; sc++)
        {
            var p = new List<float>(); var a = new List<float>(); var b = new List<float>(); var y = new List<byte>();
            var pc = new List<float>(); var yc = new List<byte>();
            for (int x = 0; x < st.ExposureCount; x++)
            {
                int ev = st.ExposureEvent.Items[x];
                long ws = win.StartOf(win.IndexOf(st.Time.Items[ev]));
                bool inPart = part switch { SplitPart.Train => ws < sp.ValidStart, SplitPart.Valid => ws >= sp.ValidStart && ws < sp.TestStart, SplitPart.Test => ws >= sp.TestStart, _ => true };
                if (!inPart || (sc >= 0 && st.SourceOf(ev) != sc)) continue;
                p.Add(st.TrueProbability(ev, 0)); a.Add(NoUser[x]); b.Add(NoRecency[x]); y.Add((byte)st.Label(ev, 0));
                if (st.Label(ev, 1) >= 0) { pc.Add(st.TrueProbability(ev, 1)); yc.Add((byte)st.Label(ev, 1)); }
            }
            var ya = y.ToArray();
            rows.Add(new MarketTruthRow(sc < 0 ? "(all)" : l.Schema.Scenarios[sc].Name, ya.Length,
                SyntheticDataset.Auc(p.ToArray(), ya), SyntheticDataset.Auc(a.ToArray(), ya), SyntheticDataset.Auc(b.ToArray(), ya),
                pc.Count == 0 ? double.NaN : SyntheticDataset.Auc(pc.ToArray(), yc.ToArray())));
        }
        return rows;
    }

    /// <summary>The truth report as a text table.</summary>
    public string TruthTable(SplitPart part = SplitPart.Test)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"synthetic:market truth on the {part.ToString().ToLowerInvariant()} windows (click AUC):");
        sb.AppendLine("  scenario   exposures  Bayes   no-user  no-recency  Bayes-ctcvr");
        foreach (var r in TruthReport(part))
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {r.Scenario,-9} {r.Exposures,10}  {r.BayesAuc:F4}  {r.NoUserAuc:F4}   {r.NoRecencyAuc:F4}      {(double.IsNaN(r.BayesCtcvrAuc) ? "-" : r.BayesCtcvrAuc.ToString("F4", CultureInfo.InvariantCulture))}");
        return sb.ToString();
    }
}

/// <summary>
/// <c>synthetic:market</c>: a deterministic multi-scenario log that is harder and closer to real logs than
/// <see cref="SyntheticGenerator"/>, with exact true probabilities. Four scenarios: <c>home</c> (user_id, hour,
/// item_id, category), <c>search</c> (user_id, item_id, query_cat, price), <c>local</c> (user_id, shop_id, local_cat,
/// distance) and <c>promo</c> (promo_type, discount, promo_cat; click label only, no user feature). query_cat, local_cat
/// and promo_cat are the same category concept as <c>category</c> under each scenario's own vocabulary (names and row
/// order differ). Behaviour sequences: <c>click</c> (item_id, category, scenario; clicks of home and search),
/// <c>visit</c> (shop_id, local_cat; clicks of local), <c>browse</c> (item_id, category; organic, not caused by an
/// exposure) and <c>order</c> (item_id, category, price; 60 s to 30 min after a converted click).
/// <para>
/// Users, items, shops and categories carry latent factors shared by every scenario; items and shops a quality.
/// Activity is heavy-tailed (a user has n sessions with P(n ≥ k) = 1/k up to <see cref="MarketConfig.MaxSessions"/>);
/// about two users in three use one scenario only. A session is a few pages; a page shows several exposures at one
/// second. A click is logged at its exposure's second, written before or after the exposure in file order at random;
/// orders come at least 60 s later (both are leakage traps: a model that sees behaviour of the exposure's own second or
/// later beats the Bayes AUC).
/// </para>
/// <para>
/// The true click logit is a function of what is observable strictly before the exposure: the scenario and the
/// exposure's features (item/shop quality and latent factor through their ids, hour, price, distance, discount, promo
/// type), the user's latent factor (through the user's identity), the user's interest = share of the exposure's
/// category among the last <see cref="MarketConfig.InterestEvents"/> click/visit/browse events strictly before the
/// exposure's second, and a recency term when the most recent such event had the same category (decaying with its age).
/// Own-second clicks of the same page never enter the truth of that page. Labels are Bernoulli draws.
/// </para>
/// </summary>
internal static class MarketGenerator
{
    /// <summary>The scenario names in source order.</summary>
    public static readonly string[] ScenarioNames = ["home", "search", "local", "promo"];
    private const int Home = 0, Search = 1, Local = 2, Promo = 3;
    private const int SeqClick = 4, SeqVisit = 5, SeqBrowse = 6, SeqOrder = 7;
    /// <summary>Seconds over which the recency boost decays (e-folding time).</summary>
    internal const double RecencySeconds = 1800;

    /// <summary>The schema of generated data (windows of one day, the last two days valid/test).</summary>
    public static DatasetSchema Schema(MarketConfig c)
    {
        int valid = Math.Max(1, c.Days - 2), test = Math.Max(1, c.Days - 1);
        long epoch = SyntheticGenerator.Epoch;
        // Each scenario names the category concept in its own words and order.
        var perm = Permutation(c.Categories, c.Seed ^ 0xA5A5UL);
        return new DatasetSchema
        {
            Name = "market",
            UserColumn = "user",
            WindowSeconds = 86400,
            WindowOrigin = epoch,
            Split = new SplitSpec { ValidStart = epoch + valid * 86400L, TestStart = epoch + test * 86400L },
            Features =
            [
                new FeatureSpec { Name = "user_id", Kind = "id", Cardinality = c.Users },
                new FeatureSpec { Name = "item_id", Kind = "id", Cardinality = c.Items },
                new FeatureSpec { Name = "shop_id", Kind = "id", Cardinality = c.Shops },
                new FeatureSpec { Name = "category", Kind = "id", Cardinality = c.Categories },
                new FeatureSpec { Name = "hour", Kind = "id", Cardinality = 24 },
                new FeatureSpec { Name = "query_cat", Kind = "categorical", Vocabulary = perm.Select(k => "q:" + CategoryWord(k)).ToList() },
                new FeatureSpec { Name = "local_cat", Kind = "categorical", Vocabulary = Enumerable.Range(0, c.Categories).Select(k => "类目-" + k.ToString("D2", CultureInfo.InvariantCulture)).ToList() },
                new FeatureSpec { Name = "promo_cat", Kind = "categorical", Vocabulary = Enumerable.Range(0, c.Categories).Select(k => "Aktion " + CategoryWord((k * 7 + 3) % c.Categories)).ToList() },
                new FeatureSpec { Name = "promo_type", Kind = "categorical", Vocabulary = ["bundle", "percent", "cashback"] },
                new FeatureSpec { Name = "scenario", Kind = "categorical", Vocabulary = ["home", "search"] },
                new FeatureSpec { Name = "price", Kind = "numeric", Transform = "log1p_standardize" },
                new FeatureSpec { Name = "distance", Kind = "numeric", Transform = "log1p_standardize" },
                new FeatureSpec { Name = "discount", Kind = "numeric", Transform = "standardize" },
            ],
            Scenarios =
            [
                new ScenarioSpec { Name = "home", UserFeatures = ["user_id"], ContextFeatures = ["hour"], ItemFeatures = ["item_id", "category"], Labels = new() { ["click"] = "click", ["conversion"] = "conversion" } },
                new ScenarioSpec { Name = "search", UserFeatures = ["user_id"], ItemFeatures = ["item_id", "query_cat", "price"], Labels = new() { ["click"] = "click", ["conversion"] = "conversion" } },
                new ScenarioSpec { Name = "local", UserFeatures = ["user_id"], ItemFeatures = ["shop_id", "local_cat", "distance"], Labels = new() { ["click"] = "click", ["conversion"] = "conversion" } },
                new ScenarioSpec { Name = "promo", ContextFeatures = ["promo_type", "discount"], ItemFeatures = ["promo_cat"], Labels = new() { ["click"] = "click" } },
            ],
            Sequences =
            [
                new SequenceSpec { Name = "click", Features = ["item_id", "category", "scenario"], HistoryCap = 50 },
                new SequenceSpec { Name = "visit", Features = ["shop_id", "local_cat"], HistoryCap = 30 },
                new SequenceSpec { Name = "browse", Features = ["item_id", "category"], HistoryCap = 50 },
                new SequenceSpec { Name = "order", Features = ["item_id", "category", "price"], HistoryCap = 20 },
            ],
        };
    }

    private static string CategoryWord(int k) => "c" + k.ToString("D2", CultureInfo.InvariantCulture);

    private static int[] Permutation(int n, ulong seed)
    {
        var p = Enumerable.Range(0, n).ToArray();
        var r = new SplitMix64(seed);
        for (int i = n - 1; i > 0; i--) { int j = (int)r.NextBelow((ulong)(i + 1)); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>Generates the dataset (a pure function of <paramref name="config"/>).</summary>
    public static MarketDataset Generate(MarketConfig? config = null)
    {
        var c = config ?? MarketConfig.Default;
        if (c.Users <= 0 || c.Items <= 0 || c.Shops <= 0 || c.Categories < 2 || c.Factors <= 0 || c.Days < 3 || c.MaxSessions <= 0 || c.InterestEvents <= 0)
            throw new ArgumentException($"config sizes must be > 0 (categories ≥ 2, days ≥ 3): {c}", nameof(config));
        var schema = Schema(c);
        var layout = new DataLayout(schema);
        foreach (var q in schema.Sequences)
            if (q.Name != "order" && c.InterestEvents > q.HistoryCap)
                throw new ArgumentException($"InterestEvents = {c.InterestEvents} exceeds the {q.Name} history cap {q.HistoryCap}: the truth would not be observable.", nameof(config));
        int nc = c.Categories, ni = c.Items, ns = c.Shops, nf = c.Factors;
        var rng = new SplitMix64(c.Seed);
        var catVec = new double[nc * nf];
        for (int i = 0; i < catVec.Length; i++) catVec[i] = rng.NextGaussian();
        var itemCat = new int[ni]; var itemVec = new double[ni * nf]; var itemQ = new double[ni]; var itemPrice = new float[ni];
        for (int i = 0; i < ni; i++)
        {
            int k = itemCat[i] = (int)rng.NextBelow((ulong)nc);
            for (int f = 0; f < nf; f++) itemVec[i * nf + f] = catVec[k * nf + f] + 0.6 * rng.NextGaussian();
            itemQ[i] = 0.5 * rng.NextGaussian();
            itemPrice[i] = (float)Math.Round(Math.Exp(3 + 0.8 * rng.NextGaussian()), 2);
        }
        var shopCat = new int[ns]; var shopVec = new double[ns * nf]; var shopQ = new double[ns]; var shopX = new double[ns]; var shopY = new double[ns];
        for (int s = 0; s < ns; s++)
        {
            int k = shopCat[s] = (int)rng.NextBelow((ulong)nc);
            for (int f = 0; f < nf; f++) shopVec[s * nf + f] = catVec[k * nf + f] + 0.6 * rng.NextGaussian();
            shopQ[s] = 0.5 * rng.NextGaussian();
            shopX[s] = 10 * rng.NextDouble(); shopY[s] = 10 * rng.NextDouble();
        }
        var items = new ZipfPicker(itemCat, nc, c.ZipfExponent);
        var shops = new ZipfPicker(shopCat, nc, c.ZipfExponent);
        // Each scenario's own category vocabulary: local_cat k ↔ row k + 1; query_cat and promo_cat through their lists.
        int fUser = 0, fItem = 1, fShop = 2, fCat = 3, fHour = 4;
        var queryRow = new int[nc]; var promoRow = new int[nc];
        for (int v = 0; v < nc; v++)
        {
            int k = int.Parse(schema.Features[5].Vocabulary![v].AsSpan(3), CultureInfo.InvariantCulture);
            queryRow[k] = v + 1;
            int k2 = int.Parse(schema.Features[7].Vocabulary![v].AsSpan("Aktion c".Length), CultureInfo.InvariantCulture);
            promoRow[k2] = v + 1;
        }

        var st = new EventStore(layout, 1 << 16) { HasTrueProbabilities = true };
        var noUser = new GrowBuffer<float>(1 << 16); var noRecency = new GrowBuffer<float>(1 << 16);
        double[] scenShare = [0.45, 0.25, 0.15, 0.15];
        var sessions = new List<long>();
        var recent = new int[c.InterestEvents]; var catCount = new int[nc];
        var uvec = new double[nf];
        var page = new List<PageExposure>();
        for (int u = 0; u < c.Users; u++)
        {
            // Per-user stream: users are independent, so the dataset does not depend on generation order.
            var r = new SplitMix64(c.Seed ^ (0x9E3779B97F4A7C15UL * (ulong)(u + 1)));
            int user = st.InternUser("顾客-" + u.ToString(CultureInfo.InvariantCulture));
            for (int f = 0; f < nf; f++) uvec[f] = r.NextGaussian() / Math.Sqrt(nf);
            double ux = 10 * r.NextDouble(), uy = 10 * r.NextDouble();
            int cat1 = 0; double best = double.NegativeInfinity;
            for (int k = 0; k < nc; k++) { double a = Dot(uvec, catVec, k, nf); if (a > best) { best = a; cat1 = k; } }
            int cat2 = (int)r.NextBelow((ulong)nc);
            int s1 = PickShare(scenShare, r.NextDouble()), s2 = s1; double w1 = 1;
            if (r.NextDouble() >= 0.65) { do s2 = PickShare(scenShare, r.NextDouble()); while (s2 == s1); w1 = 0.5 + 0.4 * r.NextDouble(); }
            int n = (int)Math.Min(c.MaxSessions, Math.Floor(1 / (1 - r.NextDouble())));
            sessions.Clear();
            for (int s = 0; s < n; s++) sessions.Add(SyntheticGenerator.Epoch + (long)r.NextBelow((ulong)c.Days) * 86400 + (long)r.NextBelow(86400 - 7200));
            sessions.Sort();
            int head = 0, filled = 0; Array.Clear(catCount);
            int lastCat = -1; long lastTime = 0, prevEnd = long.MinValue / 2;
            void Remember(int cat, long t)
            {
                if (filled == recent.Length) catCount[recent[head]]--; else filled++;
                recent[head] = cat; catCount[cat]++; head = (head + 1) % recent.Length;
                lastCat = cat; lastTime = t;
            }
            void Browse(ref SplitMix64 rr, long t)
            {
                double y = rr.NextDouble();
                int k = y < 0.6 ? cat1 : y < 0.85 ? cat2 : (int)rr.NextBelow((ulong)nc);
                int item = items.InCategory(k, ref rr);
                st.BeginEvent(user, t, SeqBrowse);
                st.CatValues.Add(layout.EncodeId(fItem, item)); st.CatValues.Add(layout.EncodeId(fCat, itemCat[item]));
                Remember(itemCat[item], t);
            }
            foreach (long start in sessions)
            {
                long t = Math.Max(start, prevEnd + 300);
                int scen = r.NextDouble() < w1 ? s1 : s2;
                int pages = 1 + Poisson(ref r, 0.8);
                for (int pg = 0; pg < pages; pg++)
                {
                    if (pg > 0)
                    {
                        long gap = 5 + (long)r.NextBelow(60);
                        if (r.NextDouble() < 0.35) Browse(ref r, t + 1 + (long)r.NextBelow((ulong)(gap - 1)));
                        t += gap;
                    }
                    // Every exposure of the page is decided from the state strictly before second t.
                    int k = 1 + Poisson(ref r, 1.6);
                    page.Clear();
                    int hour = (int)((t - SyntheticGenerator.Epoch) % 86400 / 3600);
                    for (int e = 0; e < k; e++)
                    {
                        var x = new PageExposure();
                        double y = r.NextDouble();
                        int want = y < 0.4 ? (r.NextDouble() < 0.7 ? cat1 : cat2) : y < 0.6 && lastCat >= 0 ? lastCat : -1;
                        double userTerm, q, scenTerm;
                        switch (scen)
                        {
                            case Home:
                            case Search:
                                x.Item = want >= 0 ? items.InCategory(want, ref r) : items.Any(ref r);
                                x.Cat = itemCat[x.Item]; q = itemQ[x.Item];
                                userTerm = 0.9 * Dot(uvec, itemVec, x.Item, nf);
                                scenTerm = scen == Home ? -3.7 + (hour >= 18 ? 0.4 : hour < 7 ? -0.4 : 0) : -3.1 - 0.6 * (Math.Log(itemPrice[x.Item]) - 3);
                                x.Cvr = -1.0 + 0.6 * q + 0.6 * Dot(uvec, itemVec, x.Item, nf) - 0.4 * (Math.Log(itemPrice[x.Item]) - 3);
                                break;
                            case Local:
                                x.Item = want >= 0 ? shops.InCategory(want, ref r) : shops.Any(ref r);
                                x.Cat = shopCat[x.Item]; q = shopQ[x.Item];
                                x.Distance = (float)Math.Round(Math.Sqrt((ux - shopX[x.Item]) * (ux - shopX[x.Item]) + (uy - shopY[x.Item]) * (uy - shopY[x.Item])), 2);
                                userTerm = 0.9 * Dot(uvec, shopVec, x.Item, nf);
                                scenTerm = -2.3 - 0.3 * x.Distance;
                                x.Cvr = -0.8 + 0.5 * q + 0.5 * Dot(uvec, shopVec, x.Item, nf) - 0.1 * x.Distance;
                                break;
                            default:
                                x.Cat = want >= 0 ? want : (int)r.NextBelow((ulong)nc); q = 0;
                                x.PromoType = (int)r.NextBelow(3);
                                x.Discount = (float)Math.Round(5 + 35 * r.NextDouble(), 1);
                                userTerm = 0.7 * Dot(uvec, catVec, x.Cat, nf);
                                scenTerm = -3.4 + 0.05 * (x.Discount - 20) + (x.PromoType == 2 ? 0.4 : x.PromoType == 0 ? -0.3 : 0);
                                break;
                        }
                        double interest = catCount[x.Cat] / (filled + 2.0);
                        double rec = lastCat == x.Cat ? 0.3 + 1.2 * Math.Exp(-(t - lastTime) / RecencySeconds) : 0;
                        double logit = scenTerm + q + userTerm + 2.2 * interest + rec;
                        x.PClick = Sigmoid(logit);
                        x.NoUser = (float)Sigmoid(scenTerm + q);
                        x.NoRecency = (float)Sigmoid(logit - rec);
                        x.Click = r.NextDouble() < x.PClick;
                        x.Conv = scen != Promo && x.Click && r.NextDouble() < Sigmoid(x.Cvr);
                        x.ClickFirst = r.NextDouble() < 0.5;
                        page.Add(x);
                    }
                    foreach (var x in page)
                    {
                        if (x.Click && x.ClickFirst) EmitClick(st, layout, user, t, scen, x);
                        st.BeginEvent(user, t, scen);
                        switch (scen)
                        {
                            case Home:
                                st.CatValues.Add(layout.EncodeId(fUser, u)); st.CatValues.Add(layout.EncodeId(fHour, hour));
                                st.CatValues.Add(layout.EncodeId(fItem, x.Item)); st.CatValues.Add(layout.EncodeId(fCat, x.Cat));
                                break;
                            case Search:
                                st.CatValues.Add(layout.EncodeId(fUser, u)); st.CatValues.Add(layout.EncodeId(fItem, x.Item)); st.CatValues.Add(queryRow[x.Cat]);
                                st.NumValues.Add(itemPrice[x.Item]);
                                break;
                            case Local:
                                st.CatValues.Add(layout.EncodeId(fUser, u)); st.CatValues.Add(layout.EncodeId(fShop, x.Item)); st.CatValues.Add(x.Cat + 1);
                                st.NumValues.Add(x.Distance);
                                break;
                            default:
                                st.CatValues.Add(x.PromoType + 1); st.CatValues.Add(promoRow[x.Cat]);
                                st.NumValues.Add(x.Discount);
                                break;
                        }
                        st.Labels.Add(x.Click ? (byte)1 : (byte)0);
                        st.Labels.Add(scen == Promo ? (byte)255 : x.Conv ? (byte)1 : (byte)0);
                        st.TrueProb.Add((float)x.PClick);
                        st.TrueProb.Add(scen == Promo ? float.NaN : (float)(x.PClick * Sigmoid(x.Cvr)));
                        noUser.Add(x.NoUser); noRecency.Add(x.NoRecency);
                        if (x.Click && !x.ClickFirst) EmitClick(st, layout, user, t, scen, x);
                    }
                    // The page's clicks enter the state only now: no exposure of second t saw them.
                    foreach (var x in page)
                        if (x.Click && scen != Promo) Remember(x.Cat, t);
                    foreach (var x in page)
                    {
                        if (!x.Conv || scen == Local) continue;
                        st.BeginEvent(user, t + 60 + (long)r.NextBelow(1800), SeqOrder);
                        st.CatValues.Add(layout.EncodeId(fItem, x.Item)); st.CatValues.Add(layout.EncodeId(fCat, x.Cat)); st.NumValues.Add(itemPrice[x.Item]);
                    }
                }
                if (r.NextDouble() < 0.3) { t += 1 + (long)r.NextBelow(120); Browse(ref r, t); }
                prevEnd = t;
            }

        }
        return new MarketDataset { Store = st, Config = c, NoUser = noUser.ToArray(), NoRecency = noRecency.ToArray() };
    }

    /// <summary>Writes the click behaviour of exposure <paramref name="x"/> at its own second (promo clicks claim a coupon and leave none).</summary>
    private static void EmitClick(EventStore st, DataLayout layout, int user, long t, int scen, PageExposure x)
    {
        if (scen == Promo) return;
        if (scen == Local)
        {
            st.BeginEvent(user, t, SeqVisit);
            st.CatValues.Add(layout.EncodeId(2, x.Item)); st.CatValues.Add(x.Cat + 1);
            return;
        }
        st.BeginEvent(user, t, SeqClick);
        st.CatValues.Add(layout.EncodeId(1, x.Item)); st.CatValues.Add(layout.EncodeId(3, x.Cat)); st.CatValues.Add(scen + 1);
    }

    private static int PickShare(double[] share, double y)
    {
        for (int i = 0; i < share.Length - 1; i++) { if (y < share[i]) return i; y -= share[i]; }
        return share.Length - 1;
    }

    private static double Dot(double[] a, double[] m, int row, int nf)
    {
        double s = 0;
        for (int f = 0; f < nf; f++) s += a[f] * m[row * nf + f];
        return s;
    }

    private static int Poisson(ref SplitMix64 r, double lambda)
    {
        double l = Math.Exp(-lambda), p = 1; int k = 0;
        do { k++; p *= r.NextDouble(); } while (p > l && k < 1000);
        return k - 1;
    }

    private sealed class PageExposure
    {
        public int Item, Cat, PromoType;
        public float Distance, Discount, NoUser, NoRecency;
        public double PClick, Cvr;
        public bool Click, Conv, ClickFirst;
    }

    /// <summary>Zipf popularity over entities ranked by index, globally and within each category.</summary>
    private sealed class ZipfPicker
    {
        private readonly double[] _cdf;
        private readonly int[][] _byCat;
        private readonly double[][] _catCdf;

        public ZipfPicker(int[] cat, int categories, double exponent)
        {
            int n = cat.Length;
            _cdf = new double[n]; double acc = 0;
            for (int i = 0; i < n; i++) { acc += Math.Pow(i + 1, -exponent); _cdf[i] = acc; }
            var lists = new List<int>[categories];
            for (int k = 0; k < categories; k++) lists[k] = [];
            for (int i = 0; i < n; i++) lists[cat[i]].Add(i);
            _byCat = lists.Select(x => x.ToArray()).ToArray();
            _catCdf = new double[categories][];
            for (int k = 0; k < categories; k++)
            {
                _catCdf[k] = new double[_byCat[k].Length]; double a = 0;
                for (int j = 0; j < _byCat[k].Length; j++) { a += Math.Pow(_byCat[k][j] + 1, -exponent); _catCdf[k][j] = a; }
            }
        }

        public int Any(ref SplitMix64 r) => Draw(_cdf, ref r);

        public int InCategory(int k, ref SplitMix64 r) => _byCat[k].Length > 0 ? _byCat[k][Draw(_catCdf[k], ref r)] : Any(ref r);

        private static int Draw(double[] cd, ref SplitMix64 r)
        {
            double x = r.NextDouble() * cd[^1];
            int lo = 0, hi = cd.Length - 1;
            while (lo < hi) { int m = (lo + hi) >> 1; if (cd[m] < x) lo = m + 1; else hi = m; }
            return lo;
        }
    }
}
