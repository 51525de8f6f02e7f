namespace Mtfm.Engine.Data;

/// <summary>Size and seed of the <c>synthetic:market</c> dataset (<see cref="MarketGenerator"/>).</summary>
internal sealed record MarketConfig
{
    /// <summary>Number of users.</summary>
    public int Users { get; init; } = 10_000;
    /// <summary>Number of items (home, search).</summary>
    public int Items { get; init; } = 4000;
    /// <summary>Number of shops (the local scenario's candidates).</summary>
    public int Shops { get; init; } = 400;
    /// <summary>Number of categories (one concept, named differently by each scenario).</summary>
    public int Categories { get; init; } = 24;
    /// <summary>Dimension of the latent user, category and item factors.</summary>
    public int Factors { get; init; } = 4;
    /// <summary>Number of one-day windows (the last two are validation and test).</summary>
    public int Days { get; init; } = 7;
    /// <summary>Most sessions a user has over the whole period (the activity is heavy-tailed: P(n ≥ k) = 1/k below this cap).</summary>
    public int MaxSessions { get; init; } = 100;
    /// <summary>How many most recent behaviour events (click, visit, browse) define a user's interest in a category.</summary>
    public int InterestEvents { get; init; } = 20;
    /// <summary>Zipf exponent of item and shop popularity.</summary>
    public double ZipfExponent { get; init; } = 1.0;
    /// <summary>Seed: the dataset is a pure function of this record.</summary>
    public ulong Seed { get; init; } = 7;

    /// <summary>The full size (10k users, 7 days, about a quarter of a million exposures).</summary>
    public static MarketConfig Default => new();
    /// <summary>Test size (about 1,500 users, 5 days, a few tens of thousands of exposures).</summary>
    public static MarketConfig Small => new() { Users = 1500, Items = 800, Shops = 120, Categories = 12, Days = 5 };
    /// <summary>
    /// Light users: 28,000 users with at most 7 sessions each (about 250k exposures, ≈ 9 per user against ≈ 24 in
    /// <see cref="Default"/>), the regime where a model has little of each user's own history to go on.
    /// </summary>
    public static MarketConfig Light => new() { Users = 24_000, MaxSessions = 5 };

    /// <summary>The <c>--data</c> names of the built-in market sizes, in the order the help lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["synthetic:market", "synthetic:market-small", "synthetic:market-light"];

    /// <summary>The configuration a <c>--data</c> name stands for, or null when it names no market size.</summary>
    public static MarketConfig? FromName(string data) => data switch
    {
        "synthetic:market" => Default,
        "synthetic:market-small" => Small,
        "synthetic:market-light" => Light,
        _ => null,
    };
}
