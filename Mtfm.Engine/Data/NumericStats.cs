namespace Mtfm.Engine.Data;

/// <summary>Training statistics of the numeric features, applied by <see cref="NumericStats.Transform"/>.</summary>
public sealed class NumericStats
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

    /// <summary>
    /// The numeric inputs of one token of <paramref name="group"/> (<see cref="TokenGroupInfo.NumericWidth"/> values)
    /// from its raw values <paramref name="raw"/> (one per <see cref="TokenGroupInfo.NumericFeatures"/>, NaN = missing):
    /// each transformed value (0 where missing), then per column of <see cref="TokenGroupInfo.NumericPresence"/> its
    /// presence indicator (1 present, 0 missing). Training (<see cref="BatchBuilder"/>) and serving encode through this
    /// one method.
    /// </summary>
    public void EncodeToken(TokenGroupInfo group, ReadOnlySpan<float> raw, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(group);
        var nf = group.NumericFeatures;
        if (raw.Length != nf.Length) throw new ArgumentException($"raw has {raw.Length} values, group '{group.Name}' has {nf.Length} numeric features", nameof(raw));
        if (destination.Length != group.NumericWidth) throw new ArgumentException($"destination has {destination.Length} slots, group '{group.Name}' needs {group.NumericWidth}", nameof(destination));
        for (int k = 0; k < nf.Length; k++) destination[k] = float.IsNaN(raw[k]) ? 0f : Transform(nf[k], raw[k]);
        var pres = group.NumericPresence;
        for (int i = 0; i < pres.Length; i++) destination[nf.Length + i] = float.IsNaN(raw[pres[i]]) ? 0f : 1f;
    }
}
