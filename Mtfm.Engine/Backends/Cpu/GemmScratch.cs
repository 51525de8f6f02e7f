using System.Runtime.InteropServices;

namespace Mtfm.Engine.Backends.Cpu;

/// <summary>
/// Per-thread, 64-byte aligned scratch memory for SGEMM packing, reused across calls and freed when the thread's
/// instance is collected.
/// </summary>
internal sealed unsafe class GemmScratch
{
    [ThreadStatic] private static GemmScratch? t_current;

    private float* _packA, _packB, _row, _partial;
    private nuint _packALen, _packBLen, _rowLen, _partialLen;

    /// <summary>The calling thread's scratch.</summary>
    public static GemmScratch Current => t_current ??= new GemmScratch();

    /// <summary>A buffer of at least <paramref name="count"/> floats for packed A blocks.</summary>
    public float* PackA(long count) => Ensure(ref _packA, ref _packALen, count);

    /// <summary>A buffer of at least <paramref name="count"/> floats for packed B panels.</summary>
    public float* PackB(long count) => Ensure(ref _packB, ref _packBLen, count);

    /// <summary>A buffer of at least <paramref name="count"/> floats for row accumulators of the direct path.</summary>
    public float* Row(long count) => Ensure(ref _row, ref _rowLen, count);

    /// <summary>A buffer of at least <paramref name="count"/> floats for a partial C (the k-split Aᵀ·B; another thread may write it).</summary>
    public float* Partial(long count) => Ensure(ref _partial, ref _partialLen, count);

    private static float* Ensure(ref float* buffer, ref nuint length, long count)
    {
        nuint need = (nuint)Math.Max(count, 16);
        if (need > length)
        {
            if (buffer != null) NativeMemory.AlignedFree(buffer);
            buffer = null;
            length = 0;
            buffer = (float*)NativeMemory.AlignedAlloc(need * sizeof(float), 64);
            length = need;
        }
        return buffer;
    }

    /// <summary>Frees the native buffers.</summary>
    ~GemmScratch()
    {
        if (_packA != null) NativeMemory.AlignedFree(_packA);
        if (_packB != null) NativeMemory.AlignedFree(_packB);
        if (_row != null) NativeMemory.AlignedFree(_row);
        if (_partial != null) NativeMemory.AlignedFree(_partial);
    }
}
