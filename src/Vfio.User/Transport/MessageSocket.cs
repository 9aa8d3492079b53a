using System.Net.Sockets;
using Vfio.Linux;
using Vfio.User.Protocol;

namespace Vfio.User.Transport;

/// <summary>A message as received: header, body, and the descriptors that came with it (the receiver owns them).</summary>
internal sealed class ReceivedMessage(MessageHeader header, byte[] body, List<SafeFdHandle> fds) : IDisposable
{
    public MessageHeader Header { get; } = header;
    public byte[] Body { get; } = body;
    public List<SafeFdHandle> Fds { get; } = fds;

    /// <summary>Takes descriptor <paramref name="i"/> out of the message, so Dispose does not close it.</summary>
    public SafeFdHandle TakeFd(int i)
    {
        var fd = Fds[i];
        Fds[i] = new SafeFdHandle();
        return fd;
    }

    public void Dispose()
    {
        foreach (var fd in Fds) { fd.Dispose(); }
        Fds.Clear();
    }
}

/// <summary>
/// Framing of vfio-user messages over a connected UNIX stream socket. A message is sent with one sendmsg (its
/// descriptors as one SCM_RIGHTS control message, which the kernel delivers with the message's first byte); it
/// is received as a 16-byte header and then exactly the body the header announces. A size that cannot be a
/// message, more descriptors than allowed, or a stream that ends inside a message are protocol errors: the
/// stream cannot be resynchronised, so the caller closes it.
/// </summary>
internal sealed class MessageSocket : IDisposable
{
    private readonly UnixFdSocket _socket;
    private readonly Lock _sendLock = new();

    /// <param name="socket">A connected stream socket; this object owns it.</param>
    /// <param name="maxMessageSize">Largest message (header included) accepted.</param>
    /// <param name="maxFds">Most descriptors accepted with one message.</param>
    public MessageSocket(Socket socket, int maxMessageSize, int maxFds)
    {
        // Room for one more descriptor than allowed, so too many is seen as too many rather than as truncation
        // (within what the kernel passes in one message anyway).
        _socket = new UnixFdSocket(socket, Math.Clamp(maxFds + 1, 0, UnixFdSocket.MaxFdsPerMessage));
        MaxMessageSize = maxMessageSize;
        MaxFds = maxFds;
    }

    public int MaxMessageSize { get; set; }

    public int MaxFds { get; }

    /// <summary>Sends one message. Thread-safe: messages from different threads never interleave.</summary>
    /// <exception cref="IOException">The peer is gone.</exception>
    public void Send(MessageHeader header, ReadOnlySpan<byte> body, ReadOnlySpan<SafeFdHandle> fds = default)
    {
        Span<byte> head = stackalloc byte[MessageHeader.Length];
        header.Write(head);
        lock (_sendLock)
        {
            try
            {
                _socket.Send(head, body, fds);
            }
            catch (VfioException e) when (e.ErrorNumber != 0)
            {
                throw new IOException($"vfio-user: sending {header.Command} failed: {Errno.Describe(e.ErrorNumber)}", e);
            }
            catch (ArgumentOutOfRangeException e) when (fds.Length > UnixFdSocket.MaxFdsPerMessage)
            {
                // The kernel passes at most SCM_MAX_FD descriptors with one message; before UnixFdSocket checked
                // that itself, sendmsg refused with EINVAL, and callers (SET_IRQS with many vectors) saw an IOException.
                throw new IOException($"vfio-user: sending {header.Command} failed: {Errno.Describe(Errno.EINVAL)} " +
                    $"({fds.Length} descriptors; one message carries at most {UnixFdSocket.MaxFdsPerMessage})", e);
            }
        }
    }

    /// <summary>Receives one message, or null when the peer closed the stream between messages.</summary>
    /// <exception cref="VfioUserProtocolException">The stream cannot carry on (bad size, too many fds, truncated).</exception>
    /// <exception cref="IOException">The socket failed.</exception>
    public ReceivedMessage? Receive()
    {
        var fds = new List<SafeFdHandle>();
        try
        {
            var head = new byte[MessageHeader.Length];
            int got = ReceiveExactly(head, fds);
            if (got == 0) { Close(fds); return null; }
            if (got < head.Length) { throw new VfioUserProtocolException($"the stream ended inside a message header ({got} of 16 bytes)"); }
            var header = MessageHeader.Read(head);
            if (header.Size < MessageHeader.Length || header.Size > (uint)MaxMessageSize)
            {
                throw new VfioUserProtocolException($"message {header.MessageId} ({header.Command}) announces {header.Size} bytes; " +
                    $"a message has 16 to {MaxMessageSize}");
            }
            var body = new byte[header.BodyLength];
            if (body.Length > 0)
            {
                got = ReceiveExactly(body, fds);
                if (got < body.Length)
                {
                    throw new VfioUserProtocolException($"the stream ended inside message {header.MessageId} ({got} of {body.Length} body bytes)");
                }
            }
            return new ReceivedMessage(header, body, fds);
        }
        catch
        {
            Close(fds);
            throw;
        }
    }

    /// <summary>Shuts the socket down, which wakes a thread blocked in <see cref="Receive"/>.</summary>
    public void Shutdown() => _socket.Shutdown();

    public void Dispose() => _socket.Dispose();

    private static void Close(List<SafeFdHandle> fds)
    {
        foreach (var fd in fds) { fd.Dispose(); }
        fds.Clear();
    }

    private int ReceiveExactly(byte[] buffer, List<SafeFdHandle> fds)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            UnixFdReceiveResult r;
            try
            {
                r = _socket.Receive(buffer.AsSpan(total), fds);
            }
            catch (VfioException e) when (e.ErrorNumber != 0)
            {
                throw new IOException($"vfio-user: receiving failed: {Errno.Describe(e.ErrorNumber)}", e);
            }
            if (r.ControlTruncated || fds.Count > MaxFds)
            {
                throw new VfioUserProtocolException($"a message carried more than the {MaxFds} descriptors allowed");
            }
            if (r.ByteCount == 0) { return total; }
            total += r.ByteCount;
        }
        return total;
    }
}
