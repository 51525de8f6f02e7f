using DuckDB.NET.Data;
using Mtfm.Engine.Data;

namespace Mtfm.Tests.Data;

/// <summary>The footer walk that keeps a damaged Parquet footer from reaching the decoder (which spun forever on one).</summary>
public sealed class ParquetFooterCheckTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-pqfooter-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(byte[] footer, byte[]? body = null)
    {
        string path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".parquet");
        var bytes = new List<byte>("PAR1"u8.ToArray());
        bytes.AddRange(body ?? [1, 2, 3, 4]);
        bytes.AddRange(footer);
        bytes.AddRange(BitConverter.GetBytes((uint)footer.Length));
        bytes.AddRange("PAR1"u8.ToArray());
        File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    private static string Problem(string path) => Assert.Throws<DataFormatException>(() => ParquetFooterCheck.Validate(path)).Message;

    [Fact]
    public void AWellFormedStructPasses()
    {
        // field 1 i32 = 1; field 2 list<struct> of 2 empty structs; field 3 string "ab"; field 4 bool true; stop
        byte[] footer = [0x15, 0x02, 0x19, 0x2C, 0x00, 0x00, 0x18, 0x02, (byte)'a', (byte)'b', 0x11, 0x00];
        ParquetFooterCheck.Validate(Write(footer));
    }

    [Theory]
    [InlineData(new byte[] { 0x15, 0x02 }, "unexpected end")]                      // no stop field: truncated
    [InlineData(new byte[] { 0x19, 0xFC, 0xFF, 0xFF, 0xFF, 0x0F, 0x00 }, "past the end")] // a list claiming 2^32-1 structs
    [InlineData(new byte[] { 0x18, 0x7F, 0x00 }, "past the end")]                  // a string longer than the footer
    [InlineData(new byte[] { 0x1D, 0x00 }, "unknown compact type 13")]
    public void ADamagedFooterIsOneErrorNamingTheFile(byte[] footer, string expected)
    {
        string path = Write(footer);
        string msg = Problem(path);
        Assert.Contains(path, msg);
        Assert.Contains(expected, msg);
    }

    [Fact]
    public void NestingIsBounded()
    {
        var footer = new List<byte>();
        for (int i = 0; i < 100; i++) footer.Add(0x1C); // field +1, struct
        footer.AddRange(Enumerable.Repeat((byte)0, 101));
        Assert.Contains("nesting deeper than", Problem(Write([.. footer])));
    }

    [Fact]
    public void WrongMagicAndLengthsAreNamed()
    {
        string a = Path.Combine(_dir, "short.parquet");
        File.WriteAllBytes(a, "PAR1PAR1"u8.ToArray());
        Assert.Contains("too short", Problem(a));
        string b = Path.Combine(_dir, "magic.parquet");
        File.WriteAllBytes(b, "PAR1xxxxxxxxxxxxPAR2"u8.ToArray());
        Assert.Contains("magic PAR1", Problem(b));
        string c = Path.Combine(_dir, "len.parquet");
        File.WriteAllBytes(c, [.. "PAR1xxxx"u8.ToArray(), .. BitConverter.GetBytes(1000u), .. "PAR1"u8.ToArray()]);
        Assert.Contains("footer length 1000", Problem(c));
    }

    [Fact]
    public void FootersOfAnotherWriterPass()
    {
        // DuckDB writes its own footers (statistics, key-value metadata, several row groups, nullable and nested-free
        // columns of many types): the walk must accept every one of them.
        string path = Path.Combine(_dir, "duck.parquet");
        using (var con = new DuckDBConnection("DataSource=:memory:"))
        {
            con.Open();
            using var cmd = con.CreateCommand();
            cmd.CommandText = "COPY (SELECT i AS id, 'u' || (i % 7) AS user_key, i * 0.5 AS price, i % 3 = 0 AS flag, " +
                "CASE WHEN i % 5 = 0 THEN NULL ELSE i END AS maybe, TIMESTAMP '2024-01-01' + INTERVAL (i) SECOND AS ts " +
                $"FROM range(5000) t(i)) TO '{path}' (FORMAT PARQUET, ROW_GROUP_SIZE 1000)";
            cmd.ExecuteNonQuery();
        }
        ParquetFooterCheck.Validate(path);
    }
}
