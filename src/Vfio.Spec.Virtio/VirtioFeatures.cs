namespace Vfio.Spec.Virtio;

/// <summary>
/// Feature bits of virtio 1.2 used here: device-independent ones (§6 "Reserved Feature Bits") and virtio-net ones
/// (§5.1.3 "Feature bits").
/// Each constant is the bit's mask in the 64-bit feature word.
/// </summary>
public static class VirtioFeatures
{
    /// <summary>Bit 0, VIRTIO_NET_F_CSUM: the device handles packets with partial checksum.</summary>
    public const ulong NetCsum = 1UL << 0;
    /// <summary>Bit 1, VIRTIO_NET_F_GUEST_CSUM: the driver handles packets with partial checksum.</summary>
    public const ulong NetGuestCsum = 1UL << 1;
    /// <summary>Bit 3, VIRTIO_NET_F_MTU: the device reports its maximum MTU in config space.</summary>
    public const ulong NetMtu = 1UL << 3;
    /// <summary>Bit 5, VIRTIO_NET_F_MAC: the device has a MAC address in config space.</summary>
    public const ulong NetMac = 1UL << 5;
    /// <summary>Bit 7, VIRTIO_NET_F_GUEST_TSO4: the driver takes received TCP/IPv4 packets the device joined (gso_type TCPV4, §5.1.6.4).</summary>
    public const ulong NetGuestTso4 = 1UL << 7;
    /// <summary>Bit 8, VIRTIO_NET_F_GUEST_TSO6: as GUEST_TSO4 for TCP/IPv6 (gso_type TCPV6).</summary>
    public const ulong NetGuestTso6 = 1UL << 8;
    /// <summary>Bit 11, VIRTIO_NET_F_HOST_TSO4: the device cuts transmitted TCP/IPv4 packets into segments (gso_type TCPV4, §5.1.6.2).</summary>
    public const ulong NetHostTso4 = 1UL << 11;
    /// <summary>Bit 12, VIRTIO_NET_F_HOST_TSO6: as HOST_TSO4 for TCP/IPv6 (gso_type TCPV6).</summary>
    public const ulong NetHostTso6 = 1UL << 12;
    /// <summary>Bit 15, VIRTIO_NET_F_MRG_RXBUF: a received packet may span several buffers (num_buffers in the header).</summary>
    public const ulong NetMergeRxBuffers = 1UL << 15;
    /// <summary>Bit 16, VIRTIO_NET_F_STATUS: the config space's status field (link up) is valid.</summary>
    public const ulong NetStatus = 1UL << 16;
    /// <summary>Bit 17, VIRTIO_NET_F_CTRL_VQ: a control virtqueue exists.</summary>
    public const ulong NetControlQueue = 1UL << 17;
    /// <summary>Bit 22, VIRTIO_NET_F_MQ: several receive/transmit queue pairs (needs the control queue).</summary>
    public const ulong NetMultiQueue = 1UL << 22;
    /// <summary>Bit 28, VIRTIO_F_INDIRECT_DESC.</summary>
    public const ulong RingIndirectDesc = 1UL << 28;
    /// <summary>Bit 29, VIRTIO_F_EVENT_IDX: used_event/avail_event notification suppression.</summary>
    public const ulong RingEventIndex = 1UL << 29;
    /// <summary>Bit 32, VIRTIO_F_VERSION_1: the device follows virtio 1.x (mandatory for this driver: no legacy).</summary>
    public const ulong Version1 = 1UL << 32;
    /// <summary>
    /// Bit 33, VIRTIO_F_ACCESS_PLATFORM (formerly IOMMU_PLATFORM): the device's DMA goes through the platform's
    /// address translation (an IOMMU), so it must be given IOVAs rather than physical addresses.
    /// </summary>
    public const ulong AccessPlatform = 1UL << 33;
    /// <summary>Bit 34, VIRTIO_F_RING_PACKED.</summary>
    public const ulong RingPacked = 1UL << 34;
    /// <summary>Bit 35, VIRTIO_F_IN_ORDER.</summary>
    public const ulong InOrder = 1UL << 35;

    /// <summary>
    /// Bit 60, VIRTIO_NET_F_RSS: receive-side scaling, a Toeplitz hash and an indirection table set with
    /// VIRTIO_NET_CTRL_MQ_RSS_CONFIG (virtio 1.2 §5.1.6.5.7; needs the control queue).
    /// </summary>
    public const ulong NetRss = 1UL << 60;

    /// <summary>Names of the bits above, for logs and errors.</summary>
    public static string Describe(ulong features)
    {
        var names = new List<string>();
        foreach (var (bit, name) in Names)
        {
            if ((features & bit) != 0) { names.Add(name); features &= ~bit; }
        }
        for (int i = 0; i < 64; i++)
        {
            if ((features & (1UL << i)) != 0) { names.Add($"bit{i}"); }
        }
        return names.Count == 0 ? "none" : string.Join(' ', names);
    }

    private static readonly (ulong Bit, string Name)[] Names =
    [
        (NetCsum, "CSUM"), (NetGuestCsum, "GUEST_CSUM"), (NetMtu, "MTU"), (NetMac, "MAC"), (NetGuestTso4, "GUEST_TSO4"),
        (NetGuestTso6, "GUEST_TSO6"), (NetHostTso4, "HOST_TSO4"), (NetHostTso6, "HOST_TSO6"), (NetMergeRxBuffers, "MRG_RXBUF"),
        (NetStatus, "STATUS"), (NetControlQueue, "CTRL_VQ"), (NetMultiQueue, "MQ"), (RingIndirectDesc, "INDIRECT_DESC"),
        (RingEventIndex, "EVENT_IDX"), (Version1, "VERSION_1"), (AccessPlatform, "ACCESS_PLATFORM"),
        (RingPacked, "RING_PACKED"), (InOrder, "IN_ORDER"), (NetRss, "RSS"),
    ];
}
