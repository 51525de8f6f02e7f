using System.Globalization;
using CsCheck;

namespace Mtfm.Tests.Fuzz;

/// <summary>
/// CsCheck properties over the input parsers: random bytes and mutations of valid files (byte flips, insertions of
/// separator and number tokens, deletions, duplications, truncations) must give success or the documented exception
/// naming the file / field (<see cref="FuzzTargets.Run"/>). Bounded by iterations and input size, never by time.
/// CI runs a fixed seed; a longer campaign: <c>MTFM_FUZZ_ITER=200000 MTFM_FUZZ_SEED=</c> (empty = a new random seed,
/// printed by CsCheck on failure) <c>dotnet test Mtfm.Tests -c Release --filter FullyQualifiedName~Mtfm.Tests.Fuzz</c>.
/// </summary>
public class FuzzTests
{
    private static readonly byte[][] Tokens = [.. new[]
    {
        ",", "\"", "\n", "\r\n", "{", "}", "[", "]", ":", "null", "-1", "0", "1e309", "NaN", "-0", "99999999999999999999",
        "\"\"", "true", "\\u0000", "\u00e9", "F32", "I64", "shape", "data_offsets", "__metadata__", "PAR1",
    }.Select(System.Text.Encoding.UTF8.GetBytes)];

    internal static long Iterations(long ci) =>
        long.TryParse(Environment.GetEnvironmentVariable("MTFM_FUZZ_ITER"), NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 ? n : ci;

    internal static string? Seed(string ci)
    {
        string? s = Environment.GetEnvironmentVariable("MTFM_FUZZ_SEED");
        return s is null ? ci : s.Length == 0 ? null : s;
    }

    /// <summary>(kind, position, value) edits applied in order to a copy of a seed.</summary>
    internal static Gen<byte[]> Mutated(byte[][] seeds) =>
        Gen.Select(Gen.Int[0, seeds.Length - 1], Gen.Select(Gen.Int[0, 5], Gen.Int[0, int.MaxValue], Gen.Int[0, 255]).Array[1, 6], (si, edits) =>
        {
            var b = new List<byte>(seeds[si]);
            foreach (var (kind, pos, val) in edits)
            {
                int p = b.Count == 0 ? 0 : pos % (b.Count + 1);
                switch (kind)
                {
                    case 0: if (p < b.Count) b[p] = (byte)val; break;                              // overwrite
                    case 1: if (p < b.Count) b[p] ^= (byte)(1 << (val & 7)); break;                 // bit flip
                    case 2: b.InsertRange(p, Tokens[val % Tokens.Length]); break;                   // token
                    case 3: b.RemoveRange(p, Math.Min(1 + val % 16, b.Count - p)); break;           // delete
                    case 4: b.InsertRange(p, b.GetRange(p, Math.Min(1 + val % 32, b.Count - p))); break; // duplicate
                    default: b.RemoveRange(p, b.Count - p); break;                                  // truncate
                }
            }
            return b.ToArray();
        });

    private static void Property(string target, long iter, string seed)
    {
        var gen = Gen.Frequency((4, Mutated(FuzzTargets.Seeds(target))), (1, Gen.Byte.Array[0, 512]));
        gen.Sample(input => FuzzTargets.Run(target, input), iter: Iterations(iter), threads: 1, seed: Seed(seed));
    }

    [Fact] public void CsvReader() => Property(FuzzTargets.Csv, 1500, "0N0XIzNsQ0O2");
    [Fact] public void ParquetReader() => Property(FuzzTargets.Parquet, 400, "0N0XIzNsQ0O2");
    [Fact] public void SchemaJsonLoader() => Property(FuzzTargets.Schema, 1500, "0N0XIzNsQ0O2");
    [Fact] public void SafetensorsLoader() => Property(FuzzTargets.Safetensors, 1500, "0N0XIzNsQ0O2");
    [Fact] public void ScoreRequestParser() => Property(FuzzTargets.Request, 2000, "0N0XIzNsQ0O2");
}
