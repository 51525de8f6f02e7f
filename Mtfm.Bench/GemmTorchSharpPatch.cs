#if MTFM_TORCHSHARP
using System.Buffers.Binary;
using System.Text;

namespace Mtfm.Bench;

/// <summary>
/// Makes TorchSharp-cpu 0.107.0's <c>libLibTorchSharp.so</c> load on Debian 12: the library asks for GLIBCXX_3.4.32, which
/// Debian 12's libstdc++ lacks, but its only symbol at that version (<c>std::ios_base_library_init()</c>) is never called.
/// Marking that version requirement weak (VER_FLG_WEAK in the ELF .gnu.version_r entry) lets the loader accept it. Only the
/// copy in this benchmark's output folder is patched, never the NuGet cache; the patch is idempotent.
/// </summary>
internal static class GemmTorchSharpPatch
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>Patches every libLibTorchSharp.so under the app folder; returns how many entries were changed.</summary>
    public static int Apply()
    {
        PassiveOpenMpThreads();
        int changed = 0;
        foreach (var path in Directory.EnumerateFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories))
            changed += PatchFile(path, "GLIBCXX_3.4.32");
        return changed;
    }

    /// <summary>
    /// LibTorch's OpenMP workers busy-wait after each parallel region by default (<c>OMP_WAIT_POLICY</c> unset): in a
    /// benchmark that interleaves LibTorch with the engine on the same cores they keep spinning into the engine's
    /// turn. Measured with <c>attn-quick</c> (2 threads): the engine's attention took 1.8× as long with
    /// <c>OMP_WAIT_POLICY=ACTIVE</c> as with <c>PASSIVE</c>, LibTorch's own times equal within noise. So the benches
    /// ask for passive waiting unless the caller set a policy; libgomp reads it when LibTorch is first loaded, which
    /// is after this call. .NET's <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not reach the
    /// native environment, hence libc's setenv.
    /// </summary>
    private static void PassiveOpenMpThreads()
    {
        if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null) _ = setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    }

    [System.Runtime.InteropServices.DllImport("libc", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    private static extern int setenv(string name, string value, int overwrite);

    /// <summary>Sets VER_FLG_WEAK on the version need <paramref name="version"/> in an ELF64 little-endian file.</summary>
    public static int PatchFile(string path, string version)
    {
        byte[] d = File.ReadAllBytes(path);
        if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[4] != 2 || d[5] != 1)
            throw new InvalidDataException($"{path}: not a little-endian ELF64 file.");
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(0x28));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(0x3A));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(0x3C));
        int changed = 0;
        for (int i = 0; i < shnum; i++)
        {
            var sh = d.AsSpan((int)(shoff + (long)i * shentsize));
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed) continue;
            long off = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[24..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[40..]);
            long strOff = (long)BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan((int)(shoff + (long)link * shentsize + 24)));
            while (true)
            {
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan((int)off + 2));
                long aux = off + BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan((int)off + 8));
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan((int)off + 12));
                for (int j = 0; j < cnt; j++)
                {
                    ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan((int)aux + 4));
                    uint name = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan((int)aux + 8));
                    int start = (int)(strOff + name), end = Array.IndexOf(d, (byte)0, start);
                    if (Encoding.ASCII.GetString(d, start, end - start) == version && (flags & VerFlgWeak) == 0)
                    {
                        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan((int)aux + 4), (ushort)(flags | VerFlgWeak));
                        changed++;
                    }
                    aux += BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan((int)aux + 12));
                }
                if (next == 0) break;
                off += next;
            }
        }
        if (changed > 0) File.WriteAllBytes(path, d);
        return changed;
    }
}
#endif
