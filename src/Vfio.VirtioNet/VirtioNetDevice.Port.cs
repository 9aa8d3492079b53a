using Vfio.Devices;
using Vfio.Net;
using Vfio.Spec.Virtio;

namespace Vfio.VirtioNet;

/// <summary>
/// The virtio-net driver as the NIC driver registry sees it: its name, the IDs it takes, and how a port opens from
/// <see cref="NetPortOptions"/>.
/// </summary>
public static class VirtioNetDriver
{
    /// <summary>The driver's name.</summary>
    public const string Name = "virtio-net";

    /// <summary>
    /// The registration: modern virtio-net (1af4:1041, virtio 1.2 §4.1.2.1) and transitional (1af4:1000), which
    /// <see cref="VirtioNetDevice.Open"/> refuses with the reason (it needs disable-legacy=on), rather than the
    /// registry calling it unknown.
    /// </summary>
    public static NetDriver Registration { get; } = new(Name,
        [new PciId(VirtioPciIds.Vendor, VirtioPciIds.ModernNet), new PciId(VirtioPciIds.Vendor, VirtioPciIds.TransitionalNet)],
        (device, options) => Open(device, options));

    /// <summary>Opens <paramref name="device"/> with the common port options.</summary>
    public static VirtioNetDevice Open(IPciDevice device, NetPortOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return VirtioNetDevice.Open(device, new VirtioNetOptions
        {
            QueuePairs = options.QueuePairs,
            QueueSize = options.QueueSize,
            Pool = options.Pool,
            PoolSize = options.PoolSize,
            ChecksumOffload = options.ChecksumOffload,
            SegmentationOffload = options.SegmentationOffload,
            TimeProvider = options.TimeProvider,
            LoggerFactory = options.LoggerFactory,
        });
    }
}

// INetPort over the driver's own methods: one call per burst on top of Receive/Transmit, nothing per packet.
public sealed partial class VirtioNetDevice : INetPort
{
    PciAddress INetPort.Address => Device.Address;

    string INetPort.DriverName => VirtioNetDriver.Name;

    /// <summary>VIRTIO_NET_S_LINK_UP (§5.1.4); no speed or duplex, as VIRTIO_NET_F_SPEED_DUPLEX is not negotiated.</summary>
    NetLinkState INetPort.Link => new(IsLinkUp);

    int INetPort.RxBurst(int queue, Span<PacketBuffer> packets) => Receive(packets, queue);

    int INetPort.TxBurst(int queue, ReadOnlySpan<PacketBuffer> packets) => Transmit(packets, queue);

    void INetPort.FlushTx(int queue) => FlushTransmit(queue);

    int INetPort.TxInFlight(int queue) => TransmitInFlight(queue);

    /// <summary>Per queue pair; receive drops are the packets the driver dropped, and virtio reports no errors. Also what the "Vfio.Net" meter reads.</summary>
    NetPortStats INetPort.GetStats()
    {
        var queues = new NetQueueStats[_rx.Length];
        for (int q = 0; q < queues.Length; q++)
        {
            queues[q] = new NetQueueStats(q, new NetCounters(_rx[q].Packets, _rx[q].Bytes, _rx[q].Dropped, 0),
                new NetCounters(_tx[q].Packets, _tx[q].Bytes, 0, 0));
        }
        long ringFull = 0;
        foreach (var tx in _tx) { ringFull += tx.RingFull; }
        return NetPortStats.FromQueues(queues) with { TxRingFull = ringFull, Doorbells = _notifications };
    }

    /// <summary>With VIRTIO_NET_F_RSS negotiated (§5.1.6.5.7): Toeplitz, a 40-byte key and the device's table size; otherwise none.</summary>
    NetRssCapability INetPort.Rss => _rssCapability;

    /// <summary>What CSUM, GUEST_CSUM, HOST_TSO4+6 and GUEST_TSO4+6 negotiated give (§5.1.3).</summary>
    public NetOffloads Offloads { get; private set; }

    NetRssResult INetPort.ConfigureRss(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> redirectionTable) => ConfigureRss(key, redirectionTable);

    /// <summary>As <see cref="Dispose"/>: the reset it waits for is a register poll.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
