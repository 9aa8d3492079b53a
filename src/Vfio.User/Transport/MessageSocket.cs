using System.Net.Sockets;
using System.Runtime.InteropServices;
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
    private readonly Socket _socket;
    private readonly SafeHandle _handle;
    private readonly Lock _sendLock = new();

    /// <param name="socket">A connected stream socket; this object owns it.</param>
    /// <param name="maxMessageSize">Largest message (header included) accepted.</param>
    /// <param name="maxFds">Most descriptors accepted with one message.</param>
    public MessageSocket(Socket socket, int maxMessageSize, int maxFds)
    {
        _socket = socket;
        _handle = socket.SafeHandle;
        MaxMessageSize = maxMessageSize;
        MaxFds = maxFds;
    }

    public int MaxMessageSize { get; set; }

    public int MaxFds { get; }

    /// <summary>Sends one message. Thread-safe: messages from different threads never interleave.</summary>
    /// <exception cref="IOException">The peer is gone.</exception>
    public unsafe void Send(MessageHeader header, ReadOnlySpan<byte> body, ReadOnlySpan<SafeFdHandle> fds = default)
    {
        Span<byte> head = stackalloc byte[MessageHeader.Length];
        header.Write(head);
        nuint controlLength = fds.IsEmpty ? 0 : Interop.Libc.CMSG_SPACE((nuint)(fds.Length * sizeof(int)));
        byte* control = stackalloc byte[(int)controlLength];
        var refs = new bool[fds.Length];
        lock (_sendLock)
        {
            bool sockRef = false;
            try
            {
                _handle.DangerousAddRef(ref sockRef);
                for (int i = 0; i < fds.Length; i++) { fds[i].DangerousAddRef(ref refs[i]); }
                if (controlLength != 0)
                {
                    // SAFETY: control is controlLength stack bytes, room for one cmsghdr and fds.Length ints (CMSG_SPACE).
                    new Span<byte>(control, (int)controlLength).Clear();
                    var cmsg = (Interop.Libc.cmsghdr*)control;
                    cmsg->cmsg_len = Interop.Libc.CMSG_LEN((nuint)(fds.Length * sizeof(int)));
                    cmsg->cmsg_level = Interop.Libc.SOL_SOCKET;
                    cmsg->cmsg_type = Interop.Libc.SCM_RIGHTS;
                    int* data = (int*)(control + Interop.Libc.CMSG_LEN(0));
                    for (int i = 0; i < fds.Length; i++) { data[i] = fds[i].Fd; }
                }
                fixed (byte* h = head)
                fixed (byte* b = body)
                {
                    var iov = stackalloc Interop.Libc.iovec[2];
                    iov[0] = new Interop.Libc.iovec { iov_base = h, iov_len = (nuint)head.Length };
                    iov[1] = new Interop.Libc.iovec { iov_base = b, iov_len = (nuint)body.Length };
                    int iovIndex = 0;
                    nuint sent = 0, total = (nuint)(head.Length + body.Length);
                    bool first = true;
                    while (sent < total)
                    {
                        var msg = new Interop.Libc.msghdr
                        {
                            msg_iov = iov + iovIndex,
                            msg_iovlen = (nuint)(2 - iovIndex),
                            msg_control = first && controlLength != 0 ? control : null,
                            msg_controllen = first ? controlLength : 0,
                        };
                        // SAFETY: msg points at live iovecs over pinned spans, and at the control buffer above.
                        nint n = Interop.Libc.sendmsg((int)_handle.DangerousGetHandle(), &msg, Interop.Libc.MSG_NOSIGNAL);
                        if (n < 0)
                        {
                            int errno = Errno.Last;
                            if (errno == Errno.EINTR) { continue; }
                            if (errno == Errno.EAGAIN) { WaitFor(Interop.Libc.POLLOUT); continue; }
                            throw new IOException($"vfio-user: sending {header.Command} failed: {Errno.Describe(errno)}");
                        }
                        first = false;
                        sent += (nuint)n;
                        // Advance the iovecs past what was sent (a stream socket may take part of a message).
                        nuint left = (nuint)n;
                        while (left > 0 && iovIndex < 2)
                        {
                            if (left >= iov[iovIndex].iov_len) { left -= iov[iovIndex].iov_len; iovIndex++; }
                            else
                            {
                                iov[iovIndex].iov_base = (byte*)iov[iovIndex].iov_base + left;
                                iov[iovIndex].iov_len -= left;
                                left = 0;
                            }
                        }
                        while (iovIndex < 2 && iov[iovIndex].iov_len == 0) { iovIndex++; }
                    }
                }
            }
            finally
            {
                for (int i = 0; i < fds.Length; i++) { if (refs[i]) { fds[i].DangerousRelease(); } }
                if (sockRef) { _handle.DangerousRelease(); }
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
    public void Shutdown()
    {
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    public void Dispose()
    {
        Shutdown();
        _socket.Dispose();
    }

    private static void Close(List<SafeFdHandle> fds)
    {
        foreach (var fd in fds) { fd.Dispose(); }
        fds.Clear();
    }

    private unsafe int ReceiveExactly(byte[] buffer, List<SafeFdHandle> fds)
    {
        int total = 0;
        // Room for one more descriptor than allowed, so too many is seen as too many rather than as truncation.
        int controlLength = (int)Interop.Libc.CMSG_SPACE((nuint)((MaxFds + 1) * sizeof(int)));
        byte* control = stackalloc byte[controlLength];
        bool sockRef = false;
        _handle.DangerousAddRef(ref sockRef);
        try
        {
            fixed (byte* p = buffer)
            {
                while (total < buffer.Length)
                {
                    var iov = new Interop.Libc.iovec { iov_base = p + total, iov_len = (nuint)(buffer.Length - total) };
                    var msg = new Interop.Libc.msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (nuint)controlLength };
                    // SAFETY: iov covers the unfilled, pinned part of buffer; control is controlLength stack bytes.
                    nint n = Interop.Libc.recvmsg((int)_handle.DangerousGetHandle(), &msg, Interop.Libc.MSG_CMSG_CLOEXEC);
                    if (n < 0)
                    {
                        int errno = Errno.Last;
                        if (errno == Errno.EINTR) { continue; }
                        if (errno == Errno.EAGAIN) { WaitFor(Interop.Libc.POLLIN); continue; }
                        throw new IOException($"vfio-user: receiving failed: {Errno.Describe(errno)}");
                    }
                    CollectFds(&msg, fds);
                    if ((msg.msg_flags & Interop.Libc.MSG_CTRUNC) != 0 || fds.Count > MaxFds)
                    {
                        throw new VfioUserProtocolException($"a message carried more than the {MaxFds} descriptors allowed");
                    }
                    if (n == 0) { return total; }
                    total += (int)n;
                }
            }
        }
        finally
        {
            if (sockRef) { _handle.DangerousRelease(); }
        }
        return total;
    }

    private static unsafe void CollectFds(Interop.Libc.msghdr* msg, List<SafeFdHandle> fds)
    {
        // SAFETY: the kernel filled msg_controllen bytes of the control buffer with well-formed cmsghdrs.
        byte* p = (byte*)msg->msg_control;
        byte* end = p + msg->msg_controllen;
        while (p != null && p + sizeof(Interop.Libc.cmsghdr) <= end)
        {
            var cmsg = (Interop.Libc.cmsghdr*)p;
            if (cmsg->cmsg_len < (nuint)sizeof(Interop.Libc.cmsghdr) || p + cmsg->cmsg_len > end) { break; }
            if (cmsg->cmsg_level == Interop.Libc.SOL_SOCKET && cmsg->cmsg_type == Interop.Libc.SCM_RIGHTS)
            {
                int count = (int)((cmsg->cmsg_len - Interop.Libc.CMSG_LEN(0)) / sizeof(int));
                int* data = (int*)(p + Interop.Libc.CMSG_LEN(0));
                for (int i = 0; i < count; i++) { fds.Add(new SafeFdHandle(data[i])); }
            }
            p += Interop.Libc.CMSG_ALIGN(cmsg->cmsg_len);
        }
    }

    private unsafe void WaitFor(short events)
    {
        // .NET may have put the descriptor in non-blocking mode; wait for it like a blocking call would.
        var pfd = new Interop.Libc.pollfd { fd = (int)_handle.DangerousGetHandle(), events = events };
        // SAFETY: pfd is a local for the duration of the call.
        Interop.Libc.poll(&pfd, 1, 1000);
    }
}
