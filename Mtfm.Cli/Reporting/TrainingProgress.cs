using System.Globalization;
using Spectre.Console;

namespace Mtfm.Cli.Reporting;

/// <summary>
/// Runs long work with a progress display: a live Spectre.Console bar (loss, exposures/s, ETA) when the output is an
/// interactive terminal, plain periodic lines (<see cref="PlainProgressSink"/>) when it is redirected or under CI.
/// </summary>
internal static class TrainingProgress
{
    /// <summary>True when a live display makes sense: stdout is a terminal, Spectre sees an interactive console, and CI is not set.</summary>
    public static bool IsInteractive =>
        !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive &&
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));

    /// <summary>Runs <paramref name="work"/>, which reports through the sink it is given; returns its result.</summary>
    /// <param name="title">Short name of the job ("train", "eval").</param>
    /// <param name="total">Total exposures the job will process.</param>
    /// <param name="work">The job.</param>
    /// <param name="plainInterval">Seconds between plain lines (default 10 s).</param>
    /// <param name="forcePlain">Plain lines even on a terminal.</param>
    public static T Run<T>(string title, long total, Func<IProgressSink, T> work, TimeSpan? plainInterval = null, bool forcePlain = false)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (total < 0) throw new ArgumentOutOfRangeException(nameof(total), total, "total must be ≥ 0.");
        if (forcePlain || !IsInteractive)
        {
            var sink = new PlainProgressSink(Console.Out, title, total, plainInterval ?? TimeSpan.FromSeconds(10));
            T result = work(sink);
            sink.Complete();
            return result;
        }
        return AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                var sink = new SpectreSink(task, title, total);
                T result = work(sink);
                task.Value = task.MaxValue;
                task.StopTask();
                return result;
            });
    }

    /// <summary>Runs <paramref name="work"/> with progress (see <see cref="Run{T}"/>).</summary>
    public static void Run(string title, long total, Action<IProgressSink> work, TimeSpan? plainInterval = null, bool forcePlain = false) =>
        Run<bool>(title, total, s => { work(s); return true; }, plainInterval, forcePlain);

    private sealed class SpectreSink(ProgressTask task, string title, long total) : IProgressSink
    {
        private readonly ThroughputMeter _meter = new(total);

        public void Report(long done, double loss)
        {
            if (done < 0) throw new ArgumentOutOfRangeException(nameof(done), done, "done must be ≥ 0.");
            var ci = CultureInfo.InvariantCulture;
            string l = double.IsNaN(loss) ? "n/a" : loss.ToString("0.0000", ci);
            task.Description = Markup.Escape(string.Create(ci, $"{title} loss {l} | {_meter.Rate(done):#,0} exp/s"));
            task.Value = Math.Min(done, task.MaxValue);
        }
    }
}
