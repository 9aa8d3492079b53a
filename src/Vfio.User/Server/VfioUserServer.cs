using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

/// <summary>Limits a server enforces on its clients.</summary>
public sealed record VfioUserServerOptions
{
    /// <summary>Most descriptors accepted with one message (VERSION's max_msg_fds).</summary>
    public int MaxMessageFds { get; init; } = 16;

    /// <summary>Most data bytes in one region read or write (VERSION's max_data_xfer_size).</summary>
    public int MaxDataTransferSize { get; init; } = VersionCapabilities.DefaultMaxDataTransferSize;

    /// <summary>Most DMA mappings a client may hold.</summary>
    public int MaxDmaMaps { get; init; } = 1024;
}

/// <summary>
/// Serves one <see cref="EmulatedPciDevice"/> over vfio-user (QEMU docs/devel/vfio-user.rst, protocol 0.1) on a
/// UNIX socket, one client at a time. Every command is validated before it reaches the device: a malformed one
/// gets an error reply (EINVAL for bad fields, ENOTSUP for unknown commands), a stream that cannot be framed is
/// closed; neither stops the server. When a client goes away its DMA mappings and eventfds are dropped and the
/// device is reset.
/// </summary>
public sealed partial class VfioUserServer : IDisposable
{
    private readonly EmulatedPciDevice _device;
    private readonly VfioUserServerOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private Socket? _listener;
    private Connection? _current;
    private int _disposed;

    /// <summary>Creates a server for <paramref name="device"/>.</summary>
    public VfioUserServer(EmulatedPciDevice device, VfioUserServerOptions? options = null, ILogger<VfioUserServer>? logger = null)
    {
        _device = device ?? throw new ArgumentNullException(nameof(device));
        _options = options ?? new VfioUserServerOptions();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The device served.</summary>
    public EmulatedPciDevice Device => _device;

    /// <summary>Connections served so far.</summary>
    public int ConnectionCount { get; private set; }

    /// <summary>
    /// Listens on <paramref name="socketPath"/> (replacing a stale socket file) and serves clients one after the
    /// other until <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public Task RunAsync(string socketPath, CancellationToken cancellationToken)
    {
        Listen(socketPath);
        return RunAsync(cancellationToken);
    }

    /// <summary>Serves clients on the socket <see cref="Listen"/> bound, one after the other, until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (_listener is null) { throw new InvalidOperationException("call Listen first"); }
        using var reg = cancellationToken.Register(() => _listener?.Dispose());
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener!.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                break;
            }
            var connection = Serve(client);
            await connection.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }
        lock (_lock) { _current?.Dispose(); }
    }

    /// <summary>Waits for the next client on the socket <see cref="Listen"/> bound.</summary>
    public async Task<Socket> AcceptAsync(CancellationToken cancellationToken)
    {
        if (_listener is null) { throw new InvalidOperationException("call Listen first"); }
        return await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Binds and listens on <paramref name="socketPath"/>.</summary>
    public void Listen(string socketPath)
    {
        if (File.Exists(socketPath)) { File.Delete(socketPath); }
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        _listener = listener;
        LogListening(_logger, socketPath);
    }

    /// <summary>
    /// Serves an already connected socket (the server takes ownership). The returned task completes when the
    /// client disconnects or breaks the protocol.
    /// </summary>
    public Task Serve(Socket client)
    {
        ArgumentNullException.ThrowIfNull(client);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        Connection connection;
        lock (_lock)
        {
            _current?.Dispose();
            connection = new Connection(this, client);
            _current = connection;
            ConnectionCount++;
        }
        connection.Start();
        return connection.Closed.ContinueWith(_ =>
        {
            lock (_lock)
            {
                if (_current == connection) { _current = null; }
            }
            connection.Dispose();
        }, TaskScheduler.Default);
    }

    /// <summary>Stops listening and drops the current client.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        _listener?.Dispose();
        lock (_lock) { _current?.Dispose(); _current = null; }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "vfio-user server listening on {Path}")]
    private static partial void LogListening(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "vfio-user client connected: protocol {Major}.{Minor}, max_msg_fds {Fds}, max_data_xfer_size {Xfer}")]
    private static partial void LogNegotiated(ILogger logger, int major, int minor, int fds, long xfer);

    [LoggerMessage(Level = LogLevel.Information, Message = "vfio-user client disconnected ({Reason})")]
    private static partial void LogDisconnected(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "vfio-user command {Command} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, Command command, string reason);
}
