using System.Buffers.Binary;
using PhysicalAddress = System.Net.NetworkInformation.PhysicalAddress;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Net;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet;

/// <summary>
/// A modern virtio-net device (virtio 1.2 §5.1) driven from user space: burst receive and transmit over split
/// virtqueues, packet buffers from a <see cref="PacketPool"/>, doorbells skipped while the device says it does not
/// want them. Polling by default; with <see cref="VirtioNetOptions.ReceiveInterrupts"/> each receive queue also
/// gets an MSI-X vector that <see cref="ReceiveAsync"/> waits on when its queue is empty.
/// </summary>
/// <remarks>
/// One thread (or one awaiting flow) per queue pair, run to completion. <see cref="Receive"/> and
/// <see cref="Transmit"/> allocate nothing on the managed heap.
/// </remarks>
public sealed partial class VirtioNetDevice : IDisposable
{
    // struct virtio_net_hdr with VERSION_1 (VirtioNetHeader, §5.1.6): 12 bytes, in the last bytes of a buffer's headroom.
    private const int HeaderSize = VirtioNetHeader.Size;
    private const int HeaderOffset = PacketPool.Headroom - HeaderSize;
    // The longest TCP packet with GSO: 65,535 bytes of IP behind an Ethernet header with one VLAN tag.
    private const int MaxGsoFrame = 65535 + 18;

    private readonly VirtioPciTransport _transport;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly VirtioNetOptions _options;
    private readonly bool _ownsPool;
    private Queue[] _rx = [];
    private Queue[] _tx = [];
    private ControlQueue? _control;
    private IInterruptSet? _interrupts;
    private bool _mergeable;
    private bool _txCsum, _guestCsum;
    private bool _hostTso4, _hostTso6, _guestTso4, _guestTso6;
    private long _txChecksumSkipped, _rxBadChecksumHeaders, _rxBadSegmentHeaders, _txSegmentedInSoftware, _txSegmentationDropped;
    private int _refillThreshold;
    private readonly int _txDoorbellThreshold;
    private long _notifications, _interruptWakeups;
    private IDisposable? _telemetry;
    private bool _disposed;

    private VirtioNetDevice(IPciDevice device, VirtioNetOptions options)
    {
        Device = device;
        _options = options;
        _time = options.TimeProvider ?? TimeProvider.System;
        _logger = options.LoggerFactory?.CreateLogger<VirtioNetDevice>() ?? NullLogger<VirtioNetDevice>.Instance;
        _transport = new VirtioPciTransport(device, _time);
        _ownsPool = options.Pool is null;
        _txDoorbellThreshold = Math.Max(1, options.TxDoorbellThreshold);
        Pool = options.Pool!;
    }

    /// <summary>
    /// Brings up <paramref name="device"/>: reset, feature negotiation, queues, receive buffers, DRIVER_OK
    /// (virtio 1.2 §3.1.1). On failure the device is left reset and everything allocated is released.
    /// </summary>
    /// <exception cref="VirtioNetException">Not a usable modern virtio-net device, or negotiation failed.</exception>
    public static VirtioNetDevice Open(IPciDevice device, VirtioNetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        options ??= new VirtioNetOptions();
        if (device.Config.VendorId != VirtioPciIds.Vendor || device.Config.DeviceId != VirtioPciIds.ModernNet)
        {
            throw new VirtioNetException(device.Address,
                $"not a modern virtio-net device (ID {device.Config.VendorId:x4}:{device.Config.DeviceId:x4}, expected 1af4:1041; transitional 1af4:1000 devices need disable-legacy=on)");
        }
        VirtioNetDevice? net = null;
        using var activity = NetTelemetry.StartActivity("virtio-net.bringup", device.Address);
        try
        {
            net = new VirtioNetDevice(device, options);
            net.Initialize();
            net.WatchErrors();
            net._telemetry = NetTelemetry.Track(net);
            return net;
        }
        catch (FormatException e)
        {
            net?.Dispose();
            var error = new VirtioNetException(device.Address, e.Message, e);
            VfioTelemetry.Fail(activity, error);
            throw error;
        }
        catch (Exception e)
        {
            net?.Dispose();
            VfioTelemetry.Fail(activity, e);
            throw;
        }
    }

    /// <summary>The PCI device underneath.</summary>
    public IPciDevice Device { get; }

    /// <summary>Where the virtio structures are.</summary>
    public VirtioPciLayout Layout => _transport.Layout;

    /// <summary>Feature bits the device offered.</summary>
    public ulong OfferedFeatures { get; private set; }

    /// <summary>Feature bits negotiated (see <see cref="VirtioFeatures"/>).</summary>
    public ulong NegotiatedFeatures { get; private set; }

    /// <summary>The pool receive buffers come from.</summary>
    public PacketPool Pool { get; private set; }

    /// <summary>
    /// With <see cref="VirtioNetOptions.SegmentationOffload"/> and some of HOST_TSO4/6 or GUEST_TSO4/6 negotiated:
    /// buffers of 64 KiB and more in which an application builds TCP packets to send whole with
    /// <see cref="PacketFlags.TxTcpSegmentation"/>. Null otherwise. The device owns it and frees it on Dispose.
    /// </summary>
    public PacketPool? LargePool { get; private set; }

    /// <summary>
    /// With <see cref="VirtioNetOptions.SegmentationOffload"/>, MRG_RXBUF and GUEST_TSO4/6 negotiated: the buffers,
    /// as large as <see cref="LargePool"/>'s but apart from it (so that packets waiting to be sent cannot starve
    /// receive), into which received packets spanning several receive buffers are joined; they come back to it when
    /// the application frees them. Null otherwise.
    /// </summary>
    public PacketPool? JoinPool { get; private set; }

    /// <summary>
    /// Packets flagged <see cref="PacketFlags.TxTcpSegmentation"/> that neither the device nor the driver could cut:
    /// not TCP the header parser understands, no segment size, more segments than the transmit ring or the pool
    /// holds, or a segment larger than a buffer. They are dropped (freed), as a NIC drops what it cannot send.
    /// </summary>
    public long TxSegmentationDropped => _txSegmentationDropped;

    /// <summary>
    /// Received packets dropped (and counted in <see cref="VirtioNetStats.RxDropped"/>) because their header claimed a
    /// segmentation the driver did not negotiate or cannot check (an unknown or ECN gso_type, gso_size 0, a gso_type
    /// that does not match the packet's IP version or transport), or because a packet spanning buffers would not fit
    /// one large buffer.
    /// </summary>
    public long RxBadSegmentHeaders => _rxBadSegmentHeaders;

    /// <summary>Packets flagged <see cref="PacketFlags.TxTcpSegmentation"/> the driver cut itself, the device lacking HOST_TSO for them.</summary>
    public long TxSegmentedInSoftware => _txSegmentedInSoftware;

    /// <summary>The device's MAC address (VIRTIO_NET_F_MAC), or null when it has none.</summary>
    public PhysicalAddress? MacAddress { get; private set; }

    /// <summary>The most queue pairs the device offers (max_virtqueue_pairs with MQ, else 1).</summary>
    public int MaxQueuePairs { get; private set; } = 1;

    /// <summary>Queue pairs in use.</summary>
    public int QueuePairCount => _rx.Length;

    /// <summary>Entries per receive queue.</summary>
    public int RxQueueSize => _rx.Length == 0 ? 0 : _rx[0].Ring.Size;

    /// <summary>Entries per transmit queue.</summary>
    public int TxQueueSize => _tx.Length == 0 ? 0 : _tx[0].Ring.Size;

    /// <summary>
    /// Whether the link is up: the status field's VIRTIO_NET_S_LINK_UP when VIRTIO_NET_F_STATUS is negotiated;
    /// otherwise the link is assumed up (§5.1.4).
    /// </summary>
    public bool IsLinkUp =>
        (NegotiatedFeatures & VirtioFeatures.NetStatus) == 0
        || (_transport.ReadDeviceConfigConsistently(t => t.ReadDeviceConfig16(VirtioNetConfig.Status)) & VirtioNetConfig.StatusLinkUp) != 0;

    /// <summary>The device_status register.</summary>
    public VirtioStatus Status => _transport.Status;

    /// <summary>Counters since the device was opened.</summary>
    public VirtioNetStats Stats
    {
        get
        {
            long rxPackets = 0, rxBytes = 0, rxDropped = 0, txPackets = 0, txBytes = 0;
            foreach (var q in _rx) { rxPackets += q.Packets; rxBytes += q.Bytes; rxDropped += q.Dropped; }
            foreach (var q in _tx) { txPackets += q.Packets; txBytes += q.Bytes; }
            return new(rxPackets, rxBytes, rxDropped, txPackets, txBytes, _notifications);
        }
    }

    /// <summary>
    /// Receives up to <c>into.Length</c> packets from queue pair <paramref name="queuePair"/>; returns how many.
    /// The caller owns the buffers returned and frees them (or transmits them, which hands them on).
    /// Receive buffers are replenished from the pool as they are consumed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public unsafe int Receive(Span<PacketBuffer> into, int queuePair = 0)
    {
        if (_deviceError is { } error) { ThrowDeviceError(error); }
        var rx = _rx[queuePair];
        var ring = rx.Ring;
        var pool = Pool;
        int poolId = pool.Id;
        int available = ring.UsedCount();
        int got = 0;
        long bytes = 0;
        try
        {
            while (available > 0 && got < into.Length)
            {
                available--;
                // The token of a receive buffer is its index in the device's pool (see Refill).
                int index = ring.TakeUsed(out uint written);
                if (rx.SkipBuffers > 0)
                {
                    // Later buffers of a packet that spanned several (MRG_RXBUF, §5.1.6.4): dropped with its first.
                    rx.SkipBuffers--;
                    PacketPoolMarshal.FreeIndex(pool, index);
                    continue;
                }
                if (rx.JoinRemaining > 0)
                {
                    // A later buffer of a packet being joined: its data starts where a first buffer's header would.
                    if (JoinNext(rx, pool, index, (int)written) is { } joined)
                    {
                        if (FinishReceived(joined.Pool, joined.Index, joined.Length))
                        {
                            bytes += joined.Length;
                            into[got++] = joined;
                        }
                        else
                        {
                            rx.Dropped++;
                            joined.Free();
                        }
                    }
                    continue;
                }
                int length = (int)written - HeaderSize;
                if (length < 0)
                {
                    rx.Dropped++;
                    PacketPoolMarshal.FreeIndex(pool, index);
                    continue;
                }
                if (_mergeable)
                {
                    // SAFETY: the header lies in the buffer's headroom, inside the pool's mapping; read once.
                    ushort buffers = Volatile.Read(ref *(ushort*)(PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset + VirtioNetHeader.NumBuffers));
                    if (buffers > 1 || buffers == 0)
                    {
                        // §5.1.6.4: num_buffers counts the descriptors holding the packet, at least this one, and the
                        // rest are buffers the device holds now.
                        if (buffers == 0 || buffers - 1 > ring.ChainsInFlight)
                        {
                            // The buffer is the driver's again (its used entry passed the ring's checks) whatever it says.
                            PacketPoolMarshal.FreeIndex(pool, index);
                            throw ring.Violation("virtio_net_hdr num_buffers (§5.1.6.4)",
                                $"num_buffers {buffers}, with {ring.ChainsInFlight} receive buffer(s) left with the device");
                        }
                        if (!StartJoin(rx, pool, index, length, buffers))
                        {
                            rx.SkipBuffers = buffers - 1;
                            rx.Dropped++;
                        }
                        continue;
                    }
                }
                if (_guestCsum && !FinishReceived(pool, index, length))
                {
                    rx.Dropped++;
                    PacketPoolMarshal.FreeIndex(pool, index);
                    continue;
                }
                PacketPoolMarshal.SetLength(pool, index, length);
                bytes += length;
                into[got++] = PacketPoolMarshal.CreateBuffer(poolId, index);
            }
        }
        catch (DeviceProtocolViolationException)
        {
            // The packets taken before the violation were returned properly; the caller never sees them, so they go
            // back to the pool. The buffers the device still holds stay in the faulted ring until a reset.
            // Joined ones belong to the large pool.
            for (int i = 0; i < got; i++) { into[i].Free(); }
            throw;
        }
        rx.Packets += got;
        rx.Bytes += bytes;
        if (ring.FreeDescriptors >= _refillThreshold)
        {
            Refill(rx);
        }
        return got;
    }

    /// <summary>
    /// Receives up to <c>into.Length</c> packets from queue pair <paramref name="queuePair"/>, waiting for the
    /// receive queue's MSI-X vector while it is empty; returns how many (at least 1). Needs
    /// <see cref="VirtioNetOptions.ReceiveInterrupts"/>. While packets keep arriving this is <see cref="Receive"/>
    /// (no interrupt is requested); only an empty queue turns the device's interrupts for it on, and they go off
    /// again as soon as the wait ends.
    /// </summary>
    /// <exception cref="InvalidOperationException">The device was opened without receive interrupts.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public async ValueTask<int> ReceiveAsync(Memory<PacketBuffer> into, int queuePair = 0, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_interrupts is null)
        {
            throw new InvalidOperationException($"{Device.Address}: ReceiveAsync needs receive interrupts (VirtioNetOptions.ReceiveInterrupts)");
        }
        if (into.IsEmpty) { throw new ArgumentException("room for at least one packet is needed", nameof(into)); }
        var ring = _rx[queuePair].Ring;
        var vector = _interrupts[queuePair];
        while (true)
        {
            int got = Receive(into.Span, queuePair);
            if (got > 0) { return got; }
            // §2.7.10: ask for an interrupt, then look again: a buffer used between the empty poll and the flag
            // store would otherwise raise none. The barrier orders the flag store before the used->idx load.
            ring.SetInterruptSuppression(false);
            Interlocked.MemoryBarrier();
            if (ring.UsedCount() > 0)
            {
                ring.SetInterruptSuppression(true);
                continue;
            }
            try
            {
                await vector.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ring.SetInterruptSuppression(true);
            }
            _interruptWakeups++;
        }
    }

    /// <summary>Times <see cref="ReceiveAsync"/> woke up from its receive vector.</summary>
    public long InterruptWakeups => _interruptWakeups;

    /// <summary>
    /// Hands up to <c>packets.Length</c> packets to queue pair <paramref name="queuePair"/>'s transmit queue; returns
    /// how many were taken. Taken packets belong to the driver, which frees them to their pool once the device has
    /// sent them; the rest stay the caller's (retry or free them), as with DPDK's rte_eth_tx_burst.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public unsafe int Transmit(ReadOnlySpan<PacketBuffer> packets, int queuePair = 0)
    {
        if (_deviceError is { } error) { ThrowDeviceError(error); }
        var tx = _tx[queuePair];
        var ring = tx.Ring;
        // Reclaimed on every call, not lazily below a threshold as DPDK does (tx_free_thresh): sent packets held in
        // the ring would be missing from the pool, which is sized for full receive rings plus one transmit ring.
        ReclaimTransmitted(ring);
        int free = ring.FreeDescriptors;
        int n = 0;
        long bytes = 0;
        PacketPool? lastPool = null;
        int lastPoolId = -1;
        for (; n < packets.Length && free > 0; n++)
        {
            var packet = packets[n];
            int poolId = PacketPoolMarshal.GetPoolId(packet);
            var pool = poolId == lastPoolId ? lastPool! : (lastPool = packet.Pool);
            lastPoolId = poolId;
            int index = packet.Index;
            int length = PacketPoolMarshal.GetLength(pool, index);
            // §5.1.6.2: a zeroed header asks for no checksum offload and no segmentation (GSO_NONE); the header
            // and the frame go out as one device-readable buffer (VERSION_1 implies ANY_LAYOUT, §5.1.6.6).
            byte* header = (byte*)PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset;
            ClearHeader(header);
            var txFlags = PacketPoolMarshal.GetFlags(pool, index);
            if ((txFlags & (PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum | PacketFlags.TxTcpSegmentation)) != 0)
            {
                if ((txFlags & PacketFlags.TxTcpSegmentation) != 0)
                {
                    ushort segmentSize = PacketPoolMarshal.GetSegmentSize(pool, index);
                    if (!PrepareSegmentation(header, length, segmentSize))
                    {
                        // No HOST_TSO for it: cut here into the device's pool, one descriptor per segment.
                        int used = TransmitCut(ring, packet, header + HeaderSize, length, segmentSize, free);
                        if (used < 0) { break; }   // not enough descriptors or buffers now: the packet stays the caller's
                        free -= used;
                        bytes += length;
                        continue;
                    }
                    // Both checksums (the device redoes them per segment; a peer that takes the packet whole sees these).
                    txFlags |= PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum;
                }
                PrepareChecksum(header, length, txFlags);
            }
            // free > 0, so Enqueue succeeds. The token is the packet's handle: transmitted packets may come from any
            // pool, and ReclaimTransmitted frees each to its own.
            ring.Enqueue(PacketPoolMarshal.GetDeviceAddress(pool, index) + HeaderOffset, (uint)(length + HeaderSize), VirtqDescriptorFlags.None, PacketPoolMarshal.GetHandle(packet));
            free--;
            bytes += length;
        }
        if (n < packets.Length) { tx.RingFull += packets.Length - n; }
        tx.Packets += n;
        tx.Bytes += bytes;
        if (ring.Publish())
        {
            tx.Unannounced += n;
            if (tx.Unannounced >= _txDoorbellThreshold)
            {
                Announce(tx);
            }
        }
        return n;
    }

    /// <summary>§5.1.6.2: a zeroed header asks for no checksum offload and no segmentation (GSO_NONE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ClearHeader(byte* header)
    {
        // SAFETY: callers pass a pool buffer's header, the 12 bytes at the end of its headroom.
        *(ulong*)header = 0;
        *(uint*)(header + 8) = 0;
    }

    /// <summary>
    /// §5.1.6.2 with HOST_TSO4/6: a packet flagged <see cref="PacketFlags.TxTcpSegmentation"/> goes out whole with
    /// gso_type TCPV4 or TCPV6, hdr_len (Ethernet, IP and TCP headers) and gso_size (the MSS); the checksum part
    /// (NEEDS_CSUM, required with GSO) follows in <see cref="PrepareChecksum"/>. False when the device lacks TSO for
    /// the packet's IP version, the packet is not TCP the header parser understands, or it has no segment size: the
    /// caller cuts it in software (or, when that cannot either, drops it).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe bool PrepareSegmentation(byte* header, int length, ushort segmentSize)
    {
        // SAFETY: the frame's length bytes follow the header in the same pool buffer, which the caller still owns.
        var frame = new ReadOnlySpan<byte>(header + HeaderSize, length);
        if (segmentSize == 0 || !TransportHeader.TryLocate(frame, out var l4) || !l4.IsTcp || l4.Length < 20) { return false; }
        if (!(l4.IsIpv4 ? _hostTso4 : _hostTso6)) { return false; }
        // CWR set: the device would need HOST_ECN to cut it right (§5.1.6.2.1), which is not negotiated; cut here.
        if ((frame[l4.Start + 13] & 0x80) != 0) { return false; }
        int tcpHeader = (frame[l4.Start + 12] >> 4) * 4;
        if (tcpHeader < 20 || tcpHeader > l4.Length) { return false; }
        header[VirtioNetHeader.GsoType] = l4.IsIpv4 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6;
        *(ushort*)(header + VirtioNetHeader.HeaderLength) = (ushort)(l4.Start + tcpHeader);
        *(ushort*)(header + VirtioNetHeader.GsoSize) = segmentSize;
        return true;
    }

    /// <summary>
    /// A <see cref="PacketFlags.TxTcpSegmentation"/> packet the device cannot cut: cut here (RFC 9293 segments,
    /// <see cref="TcpSegmentation"/>) into buffers of <see cref="Pool"/>, each enqueued with its checksums done, and
    /// the original freed. Returns the descriptors used, or -1 (nothing enqueued) when fewer than the segments are
    /// free, or the pool has too few buffers, now. A packet that can never be cut here (not TCP it parses, no segment
    /// size, a segment larger than a buffer, more segments than the ring or the pool holds) is dropped and counted in
    /// <see cref="TxSegmentationDropped"/>: 0 descriptors, the packet consumed.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe int TransmitCut(SplitVirtqueue ring, PacketBuffer packet, byte* data, int length, ushort segmentSize, int free)
    {
        // SAFETY: the frame's length bytes are in the caller's buffer, which it still owns.
        var frame = new ReadOnlySpan<byte>(data, length);
        var pool = Pool;
        if (segmentSize == 0 || !TcpSegmentation.TryPlan(frame, segmentSize, out var plan) || plan.MaxSegmentLength > pool.DataRoom
            || plan.SegmentCount > ring.Size || plan.SegmentCount > pool.Capacity)
        {
            _txSegmentationDropped++;
            packet.Free();
            return 0;
        }
        int count = plan.SegmentCount;
        if (count > free || pool.FreeCount < count) { return -1; }
        for (int s = 0; s < count; s++)
        {
            pool.TryAllocate(out var segment);
            int written = plan.WriteSegment(frame, s, segment.Room);
            PacketPoolMarshal.SetLength(pool, segment.Index, written);
            ClearHeader((byte*)PacketPoolMarshal.GetPointer(pool, segment.Index) + HeaderOffset);
            ring.Enqueue(PacketPoolMarshal.GetDeviceAddress(pool, segment.Index) + HeaderOffset, (uint)(written + HeaderSize), VirtqDescriptorFlags.None, PacketPoolMarshal.GetHandle(segment));
        }
        packet.Free();
        _txSegmentedInSoftware++;
        return count;
    }

    /// <summary>
    /// Transmitted packets whose checksum request (<see cref="PacketFlags.TxL4Checksum"/>,
    /// <see cref="PacketFlags.TxIpChecksum"/>) was not carried out because the frame is not TCP/UDP over IPv4 or
    /// IPv6 (untagged or one 802.1Q tag, no IPv6 extension headers) that fits in its buffer: they go out unchanged.
    /// </summary>
    public long TxChecksumSkipped => _txChecksumSkipped;

    /// <summary>
    /// Received packets dropped (and counted in <see cref="VirtioNetStats.RxDropped"/>) because the device set
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM with a csum_start or csum_offset that puts the checksum field outside the packet
    /// (§5.1.6.4.1: completing it would write past what the device wrote).
    /// </summary>
    public long RxBadChecksumHeaders => _rxBadChecksumHeaders;

    /// <summary>
    /// §5.1.6.2: for a packet asking for TCP/UDP checksum insertion, with VIRTIO_NET_F_CSUM the header gets
    /// NEEDS_CSUM, csum_start at the transport header and csum_offset at its checksum field, which holds the
    /// pseudo-header sum (the device adds the rest from csum_start to the end and stores the complement); without
    /// CSUM the checksum is computed here. virtio has no IPv4 header checksum offload: that one is always computed here.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe void PrepareChecksum(byte* header, int length, PacketFlags flags)
    {
        // SAFETY: the frame's length bytes follow the header in the same pool buffer, which the caller still owns.
        var frame = new Span<byte>(header + HeaderSize, length);
        if (!TransportHeader.TryLocate(frame, out var l4))
        {
            _txChecksumSkipped++;
            return;
        }
        if ((flags & PacketFlags.TxIpChecksum) != 0 && l4.IsIpv4)
        {
            TransportHeader.WriteIpv4HeaderChecksum(frame, l4.IpStart);   // virtio has no offload for it
        }
        if ((flags & PacketFlags.TxL4Checksum) == 0) { return; }
        var segment = frame.Slice(l4.Start, l4.Length);
        if (_txCsum)
        {
            BinaryPrimitives.WriteUInt16BigEndian(segment[l4.ChecksumOffset..], InternetChecksum.Fold(l4.PseudoHeaderSum));
            var h = new Span<byte>(header, HeaderSize);
            h[VirtioNetHeader.Flags] = VirtioNetHeader.FlagNeedsCsum;
            BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.CsumStart..], (ushort)l4.Start);
            BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.CsumOffset..], (ushort)l4.ChecksumOffset);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(segment[l4.ChecksumOffset..], 0);
            ChecksumOffload.Complete(segment, l4.ChecksumOffset, l4.PseudoHeaderSum);
        }
    }

    /// <summary>
    /// The first buffer of a packet spanning <paramref name="buffers"/> receive buffers (MRG_RXBUF, §5.1.6.4): with a
    /// <see cref="JoinPool"/>, its header and data are copied into a buffer of it (driver memory the device never sees,
    /// so the header is read from the copy) and the receive buffer goes back to its pool. False without a join pool or
    /// with none of its buffers free: the caller drops the packet.
    /// </summary>
    private unsafe bool StartJoin(Queue rx, PacketPool pool, int index, int length, int buffers)
    {
        var large = JoinPool;
        if (large is null || !large.TryAllocate(out var join))
        {
            PacketPoolMarshal.FreeIndex(pool, index);
            return false;
        }
        // SAFETY: the header and length bytes lie in the receive buffer (the used length was checked against it) and
        // fit the large buffer, whose data room is larger.
        var from = new ReadOnlySpan<byte>((byte*)PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset, HeaderSize + length);
        from.CopyTo(new Span<byte>((byte*)PacketPoolMarshal.GetPointer(large, join.Index) + HeaderOffset, HeaderSize + length));
        PacketPoolMarshal.FreeIndex(pool, index);
        rx.JoinPool = large;
        rx.JoinIndex = join.Index;
        rx.JoinLength = length;
        rx.JoinRemaining = buffers - 1;
        return true;
    }

    /// <summary>
    /// A later buffer of the packet being joined: <paramref name="written"/> bytes from where a first buffer's header
    /// would start (§5.1.6.4: only the first buffer has a header) are appended. The joined packet once its last buffer
    /// came, else null. A packet longer than a large buffer is dropped with the rest of its buffers.
    /// </summary>
    private unsafe PacketBuffer? JoinNext(Queue rx, PacketPool pool, int index, int written)
    {
        var large = rx.JoinPool!;
        int at = rx.JoinLength;
        rx.JoinRemaining--;
        if (written > large.DataRoom - at)
        {
            PacketPoolMarshal.FreeIndex(pool, index);
            rx.SkipBuffers = rx.JoinRemaining;
            rx.DropJoin();
            rx.Dropped++;
            _rxBadSegmentHeaders++;
            return null;
        }
        // SAFETY: written bytes lie in the receive buffer (checked by the ring against what was offered); at + written
        // is within the large buffer's data room (checked above).
        new ReadOnlySpan<byte>((byte*)PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset, written)
            .CopyTo(new Span<byte>((byte*)PacketPoolMarshal.GetPointer(large, rx.JoinIndex) + PacketPool.Headroom + at, written));
        PacketPoolMarshal.FreeIndex(pool, index);
        rx.JoinLength = at + written;
        if (rx.JoinRemaining > 0) { return null; }
        int joined = rx.JoinIndex;
        PacketPoolMarshal.SetLength(large, joined, rx.JoinLength);
        rx.JoinIndex = -1;
        rx.JoinLength = 0;
        return PacketPoolMarshal.CreateBuffer(large.Id, joined);
    }

    /// <summary>The receive checksum (with GUEST_CSUM) and segmentation (with GUEST_TSO4/6) a received packet's header reports; false: drop it.</summary>
    private unsafe bool FinishReceived(PacketPool pool, int index, int length)
    {
        if (!_guestCsum) { return true; }
        if (!TryApplyReceiveChecksum(pool, index, length)) { return false; }
        byte* header = (byte*)PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset;
        // SAFETY: the header lies in the buffer's headroom; each field is read once.
        byte gsoType = Volatile.Read(ref header[VirtioNetHeader.GsoType]);
        if (gsoType == VirtioNetHeader.GsoNone) { return true; }
        bool checksumChecked = (PacketPoolMarshal.GetFlags(pool, index) & PacketFlags.L4ChecksumGood) != 0;
        ushort gsoSize = Volatile.Read(ref *(ushort*)(header + VirtioNetHeader.GsoSize));
        // §5.1.6.4: gso_type TCPV4/TCPV6 only as negotiated (no GUEST_ECN, so no ECN bit), with a segment size and
        // NEEDS_CSUM (the device MUST set it with a gso_type; DATA_VALID is taken too, as Linux does), on a TCP packet
        // of that IP version.
        bool v4 = gsoType == VirtioNetHeader.GsoTcpV4 && _guestTso4;
        bool v6 = gsoType == VirtioNetHeader.GsoTcpV6 && _guestTso6;
        var frame = new ReadOnlySpan<byte>(header + HeaderSize, length);
        if (!(v4 || v6) || gsoSize == 0 || !checksumChecked || !TransportHeader.TryLocate(frame, out var l4) || !l4.IsTcp || l4.IsIpv4 != v4)
        {
            _rxBadSegmentHeaders++;
            LogBadSegmentHeader(_logger, Device.Address, gsoType, gsoSize, length);
            return false;
        }
        PacketPoolMarshal.GetFlags(pool, index) |= PacketFlags.TcpSegments;
        PacketPoolMarshal.GetSegmentSize(pool, index) = gsoSize;
        return true;
    }

    /// <summary>
    /// §5.1.6.4 with VIRTIO_NET_F_GUEST_CSUM: DATA_VALID means the device checked the checksum; NEEDS_CSUM (§5.1.6.4.1)
    /// means it validated the packet but left a partial checksum (the pseudo-header sum) at csum_offset from
    /// csum_start, which the driver completes here, so the packet leaves with a full checksum either way. Both become
    /// <see cref="PacketFlags.L4ChecksumGood"/>. The header is read once, each field validated against the length
    /// the device wrote; false (drop) when the checksum field would lie outside the packet.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe bool TryApplyReceiveChecksum(PacketPool pool, int index, int length)
    {
        byte* header = (byte*)PacketPoolMarshal.GetPointer(pool, index) + HeaderOffset;
        // SAFETY: the header lies in the buffer's headroom; the device is done with the buffer, but each field is read once.
        byte flags = Volatile.Read(ref header[VirtioNetHeader.Flags]);
        if ((flags & VirtioNetHeader.FlagNeedsCsum) != 0)
        {
            int start = Volatile.Read(ref *(ushort*)(header + VirtioNetHeader.CsumStart));
            int offset = Volatile.Read(ref *(ushort*)(header + VirtioNetHeader.CsumOffset));
            if (start > length || offset + 2 > length - start)
            {
                _rxBadChecksumHeaders++;
                LogBadChecksumHeader(_logger, Device.Address, start, offset, length);
                return false;
            }
            // SAFETY: start + offset + 2 <= length, which is inside the buffer's data room (the used length was checked).
            var covered = new Span<byte>(header + HeaderSize + start, length - start);
            ChecksumOffload.Complete(covered, offset, 0);
            PacketPoolMarshal.GetFlags(pool, index) = PacketFlags.L4ChecksumGood;
        }
        else if ((flags & VirtioNetHeader.FlagDataValid) != 0)
        {
            PacketPoolMarshal.GetFlags(pool, index) = PacketFlags.L4ChecksumGood;
        }
        return true;
    }

    /// <summary>
    /// Frees the packets the device has finished sending on queue pair <paramref name="queuePair"/> and returns how
    /// many it still holds (taken by <see cref="Transmit"/>, not yet sent).
    /// </summary>
    public int TransmitInFlight(int queuePair = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var tx = _tx[queuePair];
        FlushTransmit(queuePair);
        ReclaimTransmitted(tx.Ring);
        return tx.Ring.Size - tx.Ring.FreeDescriptors;
    }

    /// <summary>Frees what the device has sent (§2.7.14 "Receiving Used Buffers From The Device").</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ReclaimTransmitted(SplitVirtqueue ring)
    {
        int done = ring.UsedCount();
        if (done == 0) { return; }
        // Packets of one burst nearly always share a pool: look it up again only when the pool number changes.
        int lastPoolId = -1;
        PacketPool? pool = null;
        for (; done > 0; done--)
        {
            var packet = PacketPoolMarshal.FromHandle(ring.TakeUsed(out _));
            int poolId = PacketPoolMarshal.GetPoolId(packet);
            if (poolId != lastPoolId) { pool = packet.Pool; lastPoolId = poolId; }
            PacketPoolMarshal.FreeIndex(pool!, packet.Index);
        }
    }

    /// <summary>
    /// Rings the transmit doorbell of <paramref name="queuePair"/> if packets were published since the last one and
    /// the device wants doorbells. Needed only with <see cref="VirtioNetOptions.TxDoorbellThreshold"/> above 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void FlushTransmit(int queuePair = 0)
    {
        var tx = _tx[queuePair];
        if (tx.Unannounced > 0) { Announce(tx); }
    }

    private void Announce(Queue tx)
    {
        tx.Unannounced = 0;
        // If the device set NO_NOTIFY it is working through the ring and will see the new entries before it
        // re-enables doorbells (§2.7.10); otherwise it needs one.
        if (tx.Ring.DeviceWantsNotification())
        {
            // The doorbell write follows the avail->idx store and the barrier in DeviceWantsNotification, so the
            // device finds the new entries when it looks (§2.7.13 step 4, §4.1.5.2).
            _transport.Notify(tx.Doorbell, tx.Index);
            _notifications++;
        }
    }

    /// <summary>
    /// Resets the device and brings it up again with the same options (virtio 1.2 §3.1.1; also what to do after
    /// the PCI function was reset underneath, or the device set DEVICE_NEEDS_RESET). Packets the device held
    /// (receive buffers, unsent transmissions) return to their pools.
    /// </summary>
    public void Reset()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var activity = NetTelemetry.StartActivity("virtio-net.reset", Device.Address);
        try
        {
            _transport.Reset();
            ReleaseQueuedBuffers();
            Initialize();
        }
        catch (Exception e)
        {
            VfioTelemetry.Fail(activity, e);
            throw;
        }
    }

    private void Initialize()
    {
        var address = Device.Address;
        // PCI Local Bus 3.0 §6.2.2: memory decoding for the BARs, bus mastering for the rings' DMA. A function
        // reset clears both, so this runs on every (re)initialisation.
        Device.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster);

        // §3.1.1 steps 1-3.
        _transport.Reset();
        _transport.AddStatus(VirtioStatus.Acknowledge);
        _transport.AddStatus(VirtioStatus.Driver);

        // Steps 4-6: negotiate, FEATURES_OK, and read it back to learn whether the device accepted.
        OfferedFeatures = _transport.ReadDeviceFeatures();
        ulong wanted = VirtioFeatures.NetMac | VirtioFeatures.NetStatus;
        if (_options.MergeableRxBuffers) { wanted |= VirtioFeatures.NetMergeRxBuffers; }
        if (_options.ChecksumOffload || _options.SegmentationOffload) { wanted |= VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum; }
        if (_options.SegmentationOffload)
        {
            wanted |= VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6;
            // Joined packets of 64 KiB come only across several buffers here: GUEST_TSO is taken only with MRG_RXBUF
            // (without it the driver would have to post 64 KiB buffers, §5.1.6.3.1).
            if (_options.MergeableRxBuffers) { wanted |= VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6; }
        }
        if (_options.QueuePairs > 1) { wanted |= VirtioFeatures.NetMultiQueue | VirtioFeatures.NetControlQueue | VirtioFeatures.NetRss; }
        var negotiation = FeatureNegotiation.Negotiate(OfferedFeatures, VirtioFeatures.Version1, wanted,
            translatedDma: Device.Dma.Addressing == DmaAddressing.Iova);
        if (!negotiation.Succeeded)
        {
            _transport.AddStatus(VirtioStatus.Failed);
            throw new VirtioNetException(address, negotiation.Error!);
        }
        ulong accepted = negotiation.Accepted;
        // MQ is only useful with the control queue that switches it on (§5.1.3.1: MQ requires CTRL_VQ).
        if ((accepted & VirtioFeatures.NetControlQueue) == 0) { accepted &= ~(VirtioFeatures.NetMultiQueue | VirtioFeatures.NetRss); }
        // RSS steers between the pairs MQ provides; the driver configures it only with MQ (§5.1.6.5.7).
        if ((accepted & VirtioFeatures.NetMultiQueue) == 0) { accepted &= ~VirtioFeatures.NetRss; }
        // §5.1.3.1: HOST_TSO4/6 require CSUM, GUEST_TSO4/6 require GUEST_CSUM; GUEST_TSO is also taken only with MRG_RXBUF.
        if ((accepted & VirtioFeatures.NetCsum) == 0) { accepted &= ~(VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6); }
        if ((accepted & VirtioFeatures.NetGuestCsum) == 0 || (accepted & VirtioFeatures.NetMergeRxBuffers) == 0)
        {
            accepted &= ~(VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6);
        }
        _transport.WriteDriverFeatures(accepted);
        _transport.AddStatus(VirtioStatus.FeaturesOk);
        if ((_transport.Status & VirtioStatus.FeaturesOk) == 0)
        {
            _transport.AddStatus(VirtioStatus.Failed);
            throw new VirtioNetException(address, $"the device did not accept features {VirtioFeatures.Describe(accepted)} (FEATURES_OK cleared, §3.1.1)");
        }
        NegotiatedFeatures = accepted;
        _mergeable = (accepted & VirtioFeatures.NetMergeRxBuffers) != 0;
        _txCsum = (accepted & VirtioFeatures.NetCsum) != 0;
        _guestCsum = (accepted & VirtioFeatures.NetGuestCsum) != 0;
        _hostTso4 = (accepted & VirtioFeatures.NetHostTso4) != 0;
        _hostTso6 = (accepted & VirtioFeatures.NetHostTso6) != 0;
        _guestTso4 = (accepted & VirtioFeatures.NetGuestTso4) != 0;
        _guestTso6 = (accepted & VirtioFeatures.NetGuestTso6) != 0;
        // TcpSegmentation: flagged packets go out whole (cut by the device, or here when it lacks HOST_TSO for one IP version).
        Offloads = (_txCsum ? NetOffloads.TxChecksum : 0) | (_guestCsum ? NetOffloads.RxChecksum : 0)
            | (_hostTso4 || _hostTso6 ? NetOffloads.TcpSegmentation : 0) | (_guestTso4 || _guestTso6 ? NetOffloads.TcpSegmentReceive : 0);
        RequireDeviceConfigFor(accepted);

        // Device configuration (§5.1.4).
        if ((accepted & VirtioFeatures.NetMac) != 0)
        {
            MacAddress = _transport.ReadDeviceConfigConsistently(t =>
            {
                var mac = new byte[VirtioNetConfig.MacLength];
                for (uint i = 0; i < VirtioNetConfig.MacLength; i++) { mac[i] = t.ReadDeviceConfig8(VirtioNetConfig.Mac + i); }
                return new PhysicalAddress(mac);
            });
        }
        MaxQueuePairs = (accepted & VirtioFeatures.NetMultiQueue) != 0 ? ReadMaxQueuePairs() : 1;
        _rssCapability = (accepted & VirtioFeatures.NetRss) != 0 ? ReadRssCapability() : NetRssCapability.NotSupported;
        int pairs = Math.Clamp(_options.QueuePairs, 1, MaxQueuePairs);
        if (_options.ReceiveInterrupts) { EnableReceiveVectors(pairs); }

        // Step 7: virtqueues. receiveqN is 2(N-1), transmitqN is 2(N-1)+1, controlq follows the last possible pair (§5.1.2).
        SetUpQueues(pairs, (accepted & VirtioFeatures.NetControlQueue) != 0 ? (ushort)VirtioNetQueues.Control(MaxQueuePairs) : null);

        // §5.1.5: fill the receive queues before DRIVER_OK; the doorbells wait until after it (§3.1.1 step 8,
        // "the driver MUST NOT send any buffer available notifications to the device before setting DRIVER_OK").
        foreach (var rx in _rx) { Refill(rx, notify: false); }
        _transport.AddStatus(VirtioStatus.DriverOk);
        if (pairs > 1 && _control is not null)
        {
            // Pairs beyond the first carry traffic only once switched on (§5.1.6.5.5); do it before their doorbells.
            SetQueuePairs(pairs);
            ReapplyRss();
        }
        foreach (var rx in _rx)
        {
            _transport.Notify(rx.Doorbell, rx.Index);
            _notifications++;
        }
        if ((_transport.Status & VirtioStatus.DeviceNeedsReset) != 0)
        {
            throw new VirtioNetException(address, "the device set DEVICE_NEEDS_RESET during initialisation");
        }
        LogInitialized(_logger, address, MacAddress?.ToString() ?? "none", VirtioFeatures.Describe(accepted), pairs, RxQueueSize, TxQueueSize);
    }

    /// <summary>
    /// §5.1.4: mac exists with MAC, status with STATUS, max_virtqueue_pairs with MQ; the device configuration
    /// structure (§4.1.4.6) must be long enough to hold the fields the negotiated features make the driver read.
    /// </summary>
    private void RequireDeviceConfigFor(ulong accepted)
    {
        uint needed = (accepted & VirtioFeatures.NetRss) != 0 ? (uint)VirtioNetConfig.SizeThroughHashTypes
            : (accepted & VirtioFeatures.NetMultiQueue) != 0 ? VirtioNetConfig.MaxVirtqueuePairs + 2u
            : (accepted & VirtioFeatures.NetStatus) != 0 ? VirtioNetConfig.Status + 2u
            : (accepted & VirtioFeatures.NetMac) != 0 ? (uint)VirtioNetConfig.MacLength : 0;
        uint length = Layout.Device?.Length ?? 0;
        if (length < needed)
        {
            throw new DeviceProtocolViolationException(Device.Address, "virtio device configuration capability (§4.1.4.6, §5.1.4)",
                $"the structure is {length} bytes (absent if 0), but features {VirtioFeatures.Describe(accepted)} need {needed}");
        }
    }

    /// <summary>
    /// max_virtqueue_pairs (§5.1.4): "The device MUST set max_virtqueue_pairs to between 1 and 0x8000 inclusive", and
    /// the queues it implies (2 per pair plus the control queue, §5.1.2) must exist (num_queues, §4.1.4.3).
    /// </summary>
    private int ReadMaxQueuePairs()
    {
        ushort pairs = _transport.ReadDeviceConfig16(VirtioNetConfig.MaxVirtqueuePairs);
        ushort queues = _transport.QueueCount;
        if (pairs < VirtioNetControl.MqVqPairsMin || pairs > VirtioNetControl.MqVqPairsMax || VirtioNetQueues.Control(pairs) >= queues)
        {
            throw new DeviceProtocolViolationException(Device.Address, "virtio-net device configuration max_virtqueue_pairs (§5.1.4)",
                $"max_virtqueue_pairs {pairs} with num_queues {queues}: allowed are {VirtioNetControl.MqVqPairsMin}..{VirtioNetControl.MqVqPairsMax}, with 2 queues per pair and the control queue present");
        }
        return pairs;
    }

    /// <summary>
    /// One MSI-X vector per receive queue, vector p for receiveq(p+1); configuration changes get none (§4.1.4.3
    /// msix_config stays NO_VECTOR after the reset). Enabled before the queues are configured so the device can
    /// map the vectors it is given (§4.1.5.1.2). Kept across <see cref="Reset"/>.
    /// </summary>
    private void EnableReceiveVectors(int pairs)
    {
        if (_interrupts is { } existing && existing.Count >= pairs) { return; }
        _interrupts?.Dispose();
        _interrupts = null;
        var info = Device.GetIrqInfo(IrqIndex.Msix);
        if (info.Count < pairs)
        {
            throw new VirtioNetException(Device.Address,
                $"receive interrupts need {pairs} MSI-X vector(s); the device offers {info.Count}");
        }
        _interrupts = Device.EnableInterrupts(IrqIndex.Msix, pairs);
        _transport.SetConfigVector(VirtioPciCommonConfig.NoVector);
    }

    private void SetUpQueues(int pairs, ushort? controlIndex)
    {
        int requested = _options.QueueSize;
        if (requested != 0 && (requested < 2 || !System.Numerics.BitOperations.IsPow2(requested)))
        {
            throw new ArgumentOutOfRangeException(nameof(VirtioNetOptions.QueueSize), requested, "queue size must be a power of two, at least 2");
        }
        bool reuse = _rx.Length == pairs;
        if (!reuse)
        {
            ReleaseQueues();
            _rx = new Queue[pairs];
            _tx = new Queue[pairs];
        }
        int poolNeed = 0;
        for (int p = 0; p < pairs; p++)
        {
            _rx[p] = SetUpQueue(reuse ? _rx[p] : null, (ushort)VirtioNetQueues.Receive(p), requested, "rx", _interrupts is null ? VirtioPciCommonConfig.NoVector : (ushort)p);
            _tx[p] = SetUpQueue(reuse ? _tx[p] : null, (ushort)VirtioNetQueues.Transmit(p), requested, "tx");
            poolNeed += 2 * _rx[p].Ring.Size + _tx[p].Ring.Size;
        }
        if (controlIndex is { } ci)
        {
            _control ??= new ControlQueue(this, SetUpQueue(null, ci, 64, "control"));
            if (reuse) { _control.Queue = SetUpQueue(_control.Queue, ci, 64, "control"); }
        }
        _refillThreshold = _options.RxRefillThreshold > 0 ? _options.RxRefillThreshold : Math.Max(1, Math.Min(32, RxQueueSize / 4));
        if (Pool is null)
        {
            Pool = new PacketPool(Device.Dma, _options.PoolSize > 0 ? _options.PoolSize : poolNeed, name: $"{Device.Address} packets");
        }
        // Only when some segmentation was agreed: on a device offering none (QEMU's hub), no DMA memory for nothing.
        int largeBuffers = _options.LargePoolSize > 0 ? _options.LargePoolSize : 32;
        if (_options.SegmentationOffload && LargePool is null && (_hostTso4 || _hostTso6 || _guestTso4 || _guestTso6))
        {
            LargePool = new PacketPool(Device.Dma, largeBuffers, PacketPool.MaxBufferSize, $"{Device.Address} large packets");
        }
        if (_mergeable && (_guestTso4 || _guestTso6))
        {
            JoinPool ??= new PacketPool(Device.Dma, largeBuffers, PacketPool.MaxBufferSize, $"{Device.Address} joined packets");
            // §5.1.6.3.1 with MRG_RXBUF: the device may need as many receive buffers as a 64 KiB packet fills, and
            // waits for them; a ring that never has that many posted (size less the refill threshold's slack) would
            // stall the queue for good.
            int needed = (HeaderSize + MaxGsoFrame + Pool.DataRoom + HeaderSize - 1) / (Pool.DataRoom + HeaderSize);
            int posted = RxQueueSize - (_refillThreshold - 1);
            if (posted < needed)
            {
                throw new VirtioNetException(Device.Address,
                    $"GUEST_TSO with {RxQueueSize}-entry receive rings: a 64 KiB packet needs {needed} receive buffers of {Pool.DataRoom} bytes, at most {posted} are posted at a time; ask for larger rings (QueueSize) or leave SegmentationOffload off");
            }
        }
    }

    private Queue SetUpQueue(Queue? existing, ushort index, int requested, string kind, ushort vector = VirtioPciCommonConfig.NoVector)
    {
        ushort max = _transport.SelectQueue(index);
        if (max == 0) { throw new VirtioNetException(Device.Address, $"virtqueue {index} ({kind}) is not available"); }
        // Queue sizes are powers of two (§2.7); take the largest that fits both the request and the device.
        int size = requested == 0 ? Math.Min((int)max, 1024) : Math.Min(requested, (int)max);
        size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)size + 1) / 2;
        Queue queue;
        if (existing is not null && existing.Ring.Size == size)
        {
            existing.Ring.ResetState();
            queue = existing;
        }
        else
        {
            existing?.Dispose();
            var layout = SplitQueueLayout.For(size);
            var memory = Device.Dma.Allocate((ulong)layout.TotalSize, new DmaAllocationOptions { Name = $"{Device.Address} {kind} queue {index}", Contiguous = true });
            queue = new Queue(index, new SplitVirtqueue(layout, memory.Pointer, memory.DeviceAddress, Device.Address, $"virtqueue {index} ({kind})"), memory);
            // The counters run from open, across resets that resize the ring.
            if (existing is not null) { queue.Packets = existing.Packets; queue.Bytes = existing.Bytes; queue.Dropped = existing.Dropped; }
        }
        // What each token leases, for the DMA audit: a receive token is an index into the device's pool, a transmit
        // token a packet handle of any pool; the control queue names its own buffer (ControlQueue.LeaseOf).
        queue.Ring.Leases ??= kind switch { "rx" => new ReceiveLeases(this), "tx" => TransmitLeases.Instance, _ => null };
        // Polling: ask for no interrupts (§2.7.7); ReceiveAsync lifts this only while it waits.
        queue.Ring.SetInterruptSuppression(true);
        queue.Doorbell = _transport.EnableQueue(index, queue.Ring, vector);
        if (vector != VirtioPciCommonConfig.NoVector && _transport.QueueVector(index) != vector)
        {
            // §4.1.5.1.2: the device reads back NO_VECTOR when it could not map the vector.
            throw new VirtioNetException(Device.Address, $"the device did not accept MSI-X vector {vector} for virtqueue {index} ({kind})");
        }
        return queue;
    }

    private void Refill(Queue rx, bool notify = true)
    {
        var ring = rx.Ring;
        var pool = Pool;
        uint length = (uint)(pool.DataRoom + HeaderSize);
        while (ring.FreeDescriptors > 0 && pool.TryAllocate(out var packet))
        {
            // One device-writable buffer: header in the headroom's last 12 bytes, the frame after it (§5.1.6.3).
            // The token is the buffer's index in the device's pool, which Receive turns back into the packet.
            ring.Enqueue(PacketPoolMarshal.GetDeviceAddress(pool, packet.Index) + HeaderOffset, length, VirtqDescriptorFlags.Write, packet.Index);
        }
        if (ring.Publish() && notify && ring.DeviceWantsNotification())
        {
            _transport.Notify(rx.Doorbell, rx.Index);
            _notifications++;
        }
    }

    // Entries are null when opening failed part way through setting the queues up (e.g. a queue_size out of range).
    private void ReleaseQueuedBuffers()
    {
        foreach (var q in _rx) { q?.ReleaseBuffers(Pool); }
        foreach (var q in _tx) { q?.ReleaseBuffers(null); }
    }

    private void ReleaseQueues()
    {
        foreach (var q in _rx) { q?.Dispose(); }
        foreach (var q in _tx) { q?.Dispose(); }
        _rx = [];
        _tx = [];
    }

    /// <summary>
    /// Resets the device, which stops its DMA (§4.1.4.3.2: after the reset completes the device uses no more
    /// buffers), then frees the rings, returns every queued packet to its pool, frees the pool if the device made
    /// it, and unmaps the BARs. When the reset does not complete, the device may still write the packets it holds:
    /// they stay out of the pool (counted in <see cref="PacketPool.InUseCount"/>) rather than go to a new owner.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        _telemetry?.Dispose();
        StopWatchingErrors();
        bool stopped = false;
        try
        {
            _transport.Reset();
            stopped = true;
        }
        catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            LogTeardownProblem(_logger, Device.Address, e.Message);
        }
        if (stopped) { ReleaseQueuedBuffers(); }
        else { LogBuffersKept(_logger, Device.Address); }
        ReleaseQueues();
        _interrupts?.Dispose();
        _control?.Dispose();
        _transport.Dispose();
        if (_ownsPool) { Pool?.Dispose(); }
        LargePool?.Dispose();
        JoinPool?.Dispose();
    }

    /// <summary>One virtqueue with its memory; the ring's tokens name the packets the device holds.</summary>
    /// <summary>A receive queue's leases: a token is an index into the device's current pool.</summary>
    private sealed class ReceiveLeases(VirtioNetDevice owner) : IVirtqueueLeases
    {
        public DmaWindow LeaseOf(int token) => PacketPoolMarshal.GetLeaseWindow(owner.Pool, token);
    }

    /// <summary>A transmit queue's leases: a token is a packet handle, of whichever pool.</summary>
    private sealed class TransmitLeases : IVirtqueueLeases
    {
        public static readonly TransmitLeases Instance = new();

        public DmaWindow LeaseOf(int token) => PacketPoolMarshal.GetLeaseWindowOfHandle(token);
    }

    private sealed class Queue(ushort index, SplitVirtqueue ring, DmaBuffer memory) : IDisposable
    {
        public ushort Index { get; } = index;
        public SplitVirtqueue Ring { get; } = ring;
        public DmaBuffer Memory { get; } = memory;
        public ulong Doorbell { get; set; }
        public int SkipBuffers { get; set; }
        /// <summary>
        /// Receive queues: the packet being joined from several buffers (MRG_RXBUF, §5.1.6.4): a buffer of the large
        /// pool (driver memory the device never sees), the bytes copied so far and the buffers still to come.
        /// </summary>
        public int JoinIndex { get; set; } = -1;
        public int JoinLength { get; set; }
        public int JoinRemaining { get; set; }
        public PacketPool? JoinPool { get; set; }
        /// <summary>Transmit queues: packets published since the last doorbell decision.</summary>
        public int Unannounced { get; set; }
        // Counters since open (kept across Reset, as the queue objects are): fields, as they change every burst.
        public long Packets;
        public long Bytes;
        public long Dropped;
        /// <summary>Transmit queues: packets refused because every descriptor was in use.</summary>
        public long RingFull;
        private readonly bool _receive = index % 2 == 0;   // receiveqN is even (§5.1.2)

        /// <summary>
        /// Returns the packets the device held to their pools: a receive queue's tokens are indexes into the
        /// device's pool, a transmit queue's are <see cref="PacketBuffer"/> handles (packets may come from any pool).
        /// </summary>
        public void ReleaseBuffers(PacketPool? receivePool)
        {
            if (_receive) { Ring.ReleaseInFlight(index => PacketPoolMarshal.FreeIndex(receivePool!, index)); }
            else { Ring.ReleaseInFlight(PacketPoolMarshal.FreeHandle); }
            SkipBuffers = 0;
            Unannounced = 0;
            DropJoin();
        }

        /// <summary>Gives the packet being joined back to the large pool.</summary>
        public void DropJoin()
        {
            if (JoinIndex >= 0 && JoinPool is { } pool) { PacketPoolMarshal.FreeIndex(pool, JoinIndex); }
            JoinIndex = -1;
            JoinLength = 0;
            JoinRemaining = 0;
        }

        public void Dispose() => Memory.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: virtio-net up, MAC {Mac}, features {Features}, {Pairs} queue pair(s), rx {RxSize} / tx {TxSize} entries")]
    private static partial void LogInitialized(ILogger logger, PciAddress device, string mac, string features, int pairs, int rxSize, int txSize);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the device did not finish its reset; the packet buffers it holds are kept out of the pool, as it may still write them")]
    private static partial void LogBuffersKept(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: dropped a received packet: NEEDS_CSUM with csum_start {Start}, csum_offset {Offset} in a {Length}-byte packet (§5.1.6.4.1)")]
    private static partial void LogBadChecksumHeader(ILogger logger, PciAddress device, int start, int offset, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: dropped a received packet: gso_type {GsoType}, gso_size {GsoSize} on a {Length}-byte packet that is not TCP of that kind, or not negotiated (§5.1.6.4)")]
    private static partial void LogBadSegmentHeader(ILogger logger, PciAddress device, byte gsoType, ushort gsoSize, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: while closing: {Problem}")]
    private static partial void LogTeardownProblem(ILogger logger, PciAddress device, string problem);
}
