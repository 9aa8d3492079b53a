using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Spec.Virtio;
using Vfio.User.Server;
using static Vfio.Spec.Virtio.VirtioPciCommonConfig;

namespace Vfio.Emulation.VirtioNet;

/// <summary>
/// A modern virtio-net device (virtio 1.2 §4.1 PCI transport, §5.1 network device, split virtqueues) on the
/// vfio-user server library: 1af4:1041, the common, ISR, device and notify structures in BAR4 laid out as QEMU lays
/// them out, polled, or with MSI-X vectors in BAR1 (as QEMU places them) when created with some. Two ports joined with <see cref="Connect"/> form a hub: what one transmits the
/// other receives. As with QEMU's hub, a frame waits in the sender's transmit queue while the receiver has no buffer,
/// and moves when the receiver kicks its receive queue. With more than one queue pair, the control queue accepts
/// VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET.
/// <para>
/// A driver's mistakes never take the model down: register misuse is ignored, and a malformed ring (a buffer outside
/// mapped memory, a looping or oversized chain, a buffer of the wrong direction) sets DEVICE_NEEDS_RESET (§2.1.2)
/// and stops the data path until a reset. Each case raises <see cref="ProtocolViolation"/>.
/// </para>
/// </summary>
public sealed partial class VirtioNetPort : EmulatedPciDevice
{
    /// <summary>The BAR holding the virtio structures.</summary>
    public const int Bar = 4;

    /// <summary>Offsets of the structures in <see cref="Bar"/>, and its size.</summary>
    public const ulong CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceOffset = 0x2000, NotifyOffset = 0x3000, BarSize = 0x4000;

    /// <summary>notify_off_multiplier: queue n's doorbell is at <see cref="NotifyOffset"/> + n × 4.</summary>
    public const uint NotifyMultiplier = 4;

    /// <summary>The BAR holding the MSI-X table (at 0) and pending-bit array (at 0x800) when the port has vectors.</summary>
    public const int MsixBar = 1;

    // A 64 KiB TCP packet with its Ethernet header and the virtio-net header, as HOST_TSO4/6 transmit chains carry.
    private const int MaxFrame = 65536 + 256;

    private readonly QueueState[] _queues;
    private readonly byte[] _frame = new byte[MaxFrame];
    private Lock _hub = new();
    private uint _deviceFeatureSelect, _driverFeatureSelect;
    private ushort _queueSelect, _msixConfig;
    private byte _status, _generation, _isr;
    private ushort _linkStatus = 1;
    private int _resetReadsLeft;
    private long _interruptsRaised;
    private long _hostileActs;

    /// <summary>Creates a port with MAC <paramref name="mac"/>, offering <paramref name="features"/> (default: the set the driver uses).</summary>
    /// <param name="mac">The MAC address in device config.</param>
    /// <param name="features">Device features offered (default: the set the driver uses).</param>
    /// <param name="queueSize">Entries of each virtqueue.</param>
    /// <param name="maxPairs">max_virtqueue_pairs.</param>
    /// <param name="msixVectors">MSI-X vectors (0: none, a polled port).</param>
    /// <param name="hostile">A mode to start with (see <see cref="Hostile"/>); <see cref="VirtioNetHostileMode.CapabilityOutsideBar"/> takes effect only here.</param>
    /// <exception cref="ArgumentException">The MAC is not 6 bytes, the queue size not a power of two of 2-32768, the pairs not 1-8, or the vectors not 0-64.</exception>
    public VirtioNetPort(ReadOnlySpan<byte> mac, ulong? features = null, ushort queueSize = 256, int maxPairs = 1, int msixVectors = 0,
        VirtioNetHostileMode hostile = VirtioNetHostileMode.None)
        : base(new EmulatedConfigSpace(VirtioPciIds.Vendor, VirtioPciIds.ModernNet, classCode: 0x020000, revision: VirtioPciIds.ModernRevision))   // §4.1.2.1
    {
        if (mac.Length != 6) { throw new ArgumentException("a MAC address is 6 bytes", nameof(mac)); }
        if (queueSize < 2 || (queueSize & (queueSize - 1)) != 0) { throw new ArgumentOutOfRangeException(nameof(queueSize), queueSize, "a queue size is a power of two, 2 to 32768"); }
        if (maxPairs is < 1 or > 8) { throw new ArgumentOutOfRangeException(nameof(maxPairs), maxPairs, "1 to 8 queue pairs"); }
        if (msixVectors is < 0 or > 64) { throw new ArgumentOutOfRangeException(nameof(msixVectors), msixVectors, "0 to 64 MSI-X vectors"); }
        Mac = mac.ToArray();
        MaxPairs = maxPairs;
        OfferedFeatures = features ?? (VirtioFeatures.Version1 | VirtioFeatures.AccessPlatform | VirtioFeatures.NetMac
            | VirtioFeatures.NetStatus | VirtioFeatures.NetMergeRxBuffers | VirtioFeatures.RingEventIndex | VirtioFeatures.NetCsum
            | VirtioFeatures.NetGuestCsum);
        // receiveqN = 2(N-1), transmitqN = 2(N-1)+1, then the control queue when MQ is offered (§5.1.2).
        _queues = new QueueState[VirtioNetQueues.Control(maxPairs) + (maxPairs > 1 ? 1 : 0)];
        for (int i = 0; i < _queues.Length; i++) { _queues[i] = new QueueState(queueSize); }
        if (maxPairs > 1) { OfferedFeatures |= VirtioFeatures.NetMultiQueue | VirtioFeatures.NetControlQueue; }
        // The common configuration ends at queue_device: queue_notify_data and queue_reset belong to features not offered.
        AddVirtioCapability(VirtioPciCapType.Common, CommonOffset, QueueDevice + 8);
        AddVirtioCapability(VirtioPciCapType.Isr, IsrOffset, 1);
        Hostile = hostile;
        // Hostile: the structure starts 4 bytes before the BAR's end, so most of it lies outside.
        AddVirtioCapability(VirtioPciCapType.Device, hostile == VirtioNetHostileMode.CapabilityOutsideBar ? BarSize - 4 : DeviceOffset, VirtioNetConfig.SizeThroughHashTypes);
        AddVirtioCapability(VirtioPciCapType.Notify, NotifyOffset, 0x1000, NotifyMultiplier);
        SetBar(Bar, new EmulatedBar(BarSize, ReadBar, WriteBar));
        MsixVectors = msixVectors;
        if (msixVectors > 0) { AddMsix(msixVectors, MsixBar, 0x800, 0x1000); }
    }

    /// <summary>MSI-X vectors the port offers (0: polled only).</summary>
    public int MsixVectors { get; }

    /// <summary>Interrupts signalled: used buffers on a queue with a vector, while the driver did not set VIRTQ_AVAIL_F_NO_INTERRUPT.</summary>
    public long InterruptsRaised => Interlocked.Read(ref _interruptsRaised);

    /// <summary>Joins two ports on one hub: what one transmits the other receives.</summary>
    public static void Connect(VirtioNetPort a, VirtioNetPort b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a == b) { throw new ArgumentException("a port cannot be its own peer", nameof(b)); }
        a.Peer = b;
        b.Peer = a;
        b._hub = a._hub;   // one lock for both: a transmit on one port writes into the other's receive queue
    }

    /// <summary>Raised with a description whenever the driver breaks a rule of the specification.</summary>
    public event Action<string>? ProtocolViolation;

    /// <summary>The port on the other side of the hub, if any.</summary>
    public VirtioNetPort? Peer { get; private set; }

    /// <summary>The MAC address in device config.</summary>
    public byte[] Mac { get; }

    /// <summary>Device features offered.</summary>
    public ulong OfferedFeatures { get; set; }

    /// <summary>Features the driver accepted.</summary>
    public ulong DriverFeatures { get; private set; }

    /// <summary>device_status.</summary>
    public VirtioStatus DeviceStatus => (VirtioStatus)_status;

    /// <summary>Set VIRTQ_USED_F_NO_NOTIFY on every queue: the driver must not kick; the host calls <see cref="Pump"/>.</summary>
    public bool SuppressNotifications { get; set; }

    /// <summary>Fault injection: refuse FEATURES_OK whatever the driver accepts.</summary>
    public bool RefuseFeatures { get; set; }

    /// <summary>
    /// Fault injection: how the port breaks the device's side of the protocol (see <see cref="VirtioNetHostileMode"/>),
    /// once (the next time the mode applies, then back to <see cref="VirtioNetHostileMode.None"/>) or, with
    /// <see cref="HostileContinuously"/>, every time.
    /// </summary>
    public VirtioNetHostileMode Hostile { get; set; }

    /// <summary>Fault injection: keep misbehaving as <see cref="Hostile"/> says every time it applies, not just once.</summary>
    public bool HostileContinuously { get; set; }

    /// <summary>Fault injection: the virtqueue <see cref="Hostile"/> applies to (used-ring modes); null for every queue.</summary>
    public int? HostileQueue { get; set; }

    /// <summary>Fault injection: the seed of <see cref="VirtioNetHostileMode.ScrambledReceiveHeaders"/>'s choices (read when the mode first acts).</summary>
    public int HostileSeed { get; set; }

    private Random? _scramble;

    /// <summary>Times the port misbehaved as <see cref="Hostile"/> said.</summary>
    public long HostileActs => Interlocked.Read(ref _hostileActs);

    /// <summary>Fault injection: a reset takes this many reads of device_status to finish.</summary>
    public int ResetLatencyReads { get; set; }

    /// <summary>VIRTIO_NET_S_LINK_UP in device config; changing it bumps config_generation.</summary>
    public bool LinkUp
    {
        get => (_linkStatus & 1) != 0;
        set { lock (_hub) { _linkStatus = value ? (ushort)1 : (ushort)0; _generation++; } }
    }

    /// <summary>max_virtqueue_pairs.</summary>
    public int MaxPairs { get; }

    /// <summary>Queue pairs the driver switched on with VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (1 until then, §5.1.6.5.5).</summary>
    public int ActivePairs { get; private set; } = 1;

    /// <summary>Doorbell writes.</summary>
    public long Kicks { get; private set; }

    /// <summary>Frames delivered to the peer.</summary>
    public long FramesSent { get; private set; }

    /// <summary>Frames transmitted while no live peer was there to take them.</summary>
    public long FramesDropped { get; private set; }

    /// <summary>Device resets (device_status written 0, or a function reset).</summary>
    public int Resets { get; private set; }

    /// <summary>Function resets (VFIO device reset, client disconnect).</summary>
    public int FunctionResets { get; private set; }

    /// <inheritdoc />
    public override void Reset()
    {
        lock (_hub)
        {
            FunctionResets++;
            DeviceReset();
        }
        Config.Write(0x04, [0, 0]);   // command register: decoding and bus mastering off, as after a function reset
    }

    /// <summary>Does what kicks would have done: both ports drain their transmit queues.</summary>
    public void Pump()
    {
        lock (_hub)
        {
            for (int p = 0; p < ActivePairs; p++)
            {
                ProcessTx(p);
                Peer?.ProcessTx(p);
            }
        }
    }

    private void AddVirtioCapability(VirtioPciCapType type, ulong offset, uint length, uint? multiplier = null)
    {
        // struct virtio_pci_cap (§4.1.4): cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], offset, length;
        // the notify capability adds notify_off_multiplier.
        Span<byte> c = stackalloc byte[multiplier is null ? VirtioPciCap.Size : VirtioPciCap.NotifyCapSize];
        c.Clear();
        c[VirtioPciCap.Vendor] = PciCapabilityId.VendorSpecific;
        c[VirtioPciCap.CapLength] = (byte)c.Length;
        c[VirtioPciCap.CfgType] = (byte)type;
        c[VirtioPciCap.Bar] = Bar;
        BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioPciCap.Offset..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioPciCap.Length..], length);
        if (multiplier is { } m) { BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioPciCap.NotifyOffMultiplier..], m); }
        Config.AddCapability(c);
    }

    // ------------------------------------------------------------------ registers (§4.1.4.3 common configuration)

    private void ReadBar(ulong offset, Span<byte> data)
    {
        ulong value = 0;
        if (data.Length is 1 or 2 or 4 && offset % (ulong)data.Length == 0)
        {
            lock (_hub) { value = ReadRegister(offset, data.Length); }
        }
        else
        {
            Violation($"BAR{Bar} read of {data.Length} bytes at 0x{offset:x}: virtio registers are read 1, 2 or 4 bytes wide, aligned (§4.1.3.1)");
        }
        Span<byte> all = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(all, value);
        data.Clear();
        all[..Math.Min(8, data.Length)].CopyTo(data);
    }

    private void WriteBar(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length is not (1 or 2 or 4) || offset % (ulong)data.Length != 0)
        {
            Violation($"BAR{Bar} write of {data.Length} bytes at 0x{offset:x}: virtio registers are written 1, 2 or 4 bytes wide, aligned (§4.1.3.1)");
            return;
        }
        ulong value = data.Length switch { 1 => data[0], 2 => BinaryPrimitives.ReadUInt16LittleEndian(data), _ => BinaryPrimitives.ReadUInt32LittleEndian(data) };
        lock (_hub) { WriteRegister(offset, data.Length, value); }
    }

    private ulong ReadRegister(ulong offset, int width)
    {
        if (offset >= IsrOffset && offset < DeviceOffset)
        {
            byte isr = _isr;
            _isr = 0;   // reading the ISR clears it (§4.1.4.5)
            return isr;
        }
        if (offset >= DeviceOffset && offset < NotifyOffset) { return ReadDeviceConfig(offset - DeviceOffset, width); }
        if (offset >= NotifyOffset) { return 0; }
        var q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
        return offset switch
        {
            DeviceFeatureSelect => _deviceFeatureSelect,
            DeviceFeature => _deviceFeatureSelect switch { 0 => (uint)OfferedFeatures, 1 => (uint)(OfferedFeatures >> 32), _ => 0u },
            DriverFeatureSelect => _driverFeatureSelect,
            DriverFeature => _driverFeatureSelect switch { 0 => (uint)DriverFeatures, 1 => (uint)(DriverFeatures >> 32), _ => 0u },
            ConfigMsixVector => _msixConfig,
            NumQueues => (ulong)_queues.Length,
            VirtioPciCommonConfig.DeviceStatus => ReadStatus(),
            ConfigGeneration => _generation,
            QueueSelect => _queueSelect,
            QueueSize => q is null ? 0UL : Act(VirtioNetHostileMode.QueueSizeOutOfRange, _queueSelect) ? 0xFFFFUL : q.Size,
            QueueMsixVector => q?.MsixVector ?? NoVector,
            QueueEnable => q is { Enabled: true } ? 1u : 0u,
            // Queue n's doorbell is n × multiplier into the notify structure.
            QueueNotifyOff => Act(VirtioNetHostileMode.NotifyOffsetOutOfRange, _queueSelect) ? 0xFFFFUL : _queueSelect,
            >= QueueDesc and < QueueDevice + 8 => q is null ? 0 : Half(offset, q),
            _ => 0,
        };
    }

    private static ulong Half(ulong offset, QueueState q)
    {
        ulong field = offset < QueueDriver ? q.Desc : offset < QueueDevice ? q.Driver : q.Device;
        return (offset & 4) == 0 ? (uint)field : field >> 32;
    }

    private byte ReadStatus()
    {
        if (_resetReadsLeft > 0 && --_resetReadsLeft > 0) { return _status == 0 ? (byte)VirtioStatus.Acknowledge : _status; }
        return _status;
    }

    private ulong ReadDeviceConfig(ulong offset, int width)
    {
        // struct virtio_net_config (§5.1.4): mac, status, max_virtqueue_pairs, mtu, speed and duplex (0: unknown),
        // and the RSS limits (§5.1.4.1: at least a 40-byte key and 128 table entries when RSS is offered).
        Span<byte> cfg = stackalloc byte[VirtioNetConfig.SizeThroughHashTypes];
        cfg.Clear();
        if ((OfferedFeatures & VirtioFeatures.NetRss) != 0)
        {
            cfg[VirtioNetConfig.RssMaxKeySize] = VirtioNetRss.MinimumMaxKeySize;
            BinaryPrimitives.WriteUInt16LittleEndian(cfg[VirtioNetConfig.RssMaxIndirectionTableLength..], RssTableLength);
            BinaryPrimitives.WriteUInt32LittleEndian(cfg[VirtioNetConfig.SupportedHashTypes..], RssHashTypes);
        }
        Mac.CopyTo(cfg[VirtioNetConfig.Mac..]);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[VirtioNetConfig.Status..], _linkStatus);
        bool pairsRead = offset <= VirtioNetConfig.MaxVirtqueuePairs && offset + (ulong)width > VirtioNetConfig.MaxVirtqueuePairs;
        ushort pairs = pairsRead && Act(VirtioNetHostileMode.MaxQueuePairsOutOfRange, null) ? (ushort)(VirtioNetControl.MqVqPairsMax + 1) : (ushort)MaxPairs;
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[VirtioNetConfig.MaxVirtqueuePairs..], pairs);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[VirtioNetConfig.Mtu..], 1500);
        if (offset + (ulong)width > VirtioNetConfig.SizeThroughHashTypes) { return 0; }
        return width switch
        {
            1 => cfg[(int)offset],
            2 => BinaryPrimitives.ReadUInt16LittleEndian(cfg[(int)offset..]),
            _ => BinaryPrimitives.ReadUInt32LittleEndian(cfg[(int)offset..]),
        };
    }

    private void WriteRegister(ulong offset, int width, ulong value)
    {
        if (offset >= NotifyOffset)
        {
            ulong queue = (offset - NotifyOffset) / NotifyMultiplier;
            if (width != VirtioPciNotify.NotificationSize || queue != value || queue >= (ulong)_queues.Length)
            {
                Violation($"bad doorbell write: {width} bytes of {value} at queue {queue}'s doorbell");
                return;
            }
            if ((_status & (byte)VirtioStatus.DriverOk) == 0) { Violation("doorbell rung before DRIVER_OK (§3.1.1)"); return; }
            Kicks++;
            OnNotify((int)queue);
            return;
        }
        if (offset >= IsrOffset) { return; }   // ISR and device config are read-only
        var q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
        switch (offset)
        {
            case DeviceFeatureSelect: _deviceFeatureSelect = (uint)value; break;
            case DriverFeatureSelect: _driverFeatureSelect = (uint)value; break;
            case DriverFeature:
                if (_driverFeatureSelect == 0) { DriverFeatures = (DriverFeatures & ~0xFFFF_FFFFUL) | (uint)value; }
                else if (_driverFeatureSelect == 1) { DriverFeatures = (DriverFeatures & 0xFFFF_FFFFUL) | (value << 32); }
                break;
            // §4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR.
            case ConfigMsixVector: _msixConfig = VectorOrNone(value); break;
            case VirtioPciCommonConfig.DeviceStatus: WriteStatus((byte)value); break;
            case QueueSelect: _queueSelect = (ushort)value; break;
            case QueueSize when q is not null:
                if (value == 0 || value > q.MaxSize || (value & (value - 1)) != 0) { Violation($"queue size {value} (max {q.MaxSize}, a power of two)"); }
                else { q.Size = (ushort)value; }
                break;
            case QueueMsixVector when q is not null: q.MsixVector = VectorOrNone(value); break;
            case QueueEnable when q is not null: q.Enabled = value == 1; break;
            case >= QueueDesc and < QueueDevice + 8:
                if (width != 4) { Violation("64-bit queue addresses are written as two 32-bit halves (§4.1.3.1)"); }
                else if (q is not null) { SetHalf(offset, q, (uint)value); }
                break;
        }
    }

    private static void SetHalf(ulong offset, QueueState q, uint value)
    {
        static ulong Merge(ulong field, ulong offset, uint value) =>
            (offset & 4) == 0 ? (field & ~0xFFFF_FFFFUL) | value : (field & 0xFFFF_FFFFUL) | ((ulong)value << 32);
        if (offset < QueueDriver) { q.Desc = Merge(q.Desc, offset, value); }
        else if (offset < QueueDevice) { q.Driver = Merge(q.Driver, offset, value); }
        else { q.Device = Merge(q.Device, offset, value); }
    }

    private void WriteStatus(byte value)
    {
        if (value == 0) { DeviceReset(); return; }
        var bits = (VirtioStatus)value;
        if ((bits & VirtioStatus.FeaturesOk) != 0 && (_status & (byte)VirtioStatus.FeaturesOk) == 0)
        {
            // §2.2.2: the device refuses features it did not offer, and (§6.1) VERSION_1 is mandatory for a modern device.
            bool ok = !RefuseFeatures && (DriverFeatures & ~OfferedFeatures) == 0 && (DriverFeatures & VirtioFeatures.Version1) != 0
                && SegmentationDependenciesMet(DriverFeatures);
            if (!ok) { bits &= ~VirtioStatus.FeaturesOk; }
        }
        // DEVICE_NEEDS_RESET is the device's to set; the driver cannot clear it short of a reset.
        _status = (byte)((byte)bits | (_status & (byte)VirtioStatus.DeviceNeedsReset));
        if ((bits & VirtioStatus.DriverOk) != 0)
        {
            foreach (var q in _queues)
            {
                if (q.Enabled && !TrySetUsedFlags(q)) { return; }
            }
        }
    }

    private void DeviceReset()
    {
        Resets++;
        _status = 0;
        _resetReadsLeft = ResetLatencyReads;
        DriverFeatures = 0;
        _queueSelect = 0;
        _isr = 0;
        foreach (var q in _queues) { q.Reset(); }
        ActivePairs = 1;
        _rss = null;
    }

    // ------------------------------------------------------------------ data path (§2.7 split virtqueues)

    private bool Live => (_status & ((byte)VirtioStatus.DriverOk | (byte)VirtioStatus.DeviceNeedsReset)) == (byte)VirtioStatus.DriverOk;

    private void OnNotify(int queue)
    {
        if (MaxPairs > 1 && queue == VirtioNetQueues.Control(MaxPairs)) { ProcessControl(); return; }
        int pair = queue / 2;
        if (pair >= ActivePairs) { Violation($"doorbell of queue {queue}, but only {ActivePairs} pair(s) are switched on"); return; }
        if (queue % 2 == 1) { ProcessTx(pair); }
        else { Peer?.ProcessTx(pair); }   // receive buffers arrived: what the peer had waiting can flow
    }

    /// <summary>A malformed ring: the device needs a reset before it touches the rings again (§2.1.2).</summary>
    private void NeedsReset(string why)
    {
        _status |= (byte)VirtioStatus.DeviceNeedsReset;
        _generation++;
        Violation(why + "; DEVICE_NEEDS_RESET set");
    }

    private void Violation(string what) => ProtocolViolation?.Invoke(what);

    /// <summary>The control queue (§5.1.6.5): VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, and MQ_RSS_CONFIG when RSS is negotiated.</summary>
    private void ProcessControl()
    {
        var q = _queues[VirtioNetQueues.Control(MaxPairs)];
        if (!Live || !q.Enabled) { return; }
        Span<byte> command = stackalloc byte[VirtioNetControl.Data + VirtioNetRss.Size(RssTableLength, VirtioNetRss.MinimumMaxKeySize)];
        while (TryReadAvailIndex(q, out ushort availIdx) && availIdx != q.LastAvail)
        {
            if (!TryReadAvailEntry(q, out ushort head)) { return; }
            if (!TryDescriptor(q, head, out var d0)) { return; }
            if ((d0.Flags & (ushort)VirtqDescriptorFlags.Next) == 0 || d0.Length < VirtioNetControl.Data) { NeedsReset("control command without an ack buffer"); return; }
            if (!TryDescriptor(q, d0.Next, out var d1)) { return; }
            if ((d1.Flags & (ushort)VirtqDescriptorFlags.Write) == 0 || d1.Length < 1) { NeedsReset("the control ack buffer is not device-writable"); return; }
            var cmd = command[..(int)Math.Min(d0.Length, (uint)command.Length)];
            cmd.Clear();
            if (!TryDma(d0.Address, cmd, toDriver: false)) { return; }
            byte ack = VirtioNetControl.Error;
            if (cmd.Length == VirtioNetControl.MqVqPairsSetLength && cmd[VirtioNetControl.Class] == VirtioNetControl.ClassMq
                && cmd[VirtioNetControl.Command] == VirtioNetControl.MqVqPairsSet)
            {
                int pairs = BinaryPrimitives.ReadUInt16LittleEndian(cmd[VirtioNetControl.Data..]);
                if (pairs >= VirtioNetControl.MqVqPairsMin && pairs <= MaxPairs) { ActivePairs = pairs; _rss = null; ack = VirtioNetControl.Ok; }
            }
            else if ((DriverFeatures & VirtioFeatures.NetRss) != 0 && cmd.Length > VirtioNetControl.Data
                && cmd[VirtioNetControl.Class] == VirtioNetControl.ClassMq && cmd[VirtioNetControl.Command] == VirtioNetControl.MqRssConfig)
            {
                ack = ApplyRssConfig(cmd[VirtioNetControl.Data..]);
            }
            if (!TryDma(d1.Address, new Span<byte>(ref ack), toDriver: true)) { return; }
            q.LastAvail++;
            if (!TryPushUsed(q, VirtioNetQueues.Control(MaxPairs), head, 1, d1.Length)) { return; }
        }
    }

    private bool TrySetUsedFlags(QueueState q)
    {
        Span<byte> flags = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(flags, (ushort)(SuppressNotifications ? VirtqUsedFlags.NoNotify : VirtqUsedFlags.None));
        return TryDma(q.Device + VirtqUsedLayout.Flags, flags, toDriver: true);
    }

    /// <summary>Sends what the transmit queue holds while the peer can take it (§2.7.14 from the device's side).</summary>
    private void ProcessTx(int pair)
    {
        var q = _queues[VirtioNetQueues.Transmit(pair)];
        if (!Live || !q.Enabled || !TrySetUsedFlags(q)) { return; }
        while (TryReadAvailIndex(q, out ushort availIdx) && availIdx != q.LastAvail)
        {
            if (!TryReadAvailEntry(q, out ushort head)) { return; }
            int length = Gather(q, head);
            if (length < 0) { return; }
            int payload = length - VirtioNetHeader.Size;
            if (payload < 0) { NeedsReset($"a transmitted buffer of {length} bytes has no room for the virtio-net header"); return; }
            if (Peer is { } peer && peer.Live)
            {
                var header = _frame.AsSpan(0, VirtioNetHeader.Size);
                var frame = _frame.AsSpan(VirtioNetHeader.Size, payload);
                int delivered;
                if (header[VirtioNetHeader.GsoType] != VirtioNetHeader.GsoNone)
                {
                    delivered = TransmitSegmented(q, header, frame, peer, pair);
                }
                else
                {
                    int completed = CompleteTransmitChecksum(header, frame, peer, out var partial);
                    delivered = completed < 0 ? -1 : peer.TryDeliver(peer.ReceivePairFor(pair, frame), frame, completed > 0 && partial is null, partial);
                }
                if (delivered == 0) { return; }   // wait for receive buffers
                if (delivered > 0) { FramesSent++; } else { FramesDropped++; }   // < 0: the peer's ring is broken, or the driver's header was wrong
            }
            else
            {
                FramesDropped++;
            }
            // Done with this chain however it ended: a cut that stopped part way belongs to it alone.
            q.SegmentsDelivered = 0;
            q.LastAvail++;
            if (!TryPushUsed(q, VirtioNetQueues.Transmit(pair), head, 0, (uint)length)) { return; }
        }
    }

    /// <summary>Copies a transmit chain into the frame buffer; its length, or -1 after flagging a malformed chain.</summary>
    private int Gather(QueueState q, ushort head)
    {
        int total = 0;
        ushort id = head;
        for (int n = 0; ; n++)
        {
            if (n >= q.Size) { NeedsReset("a descriptor chain loops"); return -1; }
            if (!TryDescriptor(q, id, out var d)) { return -1; }
            if ((d.Flags & (ushort)VirtqDescriptorFlags.Write) != 0) { NeedsReset("a device-writable buffer in a transmit chain"); return -1; }
            if (d.Length > (uint)(MaxFrame - total)) { NeedsReset($"a transmit chain longer than {MaxFrame} bytes"); return -1; }
            if (!TryDma(d.Address, _frame.AsSpan(total, (int)d.Length), toDriver: false)) { return -1; }
            total += (int)d.Length;
            if ((d.Flags & (ushort)VirtqDescriptorFlags.Next) == 0) { return total; }
            id = d.Next;
        }
    }

    /// <summary>
    /// Puts <paramref name="frame"/> in the next receive buffer, or with MRG_RXBUF negotiated across as many as it
    /// needs (§5.1.6.4: num_buffers in the first one's header, every buffer but the last used whole): 1 done, 0 not
    /// enough buffers yet, -1 the receive ring is malformed. <paramref name="segmentation"/>: the gso_type and gso_size
    /// of a joined TCP packet (for a port that negotiated GUEST_TSO4/6), else none.
    /// </summary>
    private int TryDeliver(int pair, ReadOnlySpan<byte> frame, bool checksumCompleted, (ushort Start, ushort Offset)? partial,
        (byte Type, ushort Size, ushort HeaderLength) segmentation = default)
    {
        var q = _queues[VirtioNetQueues.Receive(pair)];
        if (!q.Enabled || !TrySetUsedFlags(q)) { return 0; }
        if (!TryReadAvailIndex(q, out ushort availIdx)) { return -1; }
        int needed = VirtioNetHeader.Size + frame.Length;
        bool mergeable = (DriverFeatures & VirtioFeatures.NetMergeRxBuffers) != 0;
        int available = (ushort)(availIdx - q.LastAvail);
        if (available == 0) { return 0; }
        // The buffers it will take: one without MRG_RXBUF, else as many as hold it, in ring order.
        Span<(ushort Head, ulong Address, uint Length)> buffers = stackalloc (ushort, ulong, uint)[MaxBuffersPerFrame];
        int count = 0;
        long room = 0;
        while (room < needed)
        {
            // More than the ring (or 64 buffers) holds: it can never be placed, and is dropped as a device drops
            // what it cannot place (counted by the caller). Fewer available: wait for the driver's refill.
            if (count == Math.Min((int)q.Size, MaxBuffersPerFrame)) { return -1; }
            if (count == available) { return 0; }
            if (!TryReadAvailEntry(q, (ushort)(q.LastAvail + count), out ushort head)) { return -1; }
            if (!TryDescriptor(q, head, out var d)) { return -1; }
            if ((d.Flags & (ushort)VirtqDescriptorFlags.Write) == 0) { NeedsReset("a device-readable buffer in the receive queue"); return -1; }
            if ((d.Flags & (ushort)VirtqDescriptorFlags.Next) != 0) { NeedsReset("the emulation takes single-buffer receive descriptors"); return -1; }
            if (count == 0 && d.Length < VirtioNetHeader.Size) { NeedsReset($"a receive buffer of {d.Length} bytes cannot hold the virtio-net header"); return -1; }
            buffers[count++] = (head, d.Address, d.Length);
            room += d.Length;
            if (!mergeable && room < needed) { NeedsReset($"a receive buffer of {d.Length} bytes for a {frame.Length}-byte frame"); return -1; }
        }
        // struct virtio_net_hdr (§5.1.6): segmentation as given, checksum flags (§5.1.6.4), num_buffers.
        Span<byte> header = stackalloc byte[VirtioNetHeader.Size];
        header.Clear();
        WriteReceiveChecksum(header, frame, checksumCompleted, partial, VirtioNetQueues.Receive(pair));
        if (Act(VirtioNetHostileMode.UnnegotiatedSegmentation, VirtioNetQueues.Receive(pair))) { segmentation = (VirtioNetHeader.GsoTcpV4, 1448, 54); }
        if (segmentation.Type != VirtioNetHeader.GsoNone)
        {
            header[VirtioNetHeader.GsoType] = segmentation.Type;
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.HeaderLength..], segmentation.HeaderLength);
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.GsoSize..], segmentation.Size);
        }
        ushort numBuffers = Act(VirtioNetHostileMode.NumBuffersOutOfRange, VirtioNetQueues.Receive(pair)) ? (ushort)0 : (ushort)count;
        BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.NumBuffers..], numBuffers);
        if (Act(VirtioNetHostileMode.ScrambledReceiveHeaders, VirtioNetQueues.Receive(pair))) { Scramble(header, count); }
        if (count > 1 && Act(VirtioNetHostileMode.NumBuffersOneTooMany, VirtioNetQueues.Receive(pair)))
        {
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.NumBuffers..], (ushort)(count + 1));
        }
        if (!TryDma(buffers[0].Address, header, toDriver: true)) { return -1; }
        // The frame follows the header in the first buffer and fills the next ones from their start.
        int at = 0;
        for (int b = 0; b < count; b++)
        {
            int skip = b == 0 ? VirtioNetHeader.Size : 0;
            int take = (int)Math.Min(buffers[b].Length - (uint)skip, (uint)(frame.Length - at));
            if (!TryDmaWrite(buffers[b].Address + (ulong)skip, frame.Slice(at, take))) { return -1; }
            at += take;
            q.LastAvail++;
            uint used = (uint)(skip + take);
            bool last = b == count - 1;
            if (last) { return TryPushUsed(q, VirtioNetQueues.Receive(pair), buffers[b].Head, used, buffers[b].Length) ? 1 : -1; }
            if (!TryWriteUsedElement(q, buffers[b].Head, used)) { return -1; }
        }
        return -1;   // unreachable: count >= 1
    }

    private const int MaxBuffersPerFrame = 64;

    /// <summary>Hostile: one wrong thing in a received packet's header (<see cref="VirtioNetHostileMode.ScrambledReceiveHeaders"/>).</summary>
    private void Scramble(Span<byte> header, int buffers)
    {
        var random = _scramble ??= new Random(HostileSeed);
        switch (random.Next(6))
        {
            case 0:
                BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.NumBuffers..], (ushort)(buffers + random.Next(1, 4)));
                break;
            case 1:
                BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.NumBuffers..], (ushort)Math.Max(1, buffers - random.Next(1, 3)));
                break;
            case 2:
                header[VirtioNetHeader.GsoType] = (byte)random.Next(256);
                break;
            case 3:
                header[VirtioNetHeader.GsoType] = random.Next(2) == 0 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6;
                BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.GsoSize..], (ushort)(random.Next(2) == 0 ? 0 : random.Next(65536)));
                break;
            case 4:
                header[VirtioNetHeader.Flags] = (byte)random.Next(256);
                BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumStart..], (ushort)random.Next(65536));
                BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..], (ushort)random.Next(65536));
                break;
            default:
                random.NextBytes(header[..VirtioNetHeader.NumBuffers]);
                break;
        }
    }

    /// <summary>
    /// Returns chain <paramref name="id"/> of queue <paramref name="queue"/> with <paramref name="length"/> bytes
    /// written (§2.7.8), of the <paramref name="offered"/> it could hold; <see cref="Hostile"/> may change what is written.
    /// </summary>
    private bool TryPushUsed(QueueState q, int queue, ushort id, uint length, uint offered)
    {
        uint usedId = id;
        if (Act(VirtioNetHostileMode.RewriteDescriptors, queue) && !TryRewriteDescriptor(q, id)) { return false; }
        if (Act(VirtioNetHostileMode.OutOfRangeUsedId, queue)) { usedId = (uint)q.Size + 7; }
        if (Act(VirtioNetHostileMode.UnknownUsedId, queue))
        {
            if (!TryFindUnknownId(q, id, out usedId)) { return false; }
        }
        if (Act(VirtioNetHostileMode.UsedLengthPastBuffer, queue)) { length = offered + 1; }
        if (!TryWriteUsedElement(q, usedId, length)) { return false; }
        if (Act(VirtioNetHostileMode.DuplicateUsedId, queue) && !TryWriteUsedElement(q, usedId, length)) { return false; }
        if (Act(VirtioNetHostileMode.UsedIndexJump, queue)) { q.UsedIdx = (ushort)(q.UsedIdx + q.Size + 1); }
        // The element (and the buffer contents) are written before the index that publishes them.
        Span<byte> index = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(index, q.UsedIdx);
        if (!TryDma(q.Device + VirtqUsedLayout.Index, index, toDriver: true)) { return false; }
        if (q.MsixVector != NoVector && InterruptWanted(q) && Context.SignalInterrupt(IrqIndex.Msix, q.MsixVector))
        {
            Interlocked.Increment(ref _interruptsRaised);
        }
        return true;
    }

    private bool TryWriteUsedElement(QueueState q, uint id, uint length)
    {
        // struct virtq_used_elem (§2.7.8): le32 id, le32 len.
        Span<byte> element = stackalloc byte[VirtqUsedLayout.ElementSize];
        BinaryPrimitives.WriteUInt32LittleEndian(element[VirtqUsedLayout.ElementId..], id);
        BinaryPrimitives.WriteUInt32LittleEndian(element[VirtqUsedLayout.ElementLength..], length);
        if (!TryDma(q.Device + (ulong)VirtqUsedLayout.ElementOffset(q.UsedIdx % q.Size), element, toDriver: true)) { return false; }
        q.UsedIdx++;
        return true;
    }

    /// <summary>
    /// Whether to misbehave as <paramref name="mode"/> now, on <paramref name="queue"/> (null: not a queue's value):
    /// true when it is the mode set and the queue matches; a one-shot mode is then spent.
    /// </summary>
    private bool Act(VirtioNetHostileMode mode, int? queue)
    {
        if (Hostile != mode || (queue is { } n && HostileQueue is { } only && n != only)) { return false; }
        if (!HostileContinuously) { Hostile = VirtioNetHostileMode.None; }
        Interlocked.Increment(ref _hostileActs);
        return true;
    }

    /// <summary>Hostile: overwrites descriptor <paramref name="id"/> (the device is done with it) with a looping chain to nowhere.</summary>
    private bool TryRewriteDescriptor(QueueState q, ushort id)
    {
        Span<byte> d = stackalloc byte[VirtqDescriptorLayout.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(d[VirtqDescriptorLayout.Address..], 0xBAD0_0000_0000);
        BinaryPrimitives.WriteUInt32LittleEndian(d[VirtqDescriptorLayout.Length..], uint.MaxValue);
        BinaryPrimitives.WriteUInt16LittleEndian(d[VirtqDescriptorLayout.Flags..], (ushort)(VirtqDescriptorFlags.Next | VirtqDescriptorFlags.Write));
        BinaryPrimitives.WriteUInt16LittleEndian(d[VirtqDescriptorLayout.Next..], id);
        return TryDma(q.Desc + (ulong)(VirtqDescriptorLayout.Size * id), d, toDriver: true);
    }

    /// <summary>
    /// Hostile: a descriptor id the driver has not made available, i.e. neither <paramref name="returning"/> nor a
    /// head waiting in the available ring (§2.7.6); out of range when there is none.
    /// </summary>
    private bool TryFindUnknownId(QueueState q, ushort returning, out uint id)
    {
        id = (uint)q.Size + 3;
        if (!TryReadAvailIndex(q, out ushort availIdx)) { return false; }
        var waiting = new bool[q.Size];
        waiting[returning % q.Size] = true;
        for (ushort i = q.LastAvail; i != availIdx && (ushort)(i - q.LastAvail) < q.Size; i++)
        {
            if (!TryRead16(q.Driver + (ulong)VirtqAvailLayout.EntryOffset(i % q.Size), out ushort head)) { return false; }
            waiting[head % q.Size] = true;
        }
        int free = Array.IndexOf(waiting, false);
        if (free >= 0) { id = (uint)free; }
        return true;
    }

    /// <summary>
    /// §2.7.7.2: without EVENT_IDX, unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT; with it, when the used index
    /// just passed used_event (the flag is then ignored). The used index moved by one since the last check.
    /// </summary>
    private bool InterruptWanted(QueueState q)
    {
        if ((DriverFeatures & VirtioFeatures.RingEventIndex) == 0)
        {
            return TryRead16(q.Driver + VirtqAvailLayout.Flags, out ushort flags) && (flags & (ushort)VirtqAvailFlags.NoInterrupt) == 0;
        }
        if (!TryRead16(q.Driver + (ulong)VirtqAvailLayout.UsedEvent(q.Size), out ushort usedEvent)) { return false; }
        return (ushort)(q.UsedIdx - usedEvent - 1) < 1;
    }

    private ushort VectorOrNone(ulong value) => value < (ulong)MsixVectors ? (ushort)value : NoVector;

    private readonly record struct Descriptor(ulong Address, uint Length, ushort Flags, ushort Next);

    private bool TryDescriptor(QueueState q, ushort id, out Descriptor descriptor)
    {
        descriptor = default;
        if (id >= q.Size) { NeedsReset($"descriptor {id} beyond the queue size {q.Size}"); return false; }
        // struct virtq_desc (§2.7.5): le64 addr, le32 len, le16 flags, le16 next.
        Span<byte> d = stackalloc byte[VirtqDescriptorLayout.Size];
        if (!TryDma(q.Desc + (ulong)(VirtqDescriptorLayout.Size * id), d, toDriver: false)) { return false; }
        descriptor = new Descriptor(BinaryPrimitives.ReadUInt64LittleEndian(d[VirtqDescriptorLayout.Address..]),
            BinaryPrimitives.ReadUInt32LittleEndian(d[VirtqDescriptorLayout.Length..]),
            BinaryPrimitives.ReadUInt16LittleEndian(d[VirtqDescriptorLayout.Flags..]), BinaryPrimitives.ReadUInt16LittleEndian(d[VirtqDescriptorLayout.Next..]));
        if ((descriptor.Flags & (ushort)VirtqDescriptorFlags.Indirect) != 0) { NeedsReset("an indirect descriptor, which was not negotiated"); return false; }
        return true;
    }

    /// <summary>avail->idx (§2.7.6): where the driver will put its next entry.</summary>
    private bool TryReadAvailIndex(QueueState q, out ushort index) => TryRead16(q.Driver + VirtqAvailLayout.Index, out index);

    /// <summary>The next available entry the device has not taken yet: the head of a descriptor chain (§2.7.6).</summary>
    private bool TryReadAvailEntry(QueueState q, out ushort head) => TryReadAvailEntry(q, q.LastAvail, out head);

    private bool TryReadAvailEntry(QueueState q, ushort position, out ushort head) =>
        TryRead16(q.Driver + (ulong)VirtqAvailLayout.EntryOffset(position % q.Size), out head);

    private bool TryRead16(ulong address, out ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        bool ok = TryDma(address, b, toDriver: false);
        value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        return ok;
    }

    private bool TryDma(ulong address, Span<byte> data, bool toDriver) =>
        toDriver ? TryTransfer(address, data, default) : TryTransfer(address, default, data);

    private bool TryDmaWrite(ulong address, ReadOnlySpan<byte> data) => TryTransfer(address, data, default);

    /// <summary>Writes <paramref name="source"/> to the driver's memory, or reads into <paramref name="destination"/>; false after flagging a failure.</summary>
    private bool TryTransfer(ulong address, ReadOnlySpan<byte> source, Span<byte> destination)
    {
        bool write = !source.IsEmpty;
        if (!BusMaster(address)) { return false; }
        try
        {
            if (write) { Context.WriteDma(new DmaAddress(address), source); }
            else { Context.ReadDma(new DmaAddress(address), destination); }
            return true;
        }
        catch (Exception e) when (e is VfioException or IOException or TimeoutException)
        {
            NeedsReset($"DMA {(write ? "write" : "read")} of {(write ? source.Length : destination.Length)} bytes at 0x{address:x} failed: {e.Message}");
            return false;
        }
    }

    // PCI Local Bus 3.0 §6.2.2: without bus mastering the device may not touch memory.
    private bool BusMaster(ulong address)
    {
        if ((Config.Command & PciCommand.BusMaster) != 0) { return true; }
        NeedsReset($"DMA at 0x{address:x} with bus mastering off");
        return false;
    }

    private sealed class QueueState(ushort max)
    {
        public ushort MaxSize { get; } = max;
        public ushort Size { get; set; } = max;
        public ushort MsixVector { get; set; } = NoVector;
        public bool Enabled { get; set; }
        public ulong Desc { get; set; }
        public ulong Driver { get; set; }
        public ulong Device { get; set; }
        public ushort LastAvail { get; set; }
        public ushort UsedIdx { get; set; }
        /// <summary>Transmit queues: segments of the chain at LastAvail already delivered while the peer ran out of buffers.</summary>
        public int SegmentsDelivered { get; set; }

        public void Reset()
        {
            Size = MaxSize;
            MsixVector = NoVector;
            Enabled = false;
            Desc = Driver = Device = 0;
            LastAvail = UsedIdx = 0;
            SegmentsDelivered = 0;
        }
    }
}
