using System.Buffers.Binary;
using System.Net.Sockets;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Linux;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Client;

/// <summary>Options of a vfio-user connection.</summary>
public sealed record VfioUserClientOptions
{
    /// <summary>The PCI address the device reports (vfio-user devices have none of their own).</summary>
    public PciAddress Address { get; init; }

    /// <summary>
    /// Pass each DMA buffer's memfd with VFIO_USER_DMA_MAP so the server maps it and DMA is plain memory access.
    /// When false, buffers are mapped without a descriptor and the server reaches them with DMA_READ/DMA_WRITE
    /// messages (slower; for servers that cannot mmap, and to test that path).
    /// </summary>
    public bool ShareDmaMemory { get; init; } = true;

    /// <summary>Time a command waits for the server's reply.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Most data bytes the client accepts in one DMA_READ/DMA_WRITE (its max_data_xfer_size).</summary>
    public int MaxDataTransferSize { get; init; } = VersionCapabilities.DefaultMaxDataTransferSize;
}

/// <summary>
/// A PCI device served over vfio-user, seen through the same <see cref="IPciDevice"/> as a kernel VFIO device.
/// Region accesses become REGION_READ/REGION_WRITE messages of the exact width (or plain memory accesses where the
/// server shares a BAR by descriptor), interrupts arrive on eventfds the client passes with SET_IRQS, and DMA
/// memory is memfd-backed, registered with DMA_MAP at IOVAs this client chooses.
/// </summary>
public sealed class VfioUserDevice : IPciDevice
{
    /// <summary>The IOVA window handed out: 64 KiB to 512 GiB (libvfn's default window: a 39-bit DMA mask).</summary>
    internal static readonly IovaRange IovaWindow = new(IovaAllocator.DefaultLowGuard, (1UL << 39) - 1);

    private readonly MessagePeer _peer;
    private readonly VfioUserClientOptions _options;
    private readonly RegionInfo?[] _regions;
    private readonly UserDmaAllocator _dma;
    private readonly Lock _irqLock = new();
    private readonly Dictionary<IrqIndex, UserInterruptSet> _interrupts = [];
    private PciConfigSpace? _config;
    private IDeviceRegion? _configRegion;
    private int _disposed;

    private VfioUserDevice(Socket socket, VfioUserClientOptions options)
    {
        _options = options;
        int maxMessage = MessageHeader.Length + DmaAccess.Length + options.MaxDataTransferSize;
        _dma = new UserDmaAllocator(this);
        _peer = new MessagePeer(new MessageSocket(socket, maxMessage, maxFds: 8), HandleServerCommand, "vfio-user-client")
        {
            RequestTimeout = options.RequestTimeout,
        };
        _peer.Start();
        try
        {
            ServerCapabilities = Negotiate();
            // Replies to REGION_READ carry the data after a 16-byte access header, up to the server's transfer size.
            // Never more than MaxTransfer (16 MiB at most), so a server announcing a huge size cannot make the client
            // allocate that much per message.
            _peer.Socket.MaxMessageSize = Math.Max(maxMessage, MessageHeader.Length + RegionAccess.Length + MaxTransfer);
            using (var reply = Request(Command.DeviceGetInfo, ArgSizeOnly(DeviceInfoReply.Length)))
            {
                var info = DeviceInfoReply.Read(reply.Body);
                Info = new DeviceInfo(info.Flags, (int)Math.Min(info.RegionCount, 64), (int)Math.Min(info.IrqCount, 64));
            }
            _regions = new RegionInfo?[Info.RegionCount];
        }
        catch
        {
            _peer.Dispose();
            throw;
        }
    }

    /// <summary>Connects to the server listening on <paramref name="socketPath"/> and negotiates the protocol version.</summary>
    /// <exception cref="VfioUserCommandException">The server refused the version.</exception>
    /// <exception cref="IOException">No server, or the connection failed.</exception>
    public static VfioUserDevice Connect(string socketPath, VfioUserClientOptions? options = null)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"vfio-user: cannot connect to {socketPath}: {e.Message}", e);
        }
        return Connect(socket, options);
    }

    /// <summary>Uses an already connected socket (this object takes ownership).</summary>
    public static VfioUserDevice Connect(Socket connectedSocket, VfioUserClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connectedSocket);
        return new VfioUserDevice(connectedSocket, options ?? new VfioUserClientOptions());
    }

    /// <summary>What the server said it accepts (max_data_xfer_size, max_msg_fds …).</summary>
    public VersionCapabilities ServerCapabilities { get; }

    /// <summary>Completes when the server has closed the connection.</summary>
    public Task Disconnected => _peer.Closed;

    /// <inheritdoc />
    public PciAddress Address => _options.Address;

    /// <inheritdoc />
    public DeviceBackend Backend => DeviceBackend.VfioUser;

    /// <summary>True: the server reaches only memory this client mapped for it with DMA_MAP.</summary>
    public bool IsDmaIsolated => true;

    /// <inheritdoc />
    public DeviceInfo Info { get; }

    /// <inheritdoc />
    public IDmaAllocator Dma => _dma;

    internal VfioUserClientOptions Options => _options;

    internal MessagePeer Peer => _peer;

    /// <inheritdoc />
    public PciConfigSpace Config
    {
        get
        {
            ThrowIfDisposed();
            if (_config is null)
            {
                _configRegion = OpenRegion(PciRegion.Config);
                _config = new PciConfigSpace(_configRegion);
            }
            return _config;
        }
    }

    /// <inheritdoc />
    public RegionInfo GetRegionInfo(int index)
    {
        ThrowIfDisposed();
        if ((uint)index >= (uint)_regions.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"the device has regions 0..{_regions.Length - 1}");
        }
        if (_regions[index] is { } cached) { return cached; }
        using var reply = QueryRegion(index);
        return _regions[index] = ParseRegionInfo(index, reply.Body);
    }

    /// <inheritdoc />
    public IDeviceRegion OpenRegion(int index)
    {
        var info = GetRegionInfo(index);
        if (!info.Exists) { throw new ArgumentOutOfRangeException(nameof(index), index, $"region {index} is not implemented by the device"); }
        if ((info.Flags & RegionFlags.Mmap) == 0) { return new UserRegion(this, info, null); }
        // Ask again for the descriptor that comes with the reply: the cached info has none.
        using var reply = QueryRegion(index);
        var fd = reply.Message.Fds.Count == 1 ? reply.Message.TakeFd(0) : null;
        try
        {
            return new UserRegion(this, info, fd);
        }
        finally
        {
            fd?.Dispose(); // the mapping keeps the memory; the descriptor is not needed after mmap
        }
    }

    /// <inheritdoc />
    public IrqInfo GetIrqInfo(IrqIndex index)
    {
        ThrowIfDisposed();
        if ((uint)index >= (uint)Info.IrqCount) { throw new ArgumentOutOfRangeException(nameof(index), index, $"the device has IRQ indexes 0..{Info.IrqCount - 1}"); }
        var body = new byte[IrqInfoMessage.Length];
        new IrqInfoMessage(IrqFlags.None, (uint)index, 0).Write(body);
        using var reply = Request(Command.DeviceGetIrqInfo, body);
        var info = IrqInfoMessage.Read(reply.Body);
        return new IrqInfo(index, info.Flags, (int)Math.Min(info.Count, 2048));
    }

    /// <inheritdoc />
    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        var info = GetIrqInfo(index);
        if (count < 1 || count > info.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{index} has {info.Count} vectors; enable 1..{info.Count}");
        }
        lock (_irqLock)
        {
            if (_interrupts.ContainsKey(index)) { throw new InvalidOperationException($"{index} interrupts are already enabled; dispose that set first"); }
            var set = new UserInterruptSet(this, index, count, info.Flags);
            _interrupts[index] = set;
            return set;
        }
    }

    internal void OnInterruptSetDisposed(UserInterruptSet set)
    {
        lock (_irqLock) { _interrupts.Remove(set.Index); }
    }

    /// <inheritdoc />
    public void Reset()
    {
        ThrowIfDisposed();
        if (!Info.CanReset) { throw new ResetNotSupportedException(Address); }
        using var _ = Request(Command.DeviceReset, []);
    }

    /// <summary>Closes the connection; the server drops this client's mappings and eventfds.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        UserInterruptSet[] sets;
        lock (_irqLock) { sets = [.. _interrupts.Values]; }
        foreach (var s in sets) { s.Dispose(); }
        _configRegion?.Dispose();
        _peer.Dispose();
    }

    internal Reply Request(Command command, ReadOnlySpan<byte> body, ReadOnlySpan<SafeFdHandle> fds = default)
    {
        ThrowIfDisposed();
        return _peer.Request(command, body, fds);
    }

    internal int MaxTransfer => (int)Math.Clamp(ServerCapabilities.MaxDataTransferSize, 1, 1 << 24);

    private VersionCapabilities Negotiate()
    {
        var mine = new VersionMessage(VersionMessage.CurrentMajor, VersionMessage.CurrentMinor, new VersionCapabilities
        {
            MaxMessageFds = 8,
            MaxDataTransferSize = _options.MaxDataTransferSize,
        });
        using var reply = _peer.Request(Command.Version, mine.Encode());
        var theirs = VersionMessage.Read(reply.Body);
        if (theirs.Major != VersionMessage.CurrentMajor)
        {
            throw new VfioUserCommandException(Command.Version, Errno.EOPNOTSUPP, $"the server speaks protocol {theirs.Major}.{theirs.Minor}; this client speaks 0.{VersionMessage.CurrentMinor}");
        }
        return theirs.Capabilities;
    }

    /// <summary>Room offered for a region's capability chain; a server that needs more says so in argsz, and is asked again.</summary>
    private const uint RegionInfoRoom = 4096, RegionInfoMaxRoom = 1 << 20;

    private Reply QueryRegion(int index)
    {
        uint room = RegionInfoRoom;
        while (true)
        {
            var body = new byte[RegionInfoMessage.Length];
            new RegionInfoMessage(room, RegionFlags.None, (uint)index, 0, 0, 0).Write(body);
            var reply = Request(Command.DeviceGetRegionInfo, body);
            uint argsz = reply.Body.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(reply.Body) : 0;
            if (argsz <= (uint)reply.Body.Length || argsz <= room || argsz > RegionInfoMaxRoom) { return reply; }
            // The capabilities did not fit: the reply carries only the fixed part. Ask again with the room it needs.
            reply.Dispose();
            room = argsz;
        }
    }

    private RegionInfo ParseRegionInfo(int index, byte[] body)
    {
        // The reply is struct vfio_region_info and its capability chain, laid out as the kernel's: the core's parser
        // reads sparse-mmap areas and checks every offset against the reply's length.
        var info = VfioCapabilityChain.ParseRegionInfo(body);
        if (info.Index != index) { throw new VfioException($"vfio-user: asked for region {index}, the server described region {info.Index}", Address); }
        return info with { Flags = info.Flags & (RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap | RegionFlags.Caps) };
    }

    private static byte[] ArgSizeOnly(int argsz)
    {
        var b = new byte[argsz];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)argsz);
        return b;
    }

    private CommandResult HandleServerCommand(ReceivedMessage m) => m.Header.Command switch
    {
        Command.DmaRead => _dma.ServeRead(m.Body),
        Command.DmaWrite => _dma.ServeWrite(m.Body),
        _ => throw new VfioUserCommandException(m.Header.Command, Errno.EOPNOTSUPP, "a server may send only DMA_READ and DMA_WRITE"),
    };

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);
}
