using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Vfio.Devices;
using Vfio.Emulation.Edu;
using Vfio.Linux;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Tests;

/// <summary>
/// Random and mutated messages each way over real sockets. Messages that frame correctly must each be answered
/// (an error reply is an answer) and leave the peer serving; messages that break the framing (a size the bytes do
/// not match, a stream cut inside a message) must close the connection, never crash or hang the peer. Seeds are
/// fixed, so a failure reproduces.
/// </summary>
public sealed class FuzzTests
{
    private const int MessagesEachWay = 100_000;
    private const int FramingBreaks = 300;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    // ---- client -> server ----

    [Fact]
    public void ServerAnswersOrClosesForEveryMalformedMessage()
    {
        var edu = new EduDevice();
        using var harness = new Harness(edu);
        var rng = new Random(7);
        int sent = 0, connections = 0;
        var watch = Stopwatch.StartNew();
        while (sent < MessagesEachWay)
        {
            using var raw = new RawPeer(ConnectRaw(harness.SocketPath), answerCommands: true);
            connections++;
            bool negotiated = rng.Next(10) != 0;   // one connection in ten skips VERSION: everything must be refused
            if (negotiated) { raw.Expect(raw.Send(Template(Command.Version, rng, negotiated: false))); }
            for (int i = 0; i < 5_000 && sent < MessagesEachWay; i++, sent++)
            {
                var (header, body, fds) = Mutate(Template(RandomCommand(rng), rng, negotiated), rng);
                try
                {
                    raw.SendExpecting(header, body, fds);
                }
                finally
                {
                    foreach (var fd in fds) { fd.Dispose(); }
                }
            }
            // Still serving: a well-formed request after the storm gets its proper reply.
            var probe = raw.Send(Template(Command.DeviceGetInfo, rng, negotiated));
            raw.Expect(probe);
            Assert.True(raw.WaitForAll(Timeout), $"connection {connections}: {raw.Outstanding} replies missing");
            var reply = raw.ReplyTo(probe);
            if (negotiated)
            {
                Assert.False(reply.IsError, $"GET_INFO after the storm failed: {Errno.Describe((int)reply.ErrorNumber)}");
            }
            // Without VERSION first everything is refused, until a fuzzed message happens to be a valid VERSION:
            // then the probe may succeed. Either way it was answered.
        }
        // And a real client still drives the device.
        using var dev = harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Equal(EduDevice.Id, bar0.Read32(0));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"{MessagesEachWay} messages took {watch.Elapsed}");
    }

    [Fact]
    public void ServerClosesBrokenFramingAndServesTheNextClient()
    {
        using var harness = new Harness(new EduDevice());
        var rng = new Random(11);
        for (int i = 0; i < FramingBreaks; i++)
        {
            using var socket = ConnectRaw(harness.SocketPath);
            var bytes = BrokenFrame(rng);
            socket.Send(bytes);
            socket.Shutdown(SocketShutdown.Send);      // the stream ends here, inside or after the broken message
            var buf = new byte[4096];
            socket.ReceiveTimeout = (int)Timeout.TotalMilliseconds;
            try
            {
                while (socket.Receive(buf) > 0) { }    // the server closes its end: Receive returns 0, not a hang
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                // Closed with our bytes unread: a close too.
            }
        }
        using var dev = harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Equal(EduDevice.Id, bar0.Read32(0));
    }

    // ---- server -> client ----

    [Fact]
    public void ClientAnswersOrClosesForEveryMalformedMessage()
    {
        var rng = new Random(13);
        using var fake = new FakeServer();
        using var dev = fake.ConnectClient(new VfioUserClientOptions { ShareDmaMemory = false });
        using var buffer = dev.Dma.Allocate(64 * 1024);
        ulong iova = buffer.DeviceAddress.Value;
        var raw = fake.Peer!;
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < MessagesEachWay; i++)
        {
            var (header, body, fds) = Mutate(ServerTemplate(rng, iova), rng);
            try
            {
                raw.SendExpecting(header, body, fds);
            }
            finally
            {
                foreach (var fd in fds) { fd.Dispose(); }
            }
            if (i % 5_000 == 4_999) { Assert.True(raw.WaitForAll(Timeout), $"after {i + 1} messages: {raw.Outstanding} replies missing"); }
        }
        Assert.True(raw.WaitForAll(Timeout), $"{raw.Outstanding} replies missing");

        // Still serving DMA: write a pattern through DMA_WRITE, read it back through DMA_READ and the buffer itself.
        var pattern = new byte[256];
        rng.NextBytes(pattern);
        var write = new byte[DmaAccess.Length + pattern.Length];
        new DmaAccess(iova + 512, (ulong)pattern.Length).Write(write);
        pattern.CopyTo(write, DmaAccess.Length);
        raw.Expect(raw.Send((Command.DmaWrite, write)));
        var readBody = new byte[DmaAccess.Length];
        new DmaAccess(iova + 512, (ulong)pattern.Length).Write(readBody);
        var read = raw.Send((Command.DmaRead, readBody));
        raw.Expect(read);
        Assert.True(raw.WaitForAll(Timeout));
        Assert.False(raw.ReplyTo(read).IsError);
        Assert.Equal(pattern, raw.ReplyBody(read).AsSpan(DmaAccess.Length).ToArray());
        Assert.Equal(pattern, buffer.Span.Slice(512, 256).ToArray());
        Assert.False(dev.Disconnected.IsCompleted);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"{MessagesEachWay} messages took {watch.Elapsed}");
    }

    [Fact]
    public async Task ClientClosesOnBrokenFramingInsteadOfHanging()
    {
        var rng = new Random(17);
        for (int i = 0; i < 100; i++)
        {
            using var fake = new FakeServer();
            using var dev = fake.ConnectClient(new VfioUserClientOptions());
            fake.Peer!.Socket.Send(BrokenFrame(rng));
            fake.Peer.Socket.Shutdown(SocketShutdown.Send);
            await dev.Disconnected.WaitAsync(Timeout, TestContext.Current.CancellationToken);
            Assert.ThrowsAny<IOException>(() => dev.GetIrqInfo(IrqIndex.Msi));
        }
    }

    // ---- generators ----

    private static readonly Command[] ClientCommands =
    [
        Command.Version, Command.DmaMap, Command.DmaUnmap, Command.DeviceGetInfo, Command.DeviceGetRegionInfo,
        Command.DeviceGetRegionIoFds, Command.DeviceGetIrqInfo, Command.DeviceSetIrqs, Command.RegionRead,
        Command.RegionWrite, Command.DmaRead, Command.DmaWrite, Command.DeviceReset, (Command)0, (Command)14, (Command)0xFFFF,
    ];

    private static Command RandomCommand(Random rng) =>
        rng.Next(10) < 6 ? (rng.Next(2) == 0 ? Command.RegionRead : Command.RegionWrite) : ClientCommands[rng.Next(ClientCommands.Length)];

    /// <summary>A well-formed body for <paramref name="command"/> with plausible, sometimes extreme, fields.</summary>
    private static (Command, byte[]) Template(Command command, Random rng, bool negotiated)
    {
        byte[] b;
        switch (command)
        {
            case Command.Version:
                b = new VersionMessage(0, 1, new VersionCapabilities { MaxMessageFds = rng.Next(0, 9) }).Encode();
                break;
            case Command.DmaMap:
                b = new byte[DmaMapRequest.Length];
                new DmaMapRequest((DmaMapFlags)rng.Next(0, 5), (ulong)rng.Next(0, 3) * 4096, RandomAddress(rng), (ulong)rng.Next(0, 5) * 4096).Write(b);
                break;
            case Command.DmaUnmap:
                b = new byte[DmaUnmapRequest.Length];
                new DmaUnmapRequest((uint)rng.Next(0, 4), RandomAddress(rng), (ulong)rng.Next(0, 5) * 4096).Write(b);
                break;
            case Command.DeviceGetInfo:
                b = new byte[DeviceInfoReply.Length];
                new DeviceInfoReply(0, 0, 0).Write(b);
                break;
            case Command.DeviceGetRegionInfo:
                b = new byte[RegionInfoMessage.Length];
                new RegionInfoMessage((uint)rng.Next(0, 64), 0, (uint)rng.Next(0, 12), 0, 0, 0).Write(b);
                break;
            case Command.DeviceGetIrqInfo:
                b = new byte[IrqInfoMessage.Length];
                new IrqInfoMessage(0, (uint)rng.Next(0, 7), 0).Write(b);
                break;
            case Command.DeviceSetIrqs:
                b = new byte[SetIrqsRequest.Length + rng.Next(0, 3)];
                new SetIrqsRequest((uint)rng.Next(0, 64), (uint)rng.Next(0, 6), (uint)rng.Next(0, 3), (uint)rng.Next(0, 3)).Write(b);
                break;
            case Command.RegionRead:
            case Command.RegionWrite:
            {
                uint region = rng.Next(4) == 0 ? (uint)rng.Next(0, 10) : 0;
                ulong offset = rng.Next(3) == 0 ? (ulong)rng.NextInt64() : (ulong)(rng.Next(0, 0x28) * 4);
                uint count = (uint)(rng.Next(3) == 0 ? rng.Next(0, 12) : 4);
                int data = command == Command.RegionWrite ? (int)Math.Min(count, 64) : 0;
                b = new byte[RegionAccess.Length + data];
                new RegionAccess(offset, region, count).Write(b);
                rng.NextBytes(b.AsSpan(RegionAccess.Length));
                break;
            }
            case Command.DmaRead:
            case Command.DmaWrite:
                b = new byte[DmaAccess.Length + rng.Next(0, 16)];
                new DmaAccess(RandomAddress(rng), (ulong)rng.Next(0, 32)).Write(b);
                break;
            default:
                b = new byte[rng.Next(0, 24)];
                rng.NextBytes(b);
                break;
        }
        _ = negotiated;
        return (command, b);
    }

    /// <summary>Commands a server may send a client (DMA) and some it may not, aimed at the client's mapped buffer.</summary>
    private static (Command, byte[]) ServerTemplate(Random rng, ulong iova)
    {
        var command = rng.Next(10) switch
        {
            < 4 => Command.DmaRead,
            < 8 => Command.DmaWrite,
            _ => ClientCommands[rng.Next(ClientCommands.Length)],
        };
        if (command is not (Command.DmaRead or Command.DmaWrite)) { return Template(command, rng, true); }
        ulong address = rng.Next(4) switch
        {
            0 => RandomAddress(rng),
            1 => iova + 64 * 1024 - (ulong)rng.Next(0, 64),      // straddles the end of the buffer
            _ => iova + (ulong)rng.Next(0, 64 * 1024),
        };
        ulong count = (ulong)(rng.Next(8) == 0 ? rng.Next(0, 1 << 21) : rng.Next(1, 128));
        int data = command == Command.DmaWrite ? (int)Math.Min(count, 128) : 0;
        var b = new byte[DmaAccess.Length + data];
        new DmaAccess(address, count).Write(b);
        rng.NextBytes(b.AsSpan(DmaAccess.Length));
        return (command, b);
    }

    private static ulong RandomAddress(Random rng) => rng.Next(3) switch
    {
        0 => (ulong)rng.NextInt64(),
        1 => ulong.MaxValue - (ulong)rng.Next(0, 8192),
        _ => 0x10000UL + (ulong)rng.Next(0, 64) * 4096,
    };

    /// <summary>Mutates a well-formed message while keeping its framing: bytes flipped, body cut or grown, flags and fds changed.</summary>
    private static (MessageHeader, byte[], SafeFdHandle[]) Mutate((Command Command, byte[] Body) m, Random rng)
    {
        var body = m.Body;
        var command = m.Command;
        uint flags = 0;
        switch (rng.Next(8))
        {
            case 0:
                body = body.ToArray();
                for (int i = rng.Next(1, 4); i > 0 && body.Length > 0; i--) { body[rng.Next(body.Length)] ^= (byte)(1 << rng.Next(8)); }
                break;
            case 1:
                body = body[..rng.Next(0, body.Length + 1)];
                break;
            case 2:
                body = [.. body, .. new byte[rng.Next(1, 40)]];
                break;
            case 3:
                flags = (uint)rng.Next(0, 64);                  // reply type, invalid types, no_reply, error bits
                break;
            case 4:
                command = (Command)rng.Next(0, 0x10000);
                break;
        }
        SafeFdHandle[] fds = rng.Next(12) switch
        {
            0 => [new SafeFdHandle(Interop.Libc.eventfd(0, Interop.Libc.EFD_CLOEXEC))],
            1 => [new SharedMemoryFd(8192).Handle],
            2 => [new SafeFdHandle(Interop.Libc.eventfd(0, Interop.Libc.EFD_CLOEXEC)), new SafeFdHandle(Interop.Libc.eventfd(0, Interop.Libc.EFD_CLOEXEC))],
            _ => [],
        };
        // IDs below 0x8000: the well-formed probes use the upper half, so their replies are never confused.
        var header = new MessageHeader((ushort)rng.Next(0, 0x8000), command, (uint)(MessageHeader.Length + body.Length), flags, (uint)rng.Next(0, 3));
        return (header, body, fds);
    }

    /// <summary>Bytes that cannot be framed: a size below 16 or above the limit, or a stream cut inside a message.</summary>
    private static byte[] BrokenFrame(Random rng)
    {
        var head = new byte[16];
        uint size = rng.Next(4) switch
        {
            0 => (uint)rng.Next(0, 16),
            1 => (uint)rng.Next(64 << 20, int.MaxValue),
            2 => uint.MaxValue,
            _ => (uint)rng.Next(32, 4096),                       // plausible, but the stream ends before the body does
        };
        new MessageHeader((ushort)rng.Next(), (Command)rng.Next(1, 14), size, 0, 0).Write(head);
        int extra = rng.Next(0, 16);
        var tail = new byte[extra];
        rng.NextBytes(tail);
        int cut = rng.Next(3) == 0 ? rng.Next(1, 16) : 16;     // sometimes even the header is cut short
        return [.. head.AsSpan(0, cut), .. (cut == 16 ? tail : [])];
    }

    private static Socket ConnectRaw(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            try
            {
                s.Connect(new UnixDomainSocketEndPoint(path));
                return s;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(5);
            }
        }
    }

    /// <summary>A memfd without a mapping, to send as a descriptor.</summary>
    private sealed class SharedMemoryFd
    {
        public SharedMemoryFd(long size)
        {
            Handle = new SafeFdHandle(Interop.Libc.memfd_create("fuzz", Interop.Libc.MFD_CLOEXEC));
            Interop.Libc.ftruncate(Handle.Fd, size);
        }

        public SafeFdHandle Handle { get; }
    }

    /// <summary>
    /// The fuzzing side of a connection: sends messages, counts the replies it expects (commands without no_reply,
    /// and any message whose type is neither command nor reply), and answers the peer's own commands.
    /// </summary>
    private sealed class RawPeer : IDisposable
    {
        private readonly MessageSocket _socket;
        private readonly Thread _reader;
        private readonly Dictionary<ushort, (MessageHeader Header, byte[] Body)> _replies = [];
        private readonly Lock _lock = new();
        private readonly bool _answerCommands;
        private int _nextId = 0x8000;
        private long _expected, _received;

        public RawPeer(Socket socket, bool answerCommands)
        {
            Socket = socket;
            _answerCommands = answerCommands;
            _socket = new MessageSocket(socket, 64 << 20, 16);
            _reader = new Thread(Read) { IsBackground = true, Name = "fuzz-reader" };
            _reader.Start();
        }

        public Socket Socket { get; }

        public long Outstanding => Interlocked.Read(ref _expected) - Interlocked.Read(ref _received);

        public void SendExpecting(MessageHeader header, byte[] body, SafeFdHandle[] fds)
        {
            uint type = header.Flags & MessageHeader.TypeMask;
            if ((type == 0 && !header.NoReply) || type > 1) { Interlocked.Increment(ref _expected); }
            _socket.Send(header, body, fds);
        }

        /// <summary>Sends a well-formed command with a fresh ID; returns the ID.</summary>
        public ushort Send((Command Command, byte[] Body) m)
        {
            ushort id = (ushort)Interlocked.Increment(ref _nextId);
            _socket.Send(MessageHeader.ForCommand(id, m.Command, m.Body.Length), m.Body);
            return id;
        }

        public void Expect(ushort id) => Interlocked.Increment(ref _expected);

        public bool WaitForAll(TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (Outstanding > 0)
            {
                if (DateTime.UtcNow > deadline) { return false; }
                Thread.Sleep(1);
            }
            return true;
        }

        public MessageHeader ReplyTo(ushort id)
        {
            lock (_lock) { return _replies[id].Header; }
        }

        public byte[] ReplyBody(ushort id)
        {
            lock (_lock) { return _replies[id].Body; }
        }

        private void Read()
        {
            try
            {
                while (_socket.Receive() is { } m)
                {
                    using (m)
                    {
                        if (m.Header.IsCommand && _answerCommands)
                        {
                            // The server's own DMA_READ/WRITE: refuse, as a client with nothing mapped there would.
                            if (!m.Header.NoReply) { _socket.Send(MessageHeader.ForError(m.Header.MessageId, m.Header.Command, Errno.EFAULT), default); }
                            continue;
                        }
                        lock (_lock) { _replies[m.Header.MessageId] = (m.Header, m.Body); }
                        Interlocked.Increment(ref _received);
                    }
                }
            }
            catch (Exception e) when (e is IOException or VfioUserProtocolException or ObjectDisposedException)
            {
            }
        }

        public void Dispose()
        {
            _socket.Dispose();
            _reader.Join(TimeSpan.FromSeconds(5));
        }
    }

    /// <summary>A scripted server: answers VERSION, GET_INFO and DMA_MAP/UNMAP, then lets the test send what it likes.</summary>
    private sealed class FakeServer : IDisposable
    {
        private readonly string _dir = Path.Combine(Path.GetTempPath(), "vfu-fake-" + Guid.NewGuid().ToString("N")[..12]);
        private readonly Socket _listener;

        public FakeServer()
        {
            Directory.CreateDirectory(_dir);
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(Path.Combine(_dir, "s")));
            _listener.Listen(1);
        }

        public ServerSide? Peer { get; private set; }

        public VfioUserDevice ConnectClient(VfioUserClientOptions options)
        {
            var accept = _listener.AcceptAsync();
            var connect = Task.Run(() => VfioUserDevice.Connect(Path.Combine(_dir, "s"), options));
            Peer = new ServerSide(accept.Result);
            return connect.Result;
        }

        public void Dispose()
        {
            Peer?.Dispose();
            _listener.Dispose();
            try { Directory.Delete(_dir, true); } catch (IOException) { }
        }
    }

    /// <summary>The fake server's end: answers the client's commands and counts replies to its own.</summary>
    private sealed class ServerSide : IDisposable
    {
        private readonly MessageSocket _socket;
        private readonly Thread _reader;
        private readonly Dictionary<ushort, (MessageHeader Header, byte[] Body)> _replies = [];
        private readonly Lock _lock = new();
        private int _nextId;
        private long _expected, _received;

        public ServerSide(Socket socket)
        {
            Socket = socket;
            _socket = new MessageSocket(socket, 64 << 20, 16);
            _reader = new Thread(Read) { IsBackground = true, Name = "fake-server" };
            _reader.Start();
        }

        public Socket Socket { get; }

        public long Outstanding => Interlocked.Read(ref _expected) - Interlocked.Read(ref _received);

        public void SendExpecting(MessageHeader header, byte[] body, SafeFdHandle[] fds)
        {
            uint type = header.Flags & MessageHeader.TypeMask;
            if ((type == 0 && !header.NoReply) || type > 1) { Interlocked.Increment(ref _expected); }
            _socket.Send(header, body, fds);
        }

        public ushort Send((Command Command, byte[] Body) m)
        {
            ushort id = (ushort)Interlocked.Increment(ref _nextId);
            _socket.Send(MessageHeader.ForCommand(id, m.Command, m.Body.Length), m.Body);
            return id;
        }

        public void Expect(ushort id) => Interlocked.Increment(ref _expected);

        public bool WaitForAll(TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (Outstanding > 0)
            {
                if (DateTime.UtcNow > deadline) { return false; }
                Thread.Sleep(1);
            }
            return true;
        }

        public MessageHeader ReplyTo(ushort id)
        {
            lock (_lock) { return _replies[id].Header; }
        }

        public byte[] ReplyBody(ushort id)
        {
            lock (_lock) { return _replies[id].Body; }
        }

        private void Read()
        {
            try
            {
                while (_socket.Receive() is { } m)
                {
                    using (m)
                    {
                        if (m.Header.IsCommand)
                        {
                            byte[] reply = m.Header.Command switch
                            {
                                Command.Version => new VersionMessage(0, 1, new VersionCapabilities()).Encode(),
                                Command.DeviceGetInfo => Info(),
                                Command.DmaUnmap => m.Body,
                                _ => [],
                            };
                            _socket.Send(MessageHeader.ForReply(m.Header.MessageId, m.Header.Command, reply.Length), reply);
                            continue;
                        }
                        lock (_lock) { _replies[m.Header.MessageId] = (m.Header, m.Body); }
                        Interlocked.Increment(ref _received);
                    }
                }
            }
            catch (Exception e) when (e is IOException or VfioUserProtocolException or ObjectDisposedException)
            {
            }
        }

        private static byte[] Info()
        {
            var b = new byte[DeviceInfoReply.Length];
            new DeviceInfoReply(DeviceFlags.Pci, 9, 5).Write(b);
            return b;
        }

        public void Dispose()
        {
            _socket.Dispose();
            _reader.Join(TimeSpan.FromSeconds(5));
        }
    }
}
