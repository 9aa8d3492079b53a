using Microsoft.Extensions.Logging;

namespace Vfio.Cli.Output;

/// <summary>
/// Sends the library's log messages to standard error as <c>vfio: warning: ...</c> lines. Warnings (e.g. "opened in
/// No-IOMMU mode") always show; <c>--verbose</c> adds what the host layer does, write by write.
/// </summary>
/// <remarks>
/// Hand-written rather than Microsoft.Extensions.Logging.Console: that provider writes to <see cref="Console"/> on a
/// background thread, while the command must write to the writer it was given (tests capture it) in order with its
/// own output.
/// </remarks>
internal sealed class ErrorLoggerFactory(TextWriter error, LogLevel minimum) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new ErrorLogger(error, minimum);

    public void AddProvider(ILoggerProvider provider) =>
        throw new NotSupportedException("the vfio command logs to standard error only");

    public void Dispose() { }

    private sealed class ErrorLogger(TextWriter error, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) { return; }
            var level = logLevel switch
            {
                LogLevel.Trace => "trace",
                LogLevel.Debug => "debug",
                LogLevel.Information => "info",
                LogLevel.Warning => "warning",
                LogLevel.Error => "error",
                _ => "critical",
            };
            error.WriteLine($"vfio: {level}: {formatter(state, exception)}");
        }
    }
}
