using Mtfm.Engine.IO;

namespace Mtfm.Engine.Training;

/// <summary>
/// Saves and restores optimizer state in a checkpoint next to the parameters, under fixed tensor names:
/// <list type="bullet">
/// <item>dense (AdamW) parameter P: <c>optim.m.P</c>, <c>optim.v.P</c> (F32, flat) and <c>optim.step.P</c> (I64 scalar);</item>
/// <item>embedding table T (row-sparse Adam): <c>optim.m.T</c>, <c>optim.v.T</c> (F32 [rows, dim]) and <c>optim.row_steps.T</c> (I32 [rows]).</item>
/// </list>
/// </summary>
internal static class OptimizerStateIO
{
    /// <summary>Adds the AdamW state of parameter <paramref name="parameterName"/>.</summary>
    public static void Add(SafetensorsWriter writer, string parameterName, AdamWState state)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(state);
        writer.AddFloat32("optim.m." + parameterName, state.FirstMoment, state.FirstMoment.Length);
        writer.AddFloat32("optim.v." + parameterName, state.SecondMoment, state.SecondMoment.Length);
        writer.AddInt64("optim.step." + parameterName, [state.Step]);
    }

    /// <summary>Adds the row-sparse Adam state of embedding table <paramref name="tableName"/>.</summary>
    public static void Add(SafetensorsWriter writer, string tableName, RowSparseAdamState state)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(state);
        writer.AddFloat32("optim.m." + tableName, state.FirstMoment, state.Rows, state.Dim);
        writer.AddFloat32("optim.v." + tableName, state.SecondMoment, state.Rows, state.Dim);
        writer.AddInt32("optim.row_steps." + tableName, state.RowSteps, state.Rows);
    }

    /// <summary>Restores the AdamW state of <paramref name="parameterName"/>; <paramref name="length"/> must match what was saved.</summary>
    /// <exception cref="CheckpointFormatException">A tensor is missing or has the wrong size.</exception>
    public static AdamWState ReadAdamW(SafetensorsFile file, string parameterName, int length)
    {
        ArgumentNullException.ThrowIfNull(file);
        var state = new AdamWState(length);
        Copy(file, "optim.m." + parameterName, state.FirstMoment);
        Copy(file, "optim.v." + parameterName, state.SecondMoment);
        var step = Get(file, "optim.step." + parameterName, SafetensorsDType.I64, 1);
        long t = file.ReadInt64(step.Name)[0];
        if (t < 0) throw new CheckpointFormatException(file.FilePath, $"tensor '{step.Name}' holds step {t}, expected ≥ 0");
        state.Step = t;
        return state;
    }

    /// <summary>Restores the row-sparse Adam state of table <paramref name="tableName"/> of shape [rows, dim].</summary>
    /// <exception cref="CheckpointFormatException">A tensor is missing or has the wrong size.</exception>
    public static RowSparseAdamState ReadRowSparseAdam(SafetensorsFile file, string tableName, int rows, int dim)
    {
        ArgumentNullException.ThrowIfNull(file);
        var state = new RowSparseAdamState(rows, dim);
        Copy(file, "optim.m." + tableName, state.FirstMoment);
        Copy(file, "optim.v." + tableName, state.SecondMoment);
        var steps = Get(file, "optim.row_steps." + tableName, SafetensorsDType.I32, rows);
        var values = file.ReadInt32(steps.Name);
        for (int i = 0; i < values.Length; i++)
            if (values[i] < 0) throw new CheckpointFormatException(file.FilePath, $"tensor '{steps.Name}'[{i}] = {values[i]}, expected ≥ 0");
        values.CopyTo(state.RowSteps, 0);
        return state;
    }

    private static void Copy(SafetensorsFile file, string name, float[] destination)
    {
        Get(file, name, SafetensorsDType.F32, destination.Length);
        file.CopyFloat32(name, destination);
    }

    private static SafetensorsTensorInfo Get(SafetensorsFile file, string name, SafetensorsDType dtype, long elements)
    {
        if (!file.Contains(name)) throw new CheckpointFormatException(file.FilePath, $"optimizer state tensor '{name}' is missing");
        var info = file.GetInfo(name);
        if (info.DType != dtype || info.ElementCount != elements)
            throw new CheckpointFormatException(file.FilePath, $"optimizer state tensor '{name}' is {info.DType} with {info.ElementCount} elements, expected {dtype} with {elements}");
        return info;
    }
}
