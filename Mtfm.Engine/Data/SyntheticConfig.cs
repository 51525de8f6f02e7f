namespace Mtfm.Engine.Data;

/// <summary>Size and seed of the synthetic multi-scenario dataset.</summary>
internal sealed record SyntheticConfig
{
    /// <summary>Number of users (shared by all scenarios).</summary>
    public int Users { get; init; } = 8000;
    /// <summary>Number of items.</summary>
    public int Items { get; init; } = 1000;
    /// <summary>Number of item categories.</summary>
    public int Categories { get; init; } = 16;
    /// <summary>Number of one-day windows.</summary>
    public int Days { get; init; } = 14;
    /// <summary>Mean sessions per user and day.</summary>
    public double SessionsPerDay { get; init; } = 1.5;
    /// <summary>Mean exposures per session.</summary>
    public double ExposuresPerSession { get; init; } = 5;
    /// <summary>
    /// A user's interest in a category is its share among this many most recent clicks (at most the click sequence's
    /// history cap, 50, so that the model sees every click the truth depends on).
    /// </summary>
    public int InterestClicks { get; init; } = 30;
    /// <summary>Zipf exponent of item popularity.</summary>
    public double ZipfExponent { get; init; } = 1.05;
    /// <summary>Seed: the dataset is a pure function of this record.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Unit-test size (~60 users, 4 days).</summary>
    public static SyntheticConfig Tiny => new() { Users = 60, Items = 300, Days = 4, Categories = 8 };
    /// <summary>The main job's default (8k users, 14 days, about a million events).</summary>
    public static SyntheticConfig Default => new();
    /// <summary>Millions of events (~50k users, 21 days).</summary>
    public static SyntheticConfig Large => new() { Users = 50_000, Items = 50_000, Days = 21, Categories = 64 };
}
