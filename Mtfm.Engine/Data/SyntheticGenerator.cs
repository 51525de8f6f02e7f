namespace Mtfm.Engine.Data;

/// <summary>A generated dataset with its known truth.</summary>
internal sealed class SyntheticDataset
{
    /// <summary>The events (exposures carry their true probabilities: task 0 = p(click), task 1 = p(click ∧ conversion)).</summary>
    public required EventStore Store { get; init; }
    /// <summary>The configuration that produced it.</summary>
    public required SyntheticConfig Config { get; init; }
    /// <summary>Each item's fixed quality (a term of its click and conversion logits; a model learns it through item_id).</summary>
    internal float[] ItemQuality { get; init; } = [];

    /// <summary>
    /// AUC of the true probabilities against the drawn labels of task <paramref name="task"/> over the exposures whose
    /// window lies in <paramref name="part"/> (and, when given, in scenario <paramref name="scenario"/>): the
    /// Bayes-optimal AUC no model can beat in expectation.
    /// </summary>
    public double BayesOptimalAuc(int task = 0, SplitPart part = SplitPart.Test, int? scenario = null)
    {
        var st = Store; var sp = st.Layout.Schema.Split!; var win = WindowSpec.From(st.Layout.Schema);
        var scores = new List<float>(); var labels = new List<byte>();
        for (int x = 0; x < st.ExposureCount; x++)
        {
            int ev = st.ExposureEvent.Items[x];
            long ws = win.StartOf(win.IndexOf(st.Time.Items[ev]));
            bool inPart = part switch { SplitPart.Train => ws < sp.ValidStart, SplitPart.Valid => ws >= sp.ValidStart && ws < sp.TestStart, SplitPart.Test => ws >= sp.TestStart, _ => true };
            if (!inPart || (scenario is { } sc && st.SourceOf(ev) != sc)) continue;
            int lb = st.Label(ev, task);
            if (lb < 0) continue;
            scores.Add(st.TrueProbability(ev, task)); labels.Add((byte)lb);
        }
        return Auc(scores.ToArray(), labels.ToArray());
    }

    /// <summary>ROC AUC with ties counted half (rank statistic).</summary>
    public static double Auc(float[] scores, byte[] labels)
    {
        int n = scores.Length;
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        Array.Sort(scores.ToArray(), idx);
        double rankSumPos = 0; long pos = 0;
        int a = 0;
        while (a < n)
        {
            int b = a;
            while (b + 1 < n && scores[idx[b + 1]] == scores[idx[a]]) b++;
            double avgRank = (a + b) / 2.0 + 1;
            for (int k = a; k <= b; k++) if (labels[idx[k]] == 1) { rankSumPos += avgRank; pos++; }
            a = b + 1;
        }
        long neg = n - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        return (rankSumPos - pos * (pos + 1) / 2.0) / ((double)pos * neg);
    }
}

/// <summary>
/// Deterministic synthetic multi-scenario generator whose truth is observable. Three scenarios with different feature
/// sets share users: <c>feed</c> (user_id, hour, item_id, category), <c>groupbuy</c> (user_id, item_id, category, shop_id, price)
/// and <c>coupon</c> (coupon_type, discount, category; click label only). Behaviour sequences <c>click</c> (item_id,
/// category, scenario) and <c>order</c> (item_id, category, price). Item popularity is Zipf; what a user is shown leans
/// to two hidden taste categories and to the category of the last click, but p(click) and p(conversion) depend only on
/// what the model sees (see <see cref="ClickLogit"/>): the exposure's own features (item quality through item_id), the
/// user's interest = share of the exposure's category among the last <see cref="SyntheticConfig.InterestClicks"/>
/// clicks strictly before the exposure (any scenario: interests carry across scenarios), and the category and age of
/// the most recent earlier click (recent behaviour predicts near-future clicks). Labels are Bernoulli draws and the
/// store records p(click) and p(click ∧ conversion) per exposure.
/// </summary>
internal static class SyntheticGenerator
{
    /// <summary>2025-01-01T00:00:00Z: day 0 of generated data.</summary>
    public const long Epoch = 1735689600;

    /// <summary>The schema of generated data (windows of one day, the last two days valid/test when there are ≥ 3 days).</summary>
    public static DatasetSchema Schema(SyntheticConfig c)
    {
        int valid = Math.Max(1, c.Days - 2), test = Math.Max(1, c.Days - 1);
        return new DatasetSchema
        {
            Name = "synthetic", UserColumn = "user", WindowSeconds = 86400, WindowOrigin = Epoch,
            Split = new SplitSpec { ValidStart = Epoch + valid * 86400L, TestStart = Epoch + test * 86400L },
            Features =
            [
                new FeatureSpec { Name = "user_id", Kind = "id", Cardinality = c.Users },
                new FeatureSpec { Name = "item_id", Kind = "id", Cardinality = c.Items },
                new FeatureSpec { Name = "category", Kind = "id", Cardinality = c.Categories },
                new FeatureSpec { Name = "shop_id", Kind = "id", Cardinality = Shops(c) },
                new FeatureSpec { Name = "hour", Kind = "id", Cardinality = 24 },
                new FeatureSpec { Name = "coupon_type", Kind = "categorical", Vocabulary = ["percent", "fixed", "free_shipping"] },
                new FeatureSpec { Name = "scenario", Kind = "categorical", Vocabulary = ["feed", "groupbuy", "coupon"] },
                new FeatureSpec { Name = "price", Kind = "numeric", Transform = "log1p_standardize" },
                new FeatureSpec { Name = "discount", Kind = "numeric", Transform = "standardize" },
            ],
            Scenarios =
            [
                new ScenarioSpec { Name = "feed", UserFeatures = ["user_id"], ContextFeatures = ["hour"], ItemFeatures = ["item_id", "category"], Labels = new() { ["click"] = "click", ["conversion"] = "conversion" } },
                new ScenarioSpec { Name = "groupbuy", UserFeatures = ["user_id"], ItemFeatures = ["item_id", "category", "shop_id", "price"], Labels = new() { ["click"] = "click", ["conversion"] = "conversion" } },
                new ScenarioSpec { Name = "coupon", ContextFeatures = ["coupon_type", "discount"], ItemFeatures = ["category"], Labels = new() { ["click"] = "click" } },
            ],
            Sequences =
            [
                new SequenceSpec { Name = "click", Features = ["item_id", "category", "scenario"], HistoryCap = 50 },
                new SequenceSpec { Name = "order", Features = ["item_id", "category", "price"], HistoryCap = 20 },
            ],
        };
    }

    private static int Shops(SyntheticConfig c) => Math.Max(4, c.Items / 25);

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>Seconds over which the boost of the last click's category decays (e-folding time).</summary>
    internal const double RecencySeconds = 1800;

    /// <summary>
    /// The true click logit of an exposure, a function of observable quantities only: its scenario and features
    /// (<paramref name="quality"/> is the item's fixed quality, known to a model through item_id; feed sees the hour,
    /// groupbuy the price, coupon the type and discount), the user's <paramref name="interest"/> in the exposure's
    /// category (share of it among the recent clicks strictly before the exposure, see <see cref="Interest"/>) and
    /// whether the most recent earlier click had the same category, <paramref name="sinceLastClick"/> seconds ago.
    /// </summary>
    internal static double ClickLogit(int scenario, double interest, bool sameAsLastClick, double sinceLastClick,
        double quality, int hour, double price, int couponType, double discount)
    {
        double logit = 4.0 * interest;
        if (sameAsLastClick) logit += 0.5 + 1.5 * Math.Exp(-sinceLastClick / RecencySeconds);
        switch (scenario)
        {
            case 0: logit += -3.0 + quality + (hour >= 18 ? 0.5 : hour < 7 ? -0.5 : 0); break;
            case 1: logit += -3.1 + quality - 0.7 * (Math.Log(price) - 3); break;
            default: logit += -2.9 + 0.08 * (discount - 17.5) + (couponType == 2 ? 0.4 : couponType == 1 ? -0.3 : 0); break;
        }
        return logit;
    }

    /// <summary>p(conversion | click) of a feed (0) or groupbuy (1) exposure, from the same observable quantities.</summary>
    internal static double ConversionLogit(int scenario, double interest, double quality, double price) =>
        -1.2 + 2.0 * interest + 0.6 * quality + (scenario == 1 ? 0.5 - 0.6 * (Math.Log(price) - 3) : 0);

    /// <summary>Interest in a category: its count among the last <paramref name="clicks"/> clicks, over clicks + 2.</summary>
    internal static double Interest(int inCategory, int clicks) => inCategory / (clicks + 2.0);

    /// <summary>Generates the dataset (a pure function of <paramref name="config"/>).</summary>
    public static SyntheticDataset Generate(SyntheticConfig? config = null, IProgress<int>? progress = null)
    {
        var c = config ?? SyntheticConfig.Default;
        if (c.Users <= 0 || c.Items <= 0 || c.Days <= 0 || c.Categories <= 0 || c.InterestClicks <= 0)
            throw new ArgumentException($"config sizes must be > 0: {c}", nameof(config));
        var layout = new DataLayout(Schema(c));
        if (c.InterestClicks > layout.Schema.Sequences[0].HistoryCap)
            throw new ArgumentException($"InterestClicks = {c.InterestClicks} exceeds the click history cap {layout.Schema.Sequences[0].HistoryCap}: the truth would not be observable.", nameof(config));
        var rng = new SplitMix64(c.Seed);
        int nc = c.Categories, ni = c.Items;
        var itemCat = new int[ni]; var itemShop = new int[ni]; var itemPrice = new float[ni]; var itemQuality = new float[ni];
        int shops = Shops(c);
        for (int i = 0; i < ni; i++)
        {
            itemCat[i] = (int)rng.NextBelow((ulong)nc);
            itemShop[i] = (int)rng.NextBelow((ulong)shops);
            itemPrice[i] = (float)Math.Round(Math.Exp(3 + 0.8 * rng.NextGaussian()), 2);
            itemQuality[i] = (float)(0.5 * rng.NextGaussian());
        }
        // Zipf popularity: item i has rank i. Global CDF and per-category CDFs.
        var cdf = new double[ni]; double acc = 0;
        for (int i = 0; i < ni; i++) { acc += Math.Pow(i + 1, -c.ZipfExponent); cdf[i] = acc; }
        var byCat = new List<int>[nc];
        for (int k = 0; k < nc; k++) byCat[k] = [];
        for (int i = 0; i < ni; i++) byCat[itemCat[i]].Add(i);
        var catCdf = new double[nc][];
        for (int k = 0; k < nc; k++)
        {
            catCdf[k] = new double[byCat[k].Count]; double a2 = 0;
            for (int j = 0; j < byCat[k].Count; j++) { a2 += Math.Pow(byCat[k][j] + 1, -c.ZipfExponent); catCdf[k][j] = a2; }
        }
        int Draw(double[] cd, ref SplitMix64 r)
        {
            double x = r.NextDouble() * cd[^1];
            int lo = 0, hi = cd.Length - 1;
            while (lo < hi) { int m = (lo + hi) >> 1; if (cd[m] < x) lo = m + 1; else hi = m; }
            return lo;
        }
        int DrawIn(int cat, ref SplitMix64 r) => byCat[cat].Count > 0 ? byCat[cat][Draw(catCdf[cat], ref r)] : Draw(cdf, ref r);
        var st = new EventStore(layout, (int)Math.Min(int.MaxValue / 4, c.Users * c.Days * c.SessionsPerDay * c.ExposuresPerSession * 1.3 + 16));
        st.HasTrueProbabilities = true;
        int fUser = 0, fItem = 1, fCat = 2, fShop = 3, fHour = 4;
        var users = new int[c.Users];
        for (int u = 0; u < c.Users; u++) users[u] = st.InternUser("u" + u.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var sessTimes = new List<int>();
        int memory = c.InterestClicks;
        var recent = new int[memory]; var catCount = new int[nc];
        for (int u = 0; u < c.Users; u++)
        {
            // Per-user RNG stream: users are independent, so the dataset does not depend on generation order.
            var r = new SplitMix64(c.Seed ^ (0xD1B54A32D192ED03UL * (ulong)(u + 1)));
            // Hidden taste: what the platform tends to show this user (not part of the click truth; clicks reveal it).
            int p1 = (int)r.NextBelow((ulong)nc), p2 = (int)r.NextBelow((ulong)nc);
            double activity = Math.Exp(0.6 * r.NextGaussian() - 0.18);
            double[] scenPref = [r.NextDouble() + 0.3, r.NextDouble() + 0.2, r.NextDouble() + 0.2];
            double sp = scenPref[0] + scenPref[1] + scenPref[2];
            // Click memory: the last `memory` clicked categories (ring), their counts, the last click.
            int head = 0, clicks = 0; Array.Clear(catCount);
            int lastClickCat = -1; long lastClickTime = long.MinValue, prevT = long.MinValue;
            for (int day = 0; day < c.Days; day++)
            {
                int sessions = Poisson(ref r, c.SessionsPerDay * activity);
                sessTimes.Clear();
                for (int s = 0; s < sessions; s++) sessTimes.Add((int)r.NextBelow(86400 - 3600));
                sessTimes.Sort();
                long pendingOrderTime = long.MaxValue; int pendingItem = 0; // orders are emitted in time order
                foreach (int sec in sessTimes)
                {
                    // Sessions never overlap: a user's exposures have strictly increasing times.
                    long t = Math.Max(Epoch + day * 86400L + sec, prevT);
                    double x = r.NextDouble() * sp;
                    int scen = x < scenPref[0] ? 0 : x < scenPref[0] + scenPref[1] ? 1 : 2;
                    int nExp = 1 + Poisson(ref r, c.ExposuresPerSession - 1);
                    for (int e = 0; e < nExp; e++)
                    {
                        t += 1 + (long)r.NextBelow(40);
                        prevT = t;
                        if (pendingOrderTime <= t) { EmitOrder(st, users[u], pendingOrderTime, pendingItem, itemCat, itemPrice, layout, fItem, fCat); pendingOrderTime = long.MaxValue; }
                        double y = r.NextDouble();
                        int item = y < 0.4 ? Draw(cdf, ref r)
                            : y < 0.7 ? DrawIn(r.NextDouble() < 0.6 ? p1 : p2, ref r)
                            : DrawIn(lastClickCat >= 0 ? lastClickCat : p1, ref r);
                        int cat = itemCat[item];
                        double interest = Interest(catCount[cat], clicks);
                        int hour = (int)((t - Epoch) % 86400 / 3600);
                        int couponType = 0; float discount = 0;
                        if (scen == 2)
                        {
                            couponType = (int)r.NextBelow(3);
                            discount = (float)Math.Round(5 + 25 * r.NextDouble(), 1);
                        }
                        double logit = ClickLogit(scen, interest, cat == lastClickCat, lastClickCat >= 0 ? t - lastClickTime : 0, itemQuality[item], hour, itemPrice[item], couponType, discount);
                        double pClick = Sigmoid(logit);
                        double pCvr = scen == 2 ? 0 : Sigmoid(ConversionLogit(scen, interest, itemQuality[item], itemPrice[item]));
                        bool click = r.NextDouble() < pClick;
                        bool conv = click && r.NextDouble() < pCvr;
                        st.BeginEvent(users[u], t, scen);
                        if (scen == 0) { st.CatValues.Add(layout.EncodeId(fUser, u)); st.CatValues.Add(layout.EncodeId(fHour, hour)); st.CatValues.Add(layout.EncodeId(fItem, item)); st.CatValues.Add(layout.EncodeId(fCat, cat)); }
                        else if (scen == 1) { st.CatValues.Add(layout.EncodeId(fUser, u)); st.CatValues.Add(layout.EncodeId(fItem, item)); st.CatValues.Add(layout.EncodeId(fCat, cat)); st.CatValues.Add(layout.EncodeId(fShop, itemShop[item])); st.NumValues.Add(itemPrice[item]); }
                        else { st.CatValues.Add(couponType + 1); st.CatValues.Add(layout.EncodeId(fCat, cat)); st.NumValues.Add(discount); }
                        st.Labels.Add(click ? (byte)1 : (byte)0);
                        st.Labels.Add(scen == 2 ? (byte)255 : conv ? (byte)1 : (byte)0);
                        st.TrueProb.Add((float)pClick);
                        st.TrueProb.Add(scen == 2 ? float.NaN : (float)(pClick * pCvr));
                        if (click)
                        {
                            // The click is logged at the exposure's time: only strictly later exposures see it.
                            st.BeginEvent(users[u], t, 3);
                            st.CatValues.Add(layout.EncodeId(fItem, item)); st.CatValues.Add(layout.EncodeId(fCat, cat)); st.CatValues.Add(scen + 1);
                            if (clicks == memory) catCount[recent[head]]--; else clicks++;
                            recent[head] = cat; catCount[cat]++; head = (head + 1) % memory;
                            lastClickCat = cat; lastClickTime = t;
                            if (conv && pendingOrderTime == long.MaxValue && scen != 2) { pendingOrderTime = t + 60 + (long)r.NextBelow(540); pendingItem = item; }
                        }
                    }
                }
                if (pendingOrderTime != long.MaxValue) EmitOrder(st, users[u], pendingOrderTime, pendingItem, itemCat, itemPrice, layout, fItem, fCat);
            }
            if ((u & 255) == 255) progress?.Report(u + 1);
        }
        progress?.Report(c.Users);
        return new SyntheticDataset { Store = st, Config = c, ItemQuality = itemQuality };
    }

    private static void EmitOrder(EventStore st, int user, long t, int item, int[] itemCat, float[] itemPrice, DataLayout l, int fItem, int fCat)
    {
        st.BeginEvent(user, t, 4);
        st.CatValues.Add(l.EncodeId(fItem, item)); st.CatValues.Add(l.EncodeId(fCat, itemCat[item])); st.NumValues.Add(itemPrice[item]);
    }

    private static int Poisson(ref SplitMix64 r, double lambda)
    {
        if (lambda <= 0) return 0;
        double l = Math.Exp(-lambda), p = 1; int k = 0;
        do { k++; p *= r.NextDouble(); } while (p > l && k < 1000);
        return k - 1;
    }
}
