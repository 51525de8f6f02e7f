using Mtfm.Engine.Backends.Cuda;

namespace Mtfm.Bench.Cuda;

/// <summary>
/// Fills device memory with random values (never zeros: zeros hide unwritten outputs and can run faster than real
/// data, METHOD.md). A random block of at most 8 Mi elements is generated on the host and uploaded repeatedly (blocking
/// copies, setup only), each repetition from a fresh part of the generator while the host can afford it.
/// </summary>
internal static unsafe class DeviceFill
{
    private const int Block = 8 << 20;

    /// <summary>Uniform fp32 values in [−scale, scale).</summary>
    public static void Floats(ICudaDriver driver, ulong dst, long count, ulong seed, float scale = 1f)
    {
        var host = new float[(int)Math.Min(count, Block)];
        ulong s = seed * 0x9E3779B97F4A7C15UL + 1;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(host.Length, count - done);
            if (done == 0 || count <= 4L * Block)
                for (int i = 0; i < n; i++) host[i] = scale * (2f * Next(ref s) - 1f);
            fixed (float* p = host) driver.CopyHostToDevice(dst + (ulong)(done * sizeof(float)), p, (long)n * sizeof(float));
            done += n;
        }
    }

    /// <summary>Uniform bf16 values in [−1, 1) (round to nearest even from fp32).</summary>
    public static void Bf16(ICudaDriver driver, ulong dst, long count, ulong seed)
    {
        var host = new ushort[(int)Math.Min(count, Block)];
        ulong s = seed * 0x9E3779B97F4A7C15UL + 7;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(host.Length, count - done);
            if (done == 0 || count <= 4L * Block)
                for (int i = 0; i < n; i++) host[i] = ToBf16(2f * Next(ref s) - 1f);
            fixed (ushort* p = host) driver.CopyHostToDevice(dst + (ulong)(done * sizeof(ushort)), p, (long)n * sizeof(ushort));
            done += n;
        }
    }

    /// <summary>fp32 → bf16 bits, round to nearest even (finite inputs).</summary>
    public static ushort ToBf16(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        u += 0x7FFF + ((u >> 16) & 1);
        return (ushort)(u >> 16);
    }

    /// <summary>Uniform in [0, 1) from a SplitMix64 state.</summary>
    private static float Next(ref ulong s)
    {
        ulong z = s += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 40) * (1f / (1 << 24));
    }
}
