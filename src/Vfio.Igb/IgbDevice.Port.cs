using System.Runtime.CompilerServices;
using Vfio.Devices;
using Vfio.Net;

namespace Vfio.Igb;

/// <summary>
/// The igb driver as the NIC driver registry sees it: its name, the PCI IDs it takes, and how a port opens from the
/// common <see cref="NetPortOptions"/>.
/// </summary>
public static class IgbDriver
{
    /// <summary>The driver's name (Linux's and DPDK's name for the family).</summary>
    public const string Name = "igb";

    /// <summary>
    /// The 82576 physical functions with a copper PHY (datasheet §1.6; Linux e1000_hw.h): 10C9 82576 (QEMU's
    /// <c>-device igb</c>), 10E8 and 1526 quad copper, 150A 82576NS. The link is brought up through the internal
    /// copper PHY over MDIC (§8.2.7); the fibre and SerDes parts (10E6, 10E7, 150D, 1518) bring their link up
    /// through the PCS instead, which the driver does not program, so they are not registered.
    /// </summary>
    public static IReadOnlyList<ushort> DeviceIds { get; } = [0x10C9, 0x10E8, 0x1526, 0x150A];

    /// <summary>The registration: <see cref="DeviceIds"/> under Intel's vendor ID.</summary>
    public static NetDriver Registration { get; } = new(Name,
        [.. DeviceIds.Select(id => new PciId(IgbDevice.IntelVendorId, id))],
        (device, options) => Open(device, options));

    /// <summary>
    /// Opens <paramref name="device"/> with the common port options: queue pairs capped at the 16 the 82576 has,
    /// <see cref="NetPortOptions.QueueSize"/> as the ring size (0: 512), and a pool of its own, when none is given,
    /// that fills the receive and transmit rings of this port and of a second port forwarding into it. The port
    /// accepts every unicast and multicast frame (RCTL.UPE/MPE, §8.10.1), as testpmd opens its ports and as QEMU's
    /// virtio-net starts: an io-forwarder passes frames on unchanged, so their destination is the other port's MAC.
    /// </summary>
    /// <exception cref="IgbException">Not an 82576, or its bring-up failed.</exception>
    public static IgbDevice Open(IPciDevice device, NetPortOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int pairs = Math.Clamp(options.QueuePairs, 1, IgbReg.MaxQueues);
        int ringSize = options.QueueSize > 0 ? options.QueueSize : new IgbOptions().RingSize;
        return IgbDevice.Open(device, new IgbOptions
        {
            QueuePairs = pairs,
            RingSize = ringSize,
            Pool = options.Pool,
            PoolSize = options.PoolSize > 0 ? options.PoolSize : PoolSizeFor(pairs, ringSize),
            Promiscuous = true,
            AllMulticast = true,
            TimeProvider = options.TimeProvider,
            LoggerFactory = options.LoggerFactory,
        });
    }

    /// <summary>
    /// Buffers of a port's own pool: two ports' receive and transmit rings, all full (what <c>vfio net fwd</c> needs
    /// when the second port receives into the first one's pool), and as many again for bursts in the application's
    /// hands. lab/bench-net-igb.sh gives testpmd the same number of mbufs, which its per-core mempool caches and
    /// lazily freed transmit rings need: with only the rings' worth it starved (RX-nombuf) in the first lab run.
    /// </summary>
    public static int PoolSizeFor(int queuePairs, int ringSize) => 8 * queuePairs * ringSize;
}

// INetPort over the driver's own methods: one interface call per burst on top of Receive/Transmit.
public sealed partial class IgbDevice : INetPort
{
    PciAddress INetPort.Address => Device.Address;

    string INetPort.DriverName => IgbDriver.Name;

    System.Net.NetworkInformation.PhysicalAddress? INetPort.MacAddress => MacAddress;

    /// <summary>STATUS (§8.2.2): LU, and while it is up the resolved SPEED and FD.</summary>
    NetLinkState INetPort.Link => ReadLinkState();

    private NetLinkState ReadLinkState()
    {
        uint status = Bar.Read32(IgbReg.Status);
        if ((status & IgbStatus.LinkUp) == 0) { return new NetLinkState(false); }
        int speed = ((status & IgbStatus.SpeedMask) >> IgbStatus.SpeedShift) switch { 0 => 10, 1 => 100, _ => 1000 };
        return new NetLinkState(true, speed, (status & IgbStatus.FullDuplex) != 0);
    }

    int INetPort.RxBurst(int queue, Span<PacketBuffer> packets) => Receive(packets, [], queue);

    /// <summary>
    /// Packets flagged <see cref="PacketFlags.TxIpChecksum"/> or <see cref="PacketFlags.TxL4Checksum"/> get those
    /// checksums inserted by the device (§7.2.5): the frame's headers are located (<see cref="TransportHeader"/>), the
    /// IPv4 checksum field is zeroed and the TCP/UDP one seeded with the pseudo-header sum, and each run of consecutive
    /// packets that need the same context (checksums, MACLEN, IPLEN, IPv4 or IPv6) goes out as one
    /// <see cref="Transmit(ReadOnlySpan{PacketBuffer}, int, IgbTxOffload)"/>, so a burst of one flow costs one tail
    /// write and at most one context descriptor. A burst without those flags is one call, as before. A flagged frame
    /// that is not TCP/UDP over IPv4/IPv6 leaves unchanged (as the virtio-net driver sends it).
    /// </summary>
    int INetPort.TxBurst(int queue, ReadOnlySpan<PacketBuffer> packets)
    {
        const PacketFlags Wanted = PacketFlags.TxIpChecksum | PacketFlags.TxL4Checksum;
        int first = 0;
        while (first < packets.Length && (packets[first].Flags & Wanted) == 0) { first++; }
        if (first == packets.Length) { return Transmit(packets, queue, default); }
        // All lengths first: a bad packet in a later run must not throw after earlier runs went to the device, which
        // the caller, seeing the exception, would still think it owns. The runs then go out unchecked.
        ValidateTransmitLengths(packets);
        int sent = 0;
        int runStart = 0;
        var runOffload = PrepareOffload(packets[0]);
        for (int i = 1; i < packets.Length; i++)
        {
            var offload = PrepareOffload(packets[i]);
            if (offload == runOffload) { continue; }
            int n = TransmitValidated(packets[runStart..i], queue, runOffload);
            sent += n;
            if (n < i - runStart) { return sent; }   // the ring is full: the rest stays the caller's
            runStart = i;
            runOffload = offload;
        }
        return sent + TransmitValidated(packets[runStart..], queue, runOffload);
    }

    /// <summary>The context a packet needs, its checksum fields prepared for it; none when it asks for nothing or cannot be parsed.</summary>
    private static IgbTxOffload PrepareOffload(PacketBuffer packet)
    {
        var flags = packet.Flags & (PacketFlags.TxIpChecksum | PacketFlags.TxL4Checksum);
        if (flags == 0) { return IgbTxOffload.None; }
        var frame = packet.Data;
        // TryLocate's frames fit the context's fields: MACLEN 14 or 18, IPLEN at most 60 (IHL) or 40 (IPv6), §7.2.3.2.3.
        if (!TransportHeader.TryLocate(frame, out var l4)) { return IgbTxOffload.None; }
        var checksums = IgbTxChecksum.None;
        if ((flags & PacketFlags.TxIpChecksum) != 0 && l4.IsIpv4)
        {
            // RFC 791 §3.1: the header checksum is computed with its own field zero.
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame[(l4.IpStart + 10)..], 0);
            checksums |= IgbTxChecksum.Ipv4;
        }
        if ((flags & PacketFlags.TxL4Checksum) != 0)
        {
            // The device sums from the transport header (TUCSS) to the end and stores the complement at TUCSO; the
            // field holds the pseudo-header sum, as the Linux stack leaves it for CHECKSUM_PARTIAL.
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame[(l4.Start + l4.ChecksumOffset)..], InternetChecksum.Fold(l4.PseudoHeaderSum));
            checksums |= l4.IsTcp ? IgbTxChecksum.Tcp : IgbTxChecksum.Udp;
        }
        return checksums == IgbTxChecksum.None ? IgbTxOffload.None : new IgbTxOffload(checksums, l4.IpStart, l4.IpHeaderLength, Ipv6: !l4.IsIpv4);
    }

    void INetPort.FlushTx(int queue) => FlushTransmit(queue);

    int INetPort.TxInFlight(int queue) => TransmitInFlight(queue);

    /// <summary>
    /// Per queue pair, as the driver counted: receive errors are the frames the device flagged RXE (dropped by the
    /// driver). The device's drop counters (MPC, RNBC) are port-wide and only in <see cref="ReadHardwareStats"/>.
    /// </summary>
    NetPortStats INetPort.GetStats()
    {
        var rx = _rx;
        var tx = _tx;
        var queues = new NetQueueStats[rx.Length];
        for (int q = 0; q < queues.Length; q++)
        {
            queues[q] = new NetQueueStats(q, new NetCounters(rx[q].Packets, rx[q].Bytes, 0, rx[q].Errors),
                new NetCounters(tx[q].Packets, tx[q].Bytes, 0, 0));
        }
        return NetPortStats.FromQueues(queues) with { Doorbells = _doorbells, TxRingFull = _txRingFull };
    }

    /// <summary>Toeplitz with a 40-byte key and a 128-entry table (§7.1.2.8) once the port runs two queue pairs or more.</summary>
    NetRssCapability INetPort.Rss => QueuePairCount > 1
        ? new NetRssCapability(true, IgbRssConfiguration.KeyLength, IgbRssConfiguration.TableLength, "toeplitz")
        : NetRssCapability.NotSupported;

    NetRssResult INetPort.ConfigureRss(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> redirectionTable)
    {
        var result = ((INetPort)this).Rss.Validate(key, redirectionTable, QueuePairCount);
        if (result != NetRssResult.Applied) { return result; }
        var table = new byte[redirectionTable.Length];
        for (int i = 0; i < table.Length; i++) { table[i] = (byte)redirectionTable[i]; }
        SetRss(new IgbRssConfiguration(key, table));
        return NetRssResult.Applied;
    }

    /// <summary>As <see cref="Dispose"/>: stopping the device is a few register polls.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// What the write-back said about a received packet, in the pool's per-packet flags (the port abstraction's
    /// form): a checksum the device checked is good or bad (IPCS/IPE, L4I/L4E, §7.1.5.2), and the RSS hash.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SetPacketFlags(PacketPool pool, PacketBuffer packet, in IgbRxMetadata metadata)
    {
        var f = metadata.Flags;
        var flags = PacketFlags.None;
        if ((f & IgbRxFlags.IpChecksumChecked) != 0)
        {
            flags |= (f & IgbRxFlags.IpChecksumError) != 0 ? PacketFlags.IpChecksumBad : PacketFlags.IpChecksumGood;
        }
        if ((f & IgbRxFlags.L4ChecksumChecked) != 0)
        {
            flags |= (f & IgbRxFlags.L4ChecksumError) != 0 ? PacketFlags.L4ChecksumBad : PacketFlags.L4ChecksumGood;
        }
        if ((f & IgbRxFlags.RssHashValid) != 0)
        {
            flags |= PacketFlags.RssHash;
            PacketPoolMarshal.GetRssHash(pool, packet.Index) = metadata.RssHash;
        }
        PacketPoolMarshal.GetFlags(pool, packet.Index) = flags;
    }
}
