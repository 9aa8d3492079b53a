namespace Vfio.Emulation.VirtioNet;

/// <summary>
/// Ways a <see cref="VirtioNetPort"/> breaks the device's side of the protocol on purpose, to test that a driver
/// validates what a device writes (virtio 1.2 §2.7.8 used ring, §4.1.4 capabilities, §5.1.4 device configuration)
/// instead of trusting it. Set with <see cref="VirtioNetPort.Hostile"/>; <see cref="VirtioNetPort.HostileContinuously"/>
/// says whether once (the next time the mode applies) or every time; <see cref="VirtioNetPort.HostileQueue"/> picks a
/// queue. The port never misbehaves in a way that makes it write a driver buffer it was not given.
/// </summary>
public enum VirtioNetHostileMode
{
    /// <summary>Follows the specification.</summary>
    None,

    /// <summary>After a used entry, the same id again: a chain returned twice.</summary>
    DuplicateUsedId,

    /// <summary>
    /// A used entry whose id the driver did not make available: a descriptor in range that is neither waiting in the
    /// available ring nor the chain being returned (out of range when every descriptor is waiting). The real chain
    /// stays with the device.
    /// </summary>
    UnknownUsedId,

    /// <summary>A used entry whose id is at least the queue size.</summary>
    OutOfRangeUsedId,

    /// <summary>A used len one byte past what the chain offered (its writable part; a transmit chain's whole length).</summary>
    UsedLengthPastBuffer,

    /// <summary>used idx advanced by the queue size plus one past the entry written.</summary>
    UsedIndexJump,

    /// <summary>
    /// Before returning a chain, its head descriptor's addr, len, flags and next are rewritten (next to a loop): a
    /// driver keeping its free list or chain links in the table would hand out buffers it does not own.
    /// </summary>
    RewriteDescriptors,

    /// <summary>A received packet's virtio_net_hdr says num_buffers 0 (§5.1.6.4: at least 1).</summary>
    NumBuffersOutOfRange,

    /// <summary>max_virtqueue_pairs reads 0x8001 (§5.1.4: 1 to 0x8000).</summary>
    MaxQueuePairsOutOfRange,

    /// <summary>queue_size reads 0xFFFF (a split virtqueue has at most 32768 entries, §2.7).</summary>
    QueueSizeOutOfRange,

    /// <summary>queue_notify_off reads 0xFFFF, placing the doorbell far outside the notification structure (§4.1.4.4).</summary>
    NotifyOffsetOutOfRange,

    /// <summary>
    /// The device configuration capability describes a structure running past the end of BAR4 (§4.1.4). Capabilities
    /// are fixed at construction: give this mode to the port's constructor.
    /// </summary>
    CapabilityOutsideBar,

    /// <summary>
    /// To a driver that negotiated VIRTIO_NET_F_GUEST_CSUM, a received packet's virtio_net_hdr says NEEDS_CSUM with
    /// csum_start one byte past the packet's end (§5.1.6.4.1: the checksum field lies inside the packet).
    /// </summary>
    ChecksumStartPastPacket,

    /// <summary>As <see cref="ChecksumStartPastPacket"/>, with csum_start 14 and csum_offset the packet's length.</summary>
    ChecksumOffsetPastPacket,

    /// <summary>
    /// A received packet's virtio_net_hdr says gso_type TCPV4 with gso_size 1448 whatever the packet is and whatever
    /// the driver negotiated (§5.1.6.4: GSO types only with GUEST_TSO4/6, on packets of that kind).
    /// </summary>
    UnnegotiatedSegmentation,

    /// <summary>
    /// Received packets' virtio_net_hdr get one of several wrong values, picked by a generator seeded with
    /// <see cref="VirtioNetPort.HostileSeed"/>: num_buffers one to three more or fewer than the buffers used, a random
    /// gso_type, a TCPV4/TCPV6 gso_type with a random gso_size (0 included), random flags and checksum fields, or all
    /// of the header but num_buffers random.
    /// </summary>
    ScrambledReceiveHeaders,

    /// <summary>
    /// A received packet's num_buffers is one more than the buffers it filled (§5.1.6.4), so a driver joining it waits
    /// for a buffer that will hold the next packet's header.
    /// </summary>
    NumBuffersOneTooMany,
}
