using Mtfm.Engine.IO;

namespace Mtfm.Engine.Training;

/// <summary>
/// The trainer's own state in a training checkpoint (beside the weights <c>param.*</c>, the best weights <c>best.*</c>
/// and the optimizer state <c>optim.*</c> of <see cref="OptimizerStateIO"/>): the global step, the data iterator's
/// position (epoch and batches consumed in it), the early-stopping tracker, the non-finite-step counters, the loss
/// and validation curves so far, and the options fingerprint a resume must match. The only random stream training
/// draws from is the per-epoch batch shuffle, seeded by (seed, epoch); the seed is part of the fingerprint, so the
/// position is the whole RNG state.
/// </summary>
internal sealed class TrainingCheckpoint
{
    public const string FormatKey = "mtfm.format";
    public const string FormatValue = "mtfm-train-checkpoint/1";
    public const string OptionsKey = "mtfm.train_options";
    private const string StateTensor = "trainer.state";
    private const string LossTensor = "trainer.loss_curve";
    private const string ValidTensor = "trainer.valid_curve";
    private const int StateLength = 14;

    public long Step { get; init; }
    public int Epoch { get; init; }
    public long BatchInEpoch { get; init; }
    public long Exposures { get; init; }
    public long Instances { get; init; }
    public int ConsecutiveNonFinite { get; init; }
    public long SkippedSteps { get; init; }
    public (long Evaluations, long LastStep, double BestValue, long BestStep, int EvaluationsSinceBest, bool Stopped) Stopper { get; init; }
    public double? LastGauc { get; init; }
    public required IReadOnlyList<(long Step, double Loss)> LossCurve { get; init; }
    public required IReadOnlyList<(long Step, double ValidGauc, double ValidLoss)> ValidCurve { get; init; }
    public required string OptionsFingerprint { get; init; }

    /// <summary>Adds the trainer state to <paramref name="w"/>.</summary>
    public void AddTo(SafetensorsWriter w)
    {
        var s = Stopper;
        long[] state =
        [
            Step, Epoch, BatchInEpoch, Exposures, Instances, ConsecutiveNonFinite, SkippedSteps,
            s.Evaluations, s.LastStep, BitConverter.DoubleToInt64Bits(s.BestValue), s.BestStep, s.EvaluationsSinceBest, s.Stopped ? 1 : 0,
            BitConverter.DoubleToInt64Bits(LastGauc ?? double.NaN),
        ];
        w.AddInt64(StateTensor, state, state.Length);
        var loss = new long[LossCurve.Count * 2];
        for (int i = 0; i < LossCurve.Count; i++) { loss[2 * i] = LossCurve[i].Step; loss[2 * i + 1] = BitConverter.DoubleToInt64Bits(LossCurve[i].Loss); }
        w.AddInt64(LossTensor, loss, LossCurve.Count, 2);
        var valid = new long[ValidCurve.Count * 3];
        for (int i = 0; i < ValidCurve.Count; i++)
        {
            valid[3 * i] = ValidCurve[i].Step;
            valid[3 * i + 1] = BitConverter.DoubleToInt64Bits(ValidCurve[i].ValidGauc);
            valid[3 * i + 2] = BitConverter.DoubleToInt64Bits(ValidCurve[i].ValidLoss);
        }
        w.AddInt64(ValidTensor, valid, ValidCurve.Count, 3);
        w.SetMetadata(FormatKey, FormatValue);
        w.SetMetadata(OptionsKey, OptionsFingerprint);
        w.SetMetadata("mtfm.last_gauc_set", LastGauc is null ? "0" : "1");
    }

    /// <summary>Reads the trainer state of a verified checkpoint file.</summary>
    /// <exception cref="CheckpointFormatException">Not a training checkpoint, or a field out of range.</exception>
    public static TrainingCheckpoint Read(SafetensorsFile f)
    {
        if (!f.Metadata.TryGetValue(FormatKey, out var format) || format != FormatValue)
            throw new CheckpointFormatException(f.FilePath, $"metadata '{FormatKey}' is not '{FormatValue}' (not a training checkpoint)");
        if (!f.Metadata.TryGetValue(OptionsKey, out var options))
            throw new CheckpointFormatException(f.FilePath, $"metadata '{OptionsKey}' is missing");
        var st = Tensor(f, StateTensor, StateLength);
        foreach (var n in new[] { LossTensor, ValidTensor })
            if (!f.Contains(n)) throw new CheckpointFormatException(f.FilePath, $"tensor '{n}' is missing");
        var lossInfo = f.GetInfo(LossTensor);
        var validInfo = f.GetInfo(ValidTensor);
        if (lossInfo.DType != SafetensorsDType.I64 || lossInfo.Shape.Count != 2 || lossInfo.Shape[1] != 2)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{LossTensor}' must be I64 [n, 2]");
        if (validInfo.DType != SafetensorsDType.I64 || validInfo.Shape.Count != 2 || validInfo.Shape[1] != 3)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{ValidTensor}' must be I64 [n, 3]");
        var l = f.ReadInt64(LossTensor);
        var v = f.ReadInt64(ValidTensor);
        var lossCurve = new List<(long, double)>();
        for (int i = 0; i + 1 < l.Length; i += 2) lossCurve.Add((l[i], BitConverter.Int64BitsToDouble(l[i + 1])));
        var validCurve = new List<(long, double, double)>();
        for (int i = 0; i + 2 < v.Length; i += 3) validCurve.Add((v[i], BitConverter.Int64BitsToDouble(v[i + 1]), BitConverter.Int64BitsToDouble(v[i + 2])));
        if (st[0] < 0 || st[1] < 0 || st[1] > int.MaxValue || st[2] < 0 || st[5] < 0 || st[5] > int.MaxValue || st[11] < 0 || st[11] > int.MaxValue)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{StateTensor}' holds out-of-range values");
        bool lastSet = f.Metadata.TryGetValue("mtfm.last_gauc_set", out var ls) && ls == "1";
        return new TrainingCheckpoint
        {
            Step = st[0], Epoch = (int)st[1], BatchInEpoch = st[2], Exposures = st[3], Instances = st[4],
            ConsecutiveNonFinite = (int)st[5], SkippedSteps = st[6],
            Stopper = (st[7], st[8], BitConverter.Int64BitsToDouble(st[9]), st[10], (int)st[11], st[12] != 0),
            LastGauc = lastSet ? BitConverter.Int64BitsToDouble(st[13]) : null,
            LossCurve = lossCurve, ValidCurve = validCurve, OptionsFingerprint = options,
        };
    }

    private static long[] Tensor(SafetensorsFile f, string name, int length)
    {
        if (!f.Contains(name)) throw new CheckpointFormatException(f.FilePath, $"tensor '{name}' is missing (not a training checkpoint?)");
        var info = f.GetInfo(name);
        if (info.DType != SafetensorsDType.I64 || info.ElementCount != length)
            throw new CheckpointFormatException(f.FilePath, $"tensor '{name}' is {info.DType} with {info.ElementCount} elements, expected I64 with {length}");
        return f.ReadInt64(name);
    }
}
