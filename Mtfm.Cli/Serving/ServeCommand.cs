namespace Mtfm.Cli.Serving;

/// <summary><c>mtfm serve</c>: runs <see cref="ServeHost"/> until Ctrl+C or SIGTERM, then drains and exits.</summary>
internal static class ServeCommand
{
    public static int Run(ServeOptions o, TextWriter log)
    {
        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stop.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        try
        {
            var host = ServeHost.StartAsync(o, log).GetAwaiter().GetResult();
            log.WriteLine($"mtfm serve: {o.Model} on {o.Device}, listening on {host.Address} (POST /v1/score, GET /healthz /readyz /metrics, POST /admin/reload)");
            try
            {
                stop.Token.WaitHandle.WaitOne();
            }
            finally
            {
                log.WriteLine("mtfm serve: stopping (draining in-flight requests)");
                host.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
