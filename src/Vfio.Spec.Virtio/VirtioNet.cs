using System.Buffers.Binary;

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
    /// <summary>VIRTIO_NET_HDR_GSO_TCPV4: a TCP over IPv4 packet to be cut into segments of gso_size payload bytes (§5.1.6.2).</summary>
    public const byte GsoTcpV4 = 1;
    /// <summary>VIRTIO_NET_HDR_GSO_UDP: UDP fragmentation offload (UFO).</summary>
    public const byte GsoUdp = 3;
    /// <summary>VIRTIO_NET_HDR_GSO_TCPV6: the same as <see cref="GsoTcpV4"/> for IPv6.</summary>
    public const byte GsoTcpV6 = 4;
    /// <summary>VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO).</summary>
    public const byte GsoUdpL4 = 5;
    /// <summary>VIRTIO_NET_HDR_GSO_ECN: or'ed into gso_type when the TCP segment has ECN's CWR set (VIRTIO_NET_F_HOST_ECN).</summary>
    public const byte GsoEcn = 0x80;
}

/// <summary>
/// <c>struct virtio_net_config</c>, the network device's configuration (virtio 1.2 §5.1.4 "Device configuration
/// layout"). Speed and duplex are not used here; the RSS fields are read with VIRTIO_NET_F_RSS.
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
    /// <summary>duplex (u8): valid with VIRTIO_NET_F_SPEED_DUPLEX.</summary>
    public const int Duplex = 16;
    /// <summary>rss_max_key_size (u8): valid with VIRTIO_NET_F_RSS; at least 40 (§5.1.4.1).</summary>
    public const int RssMaxKeySize = 17;
    /// <summary>rss_max_indirection_table_length (le16): valid with VIRTIO_NET_F_RSS; at least 128 (§5.1.4.1).</summary>
    public const int RssMaxIndirectionTableLength = 18;
    /// <summary>supported_hash_types (le32): valid with VIRTIO_NET_F_RSS; <see cref="VirtioNetRss"/> hash type bits.</summary>
    public const int SupportedHashTypes = 20;
    /// <summary>Bytes up to and including <see cref="SupportedHashTypes"/>.</summary>
    public const int SizeThroughHashTypes = 24;

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
    /// <summary>VIRTIO_NET_CTRL_MQ_RSS_CONFIG: data is a <see cref="VirtioNetRss"/> struct virtio_net_rss_config (§5.1.6.5.7.1).</summary>
    public const byte MqRssConfig = 1;
}

/// <summary>
/// <c>struct virtio_net_rss_config</c>, the data of VIRTIO_NET_CTRL_MQ_RSS_CONFIG (virtio 1.2 §5.1.6.5.7.1 "Setting
/// RSS parameters"): le32 hash_types, le16 indirection_table_mask, le16 unclassified_queue, le16
/// indirection_table[mask + 1], le16 max_tx_vq, u8 hash_key_length, u8 hash_key_data[hash_key_length]; and the hash
/// type bits of hash_types and supported_hash_types (§5.1.6.4.3.1). Queue numbers in the table and
/// unclassified_queue are 0-based receive queue numbers (0 is receiveq1).
/// </summary>
public static class VirtioNetRss
{
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_IPv4: source and destination IPv4 address.</summary>
    public const uint HashIPv4 = 1 << 0;
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_TCPv4: addresses and TCP ports.</summary>
    public const uint HashTcpIPv4 = 1 << 1;
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_UDPv4: addresses and UDP ports.</summary>
    public const uint HashUdpIPv4 = 1 << 2;
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_IPv6.</summary>
    public const uint HashIPv6 = 1 << 3;
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_TCPv6.</summary>
    public const uint HashTcpIPv6 = 1 << 4;
    /// <summary>VIRTIO_NET_RSS_HASH_TYPE_UDPv6.</summary>
    public const uint HashUdpIPv6 = 1 << 5;

    /// <summary>Offset of hash_types.</summary>
    public const int HashTypes = 0;
    /// <summary>Offset of indirection_table_mask.</summary>
    public const int IndirectionTableMask = 4;
    /// <summary>Offset of unclassified_queue.</summary>
    public const int UnclassifiedQueue = 6;
    /// <summary>Offset of indirection_table[0].</summary>
    public const int IndirectionTable = 8;

    /// <summary>The spec's minimum for rss_max_key_size (§5.1.4.1: "at least 40").</summary>
    public const int MinimumMaxKeySize = 40;

    /// <summary>Bytes of the structure with a table of <paramref name="tableLength"/> entries and a key of <paramref name="keyLength"/> bytes.</summary>
    public static int Size(int tableLength, int keyLength) => IndirectionTable + 2 * tableLength + 2 + 1 + keyLength;

    /// <summary>Offset of max_tx_vq after a table of <paramref name="tableLength"/> entries.</summary>
    public static int MaxTxVq(int tableLength) => IndirectionTable + 2 * tableLength;

    /// <summary>Offset of hash_key_length after a table of <paramref name="tableLength"/> entries.</summary>
    public static int HashKeyLength(int tableLength) => MaxTxVq(tableLength) + 2;

    /// <summary>
    /// Writes the structure into <paramref name="destination"/> (at least <see cref="Size"/> bytes); the table's
    /// length must be a power of two (indirection_table_mask is length - 1).
    /// </summary>
    /// <exception cref="ArgumentException">The table is empty or not a power of two long, the key longer than 255 bytes, or the destination too short.</exception>
    public static void Write(Span<byte> destination, uint hashTypes, ReadOnlySpan<ushort> table, ushort unclassifiedQueue, ushort maxTxVq, ReadOnlySpan<byte> key)
    {
        if (table.IsEmpty || (table.Length & (table.Length - 1)) != 0) { throw new ArgumentException($"an indirection table of {table.Length} entries: the length must be a power of two (§5.1.6.5.7.1)", nameof(table)); }
        if (key.Length > byte.MaxValue) { throw new ArgumentException($"a {key.Length}-byte key: hash_key_length is a u8", nameof(key)); }
        if (destination.Length < Size(table.Length, key.Length)) { throw new ArgumentException($"{destination.Length} bytes, {Size(table.Length, key.Length)} needed", nameof(destination)); }
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HashTypes..], hashTypes);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[IndirectionTableMask..], (ushort)(table.Length - 1));
        BinaryPrimitives.WriteUInt16LittleEndian(destination[UnclassifiedQueue..], unclassifiedQueue);
        for (int i = 0; i < table.Length; i++) { BinaryPrimitives.WriteUInt16LittleEndian(destination[(IndirectionTable + 2 * i)..], table[i]); }
        BinaryPrimitives.WriteUInt16LittleEndian(destination[MaxTxVq(table.Length)..], maxTxVq);
        destination[HashKeyLength(table.Length)] = (byte)key.Length;
        key.CopyTo(destination[(HashKeyLength(table.Length) + 1)..]);
    }
}
