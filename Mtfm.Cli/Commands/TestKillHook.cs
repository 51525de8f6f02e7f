using System.Diagnostics;
using System.Globalization;
using Mtfm.Engine.Training;

namespace Mtfm.Cli.Commands;

/// <summary>
/// For the kill-and-resume test: <c>MTFM_TEST_KILL_AT=&lt;step&gt;</c> makes <c>mtfm train</c> kill itself (SIGKILL, no
/// cleanup) right after that step; <c>MTFM_TEST_KILL_AT=&lt;step&gt;:mid-write</c> kills it in the middle of the first
/// checkpoint write at or after that step (after the header and part of the tensor data reached the temporary file).
/// Deterministic kill points instead of timing. Unset: nothing happens.
/// </summary>
internal static class TestKillHook
{
    public const string Variable = "MTFM_TEST_KILL_AT";

    public static void Install(MtfmTrainer trainer)
    {
        string? spec = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(spec)) return;
        string[] parts = spec.Split(':');
        if (!long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long at) || at < 1 ||
            parts.Length > 2 || (parts.Length == 2 && parts[1] != "mid-write"))
            throw new ArgumentException($"{Variable}={spec}: expected <step> or <step>:mid-write.");
        bool midWrite = parts.Length == 2;
        var previous = trainer.StepCompleted;
        bool armed = false;
        trainer.StepCompleted = s =>
        {
            previous?.Invoke(s);
            if (s != at) return;
            if (!midWrite) Die();
            armed = true;
        };
        if (midWrite && trainer.Checkpoints is { } store)
            store.WrapStream = inner => armed ? new KillingStream(inner) : inner;
    }

    private static void Die()
    {
        Console.Out.Flush();
        Process.GetCurrentProcess().Kill(); // SIGKILL on Unix
        Thread.Sleep(Timeout.Infinite);
    }

    /// <summary>Passes writes through; the second write (the first tensor bytes after the header) kills the process half-way.</summary>
    private sealed class KillingStream(Stream inner) : Stream
    {
        private int _writes;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (++_writes >= 3)
            {
                inner.Write(buffer[..(buffer.Length / 2)]);
                inner.Flush(); // the half-written temporary file reaches the disk
                Die();
            }
            inner.Write(buffer);
        }
    }
}
