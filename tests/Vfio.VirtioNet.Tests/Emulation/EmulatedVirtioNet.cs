using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet.Tests.Emulation;

/// <summary>
/// An in-process modern virtio-net device (virtio 1.2 §4.1 PCI transport, §5.1 network device, split queues) behind
/// <see cref="IPciDevice"/>, as OpenVMM's emulated devices stand behind DeviceBacking. Two of them wired with
/// <see cref="Connect"/> form a hub: what one transmits the other receives. Like QEMU's hub, a frame waits in the
/// sender's transmit queue while the receiver has no buffer, and is delivered when the receiver kicks its receive
/// queue. The data path allocates nothing, so the driver's allocation tests can include it.
/// </summary>
internal sealed unsafe class EmulatedVirtioNet : IPciDevice
{
    // BAR4 layout, as QEMU's virtio-pci lays it out.
    public const int Bar = 4;
    public const ulong CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceOffset = 0x2000, NotifyOffset = 0x3000, BarSize = 0x4000;
    public const uint NotifyMultiplier = 4;

    private readonly EmulatedDma _dma;
    private readonly byte[] _config = new byte[256];
    private readonly QueueState[] _queues;
    private readonly byte[] _frame = new byte[65536];
    private uint _deviceFeatureSelect, _driverFeatureSelect;
    private ushort _queueSelect, _msixConfig;
    private byte _status, _generation, _isr;
    private ushort _linkStatus = 1;

    public EmulatedVirtioNet(PciAddress address, byte[] mac, EmulatedDma? dma = null, ulong? features = null, ushort queueSize = 256, int maxPairs = 1)
    {
        MaxPairs = maxPairs;
        Address = address;
        Mac = mac;
        _dma = dma ?? new EmulatedDma();
        OfferedFeatures = features ?? (VirtioFeatures.Version1 | VirtioFeatures.AccessPlatform | VirtioFeatures.NetMac
            | VirtioFeatures.NetStatus | VirtioFeatures.NetMergeRxBuffers | VirtioFeatures.RingEventIndex | VirtioFeatures.NetCsum);
        // receiveqN = 2(N-1), transmitqN = 2(N-1)+1, then the control queue when MQ is offered (§5.1.2).
        _queues = new QueueState[2 * maxPairs + (maxPairs > 1 ? 1 : 0)];
        for (int i = 0; i < _queues.Length; i++) { _queues[i] = new QueueState(queueSize); }
        if (maxPairs > 1) { OfferedFeatures |= VirtioFeatures.NetMultiQueue | VirtioFeatures.NetControlQueue; }
        Config = new PciConfigSpace(new ByteRegion(_config));
        BuildConfigSpace();
    }

    /// <summary>Two devices on one hub, sharing one DMA address space (as two ports in one VFIO container).</summary>
    public static (EmulatedVirtioNet A, EmulatedVirtioNet B) CreatePair(ushort queueSize = 256, ulong? features = null, int maxPairs = 1)
    {
        var dma = new EmulatedDma();
        var a = new EmulatedVirtioNet(PciAddress.Parse("0000:00:07.0"), [0x52, 0x54, 0, 0, 0, 1], dma, features, queueSize, maxPairs);
        var b = new EmulatedVirtioNet(PciAddress.Parse("0000:00:08.0"), [0x52, 0x54, 0, 0, 0, 2], dma, features, queueSize, maxPairs);
        Connect(a, b);
        return (a, b);
    }

    public static void Connect(EmulatedVirtioNet a, EmulatedVirtioNet b)
    {
        a.Peer = b;
        b.Peer = a;
    }

    public EmulatedVirtioNet? Peer { get; private set; }
    public byte[] Mac { get; }
    public ulong OfferedFeatures { get; set; }
    public ulong DriverFeatures { get; private set; }
    public VirtioStatus DeviceStatus => (VirtioStatus)_status;
    public EmulatedDma EmulatedDma => _dma;

    /// <summary>Set VIRTQ_USED_F_NO_NOTIFY on every queue: the driver must not kick; tests call <see cref="Pump"/>.</summary>
    public bool SuppressNotifications { get; set; }
    /// <summary>Refuse FEATURES_OK whatever the driver accepts.</summary>
    public bool RefuseFeatures { get; set; }
    /// <summary>Makes a reset take this many reads of device_status to finish.</summary>
    public int ResetLatencyReads { get; set; }
    public bool LinkUp
    {
        get => (_linkStatus & 1) != 0;
        set { _linkStatus = value ? (ushort)1 : (ushort)0; _generation++; }
    }

    public int MaxPairs { get; }
    /// <summary>Queue pairs the driver switched on with VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (1 until then, §5.1.6.5.5).</summary>
    public int ActivePairs { get; private set; } = 1;
    public long Kicks { get; private set; }
    public long FramesSent { get; private set; }
    public long FramesDropped { get; private set; }
    public int Resets { get; private set; }
    public int FunctionResets { get; private set; }
    private int _resetReadsLeft;

    // ---- IPciDevice ----
    public PciAddress Address { get; }
    public DeviceBackend Backend => DeviceBackend.Emulated;
    public bool IsDmaIsolated => true;
    public DeviceInfo Info => new(DeviceFlags.Reset | DeviceFlags.Pci, 9, 5);
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma => _dma;

    public RegionInfo GetRegionInfo(int index)
    {
        if ((uint)index >= 9) { throw new ArgumentOutOfRangeException(nameof(index)); }
        ulong size = index switch { Bar => BarSize, PciRegion.Config => 256, _ => 0 };
        return new RegionInfo { Index = index, Flags = size == 0 ? RegionFlags.None : RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, Size = size, Offset = 0 };
    }

    public IDeviceRegion OpenRegion(int index) => index switch
    {
        Bar => new Bar4(this),
        PciRegion.Config => new ByteRegion(_config),
        _ => throw new ArgumentException($"region {index} does not exist", nameof(index)),
    };

    /// <summary>MSI-X vectors the device offers (0: none, the default).</summary>
    public int MsixVectors { get; set; }
    /// <summary>Interrupts the device raised (used buffers on a queue with a vector while the driver allowed them).</summary>
    public long InterruptsRaised { get; private set; }
    private SoftwareInterruptSet? _msix;

    public IrqInfo GetIrqInfo(IrqIndex index) => new(index, IrqFlags.Eventfd, index == IrqIndex.Msix ? MsixVectors : 0);

    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        if (index != IrqIndex.Msix || count < 1 || count > MsixVectors)
        {
            throw new NotSupportedException($"the emulated virtio-net device has {MsixVectors} MSI-X vectors and no other interrupts ({index} x {count} asked)");
        }
        if (_msix is { IsDisposed: false }) { throw new InvalidOperationException("MSI-X is already enabled"); }
        return _msix = new SoftwareInterruptSet(index, count);
    }

    public void Reset()
    {
        FunctionResets++;
        DeviceReset();
        Config.Command = PciCommand.None;
    }

    public void Dispose() { }

    // ---- config space: header and the virtio vendor capabilities (§4.1.4) ----
    private void BuildConfigSpace()
    {
        var c = _config.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], 0x1AF4);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], 0x1041);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 1 << 4); // capabilities list
        c[0x08] = 1;                                                  // revision 1: modern (§4.1.2)
        c[0x0B] = 0x02;                                               // network controller
        c[0x34] = 0x40;
        WriteCap(c, 0x40, 0x50, VirtioPciCapType.Common, CommonOffset, 0x38, 16);
        WriteCap(c, 0x50, 0x60, VirtioPciCapType.Isr, IsrOffset, 1, 16);
        WriteCap(c, 0x60, 0x70, VirtioPciCapType.Device, DeviceOffset, 12, 16);
        WriteCap(c, 0x70, 0x00, VirtioPciCapType.Notify, NotifyOffset, 0x1000, 20);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x80..], NotifyMultiplier);
    }

    public static void WriteCap(Span<byte> c, int at, int next, VirtioPciCapType type, ulong offset, uint length, byte capLen, byte bar = Bar)
    {
        c[at] = PciCapabilityId.VendorSpecific;
        c[at + 1] = (byte)next;
        c[at + 2] = capLen;
        c[at + 3] = (byte)type;
        c[at + 4] = bar;
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 8)..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 12)..], length);
    }

    // ---- registers ----
    private ulong ReadRegister(ulong offset, int width)
    {
        if (offset >= IsrOffset && offset < DeviceOffset)
        {
            byte isr = _isr; _isr = 0; // reading the ISR clears it (§4.1.4.5)
            return isr;
        }
        if (offset >= DeviceOffset && offset < NotifyOffset) { return ReadDeviceConfig(offset - DeviceOffset, width); }
        if (offset >= NotifyOffset) { return 0; }
        var q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
        return offset switch
        {
            0x00 => _deviceFeatureSelect,
            0x04 => _deviceFeatureSelect switch { 0 => (uint)OfferedFeatures, 1 => (uint)(OfferedFeatures >> 32), _ => 0u },
            0x08 => _driverFeatureSelect,
            0x0C => _driverFeatureSelect switch { 0 => (uint)DriverFeatures, 1 => (uint)(DriverFeatures >> 32), _ => 0u },
            0x10 => _msixConfig,
            0x12 => (ulong)_queues.Length,
            0x14 => ReadStatus(),
            0x15 => _generation,
            0x16 => _queueSelect,
            0x18 => q?.Size ?? 0,
            0x1A => q?.MsixVector ?? VirtioPciTransport.NoVector,
            0x1C => q is { Enabled: true } ? 1u : 0u,
            0x1E => _queueSelect,
            >= 0x20 and < 0x38 => q is null ? 0 : Half(offset, q),
            _ => 0,
        };
    }

    private static ulong Half(ulong offset, QueueState q)
    {
        ulong field = offset < 0x28 ? q.Desc : offset < 0x30 ? q.Driver : q.Device;
        return (offset & 4) == 0 ? (uint)field : field >> 32;
    }

    private byte ReadStatus()
    {
        if (_resetReadsLeft > 0 && --_resetReadsLeft > 0) { return _status == 0 ? (byte)VirtioStatus.Acknowledge : _status; }
        return _status;
    }

    private ulong ReadDeviceConfig(ulong offset, int width)
    {
        Span<byte> cfg = stackalloc byte[12];
        Mac.CopyTo(cfg);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[6..], _linkStatus);
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[8..], (ushort)MaxPairs);    // max_virtqueue_pairs
        BinaryPrimitives.WriteUInt16LittleEndian(cfg[10..], 1500); // mtu
        if (offset + (ulong)width > 12) { return 0; }
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
            if (width != 2 || queue != value) { throw new InvalidOperationException($"bad doorbell write: {width} bytes of {value} at queue {queue}'s doorbell"); }
            if ((_status & (byte)VirtioStatus.DriverOk) == 0) { throw new InvalidOperationException("doorbell rung before DRIVER_OK (§3.1.1)"); }
            Kicks++;
            OnNotify((int)queue);
            return;
        }
        if (offset >= IsrOffset) { return; }
        var q = _queueSelect < _queues.Length ? _queues[_queueSelect] : null;
        switch (offset)
        {
            case 0x00: _deviceFeatureSelect = (uint)value; break;
            case 0x08: _driverFeatureSelect = (uint)value; break;
            case 0x0C:
                if (_driverFeatureSelect == 0) { DriverFeatures = (DriverFeatures & ~0xFFFF_FFFFUL) | (uint)value; }
                else if (_driverFeatureSelect == 1) { DriverFeatures = (DriverFeatures & 0xFFFF_FFFFUL) | (value << 32); }
                break;
            case 0x10: _msixConfig = (ushort)value; break;
            case 0x14: WriteStatus((byte)value); break;
            case 0x16: _queueSelect = (ushort)value; break;
            case 0x18:
                if (q is not null)
                {
                    if (value == 0 || value > q.MaxSize || (value & (value - 1)) != 0) { throw new InvalidOperationException($"queue size {value} (max {q.MaxSize})"); }
                    q.Size = (ushort)value;
                }
                break;
            case 0x1A:
                // §4.1.5.1.2: a vector the device cannot map reads back as NO_VECTOR.
                if (q is not null) { q.MsixVector = value < (ulong)MsixVectors ? (ushort)value : VirtioPciTransport.NoVector; }
                break;
            case 0x1C: if (q is not null) { q.Enabled = value == 1; } break;
            case >= 0x20 and < 0x38:
                if (width != 4) { throw new InvalidOperationException("64-bit queue addresses are written as two 32-bit halves (§4.1.3.1)"); }
                if (q is not null) { SetHalf(offset, q, (uint)value); }
                break;
        }
    }

    private static void SetHalf(ulong offset, QueueState q, uint value)
    {
        static ulong Merge(ulong field, ulong offset, uint value) =>
            (offset & 4) == 0 ? (field & ~0xFFFF_FFFFUL) | value : (field & 0xFFFF_FFFFUL) | ((ulong)value << 32);
        if (offset < 0x28) { q.Desc = Merge(q.Desc, offset, value); }
        else if (offset < 0x30) { q.Driver = Merge(q.Driver, offset, value); }
        else { q.Device = Merge(q.Device, offset, value); }
    }

    private void WriteStatus(byte value)
    {
        if (value == 0) { DeviceReset(); return; }
        var bits = (VirtioStatus)value;
        if ((bits & VirtioStatus.FeaturesOk) != 0 && (_status & (byte)VirtioStatus.FeaturesOk) == 0)
        {
            // §2.2.2: the device refuses features it did not offer, and (§6.1) VERSION_1 is mandatory for a modern device.
            bool ok = !RefuseFeatures && (DriverFeatures & ~OfferedFeatures) == 0 && (DriverFeatures & VirtioFeatures.Version1) != 0;
            if (!ok) { bits &= ~VirtioStatus.FeaturesOk; }
        }
        _status = (byte)bits;
        if ((bits & VirtioStatus.DriverOk) != 0)
        {
            foreach (var q in _queues) { if (q.Enabled) { SetUsedFlags(q); } }
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
    }

    // ---- data path ----
    private bool Live => (_status & (byte)VirtioStatus.DriverOk) != 0;

    private void OnNotify(int queue)
    {
        if (MaxPairs > 1 && queue == 2 * MaxPairs) { ProcessControl(); return; }
        int pair = queue / 2;
        if (pair >= ActivePairs) { throw new InvalidOperationException($"doorbell of queue {queue}, but only {ActivePairs} pair(s) are switched on"); }
        if (queue % 2 == 1) { ProcessTx(pair); }
        else { Peer?.ProcessTx(pair); } // receive buffers arrived: what the peer had waiting can flow
    }

    /// <summary>Does what kicks would have done: both devices drain their transmit queues.</summary>
    public void Pump()
    {
        for (int p = 0; p < ActivePairs; p++)
        {
            ProcessTx(p);
            Peer?.ProcessTx(p);
        }
    }

    /// <summary>The control queue (§5.1.6.5): VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET is the one command understood.</summary>
    private void ProcessControl()
    {
        var q = _queues[2 * MaxPairs];
        while (true)
        {
            ushort availIdx = Volatile.Read(ref *(ushort*)_dma.Translate(q.Driver + 2, 2));
            if (availIdx == q.LastAvail) { return; }
            ushort head = *(ushort*)_dma.Translate(q.Driver + 4 + 2UL * (ulong)(q.LastAvail % q.Size), 2);
            byte* d0 = (byte*)_dma.Translate(q.Desc + 16UL * head, 16);
            byte* command = (byte*)_dma.Translate(*(ulong*)d0, *(uint*)(d0 + 8));
            if ((*(ushort*)(d0 + 12) & (ushort)VirtqDescriptorFlags.Next) == 0) { throw new InvalidOperationException("control command without an ack buffer"); }
            byte* d1 = (byte*)_dma.Translate(q.Desc + 16UL * *(ushort*)(d0 + 14), 16);
            if ((*(ushort*)(d1 + 12) & (ushort)VirtqDescriptorFlags.Write) == 0) { throw new InvalidOperationException("the ack buffer is not device-writable"); }
            byte ack = 1; // VIRTIO_NET_ERR
            if (command[0] == 4 && command[1] == 0)
            {
                int pairs = command[2] | command[3] << 8;
                if (pairs >= 1 && pairs <= MaxPairs) { ActivePairs = pairs; ack = 0; }
            }
            *(byte*)_dma.Translate(*(ulong*)d1, 1) = ack;
            q.LastAvail++;
            PushUsed(q, head, 1);
        }
    }

    private void SetUsedFlags(QueueState q) =>
        *(ushort*)_dma.Translate(q.Device, 2) = SuppressNotifications ? SplitVirtqueue.UsedNoNotify : (ushort)0;

    /// <summary>Sends what the transmit queue holds while the peer can take it (§2.7.14 from the device's side).</summary>
    private void ProcessTx(int pair)
    {
        var q = _queues[2 * pair + 1];
        if (!Live || !q.Enabled) { return; }
        SetUsedFlags(q);
        while (true)
        {
            ushort availIdx = Volatile.Read(ref *(ushort*)_dma.Translate(q.Driver + 2, 2));
            if (availIdx == q.LastAvail) { return; }
            ushort head = *(ushort*)_dma.Translate(q.Driver + 4 + 2UL * (ulong)(q.LastAvail % q.Size), 2);
            int length = Gather(q, head, _frame);
            int payload = length - VirtioNetDevice.HeaderSize;
            if (payload < 0) { throw new InvalidOperationException($"transmitted buffer of {length} bytes has no room for the virtio-net header"); }
            if (Peer is { } peer && peer.Live)
            {
                if (!peer.TryDeliver(pair, _frame.AsSpan(VirtioNetDevice.HeaderSize, payload))) { return; } // wait for receive buffers
                FramesSent++;
            }
            else
            {
                FramesDropped++;
            }
            q.LastAvail++;
            PushUsed(q, head, 0);
        }
    }

    private int Gather(QueueState q, ushort head, byte[] into)
    {
        int total = 0;
        ushort id = head;
        for (int n = 0; ; n++)
        {
            if (n >= q.Size) { throw new InvalidOperationException("descriptor chain loops"); }
            byte* d = (byte*)_dma.Translate(q.Desc + 16UL * id, 16);
            ulong addr = *(ulong*)d;
            uint len = *(uint*)(d + 8);
            ushort flags = *(ushort*)(d + 12);
            if ((flags & (ushort)VirtqDescriptorFlags.Write) != 0) { throw new InvalidOperationException("device-writable buffer in a transmit chain"); }
            new ReadOnlySpan<byte>((void*)_dma.Translate(addr, len), (int)len).CopyTo(into.AsSpan(total));
            total += (int)len;
            if ((flags & (ushort)VirtqDescriptorFlags.Next) == 0) { return total; }
            id = *(ushort*)(d + 14);
        }
    }

    private bool TryDeliver(int pair, ReadOnlySpan<byte> frame)
    {
        var q = _queues[2 * pair];
        if (!q.Enabled) { return false; }
        SetUsedFlags(q);
        ushort availIdx = Volatile.Read(ref *(ushort*)_dma.Translate(q.Driver + 2, 2));
        if (availIdx == q.LastAvail) { return false; }
        ushort head = *(ushort*)_dma.Translate(q.Driver + 4 + 2UL * (ulong)(q.LastAvail % q.Size), 2);
        byte* d = (byte*)_dma.Translate(q.Desc + 16UL * head, 16);
        ulong addr = *(ulong*)d;
        uint len = *(uint*)(d + 8);
        ushort flags = *(ushort*)(d + 12);
        if ((flags & (ushort)VirtqDescriptorFlags.Write) == 0) { throw new InvalidOperationException("device-readable buffer in the receive queue"); }
        if ((flags & (ushort)VirtqDescriptorFlags.Next) != 0) { throw new InvalidOperationException("the emulation takes single-buffer receive descriptors"); }
        int needed = VirtioNetDevice.HeaderSize + frame.Length;
        if (len < needed) { throw new InvalidOperationException($"receive buffer of {len} bytes for a {frame.Length}-byte frame"); }
        var buffer = new Span<byte>((void*)_dma.Translate(addr, (ulong)needed), needed);
        buffer[..VirtioNetDevice.HeaderSize].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[10..], 1); // num_buffers (§5.1.6.4)
        frame.CopyTo(buffer[VirtioNetDevice.HeaderSize..]);
        q.LastAvail++;
        PushUsed(q, head, (uint)needed);
        return true;
    }

    private void PushUsed(QueueState q, ushort id, uint length)
    {
        byte* e = (byte*)_dma.Translate(q.Device + 4 + 8UL * (ulong)(q.UsedIdx % q.Size), 8);
        *(uint*)e = id;
        *(uint*)(e + 4) = length;
        q.UsedIdx++;
        // Release: the element (and the buffer contents) before the index.
        Volatile.Write(ref *(ushort*)_dma.Translate(q.Device + 2, 2), q.UsedIdx);
        // §2.7.7.2 without EVENT_IDX: interrupt unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
        Interlocked.MemoryBarrier();
        bool wanted = (Volatile.Read(ref *(ushort*)_dma.Translate(q.Driver, 2)) & 1) == 0;
        if (wanted && q.MsixVector != VirtioPciTransport.NoVector && _msix is { IsDisposed: false } msix && q.MsixVector < msix.Count)
        {
            InterruptsRaised++;
            msix.Raise(q.MsixVector);
        }
    }

    private sealed class QueueState(ushort max)
    {
        public ushort MaxSize { get; } = max;
        public ushort Size { get; set; } = max;
        public ushort MsixVector { get; set; } = VirtioPciTransport.NoVector;
        public bool Enabled { get; set; }
        public ulong Desc { get; set; }
        public ulong Driver { get; set; }
        public ulong Device { get; set; }
        public ushort LastAvail { get; set; }
        public ushort UsedIdx { get; set; }

        public void Reset()
        {
            Size = MaxSize;
            MsixVector = VirtioPciTransport.NoVector;
            Enabled = false;
            Desc = Driver = Device = 0;
            LastAvail = UsedIdx = 0;
        }
    }

    /// <summary>BAR4 as the driver sees it: every access goes to the register model.</summary>
    private sealed class Bar4(EmulatedVirtioNet device) : IDeviceRegion
    {
        public RegionInfo Info => device.GetRegionInfo(Bar);
        public ulong Size => BarSize;
        public bool IsMapped(ulong offset) => offset < BarSize;
        public byte Read8(ulong offset) => (byte)device.ReadRegister(offset, 1);
        public ushort Read16(ulong offset) => (ushort)device.ReadRegister(offset, 2);
        public uint Read32(ulong offset) => (uint)device.ReadRegister(offset, 4);
        public ulong Read64(ulong offset) => throw new InvalidOperationException("64-bit access to virtio registers (§4.1.3.1)");
        public void Write8(ulong offset, byte value) => device.WriteRegister(offset, 1, value);
        public void Write16(ulong offset, ushort value) => device.WriteRegister(offset, 2, value);
        public void Write32(ulong offset, uint value) => device.WriteRegister(offset, 4, value);
        public void Write64(ulong offset, ulong value) => throw new InvalidOperationException("64-bit access to virtio registers (§4.1.3.1)");
        public void Read(ulong offset, Span<byte> destination) => throw new NotSupportedException();
        public void Write(ulong offset, ReadOnlySpan<byte> source) => throw new NotSupportedException();
        public void Dispose() { }
    }
}

/// <summary>MSI-X vectors in software: the device raises them, the driver awaits them, as with eventfds.</summary>
internal sealed class SoftwareInterruptSet(IrqIndex index, int count) : IInterruptSet
{
    private readonly SoftwareVector[] _vectors = [.. Enumerable.Range(0, count).Select(i => new SoftwareVector(i))];

    public IrqIndex Index { get; } = index;
    public int Count => _vectors.Length;
    public bool IsDisposed { get; private set; }
    public IInterruptVector this[int vector] => _vectors[vector];
    public void Raise(int vector) => _vectors[vector].Trigger();
    public void Dispose() => IsDisposed = true;

    private sealed class SoftwareVector(int vector) : IInterruptVector
    {
        private readonly object _lock = new();
        private ulong _pending;
        private TaskCompletionSource<ulong>? _waiter;

        public int Vector { get; } = vector;

        public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default)
        {
            TaskCompletionSource<ulong> waiter;
            lock (_lock)
            {
                if (_pending > 0) { ulong n = _pending; _pending = 0; return new(n); }
                waiter = _waiter = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            if (cancellationToken.CanBeCanceled)
            {
                var registration = cancellationToken.Register(() => waiter.TrySetCanceled(cancellationToken));
                waiter.Task.ContinueWith(_ => registration.Dispose(), TaskScheduler.Default);
            }
            return new(waiter.Task);
        }

        public ulong Poll()
        {
            lock (_lock) { ulong n = _pending; _pending = 0; return n; }
        }

        public void Trigger()
        {
            TaskCompletionSource<ulong>? waiter;
            lock (_lock)
            {
                _pending++;
                waiter = _waiter;
                if (waiter is null || waiter.Task.IsCompleted) { return; }
                _waiter = null;
                _pending = 0;
            }
            waiter.TrySetResult(1);
        }

        public void Unmask() { }
    }
}
