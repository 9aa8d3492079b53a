using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Vfio.Linux;

/// <summary>What one <see cref="UnixFdSocket.Receive"/> got.</summary>
/// <param name="ByteCount">Bytes received; 0 when the peer closed the stream.</param>
/// <param name="ControlTruncated">
/// The kernel had more descriptors for this message than the control buffer holds (<c>MSG_CTRUNC</c>): those were
/// closed by the kernel and are lost, so the caller cannot trust the message.
/// </param>
public readonly record struct UnixFdReceiveResult(int ByteCount, bool ControlTruncated);

/// <summary>
/// A connected UNIX stream socket that sends bytes with file descriptors attached and receives them (SCM_RIGHTS,
/// <c>unix(7)</c>): the OS half of a transport such as vfio-user, which keeps the framing. Descriptors go as one
/// control message with the first byte of a send, and the kernel delivers them with that byte. Calls block, as a
/// blocking socket's would, even when .NET has put the socket in non-blocking mode; EINTR is retried.
/// </summary>
public sealed class UnixFdSocket : IDisposable
{
    private readonly Socket _socket;
    private readonly SafeHandle _handle;
    private readonly int _controlLength;

    /// <param name="socket">A connected <see cref="AddressFamily.Unix"/> stream socket; this object owns it.</param>
    /// <param name="maxReceiveFds">
    /// Descriptors one <see cref="Receive"/> has room for (see <see cref="MaxReceiveFds"/>); more are reported as
    /// <see cref="UnixFdReceiveResult.ControlTruncated"/>. A caller that enforces a limit passes one more than it
    /// allows, so a peer that sends too many is told apart from a truncation.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="socket"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxReceiveFds"/> is negative or above 253 (SCM_MAX_FD).</exception>
    /// <exception cref="ArgumentException"><paramref name="socket"/> is not a UNIX socket.</exception>
    public unsafe UnixFdSocket(Socket socket, int maxReceiveFds)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfNegative(maxReceiveFds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxReceiveFds, MaxFdsPerMessage);
        if (socket.AddressFamily != AddressFamily.Unix) { throw new ArgumentException("not a UNIX socket", nameof(socket)); }
        _socket = socket;
        _handle = socket.SafeHandle;
        MaxReceiveFds = maxReceiveFds;
        _controlLength = maxReceiveFds == 0 ? 0 : (int)Interop.Libc.CMSG_SPACE((nuint)(maxReceiveFds * sizeof(int)));
    }

    /// <summary>The kernel's limit on descriptors in one SCM_RIGHTS message (SCM_MAX_FD, include/net/scm.h).</summary>
    public const int MaxFdsPerMessage = 253;

    /// <summary>
    /// Descriptors one <see cref="Receive"/> has room for at least: the control buffer is
    /// <c>CMSG_SPACE(MaxReceiveFds * sizeof(int))</c>, padded to 8 bytes, so an odd count has room for one more.
    /// </summary>
    public int MaxReceiveFds { get; }

    /// <summary>The socket, for its options and endpoints; do not read or write it past this object.</summary>
    public Socket Socket => _socket;

    /// <summary>
    /// Two connected sockets (<c>socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)</c>), for a transport whose peer is in
    /// this process or a child that inherits one end.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxReceiveFds"/> is negative or above 253.</exception>
    /// <exception cref="VfioException">socketpair failed (EMFILE).</exception>
    public static unsafe (UnixFdSocket First, UnixFdSocket Second) CreatePair(int maxReceiveFds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxReceiveFds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxReceiveFds, MaxFdsPerMessage);
        int* sv = stackalloc int[2];
        // SAFETY: sv holds the two ints socketpair writes.
        Errno.Check(Interop.Libc.socketpair(Interop.Libc.AF_UNIX, Interop.Libc.SOCK_STREAM | Interop.Libc.SOCK_CLOEXEC, 0, sv), "socketpair(AF_UNIX)");
        Socket? a = null, b = null;
        try
        {
            // Each fd is owned by its SafeSocketHandle from the moment that exists (sv[i] = -1), so a failing
            // Socket constructor leaves it to the handle's Dispose, never to a second close of a reused number.
            var ha = new SafeSocketHandle(sv[0], ownsHandle: true);
            sv[0] = -1;
            try { a = new Socket(ha); } catch { ha.Dispose(); throw; }
            var hb = new SafeSocketHandle(sv[1], ownsHandle: true);
            sv[1] = -1;
            try { b = new Socket(hb); } catch { hb.Dispose(); throw; }
            return (new UnixFdSocket(a, maxReceiveFds), new UnixFdSocket(b, maxReceiveFds));
        }
        catch
        {
            a?.Dispose();
            b?.Dispose();
            if (sv[0] >= 0) { Interop.Libc.close(sv[0]); }
            if (sv[1] >= 0) { Interop.Libc.close(sv[1]); }
            throw;
        }
    }

    /// <summary>
    /// Sends <paramref name="first"/> then <paramref name="second"/> (one gather: together they are one message to the
    /// peer), all of it, with <paramref name="fds"/> attached to the first byte. The descriptors stay open here: the
    /// peer gets its own. Not thread-safe: callers that send from several threads serialise the calls, or messages
    /// could interleave.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">More than 253 descriptors, or nothing to send with descriptors.</exception>
    /// <exception cref="ObjectDisposedException">This socket or one of <paramref name="fds"/> is closed.</exception>
    /// <exception cref="VfioException">sendmsg failed (EPIPE, ECONNRESET: the peer is gone); <see cref="VfioException.ErrorNumber"/> is its errno.</exception>
    public unsafe void Send(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<SafeFdHandle> fds = default)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fds.Length, MaxFdsPerMessage, nameof(fds));
        if (!fds.IsEmpty && first.Length + second.Length == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(fds), "descriptors travel with a byte; there is none to send");
        }
        nuint controlLength = fds.IsEmpty ? 0 : Interop.Libc.CMSG_SPACE((nuint)(fds.Length * sizeof(int)));
        byte* control = stackalloc byte[(int)controlLength];
        var refs = new bool[fds.Length];
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
            fixed (byte* h = first)
            fixed (byte* b = second)
            {
                var iov = stackalloc Interop.Libc.iovec[2];
                iov[0] = new Interop.Libc.iovec { iov_base = h, iov_len = (nuint)first.Length };
                iov[1] = new Interop.Libc.iovec { iov_base = b, iov_len = (nuint)second.Length };
                int iovIndex = 0;
                nuint sent = 0, total = (nuint)(first.Length + second.Length);
                bool attach = true;
                while (sent < total)
                {
                    var msg = new Interop.Libc.msghdr
                    {
                        msg_iov = iov + iovIndex,
                        msg_iovlen = (nuint)(2 - iovIndex),
                        msg_control = attach && controlLength != 0 ? control : null,
                        msg_controllen = attach ? controlLength : 0,
                    };
                    // SAFETY: msg points at live iovecs over pinned spans, and at the control buffer above.
                    nint n = Interop.Libc.sendmsg((int)_handle.DangerousGetHandle(), &msg, Interop.Libc.MSG_NOSIGNAL);
                    if (n < 0)
                    {
                        int errno = Errno.Last;
                        if (CanRetry(errno, Interop.Libc.POLLOUT)) { continue; }
                        throw Errno.ToException(errno, "sendmsg on a UNIX socket");
                    }
                    attach = false;
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

    /// <summary>
    /// Receives what the stream has, up to <paramref name="buffer"/>.Length bytes (one <c>recvmsg</c>, with
    /// MSG_CMSG_CLOEXEC), waiting until there is something. Descriptors that came with the bytes are added to
    /// <paramref name="fds"/>, owned by the caller, in the order the peer sent them, even when the result reports
    /// truncation.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="fds"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="buffer"/> is empty.</exception>
    /// <exception cref="ObjectDisposedException">This socket is closed.</exception>
    /// <exception cref="VfioException">recvmsg failed (ECONNRESET); <see cref="VfioException.ErrorNumber"/> is its errno.</exception>
    public unsafe UnixFdReceiveResult Receive(Span<byte> buffer, ICollection<SafeFdHandle> fds)
    {
        ArgumentNullException.ThrowIfNull(fds);
        if (buffer.IsEmpty) { throw new ArgumentException("nothing to receive into", nameof(buffer)); }
        byte* control = stackalloc byte[_controlLength];
        bool sockRef = false;
        _handle.DangerousAddRef(ref sockRef);
        try
        {
            fixed (byte* p = buffer)
            {
                while (true)
                {
                    var iov = new Interop.Libc.iovec { iov_base = p, iov_len = (nuint)buffer.Length };
                    var msg = new Interop.Libc.msghdr
                    {
                        msg_iov = &iov,
                        msg_iovlen = 1,
                        msg_control = _controlLength == 0 ? null : control,
                        msg_controllen = (nuint)_controlLength,
                    };
                    // SAFETY: iov covers the pinned buffer; control is _controlLength stack bytes.
                    nint n = Interop.Libc.recvmsg((int)_handle.DangerousGetHandle(), &msg, Interop.Libc.MSG_CMSG_CLOEXEC);
                    if (n < 0)
                    {
                        int errno = Errno.Last;
                        if (CanRetry(errno, Interop.Libc.POLLIN)) { continue; }
                        throw Errno.ToException(errno, "recvmsg on a UNIX socket");
                    }
                    CollectFds(&msg, fds);
                    return new UnixFdReceiveResult((int)n, (msg.msg_flags & Interop.Libc.MSG_CTRUNC) != 0);
                }
            }
        }
        finally
        {
            if (sockRef) { _handle.DangerousRelease(); }
        }
    }

    /// <summary>Shuts the socket down both ways, which wakes a thread blocked in <see cref="Receive"/>; never throws.</summary>
    public void Shutdown()
    {
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    /// <summary>Shuts the socket down and closes it.</summary>
    public void Dispose()
    {
        Shutdown();
        _socket.Dispose();
    }

    private static unsafe void CollectFds(Interop.Libc.msghdr* msg, ICollection<SafeFdHandle> fds)
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

    /// <summary>
    /// Whether a call that failed with <paramref name="errno"/> is to be made again: after a signal (EINTR), or once the
    /// socket is ready for <paramref name="events"/> when it would have blocked (EAGAIN).
    /// </summary>
    private bool CanRetry(int errno, short events)
    {
        if (errno == Errno.EINTR) { return true; }
        if (errno != Errno.EAGAIN) { return false; }
        WaitFor(events);
        return true;
    }

    private unsafe void WaitFor(short events)
    {
        // .NET may have put the descriptor in non-blocking mode; wait for it like a blocking call would, waking each
        // second to try again (a shutdown from another thread makes the retried call return at once).
        var pfd = new Interop.Libc.pollfd { fd = (int)_handle.DangerousGetHandle(), events = events };
        // SAFETY: pfd is a local for the duration of the call.
        Interop.Libc.poll(&pfd, 1, 1000);
    }
}
