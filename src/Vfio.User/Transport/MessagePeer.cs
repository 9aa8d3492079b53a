using System.Collections.Concurrent;
using Vfio.Linux;
using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>A reply as received: body and descriptors (the caller owns and disposes it).</summary>
internal sealed class Reply(ReceivedMessage message) : IDisposable
{
    public byte[] Body => message.Body;
    public ReceivedMessage Message => message;
    public void Dispose() => message.Dispose();
}

/// <summary>What a command handler answers: a body and descriptors to send with it.</summary>
internal readonly record struct CommandResult(byte[] Body, SafeFdHandle[]? Fds = null)
{
    public static CommandResult Empty { get; } = new([]);
}

/// <summary>
/// One end of a vfio-user connection, used by both client and server, since either may send commands (the server
/// sends DMA_READ/DMA_WRITE). A reader thread receives every message: replies complete the matching pending
/// request, commands are queued for a worker thread that runs the handler in order and sends its reply. Because
/// the worker is not the reader, a handler may itself send a request and wait for its reply (a device doing DMA
/// through messages while handling a register write). When the stream breaks, every pending request fails and
/// <see cref="Closed"/> completes.
/// </summary>
internal sealed class MessagePeer : IDisposable
{
    private readonly MessageSocket _socket;
    private readonly Func<ReceivedMessage, CommandResult> _handler;
    private readonly ConcurrentDictionary<ushort, TaskCompletionSource<ReceivedMessage>> _pending = new();
    private readonly BlockingCollection<ReceivedMessage> _commands = new(boundedCapacity: 64);
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string _name;
    private int _nextId;
    private int _disposed;
    private Exception? _closeReason;

    /// <param name="socket">The framed socket; this object owns it.</param>
    /// <param name="handler">Answers commands; throws <see cref="VfioUserCommandException"/> for an error reply.</param>
    /// <param name="name">Thread names.</param>
    public MessagePeer(MessageSocket socket, Func<ReceivedMessage, CommandResult> handler, string name)
    {
        _socket = socket;
        _handler = handler;
        _name = name;
    }

    /// <summary>Completes when the connection has ended, for whatever reason.</summary>
    public Task Closed => _closed.Task;

    /// <summary>Why the connection ended (null: the peer closed it cleanly, or it was disposed).</summary>
    public Exception? CloseReason => _closeReason;

    public MessageSocket Socket => _socket;

    /// <summary>Time a request waits for its reply.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    private long _commandsHandled, _rejected;

    /// <summary>Commands handled so far.</summary>
    public long CommandsHandled => Interlocked.Read(ref _commandsHandled);

    /// <summary>Messages that could not be handled (errors replied, stray replies dropped).</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    public void Start()
    {
        new Thread(ReadLoop) { IsBackground = true, Name = _name + "-reader" }.Start();
        new Thread(WorkLoop) { IsBackground = true, Name = _name + "-worker" }.Start();
    }

    /// <summary>Sends a command and waits for its reply.</summary>
    /// <exception cref="VfioUserCommandException">The peer replied with an error.</exception>
    /// <exception cref="IOException">The connection ended, or no reply came in time.</exception>
    public Reply Request(Command command, ReadOnlySpan<byte> body, ReadOnlySpan<SafeFdHandle> fds = default)
    {
        ushort id;
        var tcs = new TaskCompletionSource<ReceivedMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        do { id = (ushort)Interlocked.Increment(ref _nextId); } while (!_pending.TryAdd(id, tcs));
        try
        {
            if (_closed.Task.IsCompleted) { throw ClosedException(command.ToString()); }
            _socket.Send(MessageHeader.ForCommand(id, command, body.Length), body, fds);
            if (!tcs.Task.Wait(RequestTimeout))
            {
                throw new IOException($"vfio-user {command}: no reply within {RequestTimeout.TotalSeconds} s");
            }
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
        var reply = tcs.Task.Result;
        if (reply.Header.IsError)
        {
            reply.Dispose();
            throw new VfioUserCommandException(command, (int)reply.Header.ErrorNumber, $"the peer replied {Errno.Describe((int)reply.Header.ErrorNumber)}");
        }
        return new Reply(reply);
    }

    private void ReadLoop()
    {
        try
        {
            while (true)
            {
                var m = _socket.Receive();
                if (m is null) { break; }
                if (m.Header.IsReply)
                {
                    if (_pending.TryRemove(m.Header.MessageId, out var tcs) && tcs.TrySetResult(m)) { continue; }
                    Interlocked.Increment(ref _rejected); // a reply nobody waits for: drop it
                    m.Dispose();
                }
                else if (m.Header.IsCommand)
                {
                    _commands.Add(m);
                }
                else
                {
                    // Neither command nor reply: answer as for a bad command, so the sender is not left waiting.
                    Interlocked.Increment(ref _rejected);
                    TrySend(MessageHeader.ForError(m.Header.MessageId, m.Header.Command, Errno.EINVAL), default);
                    m.Dispose();
                }
            }
        }
        catch (Exception e) when (e is VfioUserProtocolException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            _closeReason = e is InvalidOperationException ? null : e;
        }
        Close();
    }

    private void WorkLoop()
    {
        try
        {
            foreach (var m in _commands.GetConsumingEnumerable())
            {
                using (m)
                {
                    Interlocked.Increment(ref _commandsHandled);
                    CommandResult result;
                    try
                    {
                        result = _handler(m);
                    }
                    catch (VfioUserCommandException e)
                    {
                        Interlocked.Increment(ref _rejected);
                        if (!m.Header.NoReply) { TrySend(MessageHeader.ForError(m.Header.MessageId, m.Header.Command, e.ErrorNumber), default); }
                        continue;
                    }
                    catch (VfioUserProtocolException e)
                    {
                        _closeReason = e;
                        break;
                    }
                    if (!m.Header.NoReply)
                    {
                        TrySend(MessageHeader.ForReply(m.Header.MessageId, m.Header.Command, result.Body.Length), result.Body, result.Fds);
                    }
                    if (result.Fds is not null) { foreach (var fd in result.Fds) { fd.Dispose(); } }
                }
            }
        }
        catch (ObjectDisposedException)
        {
        }
        catch (InvalidOperationException)
        {
        }
        Close();
    }

    private void TrySend(MessageHeader header, ReadOnlySpan<byte> body, SafeFdHandle[]? fds = null)
    {
        try
        {
            _socket.Send(header, body, fds);
        }
        catch (IOException)
        {
            _socket.Shutdown(); // the reader sees the end and closes the peer
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private IOException ClosedException(string what) =>
        new($"vfio-user {what}: the connection is closed" + (_closeReason is null ? "" : $" ({_closeReason.Message})"), _closeReason);

    private void Close()
    {
        _socket.Shutdown();
        try { _commands.CompleteAdding(); } catch (ObjectDisposedException) { }
        foreach (var (id, tcs) in _pending)
        {
            tcs.TrySetException(ClosedException($"request {id}"));
        }
        _closed.TrySetResult();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        Close();
        _closed.Task.Wait(TimeSpan.FromSeconds(1));
        _socket.Dispose();
    }
}
