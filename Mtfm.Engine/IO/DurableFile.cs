using System.Runtime.InteropServices;

namespace Mtfm.Engine.IO;

/// <summary>
/// Durability of atomic writes: after a temporary file is flushed to disk and renamed over its target, the rename
/// itself lives in the directory, which must be flushed too (POSIX <c>fsync</c> on the directory) or a power loss can
/// bring back the old name. On Windows a rename is journaled by NTFS and directories cannot be opened for a flush:
/// nothing to do there.
/// </summary>
internal static partial class DurableFile
{
    private const int ORdOnly = 0;
    private const int EInval = 22;

    /// <summary>
    /// Flushes <paramref name="directory"/>'s entries to disk (Linux, macOS). A file system that does not support it
    /// (EINVAL) or a directory this process may write but not open for reading is left as is: the rename has happened
    /// and only its durability across a power loss is then the file system's.
    /// </summary>
    /// <returns><c>true</c> when the directory was flushed; <c>false</c> when there was nothing this platform or file
    /// system could do (Windows, no C library to call, the directory cannot be opened, EINVAL).</returns>
    /// <exception cref="IOException">The flush itself failed (e.g. EIO): the rename may not survive a power loss.</exception>
    public static bool SyncDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())) return false;
        int fd;
        try
        {
            fd = Open(directory, ORdOnly);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // a C library the runtime cannot bind by the name "libc" (e.g. musl under NativeAOT)
        }
        if (fd < 0) return false;
        try
        {
            if (FSync(fd) == 0) return true;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EInval) return false;
            throw new IOException($"could not flush directory '{directory}' to disk (errno {errno}): a renamed file in it may not survive a power loss.");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
