namespace Vfio.Spec.Virtio;

/// <summary>
/// Virtqueue numbering of a network device (virtio 1.2 §5.1.2 "Virtqueues"): receiveqN is 2(N-1), transmitqN is
/// 2(N-1)+1, and controlq follows the last possible pair.
/// </summary>
public static class VirtioNetQueues
{
    /// <summary>The receive queue of zero-based pair <paramref name="pair"/>.</summary>
    public static int Receive(int pair) => 2 * pair;

    /// <summary>The transmit queue of zero-based pair <paramref name="pair"/>.</summary>
    public static int Transmit(int pair) => 2 * pair + 1;

    /// <summary>
    /// The control queue: 2N where N is max_virtqueue_pairs with VIRTIO_NET_F_MQ, else 2 (N is then 1, so the
    /// same formula holds).
    /// </summary>
    public static int Control(int maxPairs) => 2 * maxPairs;
}

/// <summary>
/// <c>struct virtio_net_hdr</c> (virtio 1.2 §5.1.6 "Device Operation"), which precedes every packet on the
/// receive and transmit queues. With VIRTIO_F_VERSION_1, num_buffers is always present, so the header is 12 bytes
/// whether or not VIRTIO_NET_F_MRG_RXBUF is negotiated (the hash fields after it exist only with HASH_REPORT).
/// </summary>
public static class VirtioNetHeader
{
    /// <summary>Bytes of the header with VERSION_1 and without VIRTIO_NET_F_HASH_REPORT.</summary>
    public const int Size = 12;
    /// <summary>flags (u8): <see cref="FlagNeedsCsum"/>, <see cref="FlagDataValid"/>, <see cref="FlagRscInfo"/>.</summary>
    public const int Flags = 0;
    /// <summary>gso_type (u8): <see cref="GsoNone"/> for a packet that needs no segmentation.</summary>
    public const int GsoType = 1;
    /// <summary>hdr_len (le16).</summary>
    public const int HeaderLength = 2;
    /// <summary>gso_size (le16).</summary>
    public const int GsoSize = 4;
    /// <summary>csum_start (le16).</summary>
    public const int CsumStart = 6;
    /// <summary>csum_offset (le16).</summary>
    public const int CsumOffset = 8;
    /// <summary>num_buffers (le16): on receive, how many buffers the packet spans (1 without MRG_RXBUF).</summary>
    public const int NumBuffers = 10;

    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM.</summary>
    public const byte FlagNeedsCsum = 1;
    /// <summary>VIRTIO_NET_HDR_F_DATA_VALID.</summary>
    public const byte FlagDataValid = 2;
    /// <summary>VIRTIO_NET_HDR_F_RSC_INFO.</summary>
    public const byte FlagRscInfo = 4;
    /// <summary>VIRTIO_NET_HDR_GSO_NONE.</summary>
    public const byte GsoNone = 0;
}

/// <summary>
/// <c>struct virtio_net_config</c>, the network device's configuration (virtio 1.2 §5.1.4 "Device configuration
/// layout"). Fields past <see cref="Mtu"/> (speed, duplex, RSS) are not used here.
/// </summary>
public static class VirtioNetConfig
{
    /// <summary>mac (u8[6]): valid with VIRTIO_NET_F_MAC.</summary>
    public const int Mac = 0;
    /// <summary>Bytes of the MAC address.</summary>
    public const int MacLength = 6;
    /// <summary>status (le16): valid with VIRTIO_NET_F_STATUS; <see cref="StatusLinkUp"/>, <see cref="StatusAnnounce"/>.</summary>
    public const int Status = 6;
    /// <summary>max_virtqueue_pairs (le16): valid with VIRTIO_NET_F_MQ or VIRTIO_NET_F_RSS.</summary>
    public const int MaxVirtqueuePairs = 8;
    /// <summary>mtu (le16): valid with VIRTIO_NET_F_MTU.</summary>
    public const int Mtu = 10;
    /// <summary>speed (le32): valid with VIRTIO_NET_F_SPEED_DUPLEX.</summary>
    public const int Speed = 12;
    /// <summary>Bytes up to and including <see cref="Mtu"/>.</summary>
    public const int SizeThroughMtu = 12;

    /// <summary>VIRTIO_NET_S_LINK_UP in status.</summary>
    public const ushort StatusLinkUp = 1;
    /// <summary>VIRTIO_NET_S_ANNOUNCE in status.</summary>
    public const ushort StatusAnnounce = 2;
}

/// <summary>
/// The control virtqueue (virtio 1.2 §5.1.6.5 "Control Virtqueue"): a command is <c>u8 class, u8 command,
/// command-specific data</c> in device-readable buffers, then a device-writable <c>u8 ack</c>.
/// </summary>
public static class VirtioNetControl
{
    /// <summary>Offset of class in a command.</summary>
    public const int Class = 0;
    /// <summary>Offset of command in a command.</summary>
    public const int Command = 1;
    /// <summary>Offset of the command-specific data.</summary>
    public const int Data = 2;

    /// <summary>VIRTIO_NET_OK.</summary>
    public const byte Ok = 0;
    /// <summary>VIRTIO_NET_ERR.</summary>
    public const byte Error = 1;

    /// <summary>VIRTIO_NET_CTRL_MQ: the multiqueue class (§5.1.6.5.5 "Automatic receive steering in multiqueue mode").</summary>
    public const byte ClassMq = 4;
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: data is le16 virtqueue_pairs.</summary>
    public const byte MqVqPairsSet = 0;
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN.</summary>
    public const ushort MqVqPairsMin = 1;
    /// <summary>VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX.</summary>
    public const ushort MqVqPairsMax = 0x8000;
    /// <summary>Bytes of a VQ_PAIRS_SET command: class, command, le16 virtqueue_pairs.</summary>
    public const int MqVqPairsSetLength = 4;
}
