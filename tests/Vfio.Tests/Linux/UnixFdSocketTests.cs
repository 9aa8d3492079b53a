using System.Net.Sockets;
using Vfio.Linux;

namespace Vfio.Tests.Linux;

/// <summary>Descriptor passing over real UNIX socket pairs: what a vfio-user client and server do to each other.</summary>
public sealed class UnixFdSocketTests
{
    private static readonly ulong Page = (ulong)Environment.SystemPageSize;

    [Fact]
    public async Task AnEventFdAndAMemfdSentOverThePairWorkOnTheOtherSide()
    {
        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 4);
        using var _a = a;
        using var _b = b;
        using var interrupt = new EventFd();
        using var memory = new SharedMemory(2 * Page, "passed");
        memory.Span[100] = 0x42;

        a.Send("head"u8, "body"u8, [interrupt.Handle, memory.Handle]);

        var fds = new List<SafeFdHandle>();
        var buffer = new byte[64];
        var r = b.Receive(buffer, fds);
        try
        {
            Assert.False(r.ControlTruncated);
            Assert.Equal("headbody"u8.ToArray(), buffer[..r.ByteCount]);
            Assert.Equal(2, fds.Count);
            // The descriptors are the receiver's own: the sender's stay open and usable.
            Assert.False(interrupt.Handle.IsClosed);
            Assert.True(EventFd.IsEventFd(fds[0]));
            Assert.False(EventFd.IsEventFd(fds[1]));

            // The receiver signals the eventfd it got; the sender's waiter sees it.
            Assert.True(EventFd.TrySignal(fds[0], 2));
            Assert.Equal(2UL, await interrupt.WaitAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));

            // The receiver maps the memfd it got; stores go both ways.
            using var mapped = SharedMapping.Map(fds[1], 0, 2 * Page, MappingAccess.ReadWrite);
            Assert.Equal(0x42, mapped.Span[100]);
            mapped.Span[(int)Page] = 0x24;
            Assert.Equal(0x24, memory.Span[(int)Page]);
        }
        finally
        {
            foreach (var fd in fds) { fd.Dispose(); }
        }
    }

    [Fact]
    public void MoreDescriptorsThanTheReceiverHasRoomForAreReportedAsTruncated()
    {
        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 1);
        using var _a = a;
        using var _b = b;
        using var e1 = new EventFd();
        using var e2 = new EventFd();
        using var e3 = new EventFd();
        a.Send("x"u8, default, [e1.Handle, e2.Handle, e3.Handle]);
        var fds = new List<SafeFdHandle>();
        var r = b.Receive(new byte[8], fds);
        Assert.Equal(1, r.ByteCount);
        Assert.True(r.ControlTruncated);
        // The control buffer is CMSG_SPACE(1 * sizeof(int)), padded to 8 bytes: room for two, never for three.
        Assert.InRange(fds.Count, 1, 2);
        foreach (var fd in fds) { fd.Dispose(); }

        // A receiver with room for none reports any descriptor as truncation too.
        var (c, d) = UnixFdSocket.CreatePair(maxReceiveFds: 0);
        using var _c = c;
        using var _d = d;
        c.Send("y"u8, default, [e1.Handle]);
        var none = new List<SafeFdHandle>();
        Assert.True(d.Receive(new byte[8], none).ControlTruncated);
        Assert.Empty(none);
    }

    [Fact]
    public async Task ALargeGatherArrivesWholeAndInOrderAcrossPartialSends()
    {
        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 1);
        using var _a = a;
        using var _b = b;
        var first = Enumerable.Range(0, 3000).Select(i => (byte)i).ToArray();
        var second = Enumerable.Range(0, 4 << 20).Select(i => (byte)(i * 7)).ToArray();
        using var e = new EventFd();
        // 4 MiB is far more than a socket buffer: sendmsg takes it in parts while the reader drains.
        var sender = Task.Run(() => a.Send(first, second, [e.Handle]), TestContext.Current.CancellationToken);
        var got = new byte[first.Length + second.Length];
        var fds = new List<SafeFdHandle>();
        int total = 0;
        while (total < got.Length)
        {
            var r = b.Receive(got.AsSpan(total), fds);
            Assert.False(r.ControlTruncated);
            Assert.NotEqual(0, r.ByteCount);
            total += r.ByteCount;
        }
        await sender.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.Equal(first.Concat(second).ToArray(), got);
        Assert.Single(fds);
        fds[0].Dispose();
    }

    [Fact]
    public void ThePeerClosingIsEndOfStreamForTheReceiverAndAnErrorForTheSender()
    {
        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 1);
        using var _b = b;
        a.Dispose();
        Assert.Equal(new UnixFdReceiveResult(0, false), b.Receive(new byte[8], new List<SafeFdHandle>()));
        var e = Assert.ThrowsAny<VfioException>(() => b.Send("z"u8, default));
        Assert.Equal(32, e.ErrorNumber); // EPIPE; MSG_NOSIGNAL keeps SIGPIPE away
        Assert.Contains("sendmsg", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ShutdownWakesABlockedReceiver()
    {
        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 1);
        using var _a = a;
        using var _b = b;
        var receiver = Task.Run(() => b.Receive(new byte[8], new List<SafeFdHandle>()), TestContext.Current.CancellationToken);
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.False(receiver.IsCompleted);
        b.Shutdown();
        var r = await receiver.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(0, r.ByteCount);
    }

    [Fact]
    public void BadArgumentsAndDisposedObjectsGetTheirDocumentedExceptions()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => UnixFdSocket.CreatePair(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => UnixFdSocket.CreatePair(UnixFdSocket.MaxFdsPerMessage + 1));
        Assert.Throws<ArgumentNullException>(() => new UnixFdSocket(null!, 1));
        using (var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            Assert.Throws<ArgumentException>(() => new UnixFdSocket(tcp, 1));
        }

        var (a, b) = UnixFdSocket.CreatePair(maxReceiveFds: 1);
        using var _b = b;
        using var e = new EventFd();
        var tooMany = Enumerable.Repeat(e.Handle, UnixFdSocket.MaxFdsPerMessage + 1).ToArray();
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Send("x"u8, default, tooMany));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Send(default, default, [e.Handle]));
        Assert.Throws<ArgumentException>(() => b.Receive(default, new List<SafeFdHandle>()));
        Assert.Throws<ArgumentNullException>(() => b.Receive(new byte[1], null!));

        var closed = new EventFd();
        var closedHandle = closed.Handle;
        closed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => a.Send("x"u8, default, [closedHandle]));

        a.Dispose();
        Assert.Throws<ObjectDisposedException>(() => a.Send("x"u8, default));
        Assert.Throws<ObjectDisposedException>(() => a.Receive(new byte[1], new List<SafeFdHandle>()));
    }
}
