using PhysicalAddress = System.Net.NetworkInformation.PhysicalAddress;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Net;

namespace Vfio.Igb;

/// <summary>
/// An Intel 82576 Gigabit Ethernet port driven from user space (82576EB GbE Controller Datasheet): global reset,
/// MAC from the EEPROM, link through the internal PHY, N receive/transmit queue pairs of advanced descriptors with
/// RSS spreading flows over the receive queues, checksum offload both ways, burst I/O of <see cref="PacketPool"/>
/// buffers, polled or woken by one MSI-X vector per queue pair. It sees only <see cref="IPciDevice"/>, so it runs on
/// every transport (kernel No-IOMMU, type1, iommufd, vfio-user).
/// </summary>
/// <remarks>
/// One thread per queue pair, run to completion. Interrupts stay masked unless <see cref="IgbOptions.CompletionMode"/>
/// asks for MSI-X, one vector per queue pair (<see cref="WaitForReceive"/>) and one for link changes
/// (<see cref="LinkChanged"/>). Buffers the device holds stay allocated from their pool until the device is stopped.
/// </remarks>
public sealed partial class IgbDevice : IDisposable
{
    /// <summary>Intel's PCI vendor ID.</summary>
    public const ushort IntelVendorId = 0x8086;

    /// <summary>
    /// Device IDs of 82576 physical functions (datasheet §1.6 / Table 6-2; QEMU's igb is 0x10C9). The virtual
    /// function (0x10CA) has another register set and is not driven here.
    /// </summary>
    public static IReadOnlyList<ushort> DeviceIds { get; } = [0x10C9, 0x10E6, 0x10E7, 0x10E8, 0x150A, 0x150D, 0x1518, 0x1526];

    /// <summary>Bytes of each receive buffer the device is told about (SRRCTL.BSIZEPACKET = 2 KB, §8.10.2).</summary>
    public const int ReceiveBufferSize = 2 * IgbSrrctl.PacketSizeUnit;

    private static readonly TimeSpan s_resetTimeout = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_queueEnableTimeout = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_registerTimeout = TimeSpan.FromMilliseconds(20);

    private readonly IgbOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _ownsPool;
    private readonly Lock _lifecycle = new();
    private IDeviceRegion? _bar;
    private Queue[] _rx = [];
    private Queue[] _tx = [];
    private IgbStatsRegisters _hardware = new();
    private CancellationTokenRegistration _releaseRegistration;
    private int _refillThreshold;
    private long _rxPackets, _rxBytes, _rxErrors, _txPackets, _txBytes, _doorbells, _txRingFull;
    private IDisposable? _telemetry;
    // 0 running; 1 stopping or stopped (bursts refuse to start); bursts in progress counted in _busy.
    private int _stopping;
    private int _busy;
    private bool _released;
    private bool _disposed;
    // False once a stop was attempted and the device did not confirm it: its buffers must never be freed.
    private bool _deviceQuiet = true;

    private IgbDevice(IPciDevice device, IgbOptions options)
    {
        Device = device;
        _options = options;
        _time = options.TimeProvider ?? TimeProvider.System;
        _logger = options.LoggerFactory?.CreateLogger<IgbDevice>() ?? NullLogger<IgbDevice>.Instance;
        _ownsPool = options.Pool is null;
        Pool = options.Pool!;
    }

    /// <summary>True when <paramref name="vendorId"/>:<paramref name="deviceId"/> is an 82576 physical function.</summary>
    public static bool IsSupported(ushort vendorId, ushort deviceId) => vendorId == IntelVendorId && DeviceIds.Contains(deviceId);

    /// <summary>
    /// Brings up <paramref name="device"/> (datasheet §4.5 "Software Initialization and Diagnostics"): interrupts
    /// masked, global reset, MAC address, link, receive and transmit rings, RSS, then receive and transmit enabled.
    /// On failure the device is reset and everything allocated is released.
    /// </summary>
    /// <exception cref="IgbException">Not an 82576, or a step of the bring-up failed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static IgbDevice Open(IPciDevice device, IgbOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new IgbOptions();
        if (!IsSupported(device.Config.VendorId, device.Config.DeviceId))
        {
            throw new IgbException(device.Address,
                $"not an Intel 82576 physical function (ID {device.Config.VendorId:x4}:{device.Config.DeviceId:x4})",
                "QEMU's model is '-device igb' (8086:10c9); its virtual functions (8086:10ca) are not supported");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(options.QueuePairs, 1, nameof(options.QueuePairs));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.QueuePairs, IgbReg.MaxQueues, nameof(options.QueuePairs));
        if (options.RingSize < 8 || options.RingSize % 8 != 0 || options.RingSize > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.RingSize, "RingSize must be a multiple of 8 from 8 to 4096");
        }
        if (options.Pool is { } pool && pool.DataRoom < ReceiveBufferSize)
        {
            throw new ArgumentException($"the pool's buffers hold {pool.DataRoom} data bytes; the 82576 needs {ReceiveBufferSize} (make the pool with bufferSize {ReceiveBufferSize + PacketPool.Headroom})", nameof(options));
        }
        if (options.Rss is { } rss && rss.RedirectionTable.Any(q => q >= options.QueuePairs))
        {
            throw new ArgumentException($"the redirection table names a queue beyond the {options.QueuePairs} queue pair(s) opened", nameof(options));
        }
        ValidateInterruptOptions(device, options);
        IgbDevice? igb = null;
        using var activity = NetTelemetry.StartActivity("igb.bringup", device.Address);
        try
        {
            igb = new IgbDevice(device, options);
            igb._bar = device.OpenRegion(PciRegion.Bar0);
            igb.Initialize();
            igb._telemetry = NetTelemetry.Track(igb, device.Address, "igb", igb.TelemetryStats);
            // The callback only starts the release: it runs on the thread that saw the request, which must not wait
            // for the queue threads to leave their bursts.
            igb._releaseRegistration = device.ReleaseRequested.UnsafeRegister(
                static s => new Thread(static d => ((IgbDevice)d!).ReleaseToHost()) { IsBackground = true, Name = "igb release" }.Start(s), igb);
            return igb;
        }
        catch (Exception e)
        {
            igb?.Dispose();
            VfioTelemetry.Fail(activity, e);
            throw;
        }
    }

    /// <summary>The PCI device underneath.</summary>
    public IPciDevice Device { get; }

    /// <summary>The port's MAC address (EEPROM words 0-2, §6.1; or RAL0/RAH0 when the EEPROM does not answer).</summary>
    public PhysicalAddress MacAddress { get; private set; } = PhysicalAddress.None;

    /// <summary>The pool receive buffers come from.</summary>
    public PacketPool Pool { get; private set; }

    /// <summary>The most queue pairs the 82576 has.</summary>
    public int MaxQueuePairs => IgbReg.MaxQueues;

    /// <summary>Queue pairs in use.</summary>
    public int QueuePairCount => _rx.Length;

    /// <summary>Descriptors per ring.</summary>
    public int RingSize => _options.RingSize;

    /// <summary>Descriptors per receive ring (the same as <see cref="RingSize"/>).</summary>
    public int RxQueueSize => RingSize;

    /// <summary>Descriptors per transmit ring (the same as <see cref="RingSize"/>).</summary>
    public int TxQueueSize => RingSize;

    /// <summary>The RSS settings in force, or null with one queue pair.</summary>
    public IgbRssConfiguration? Rss { get; private set; }

    /// <summary>STATUS.LU (§8.2.2): the link is up.</summary>
    public bool IsLinkUp => (Bar.Read32(IgbReg.Status) & IgbStatus.LinkUp) != 0;

    /// <summary>The link speed STATUS reports (10, 100 or 1000 Mb/s); meaningful while the link is up.</summary>
    public int LinkSpeedMbps => ((Bar.Read32(IgbReg.Status) & IgbStatus.SpeedMask) >> IgbStatus.SpeedShift) switch
    {
        0 => 10,
        1 => 100,
        _ => 1000,
    };

    /// <summary>STATUS.FD: the link runs full duplex.</summary>
    public bool IsFullDuplex => (Bar.Read32(IgbReg.Status) & IgbStatus.FullDuplex) != 0;

    /// <summary>Counters of the driver since the port was opened.</summary>
    public IgbDriverStats Stats => new(_rxPackets, _rxBytes, _rxErrors, _txPackets, _txBytes, _doorbells);

    /// <summary>
    /// The driver's counters as the "Vfio.Net" meter reads them (<see cref="NetTelemetry"/>): per port, receive errors
    /// as errors, nothing of the device's statistics registers (they clear when read, §8.19, and belong to
    /// <see cref="ReadHardwareStats"/>).
    /// </summary>
    private NetPortStats TelemetryStats() =>
        new(new NetCounters(_rxPackets, _rxBytes, 0, _rxErrors), new NetCounters(_txPackets, _txBytes, 0, 0), []) { TxRingFull = _txRingFull };

    private IDeviceRegion Bar => _bar ?? throw new ObjectDisposedException(nameof(IgbDevice));

    /// <summary>
    /// Reads the device's statistics registers (§8.19, cleared by the read) and returns the totals since the port
    /// was opened. Call it from one thread at a time; the registers count all queues.
    /// </summary>
    public IgbHardwareStats ReadHardwareStats()
    {
        ThrowIfStopped();
        var bar = Bar;
        _hardware.Update(bar.Read32);
        return _hardware.Snapshot();
    }

    /// <summary>Receives up to <c>into.Length</c> packets from receive queue <paramref name="queuePair"/>; returns how many.</summary>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device wrote back a descriptor against the rules now.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public int Receive(Span<PacketBuffer> into, int queuePair = 0) => Receive(into, [], queuePair);

    /// <summary>
    /// Receives up to <c>into.Length</c> packets from receive queue <paramref name="queuePair"/>, with what the device
    /// reported about each (checksums checked and their verdict, RSS hash) in <paramref name="metadata"/> when it is
    /// not empty; returns how many. The caller owns the buffers returned. Frames the device flagged RXE are dropped
    /// and counted in <see cref="IgbDriverStats.RxErrors"/>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="metadata"/> is neither empty nor as long as <paramref name="into"/>.</exception>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device wrote back a descriptor against the rules now.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Receive(Span<PacketBuffer> into, Span<IgbRxMetadata> metadata, int queuePair = 0)
    {
        if (!metadata.IsEmpty && metadata.Length < into.Length)
        {
            throw new ArgumentException("metadata must be empty or as long as the packet span", nameof(metadata));
        }
        Enter();
        try
        {
            var rx = _rx[queuePair];
            var ring = (RxRing)rx.Ring;
            ring.ThrowIfFaulted();
            var pool = Pool;   // every buffer the receive rings hold came from it (Refill)
            int got = 0;
            long bytes = 0;
            try
            {
                while (got < into.Length && ring.TryTake(out var packet, out var writeBack))
                {
                    if (writeBack.FrameError)
                    {
                        _rxErrors++;
                        rx.Errors++;
                        packet.Free();
                        continue;
                    }
                    // TryTake checked the length against the buffer offered, which the pool's data room holds.
                    PacketPoolMarshal.SetLength(pool, packet.Index, writeBack.Length);
                    bytes += writeBack.Length;
                    SetPacketFlags(pool, packet, writeBack.Metadata);
                    if (!metadata.IsEmpty) { metadata[got] = writeBack.Metadata; }
                    into[got++] = packet;
                }
            }
            catch (DeviceProtocolViolationException)
            {
                // Packets taken before the violation were returned properly, but the caller never sees them.
                for (int i = 0; i < got; i++) { into[i].Free(); }
                LogQueueFaulted(_logger, Device.Address, ring.Name, ring.Fault!.Seen);
                throw;
            }
            _rxPackets += got;
            _rxBytes += bytes;
            rx.Packets += got;
            rx.Bytes += bytes;
            if (ring.FreeSlots >= _refillThreshold) { Refill(rx, ring); }
            return got;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>
    /// Hands up to <c>packets.Length</c> packets to transmit queue <paramref name="queuePair"/>; returns how many were
    /// taken. Taken packets belong to the driver, which frees them once the device has sent them; the rest stay the
    /// caller's, as with DPDK's rte_eth_tx_burst.
    /// </summary>
    /// <exception cref="ArgumentException">A packet is empty or longer than a descriptor can carry.</exception>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device wrote a status against the rules.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public int Transmit(ReadOnlySpan<PacketBuffer> packets, int queuePair = 0) => Transmit(packets, queuePair, default);

    /// <summary>
    /// As <see cref="Transmit(ReadOnlySpan{PacketBuffer}, int)"/>, asking the device to insert the checksums
    /// <paramref name="offload"/> names (§7.2.5): the driver writes an advanced context descriptor when the offload
    /// differs from the one the queue's context holds, then data descriptors with POPTS.IXSM/TXSM.
    /// </summary>
    /// <exception cref="ArgumentException">A packet is empty or longer than a descriptor can carry, or the header lengths are out of range.</exception>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device wrote a status against the rules.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Transmit(ReadOnlySpan<PacketBuffer> packets, int queuePair, IgbTxOffload offload)
    {
        if (offload.Checksums != IgbTxChecksum.None
            && (offload.MacHeaderLength is < 14 or > 127 || offload.IpHeaderLength is < 20 or > 511))
        {
            throw new ArgumentException("MACLEN must be 14..127 and IPLEN 20..511 (§7.2.3.2.3)", nameof(offload));
        }
        ValidateTransmitLengths(packets);
        return TransmitValidated(packets, queuePair, offload);
    }

    /// <summary>The transmit path once every length and the offload's header lengths have been checked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int TransmitValidated(ReadOnlySpan<PacketBuffer> packets, int queuePair, IgbTxOffload offload)
    {
        Enter();
        try
        {
            var tx = _tx[queuePair];
            var ring = (TxRing)tx.Ring;
            ring.ThrowIfFaulted();
            Reclaim(ring);
            bool needContext = offload.Checksums != IgbTxChecksum.None && ring.Context != offload;
            int room = ring.FreeSlots - (needContext ? 1 : 0);
            int n = Math.Min(packets.Length, Math.Max(0, room));
            if (n < packets.Length) { _txRingFull += packets.Length - n; }
            if (n == 0) { return 0; }
            if (needContext)
            {
                ring.Enqueue(default, AdvancedDescriptor.EncodeTxContext(offload));
                ring.Context = offload;
            }
            long bytes = 0;
            for (int i = 0; i < n; i++)
            {
                var packet = packets[i];
                int length = packet.Length;
                ring.Enqueue(packet, AdvancedDescriptor.EncodeTxData(packet.DeviceAddress.Value, length, offload.Checksums));
                bytes += length;
            }
            _txPackets += n;
            _txBytes += bytes;
            tx.Packets += n;
            tx.Bytes += bytes;
            Doorbell(IgbReg.Tdt(tx.Index), ring.Tail);
            return n;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>Throws before anything is sent when a packet does not fit one transmit descriptor.</summary>
    private static void ValidateTransmitLengths(ReadOnlySpan<PacketBuffer> packets)
    {
        foreach (var p in packets)
        {
            int length = p.Length;
            if (length < 1 || length > AdvancedDescriptor.MaxTxLength)
            {
                throw new ArgumentException($"packet {p} has {length} bytes; a transmit descriptor carries 1..{AdvancedDescriptor.MaxTxLength}", nameof(packets));
            }
        }
    }

    /// <summary>
    /// Frees the packets the device has sent on transmit queue <paramref name="queuePair"/> and returns how many it still
    /// holds. Also checks the queue's head register (TDH, §8.12.8) against the slots handed over.
    /// </summary>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device reported a head outside the slots it holds.</exception>
    public int TransmitInFlight(int queuePair = 0) => InFlightAfterHeadCheck(_tx[queuePair], IgbReg.Tdh(queuePair), "TDH (§8.12.8)");

    /// <summary>Nothing to do: every <see cref="Transmit(ReadOnlySpan{PacketBuffer}, int)"/> that takes packets writes the tail register. Here for the same shape as the virtio-net driver.</summary>
    public void FlushTransmit(int queuePair = 0) => _ = _tx[queuePair];

    /// <summary>
    /// Receive buffers receive queue <paramref name="queuePair"/> holds, after checking its head register (RDH, §8.10.8)
    /// against the slots handed over.
    /// </summary>
    /// <exception cref="IgbQueueFaultedException">The queue broke the descriptor protocol earlier.</exception>
    /// <exception cref="DeviceProtocolViolationException">The device reported a head outside the slots it holds.</exception>
    public int ReceiveBuffersPosted(int queuePair = 0) => InFlightAfterHeadCheck(_rx[queuePair], IgbReg.Rdh(queuePair), "RDH (§8.10.8)");

    private int InFlightAfterHeadCheck(Queue queue, ulong headRegister, string name)
    {
        Enter();
        try
        {
            var ring = queue.Ring;
            ring.ThrowIfFaulted();
            if (ring is TxRing tx) { Reclaim(tx); }
            ring.CheckHead(Bar.Read32(headRegister), name);
            return ring.InFlight;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>Switches unicast and multicast promiscuous reception (RCTL.UPE/MPE, §8.10.1) on or off.</summary>
    public void SetPromiscuous(bool unicast, bool multicast)
    {
        ThrowIfStopped();
        uint rctl = Bar.Read32(IgbReg.Rctl) & ~(IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous);
        if (unicast) { rctl |= IgbRctl.UnicastPromiscuous; }
        if (multicast) { rctl |= IgbRctl.MulticastPromiscuous; }
        Bar.Write32(IgbReg.Rctl, rctl);
    }

    /// <summary>Replaces the RSS key and redirection table (§8.10.23, §8.10.24) while the port runs.</summary>
    /// <exception cref="InvalidOperationException">The port runs one queue pair: RSS is off.</exception>
    /// <exception cref="ArgumentException">The table names a queue the port does not have.</exception>
    public void SetRss(IgbRssConfiguration rss)
    {
        ArgumentNullException.ThrowIfNull(rss);
        ThrowIfStopped();
        if (QueuePairCount < 2) { throw new InvalidOperationException($"{Device.Address}: RSS needs at least two queue pairs"); }
        if (rss.RedirectionTable.Any(q => q >= QueuePairCount))
        {
            throw new ArgumentException($"the redirection table names a queue beyond the {QueuePairCount} queue pair(s) opened", nameof(rss));
        }
        WriteRss(rss);
    }

    /// <summary>
    /// Stops the port (queues disabled, global reset: the device no longer touches any ring or buffer) and brings
    /// it up again with the same options; packets the device held return to their pools. Clears a faulted queue.
    /// </summary>
    public void Reset()
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_released) { throw new DeviceReleasedException(Device.Address, "the igb port was stopped when the host asked for it"); }
            StopAccepting();
            using var activity = NetTelemetry.StartActivity("igb.reset", Device.Address);
            try
            {
                StopDevice();
                ReleaseQueuedBuffers();
                Initialize();
            }
            catch (Exception e)
            {
                VfioTelemetry.Fail(activity, e);
                throw;
            }
            finally
            {
                Volatile.Write(ref _stopping, 0);
            }
        }
    }

    /// <summary>
    /// Stops the device's DMA (queues disabled, global reset), returns every buffer it held to its pool, frees the
    /// rings and the pool if the device made it, and unmaps BAR0. When the device cannot be stopped it may still
    /// write the buffers it holds: they stay out of the pool (counted in <see cref="PacketPool.InUseCount"/>).
    /// Does not close <see cref="Device"/>, which the caller owns.
    /// </summary>
    public void Dispose()
    {
        lock (_lifecycle)
        {
            if (_disposed) { return; }
            _disposed = true;
            _telemetry?.Dispose();
            _releaseRegistration.Dispose();
            if (!_released) { Shutdown(); }
            else { ReturnBuffers(); }   // stopped by the release thread, which left the pool to this one
            // A device that did not confirm it stopped may still write into the pool's memory: leak it instead.
            if (_ownsPool && _deviceQuiet) { Pool?.Dispose(); }
        }
    }

    // ------------------------------------------------------------------ bring-up

    private void Initialize()
    {
        var bar = Bar;
        // PCI Local Bus 3.0 §6.2.2: memory decoding for BAR0, bus mastering for the rings' DMA.
        Device.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster);

        // §4.5.1-§4.5.3: interrupts masked before and after the global reset (the reset unmasks nothing, but a
        // cause latched before it would otherwise be signalled once MSI-X is enabled by someone).
        DisableInterrupts();
        GlobalReset();
        DisableInterrupts();

        MacAddress = ReadMacAddress();
        ProgramAddressFilters();
        BringUpLink();

        int pairs = _options.QueuePairs;
        Pool ??= new PacketPool(Device.Dma, _options.PoolSize > 0 ? _options.PoolSize : 2 * pairs * _options.RingSize,
            ReceiveBufferSize + PacketPool.Headroom, $"{Device.Address} igb packets");
        _refillThreshold = Math.Max(1, Math.Min(32, _options.RingSize / 4));
        SetUpQueues(pairs);

        // §4.5.9 receive initialisation: checksum offload and RSS before RCTL.EN.
        Rss = pairs > 1 ? _options.Rss ?? IgbRssConfiguration.RoundRobin(pairs) : null;
        uint rxcsum = _options.ReceiveChecksumOffload ? IgbRxcsum.IpOffload | IgbRxcsum.TcpUdpOffload : 0;
        if (Rss is not null)
        {
            // The RSS hash replaces the fragment checksum in the write-back (§7.1.5.2, RXCSUM.PCSD); QEMU's igb
            // hashes only with PCSD set.
            rxcsum |= IgbRxcsum.PacketChecksumDisable;
            WriteRss(Rss);
            bar.Write32(IgbReg.Mrqc, IgbMrqc.EnableRss | IgbMrqc.AllHashes);
        }
        else
        {
            bar.Write32(IgbReg.Mrqc, 0);
        }
        bar.Write32(IgbReg.Rxcsum, rxcsum);
        foreach (var rx in _rx) { ((RxRing)rx.Ring).RssHashInDescriptor = Rss is not null; }

        // §8.10.1: CRC stripped so lengths are frame lengths; 2 KB buffers come from SRRCTL; long packets refused.
        uint rctl = IgbRctl.Enable | IgbRctl.StripCrc;
        if (_options.Broadcast) { rctl |= IgbRctl.BroadcastAccept; }
        if (_options.Promiscuous) { rctl |= IgbRctl.UnicastPromiscuous; }
        if (_options.AllMulticast) { rctl |= IgbRctl.MulticastPromiscuous; }
        bar.Write32(IgbReg.Rctl, rctl);

        // §4.5.10 transmit initialisation, §8.12.1: pad short frames, the IEEE collision threshold and distance.
        bar.Write32(IgbReg.Tctl, IgbTctl.Enable | IgbTctl.PadShortPackets | (0xFu << IgbTctl.CollisionThresholdShift) | (0x3Fu << IgbTctl.CollisionDistanceShift));

        // Whatever the counters held before belongs to the previous owner (§8.19: cleared by reading).
        _hardware.Update(bar.Read32);
        _hardware = new IgbStatsRegisters();

        SetUpInterrupts(pairs);

        LogInitialized(_logger, Device.Address, MacAddress.ToString(), IsLinkUp, LinkSpeedMbps, pairs, _options.RingSize, Rss is not null);
    }

    private void DisableInterrupts()
    {
        var bar = Bar;
        // §8.8.6 IMC and §8.8.13 EIMC: writing 1s masks every cause; reading ICR (§8.8.1) clears what is latched.
        bar.Write32(IgbReg.Imc, 0xFFFF_FFFF);
        bar.Write32(IgbReg.Eimc, 0xFFFF_FFFF);
        bar.Read32(IgbReg.Icr);
    }

    /// <summary>
    /// §4.3.1 "Global reset": master disable first so no DMA is cut in the middle (§5.2.3.3, CTRL.GIO_MASTER_DISABLE
    /// then STATUS.GIO_MASTER_ENABLE clear), then CTRL.RST, which clears itself when the reset is done.
    /// </summary>
    private void GlobalReset()
    {
        var bar = Bar;
        bar.Write32(IgbReg.Ctrl, bar.Read32(IgbReg.Ctrl) | IgbCtrl.GioMasterDisable);
        if (!WaitFor(() => (bar.Read32(IgbReg.Status) & IgbStatus.GioMasterEnable) == 0, s_resetTimeout))
        {
            LogMasterDisableTimeout(_logger, Device.Address);
        }
        bar.Write32(IgbReg.Ctrl, bar.Read32(IgbReg.Ctrl) | IgbCtrl.Reset);
        // §4.3.1: software waits at least 1 ms after setting CTRL.RST before touching the device again.
        Sleep(TimeSpan.FromMilliseconds(1));
        if (!WaitFor(() => (bar.Read32(IgbReg.Ctrl) & IgbCtrl.Reset) == 0, s_resetTimeout))
        {
            throw new DeviceTimeoutException(Device.Address, "CTRL.RST clear after a global reset (§4.3.1)", s_resetTimeout);
        }
    }

    /// <summary>
    /// The MAC address from EEPROM words 0-2 read through EERD (§8.2.4, §6.1), each word two address bytes low byte
    /// first; falls back to RAL0/RAH0, which the device loads from the EEPROM at reset (§8.10.13), when the EEPROM
    /// does not answer or holds no address.
    /// </summary>
    private PhysicalAddress ReadMacAddress()
    {
        var bar = Bar;
        var mac = new byte[6];
        bool fromEeprom = true;
        for (int word = 0; word < 3 && fromEeprom; word++)
        {
            bar.Write32(IgbReg.Eerd, ((uint)word << IgbEerd.AddressShift) | IgbEerd.Start);
            uint value = 0;
            fromEeprom = WaitFor(() => ((value = bar.Read32(IgbReg.Eerd)) & IgbEerd.Done) != 0, s_registerTimeout);
            ushort data = (ushort)(value >> IgbEerd.DataShift);
            mac[2 * word] = (byte)data;
            mac[2 * word + 1] = (byte)(data >> 8);
        }
        if (fromEeprom && IsUsable(mac)) { return new PhysicalAddress(mac); }
        uint ral = bar.Read32(IgbReg.Ral(0)), rah = bar.Read32(IgbReg.Rah(0));
        mac = [(byte)ral, (byte)(ral >> 8), (byte)(ral >> 16), (byte)(ral >> 24), (byte)rah, (byte)(rah >> 8)];
        if ((rah & IgbRah.AddressValid) == 0 || !IsUsable(mac))
        {
            throw new IgbException(Device.Address, "neither the EEPROM (EERD) nor RAL0/RAH0 holds a MAC address",
                "check the device's EEPROM image, or the QEMU igb 'mac' property");
        }
        return new PhysicalAddress(mac);

        static bool IsUsable(byte[] m) => m.Any(b => b != 0) && m.Any(b => b != 0xFF) && (m[0] & 1) == 0;
    }

    /// <summary>
    /// §7.1.1.1 L2 filtering: the port's own address in receive address 0 (AV set), the other 15 entries cleared,
    /// and an empty multicast table, so only frames for this port (and broadcasts, with BAM) come in.
    /// </summary>
    private void ProgramAddressFilters()
    {
        var bar = Bar;
        var m = MacAddress.GetAddressBytes();
        bar.Write32(IgbReg.Ral(0), (uint)(m[0] | m[1] << 8 | m[2] << 16 | m[3] << 24));
        bar.Write32(IgbReg.Rah(0), (uint)(m[4] | m[5] << 8) | IgbRah.AddressValid);
        for (int i = 1; i < IgbReg.ReceiveAddresses; i++)
        {
            bar.Write32(IgbReg.Ral(i), 0);
            bar.Write32(IgbReg.Rah(i), 0);
        }
        for (int i = 0; i < IgbReg.MtaEntries; i++) { bar.Write32(IgbReg.Mta + 4UL * (uint)i, 0); }
    }

    /// <summary>
    /// §4.5.7 "Link Setup": CTRL.SLU with link reset released, then the internal PHY's auto-negotiation restarted
    /// through MDIC (PHY address 1, BMCR, §8.2.7, §8.24.1), and a wait for STATUS.LU. A link that stays down is
    /// logged, not fatal: the port opens and <see cref="IsLinkUp"/> says so.
    /// </summary>
    private void BringUpLink()
    {
        var bar = Bar;
        const uint LinkReset = 1u << 3;   // CTRL.LRST on 82575-style devices; must be clear for the link to come up
        uint ctrl = bar.Read32(IgbReg.Ctrl);
        ctrl = (ctrl | IgbCtrl.SetLinkUp) & ~(LinkReset | IgbCtrl.PhyReset | IgbCtrl.GioMasterDisable);
        bar.Write32(IgbReg.Ctrl, ctrl);

        ushort bmcr = IgbMdic.BmcrAutoNegEnable | IgbMdic.BmcrRestartAutoNeg | IgbMdic.BmcrFullDuplex | IgbMdic.BmcrSpeed1000;
        bar.Write32(IgbReg.Mdic, bmcr | ((uint)IgbMdic.PhyControl << IgbMdic.RegisterShift) | ((uint)IgbMdic.InternalPhy << IgbMdic.PhyShift) | IgbMdic.OpWrite);
        uint mdic = 0;
        if (!WaitFor(() => ((mdic = bar.Read32(IgbReg.Mdic)) & IgbMdic.Ready) != 0, s_registerTimeout))
        {
            LogPhyProblem(_logger, Device.Address, "MDIC did not become ready after the BMCR write");
        }
        else if ((mdic & IgbMdic.Error) != 0)
        {
            LogPhyProblem(_logger, Device.Address, "the PHY refused the BMCR write (MDIC.E)");
        }
        if (!WaitFor(() => (bar.Read32(IgbReg.Status) & IgbStatus.LinkUp) != 0, _options.LinkTimeout))
        {
            LogLinkDown(_logger, Device.Address, _options.LinkTimeout.TotalMilliseconds);
        }
    }

    private void SetUpQueues(int pairs)
    {
        bool reuse = _rx.Length == pairs;
        if (!reuse)
        {
            ReleaseQueues();
            _rx = new Queue[pairs];
            _tx = new Queue[pairs];
            for (int q = 0; q < pairs; q++)
            {
                _rx[q] = NewQueue(q, receive: true);
                _tx[q] = NewQueue(q, receive: false);
            }
        }
        var bar = Bar;
        int size = _options.RingSize;
        uint ringBytes = (uint)(size * AdvancedDescriptor.Size);
        for (int q = 0; q < pairs; q++)
        {
            var rx = _rx[q];
            rx.Ring.Clear();
            rx.Lease ??= rx.Memory.MarkInUse($"igb {Device.Address} rx queue {q}");
            // §4.5.9 / §8.10.4-§8.10.10: base, length, buffer size and descriptor type, head and tail, then enable.
            ulong ringAddress = rx.Memory.DeviceAddress.Value;
            bar.Write32(IgbReg.Rdbal(q), (uint)ringAddress);
            bar.Write32(IgbReg.Rdbah(q), (uint)(ringAddress >> 32));
            bar.Write32(IgbReg.Rdlen(q), ringBytes);
            uint srrctl = (uint)(ReceiveBufferSize / IgbSrrctl.PacketSizeUnit) | IgbSrrctl.DescTypeAdvancedOneBuffer;
            if (pairs > 1) { srrctl |= IgbSrrctl.DropEnable; }
            bar.Write32(IgbReg.Srrctl(q), srrctl);
            bar.Write32(IgbReg.Rdh(q), 0);
            bar.Write32(IgbReg.Rdt(q), 0);
            EnableQueue(IgbReg.Rxdctl(q), IgbQueueControl.Enable | (8u << IgbQueueControl.PrefetchShift) | (8u << IgbQueueControl.HostShift) | (1u << IgbQueueControl.WriteBackShift), $"receive queue {q}");
            Refill(rx, (RxRing)rx.Ring);

            var tx = _tx[q];
            tx.Ring.Clear();
            ((TxRing)tx.Ring).Context = null;
            tx.Lease ??= tx.Memory.MarkInUse($"igb {Device.Address} tx queue {q}");
            ringAddress = tx.Memory.DeviceAddress.Value;
            bar.Write32(IgbReg.Tdbal(q), (uint)ringAddress);
            bar.Write32(IgbReg.Tdbah(q), (uint)(ringAddress >> 32));
            bar.Write32(IgbReg.Tdlen(q), ringBytes);
            bar.Write32(IgbReg.Tdh(q), 0);
            bar.Write32(IgbReg.Tdt(q), 0);
            EnableQueue(IgbReg.Txdctl(q), IgbQueueControl.Enable | (8u << IgbQueueControl.PrefetchShift) | (1u << IgbQueueControl.HostShift) | (1u << IgbQueueControl.WriteBackShift), $"transmit queue {q}");
        }
    }

    private Queue NewQueue(int index, bool receive)
    {
        int size = _options.RingSize;
        string kind = receive ? "rx" : "tx";
        // §8.10.4: the ring base is 128-byte aligned; a page is.
        var memory = Device.Dma.Allocate((ulong)(size * AdvancedDescriptor.Size), new DmaAllocationOptions { Name = $"{Device.Address} igb {kind} ring {index}", Contiguous = true });
        DescriptorRing ring = receive
            ? new RxRing(memory.Pointer, size, Device.Address, $"receive queue {index}", ReceiveBufferSize)
            : new TxRing(memory.Pointer, size, Device.Address, $"transmit queue {index}");
        return new Queue(index, ring, memory);
    }

    /// <summary>§8.10.10 / §8.12.13: the ENABLE bit reads back set once the queue runs.</summary>
    private void EnableQueue(ulong register, uint value, string what)
    {
        var bar = Bar;
        bar.Write32(register, value);
        if (!WaitFor(() => (bar.Read32(register) & IgbQueueControl.Enable) != 0, s_queueEnableTimeout))
        {
            throw new DeviceTimeoutException(Device.Address, $"{what} ENABLE set (§8.10.10, §8.12.13)", s_queueEnableTimeout);
        }
    }

    private void WriteRss(IgbRssConfiguration rss)
    {
        var bar = Bar;
        for (int i = 0; i < IgbRssConfiguration.KeyLength / 4; i++) { bar.Write32(IgbReg.Rssrk + 4UL * (uint)i, rss.KeyRegister(i)); }
        for (int i = 0; i < IgbRssConfiguration.TableLength / 4; i++) { bar.Write32(IgbReg.Reta + 4UL * (uint)i, rss.TableRegister(i)); }
        Rss = rss;
    }

    // ------------------------------------------------------------------ data path helpers

    private void Refill(Queue rx, RxRing ring)
    {
        var pool = Pool;
        int offered = 0;
        while (ring.FreeSlots > 0 && pool.TryAllocate(out var packet))
        {
            ring.Offer(packet, packet.DeviceAddress);
            offered++;
        }
        if (offered > 0) { Doorbell(IgbReg.Rdt(rx.Index), ring.Tail); }
    }

    /// <summary>Frees what the device has finished sending (DD written back, §7.2.3.2.4).</summary>
    private static void Reclaim(TxRing ring)
    {
        while (ring.TryReclaim(out var packet))
        {
            if (packet.IsValid) { packet.Free(); }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Doorbell(ulong register, int tail)
    {
        // The descriptor stores must be visible before the device sees the new tail (§7.1.6 / §7.2.2: descriptors
        // up to tail - 1 are the device's as soon as the tail register changes).
        Interlocked.MemoryBarrier();
        Bar.Write32(register, (uint)tail);
        _doorbells++;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Enter()
    {
        Interlocked.Increment(ref _busy);
        if (Volatile.Read(ref _stopping) != 0)
        {
            Interlocked.Decrement(ref _busy);
            ThrowStopped();
        }
    }

    /// <summary>As <see cref="Enter"/>, false instead of throwing while the port stops (for the interrupt watcher).</summary>
    private bool TryEnter()
    {
        Interlocked.Increment(ref _busy);
        if (Volatile.Read(ref _stopping) == 0) { return true; }
        Interlocked.Decrement(ref _busy);
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Leave() => Interlocked.Decrement(ref _busy);

    private void ThrowIfStopped()
    {
        if (Volatile.Read(ref _stopping) != 0) { ThrowStopped(); }
    }

    private void ThrowStopped()
    {
        if (_released) { throw new DeviceReleasedException(Device.Address, "the igb port was stopped when the host asked for the device"); }
        ObjectDisposedException.ThrowIf(_disposed, this);
        throw new InvalidOperationException($"{Device.Address}: the igb port is being reset");
    }

    // ------------------------------------------------------------------ stopping

    /// <summary>New bursts refuse to start, and the ones running are waited out (they are short).</summary>
    private void StopAccepting()
    {
        Interlocked.Exchange(ref _stopping, 1);
        var spin = new SpinWait();
        while (Volatile.Read(ref _busy) != 0) { spin.SpinOnce(); }
    }

    /// <summary>
    /// Stops the device touching any ring or buffer: receive and transmit queues disabled (§4.5.9.1, §4.5.10.1:
    /// clear ENABLE, wait for it to read back clear), then a global reset. True when the device confirmed.
    /// </summary>
    private bool StopDevice()
    {
        var bar = Bar;
        bool stopped = true;
        bar.Write32(IgbReg.Rctl, bar.Read32(IgbReg.Rctl) & ~IgbRctl.Enable);
        for (int q = 0; q < _rx.Length; q++)
        {
            bar.Write32(IgbReg.Rxdctl(q), bar.Read32(IgbReg.Rxdctl(q)) & ~IgbQueueControl.Enable);
            int queue = q;
            stopped &= WaitFor(() => (bar.Read32(IgbReg.Rxdctl(queue)) & IgbQueueControl.Enable) == 0, s_queueEnableTimeout);
        }
        for (int q = 0; q < _tx.Length; q++)
        {
            bar.Write32(IgbReg.Txdctl(q), bar.Read32(IgbReg.Txdctl(q)) & ~IgbQueueControl.Enable);
            int queue = q;
            stopped &= WaitFor(() => (bar.Read32(IgbReg.Txdctl(queue)) & IgbQueueControl.Enable) == 0, s_queueEnableTimeout);
        }
        bar.Write32(IgbReg.Tctl, bar.Read32(IgbReg.Tctl) & ~IgbTctl.Enable);
        try
        {
            DisableInterrupts();
        }
        finally
        {
            // Every cause is masked in the device; now MSI-X off in VFIO and the eventfds closed, which wakes the
            // sleeping consumers, before the reset and before anything frees the rings.
            ReleaseInterrupts();
        }
        GlobalReset();
        return stopped;
    }

    /// <summary>Stops the device and frees everything; on a device that does not answer, keeps the buffers it may still write.</summary>
    /// <param name="returnBuffers">
    /// Give the rings' buffers back to the pool now. False on the release thread: the pool belongs to the owner's
    /// thread (it is not thread-safe), so they go back in <see cref="Dispose"/>, on the owner's thread.
    /// </param>
    private void Shutdown(bool returnBuffers = true)
    {
        StopAccepting();
        bool stopped = false;
        if (_bar is not null)
        {
            try
            {
                stopped = StopDevice();
                Device.Config.BusMaster = false;
            }
            catch (Exception e) when (e is VfioException or IOException or InvalidOperationException or ObjectDisposedException or TimeoutException)
            {
                LogTeardownProblem(_logger, Device.Address, e.Message);
            }
        }
        // StopDevice released them unless it never ran or failed before its last step.
        ReleaseInterrupts();
        if (!stopped && _rx.Length > 0) { _deviceQuiet = false; LogBuffersKept(_logger, Device.Address); }
        if (returnBuffers) { ReturnBuffers(); }
        _bar?.Dispose();
        _bar = null;
    }

    /// <summary>The rings' buffers back to the pool and their memory freed, unless the device never confirmed it stopped.</summary>
    private void ReturnBuffers()
    {
        if (_deviceQuiet) { ReleaseQueuedBuffers(); }
        ReleaseQueues(keepLeased: !_deviceQuiet);
    }

    /// <summary>
    /// The host asked for the device back (<see cref="IPciDevice.ReleaseRequested"/>): stop the queues and the
    /// device and unmap BAR0, so the owner's Dispose of the device lets the kernel finish. Runs on a thread of its
    /// own; bursts started afterwards throw <see cref="DeviceReleasedException"/>. The buffers the rings held go back
    /// to the pool in <see cref="Dispose"/>, on the owner's thread: the pool is that thread's alone.
    /// </summary>
    private void ReleaseToHost()
    {
        lock (_lifecycle)
        {
            if (_disposed || _released) { return; }
            LogReleaseRequested(_logger, Device.Address);
            _released = true;
            Shutdown(returnBuffers: false);
        }
    }

    private void ReleaseQueuedBuffers()
    {
        foreach (var q in _rx) { q.Ring.ReleaseAll(static p => p.Free()); }
        foreach (var q in _tx) { q.Ring.ReleaseAll(static p => p.Free()); }
    }

    private void ReleaseQueues(bool keepLeased = false)
    {
        foreach (var q in _rx.Concat(_tx))
        {
            if (keepLeased) { continue; }   // the device may still DMA to the ring: leave its memory leased and allocated
            q.Lease?.Dispose();
            q.Lease = null;
            q.Memory.Dispose();
        }
        _rx = [];
        _tx = [];
    }

    // ------------------------------------------------------------------ waiting

    private bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        long start = _time.GetTimestamp();
        while (true)
        {
            if (condition()) { return true; }
            if (_time.GetElapsedTime(start) >= timeout) { return condition(); }
            Thread.Sleep(1);
        }
    }

    private void Sleep(TimeSpan delay)
    {
        if (_time == TimeProvider.System) { Thread.Sleep(delay); }
    }

    /// <summary>One ring with its memory.</summary>
    private sealed class Queue(int index, DescriptorRing ring, DmaBuffer memory)
    {
        public int Index { get; } = index;
        public DescriptorRing Ring { get; } = ring;
        public DmaBuffer Memory { get; } = memory;
        public DeviceUseLease? Lease { get; set; }
        // Counters of this queue since the port was opened (kept across Reset, which reuses the queues).
        public long Packets, Bytes, Errors;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: igb up, MAC {Mac}, link {LinkUp} at {Speed} Mb/s, {Pairs} queue pair(s) of {RingSize} descriptors, RSS {Rss}")]
    private static partial void LogInitialized(ILogger logger, PciAddress device, string mac, bool linkUp, int speed, int pairs, int ringSize, bool rss);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the link is still down {Timeout} ms after restarting auto-negotiation")]
    private static partial void LogLinkDown(ILogger logger, PciAddress device, double timeout);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: PHY: {Problem}")]
    private static partial void LogPhyProblem(ILogger logger, PciAddress device, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: STATUS.GIO_MASTER_ENABLE stayed set after master disable; resetting anyway")]
    private static partial void LogMasterDisableTimeout(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: {Queue} faulted: {Seen}")]
    private static partial void LogQueueFaulted(ILogger logger, PciAddress device, string queue, string seen);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the host asked for the device back; stopping the igb port")]
    private static partial void LogReleaseRequested(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the device did not confirm it stopped; the buffers and rings it holds are kept out of use, as it may still write them")]
    private static partial void LogBuffersKept(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: while closing: {Problem}")]
    private static partial void LogTeardownProblem(ILogger logger, PciAddress device, string problem);
}
