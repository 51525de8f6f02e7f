namespace Mtfm.Engine.Model;

/// <summary>Which layers the transformer stacks (the HTA ablation switch).</summary>
public enum AttentionMode
{
    /// <summary>Hybrid Target Attention: B blocks of 1 full layer followed by K target layers.</summary>
    Hta,

    /// <summary>Every layer is a full-attention layer (B·(1+K) of them).</summary>
    Full,

    /// <summary>Every layer is a target-attention layer (B·(1+K) of them).</summary>
    TargetOnly,
}
