using Mtfm.Engine.IO;

namespace Mtfm.Tests.IO;

public sealed class DurableFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mtfm-durable-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ADirectoryIsFlushedOnPosixAndLeftAloneOnWindows()
    {
        File.WriteAllText(Path.Combine(_dir, "a"), "x");
        bool synced = DurableFile.SyncDirectory(_dir);
        // On Linux with glibc the runtime binds "libc" and fsync on a directory succeeds on every local file system.
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) Assert.True(synced);
        else Assert.False(synced);
    }

    [Fact]
    public void AMissingDirectoryIsNotAnError()
    {
        Assert.False(DurableFile.SyncDirectory(Path.Combine(_dir, "does-not-exist")));
    }

    [Fact]
    public void AnEmptyPathIsRejected()
    {
        Assert.Throws<ArgumentException>(() => DurableFile.SyncDirectory(""));
    }
}
