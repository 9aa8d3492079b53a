using PhysicalAddress = System.Net.NetworkInformation.PhysicalAddress;

namespace Vfio.Net;

/// <summary>
/// One userspace NIC port, whatever its driver: queue pairs that receive and transmit bursts of
/// <see cref="PacketBuffer"/>s from a <see cref="PacketPool"/>, its MAC and link, counters, and RSS where the device
/// has it. The shape is DPDK's ethdev (rte_eth_rx_burst / rte_eth_tx_burst per queue, one lcore per queue), so a
/// forwarder written against it runs on any port a <see cref="NetDriverRegistry"/> opens.
/// </summary>
/// <remarks>
/// The data path is <see cref="RxBurst"/> and <see cref="TxBurst"/>: one interface call per burst, nothing
/// allocated on the managed heap. Buffer ownership is the pool's lease rule: a buffer <see cref="RxBurst"/> returns
/// is the caller's until it frees it or a <see cref="TxBurst"/> takes it; the ones <see cref="TxBurst"/> takes are
/// the driver's, freed to their own pool once sent. One thread per queue pair; the pool is single-threaded too.
/// </remarks>
public interface INetPort : IDisposable, IAsyncDisposable
{
    /// <summary>The PCI function underneath.</summary>
    PciAddress Address { get; }

    /// <summary>The driver's name, as registered (<see cref="NetDriver.Name"/>).</summary>
    string DriverName { get; }

    /// <summary>The pool receive buffers come from (shared with other ports when opened with <see cref="NetPortOptions.Pool"/>).</summary>
    PacketPool Pool { get; }

    /// <summary>Receive/transmit queue pairs in use; queue numbers run from 0 to this minus 1.</summary>
    int QueuePairCount { get; }

    /// <summary>The port's MAC address, or null when the device has none.</summary>
    PhysicalAddress? MacAddress { get; }

    /// <summary>The link as the device reports it now (a register or configuration read: not for every burst).</summary>
    NetLinkState Link { get; }

    /// <summary>
    /// Receives up to <c>packets.Length</c> packets from queue <paramref name="queue"/> into <paramref name="packets"/>;
    /// returns how many. The caller owns them (frees them, or hands them to a <see cref="TxBurst"/>).
    /// </summary>
    int RxBurst(int queue, Span<PacketBuffer> packets);

    /// <summary>
    /// Hands up to <c>packets.Length</c> packets to queue <paramref name="queue"/>; returns how many were taken, from
    /// the front. Taken packets are the driver's; the rest stay the caller's (retry or free them).
    /// </summary>
    int TxBurst(int queue, ReadOnlySpan<PacketBuffer> packets);

    /// <summary>Tells the device about packets <see cref="TxBurst"/> queued but held back (batched doorbells); a no-op for drivers that never hold any.</summary>
    void FlushTx(int queue);

    /// <summary>Frees what queue <paramref name="queue"/> has finished sending; returns how many taken packets it still holds.</summary>
    int TxInFlight(int queue);

    /// <summary>Counters since the port was opened, per direction, and per queue where the driver keeps them.</summary>
    NetPortStats GetStats();

    /// <summary>What receive-side scaling the port offers; <see cref="NetRssCapability.NotSupported"/> when it has none.</summary>
    NetRssCapability Rss { get; }

    /// <summary>
    /// Sets the RSS hash key and the redirection table (entry i: the receive queue for hash values whose low bits are
    /// i). Returns <see cref="NetRssResult.NotSupported"/> rather than throwing on a port without RSS.
    /// </summary>
    NetRssResult ConfigureRss(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> redirectionTable);

    /// <summary>
    /// The offloads the device does for this port (none unless the driver says otherwise). A packet too long for one
    /// of <see cref="Pool"/>'s buffers (a TSO packet) comes from <see cref="LargePool"/>.
    /// </summary>
    NetOffloads Offloads => NetOffloads.None;

    /// <summary>
    /// Buffers of up to 64 KiB of data for packets that <see cref="NetOffloads.TcpSegmentation"/> or
    /// <see cref="NetOffloads.TcpSegmentReceive"/> carry whole; null when the port has neither.
    /// </summary>
    PacketPool? LargePool => null;
}

/// <summary>A port's link.</summary>
/// <param name="IsUp">Whether frames can pass.</param>
/// <param name="SpeedMbps">Speed in Mb/s, when the device reports one.</param>
/// <param name="FullDuplex">Duplex, when the device reports it.</param>
public readonly record struct NetLinkState(bool IsUp, int? SpeedMbps = null, bool? FullDuplex = null);

/// <summary>Counters of one direction.</summary>
/// <param name="Packets">Packets received, or taken for transmission.</param>
/// <param name="Bytes">Their bytes (frame without FCS, without any driver header).</param>
/// <param name="Drops">Packets the driver or device dropped (no buffer, spanning buffers, too short).</param>
/// <param name="Errors">Packets the device reported in error (CRC, length, descriptor errors), where it reports them.</param>
public readonly record struct NetCounters(long Packets, long Bytes, long Drops, long Errors)
{
    /// <summary>Both added up.</summary>
    public static NetCounters operator +(NetCounters a, NetCounters b) =>
        new(a.Packets + b.Packets, a.Bytes + b.Bytes, a.Drops + b.Drops, a.Errors + b.Errors);
}

/// <summary>The counters of one queue pair.</summary>
/// <param name="Queue">The queue pair's number.</param>
/// <param name="Rx">Its receive queue.</param>
/// <param name="Tx">Its transmit queue.</param>
public readonly record struct NetQueueStats(int Queue, NetCounters Rx, NetCounters Tx);

/// <summary>A port's counters.</summary>
/// <param name="Rx">Receive, over every queue.</param>
/// <param name="Tx">Transmit, over every queue.</param>
/// <param name="Queues">Per queue pair, when the driver counts per queue; empty otherwise.</param>
public sealed record NetPortStats(NetCounters Rx, NetCounters Tx, IReadOnlyList<NetQueueStats> Queues)
{
    /// <summary>Packets transmit bursts did not take because the transmit ring was full (the caller kept them), over every queue; 0 where the driver does not count them.</summary>
    public long TxRingFull { get; init; }

    /// <summary>
    /// Notifications the driver wrote to the device (virtio queue notifications, NIC tail-register writes), over
    /// every queue; what an emulated device pays a trap for. 0 where the driver does not count them.
    /// </summary>
    public long Doorbells { get; init; }

    /// <summary>Per-port totals from per-queue counters.</summary>
    public static NetPortStats FromQueues(IReadOnlyList<NetQueueStats> queues)
    {
        ArgumentNullException.ThrowIfNull(queues);
        NetCounters rx = default, tx = default;
        foreach (var q in queues) { rx += q.Rx; tx += q.Tx; }
        return new NetPortStats(rx, tx, queues);
    }
}

/// <summary>Receive-side scaling a port offers.</summary>
/// <param name="IsSupported">False: the port spreads nothing (every flow lands on queue 0).</param>
/// <param name="KeySize">Hash key bytes (40 for the Toeplitz key of Intel NICs and virtio's RSS).</param>
/// <param name="TableSize">Redirection table entries (128 on the 82576).</param>
/// <param name="Hash">The hash function's name, e.g. "toeplitz".</param>
public readonly record struct NetRssCapability(bool IsSupported, int KeySize, int TableSize, string? Hash)
{
    /// <summary>No RSS.</summary>
    public static NetRssCapability NotSupported => default;

    /// <summary>Checks a key and table against this capability and <paramref name="queues"/> receive queues, as <see cref="INetPort.ConfigureRss"/> must before touching the device.</summary>
    public NetRssResult Validate(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> redirectionTable, int queues)
    {
        if (!IsSupported) { return NetRssResult.NotSupported; }
        if (key.Length != KeySize) { return NetRssResult.BadKeySize; }
        if (redirectionTable.Length != TableSize) { return NetRssResult.BadTableSize; }
        foreach (var q in redirectionTable)
        {
            if (q >= queues) { return NetRssResult.BadQueue; }
        }
        return NetRssResult.Applied;
    }
}

/// <summary>What <see cref="INetPort.ConfigureRss"/> did.</summary>
public enum NetRssResult
{
    /// <summary>The key and table are in effect.</summary>
    Applied,
    /// <summary>The port has no RSS; nothing changed.</summary>
    NotSupported,
    /// <summary>The key is not <see cref="NetRssCapability.KeySize"/> bytes; nothing changed.</summary>
    BadKeySize,
    /// <summary>The table is not <see cref="NetRssCapability.TableSize"/> entries; nothing changed.</summary>
    BadTableSize,
    /// <summary>A table entry names a queue the port does not use; nothing changed.</summary>
    BadQueue,
}

/// <summary>
/// Per-packet offload state in the pool beside the length: what the receiving device checked, what the transmitting
/// one is asked to do. Drivers that offload nothing leave it <see cref="None"/>.
/// </summary>
[Flags]
public enum PacketFlags : ushort
{
    /// <summary>Nothing checked, nothing asked.</summary>
    None = 0,
    /// <summary>Receive: the IPv4 header checksum was checked and is right.</summary>
    IpChecksumGood = 1 << 0,
    /// <summary>Receive: the IPv4 header checksum was checked and is wrong.</summary>
    IpChecksumBad = 1 << 1,
    /// <summary>Receive: the TCP/UDP checksum was checked and is right.</summary>
    L4ChecksumGood = 1 << 2,
    /// <summary>Receive: the TCP/UDP checksum was checked and is wrong.</summary>
    L4ChecksumBad = 1 << 3,
    /// <summary>Receive: <see cref="PacketBuffer.RssHash"/> holds the device's hash.</summary>
    RssHash = 1 << 4,
    /// <summary>
    /// Receive: the device joined several TCP segments of one flow into this packet (virtio's GUEST_TSO4/6, a NIC's
    /// LRO); <see cref="PacketBuffer.SegmentSize"/> holds the payload bytes each of them carried (the MSS).
    /// </summary>
    TcpSegments = 1 << 5,
    /// <summary>Transmit: insert the IPv4 header checksum.</summary>
    TxIpChecksum = 1 << 8,
    /// <summary>Transmit: insert the TCP/UDP checksum.</summary>
    TxL4Checksum = 1 << 9,
    /// <summary>
    /// Transmit: the packet is one TCP packet longer than the wire takes; cut it into segments of at most
    /// <see cref="PacketBuffer.SegmentSize"/> payload bytes, each with its own IP and TCP checksums (TSO). A port
    /// without <see cref="NetOffloads.TcpSegmentation"/> cuts it in software.
    /// </summary>
    TxTcpSegmentation = 1 << 10,
}

/// <summary>What a port's device does for the driver, as negotiated when it was opened (DPDK's offload capabilities).</summary>
[Flags]
public enum NetOffloads
{
    /// <summary>Nothing: every checksum and every segment is the driver's or the application's work.</summary>
    None = 0,
    /// <summary>The device inserts TCP/UDP checksums asked with <see cref="PacketFlags.TxL4Checksum"/>.</summary>
    TxChecksum = 1 << 0,
    /// <summary>The device checks received checksums and reports them in <see cref="PacketBuffer.Flags"/>.</summary>
    RxChecksum = 1 << 1,
    /// <summary>The device cuts <see cref="PacketFlags.TxTcpSegmentation"/> packets itself (TSO over IPv4 and IPv6).</summary>
    TcpSegmentation = 1 << 2,
    /// <summary>The device may hand over joined TCP packets (<see cref="PacketFlags.TcpSegments"/>), up to 64 KiB.</summary>
    TcpSegmentReceive = 1 << 3,
}
