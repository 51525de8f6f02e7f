using System.Globalization;
using Mtfm.Engine.IO;

namespace Mtfm.Engine.Training;

/// <summary>
/// The training checkpoints of one run: files <c>step-&lt;10-digit step&gt;.safetensors</c> in one directory. A write goes
/// to a temporary file in that directory, is flushed to disk and renamed over its final name, then all but the newest
/// <see cref="Keep"/> are deleted. A write that fails (unwritable folder, full disk) deletes its temporary file and
/// throws one <see cref="IOException"/> naming the folder: the newest checkpoint is always a complete one.
/// </summary>
internal sealed class CheckpointStore
{
    private const string Prefix = "step-";
    private const string Suffix = ".safetensors";

    public CheckpointStore(string directory, int keep)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (keep < 1) throw new ArgumentOutOfRangeException(nameof(keep), keep, "keep must be ≥ 1.");
        Directory = Path.GetFullPath(directory);
        Keep = keep;
    }

    /// <summary>The folder holding the checkpoints.</summary>
    public string Directory { get; }

    /// <summary>How many of the newest checkpoints are kept.</summary>
    public int Keep { get; }

    /// <summary>Tests and the kill hook: wraps the stream the checkpoint bytes are written to (fault injection).</summary>
    internal Func<Stream, Stream>? WrapStream { get; set; }

    /// <summary>The path of the checkpoint of <paramref name="step"/>.</summary>
    public string PathOf(long step) => Path.Combine(Directory, Prefix + step.ToString("D10", CultureInfo.InvariantCulture) + Suffix);

    /// <summary>
    /// Creates the folder if needed and proves it writable (a probe file written, flushed and deleted), so an
    /// unwritable output fails before training starts, with one clear message.
    /// </summary>
    public void EnsureWritable()
    {
        string probe = Path.Combine(Directory, $".write-probe.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            using (var fs = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.WriteByte(0);
                fs.Flush(flushToDisk: true);
            }
            File.Delete(probe);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"checkpoint folder '{Directory}' is not writable: {ex.Message}", ex);
        }
    }

    /// <summary>Writes <paramref name="writer"/> as the checkpoint of <paramref name="step"/> atomically, then prunes old ones.</summary>
    public string Save(long step, SafetensorsWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        string path = PathOf(step);
        string tmp = Path.Combine(Directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                var target = WrapStream?.Invoke(fs) ?? fs;
                writer.WriteTo(target);
                target.Flush();
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
            DurableFile.SyncDirectory(Directory); // the rename is durable before any older checkpoint is pruned
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new IOException($"could not write checkpoint '{path}' (the previous checkpoints are intact): {ex.Message}", ex);
        }
        Prune();
        return path;
    }

    /// <summary>The complete checkpoints present, newest first.</summary>
    public IReadOnlyList<(long Step, string Path)> List()
    {
        var found = new List<(long, string)>();
        if (!System.IO.Directory.Exists(Directory)) return found;
        foreach (var f in System.IO.Directory.EnumerateFiles(Directory, Prefix + "*" + Suffix))
        {
            string name = Path.GetFileName(f);
            string digits = name[Prefix.Length..^Suffix.Length];
            if (digits.Length == 10 && long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long step))
                found.Add((step, f));
        }
        found.Sort((a, b) => b.Item1.CompareTo(a.Item1));
        return found;
    }

    /// <summary>
    /// The newest checkpoint that loads and verifies (SHA-256 of every tensor and of the header); each newer one that
    /// does not is reported through <paramref name="log"/> and skipped. Leftover temporary files of interrupted writes
    /// are deleted. Null when there is none.
    /// </summary>
    public SafetensorsFile? LoadNewestValid(Action<string>? log)
    {
        if (!System.IO.Directory.Exists(Directory)) return null;
        foreach (var tmp in System.IO.Directory.EnumerateFiles(Directory, ".*.tmp"))
        {
            log?.Invoke($"checkpoints: deleting '{Path.GetFileName(tmp)}', an interrupted write");
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        foreach (var (_, path) in List())
        {
            try
            {
                return SafetensorsFile.Load(path);
            }
            catch (Exception ex) when (ex is CheckpointFormatException or IOException)
            {
                log?.Invoke($"checkpoints: '{path}' is not usable ({ex.Message}); trying the previous one");
            }
        }
        return null;
    }

    private void Prune()
    {
        var all = List();
        for (int i = Keep; i < all.Count; i++)
        {
            try { File.Delete(all[i].Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
