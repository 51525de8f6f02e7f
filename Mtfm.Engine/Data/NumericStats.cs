namespace Mtfm.Engine.Data;

/// <summary>Training statistics of the numeric features, applied by <see cref="NumericStats.Transform"/>.</summary>
internal sealed class NumericStats
{
    private readonly DataLayout _layout;
    /// <summary>Per feature (index in <see cref="DatasetSchema.Features"/>): mean after the optional log1p.</summary>
    public float[] Mean { get; }
    /// <summary>Per feature: standard deviation after the optional log1p (≥ 1e-6).</summary>
    public float[] Std { get; }

    /// <summary>Creates the statistics.</summary>
    public NumericStats(DataLayout layout, float[] mean, float[] std) { _layout = layout; Mean = mean; Std = std; }

    internal static double Pre(string transform, float v) =>
        transform is "log1p" or "log1p_standardize" ? Math.Sign(v) * Math.Log(1 + Math.Abs((double)v)) : v;

    /// <summary>Transformed value of raw <paramref name="value"/> of feature <paramref name="feature"/>: log1p (sign-preserving) and/or standardisation as its schema says.</summary>
    public float Transform(int feature, float value)
    {
        string t = _layout.Schema.Features[feature].Transform;
        double v = Pre(t, value);
        if (t is "standardize" or "log1p_standardize") v = (v - Mean[feature]) / Std[feature];
        return (float)v;
    }
}
