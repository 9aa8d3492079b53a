using Microsoft.Extensions.Logging;
using Vfio.Net;

namespace Vfio.VirtioNet;

/// <summary>How to bring up a virtio-net device.</summary>
public sealed record VirtioNetOptions
{
    /// <summary>Entries per virtqueue; 0 takes the device's maximum, capped at 1024. Must be a power of two.</summary>
    public int QueueSize { get; init; }

    /// <summary>
    /// Receive/transmit queue pairs to use. More than one needs a device offering VIRTIO_NET_F_MQ (and the control
    /// queue to switch them on, virtio 1.2 §5.1.6.5.5); it is capped at the device's max_virtqueue_pairs.
    /// </summary>
    public int QueuePairs { get; init; } = 1;

    /// <summary>
    /// The packet buffers to receive into. Share one pool between devices that forward to each other (they must
    /// share a DMA address space: open the second device into the first one's VFIO container). Null: the device
    /// creates its own pool of <see cref="PoolSize"/> buffers.
    /// </summary>
    public PacketPool? Pool { get; init; }

    /// <summary>Buffers of the device's own pool; 0 picks enough for full receive rings plus as many again.</summary>
    public int PoolSize { get; init; }

    /// <summary>Accept VIRTIO_NET_F_MRG_RXBUF when offered (as DPDK does). Packets spanning several buffers are dropped and counted.</summary>
    public bool MergeableRxBuffers { get; init; } = true;

    /// <summary>
    /// Accept TCP segmentation offload when offered (virtio 1.2 §5.1.6.2, §5.1.6.4): VIRTIO_NET_F_HOST_TSO4/6 (a
    /// packet flagged <see cref="PacketFlags.TxTcpSegmentation"/> goes out whole with gso_type, hdr_len and gso_size;
    /// the device cuts it) and, with MRG_RXBUF, VIRTIO_NET_F_GUEST_TSO4/6 (the device may hand over joined packets of
    /// up to 64 KiB across several receive buffers; the driver copies them into one buffer of
    /// <see cref="VirtioNetDevice.JoinPool"/> and flags them <see cref="PacketFlags.TcpSegments"/>). Implies
    /// <see cref="ChecksumOffload"/>, which the spec requires with them (§5.1.3.1). Without HOST_TSO the driver cuts
    /// flagged packets itself. False (default): none negotiated, and received packets spanning buffers are dropped.
    /// </summary>
    public bool SegmentationOffload { get; init; }

    /// <summary>Buffers of <see cref="VirtioNetDevice.LargePool"/> and of <see cref="VirtioNetDevice.JoinPool"/> each when <see cref="SegmentationOffload"/> is on; 0 picks 32.</summary>
    public int LargePoolSize { get; init; }

    /// <summary>
    /// Accept VIRTIO_NET_F_CSUM and VIRTIO_NET_F_GUEST_CSUM when offered (virtio 1.2 §5.1.6.2, §5.1.6.4). With CSUM, a
    /// transmitted packet flagged <see cref="PacketFlags.TxL4Checksum"/> goes out with VIRTIO_NET_HDR_F_NEEDS_CSUM and
    /// the device fills its TCP/UDP checksum in; without it (option off or not offered) the driver computes that
    /// checksum in software, so the flag always yields a correct checksum. With GUEST_CSUM, received packets the device
    /// marked VIRTIO_NET_HDR_F_DATA_VALID, or left with a partial checksum (NEEDS_CSUM, which the driver completes),
    /// carry <see cref="PacketFlags.L4ChecksumGood"/>. False (default): nothing negotiated, nothing reported.
    /// </summary>
    public bool ChecksumOffload { get; init; }

    /// <summary>Receive buffers are refilled once this many descriptors are free (DPDK's rx_free_thresh); 0 picks min(32, size / 4).</summary>
    public int RxRefillThreshold { get; init; }

    /// <summary>
    /// Packets published on a transmit queue before the driver rings its doorbell (when the device wants doorbells
    /// at all, §2.7.10). 1 (default): every <see cref="VirtioNetDevice.Transmit"/> that adds packets rings, as DPDK
    /// does. Larger values batch doorbells, which are expensive traps on emulated devices; the caller must then call
    /// <see cref="VirtioNetDevice.FlushTransmit"/> whenever it has nothing more to send, or packets wait.
    /// </summary>
    public int TxDoorbellThreshold { get; init; } = 1;

    /// <summary>
    /// Receive interrupts: one MSI-X vector per receive queue (virtio 1.2 §4.1.5.1.2), which makes
    /// <see cref="VirtioNetDevice.ReceiveAsync"/> available. The device still runs by polling while traffic flows:
    /// the queues keep VIRTQ_AVAIL_F_NO_INTERRUPT set and clear it only while a <c>ReceiveAsync</c> waits on an
    /// empty queue. False (default): polling only, no vectors allocated.
    /// </summary>
    public bool ReceiveInterrupts { get; init; }

    /// <summary>Clock for reset and control-queue timeouts.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where logs go; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>Packet counters of one device, summed over its queues.</summary>
/// <param name="RxPackets">Packets received.</param>
/// <param name="RxBytes">Bytes received (without the virtio-net header).</param>
/// <param name="RxDropped">Received packets dropped by the driver (spanning several buffers, shorter than the header, or a partial checksum whose csum_start/csum_offset lie outside the packet).</param>
/// <param name="TxPackets">Packets handed to the device.</param>
/// <param name="TxBytes">Bytes handed to the device.</param>
/// <param name="Notifications">Doorbell writes (kicks); fewer than bursts when the device suppresses them.</param>
public readonly record struct VirtioNetStats(long RxPackets, long RxBytes, long RxDropped, long TxPackets, long TxBytes, long Notifications);
