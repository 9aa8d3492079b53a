using System.Buffers.Binary;
using Vfio.Spec.Virtio;

namespace Vfio.Emulation.VirtioNet;

public sealed partial class VirtioNetPort
{
    /// <summary>Indirection table entries the port takes at most (rss_max_indirection_table_length, the spec's minimum).</summary>
    private const ushort RssTableLength = 128;

    /// <summary>The hash types the port computes (supported_hash_types): IPv4 addresses, with TCP or UDP ports.</summary>
    private const uint RssHashTypes = VirtioNetRss.HashIPv4 | VirtioNetRss.HashTcpIPv4 | VirtioNetRss.HashUdpIPv4;

    private RssState? _rss;

    /// <summary>The RSS configuration in effect, set by VIRTIO_NET_CTRL_MQ_RSS_CONFIG; null until then and after a reset or VQ_PAIRS_SET.</summary>
    private sealed record RssState(uint HashTypes, ushort[] Table, ushort Unclassified, byte[] Key);

    /// <summary>True once the driver configured RSS (§5.1.6.5.7.1) and it is in effect.</summary>
    public bool RssConfigured => _rss is not null;

    /// <summary>Frames this port received per receive queue (index: queue pair), to show how RSS spread them.</summary>
    public IReadOnlyList<long> FramesReceivedPerPair => _receivedPerPair;

    private long[] _receivedPerPair = [];

    /// <summary>
    /// Checks and applies struct virtio_net_rss_config (§5.1.6.5.7.1, device requirements): the table length a power
    /// of two up to rss_max_indirection_table_length, every queue and unclassified_queue below the pairs offered,
    /// max_tx_vq 1 to max_virtqueue_pairs, the key exactly rss_max_key_size here (the model has one key length), and
    /// only supported hash types. Returns the ack.
    /// </summary>
    private byte ApplyRssConfig(ReadOnlySpan<byte> data)
    {
        if (data.Length < VirtioNetRss.IndirectionTable) { return VirtioNetControl.Error; }
        uint hashTypes = BinaryPrimitives.ReadUInt32LittleEndian(data[VirtioNetRss.HashTypes..]);
        int tableLength = BinaryPrimitives.ReadUInt16LittleEndian(data[VirtioNetRss.IndirectionTableMask..]) + 1;
        ushort unclassified = BinaryPrimitives.ReadUInt16LittleEndian(data[VirtioNetRss.UnclassifiedQueue..]);
        if ((tableLength & (tableLength - 1)) != 0 || tableLength > RssTableLength) { return VirtioNetControl.Error; }
        int keyAt = VirtioNetRss.HashKeyLength(tableLength);
        if (data.Length <= keyAt || data[keyAt] != VirtioNetRss.MinimumMaxKeySize || data.Length < VirtioNetRss.Size(tableLength, data[keyAt])) { return VirtioNetControl.Error; }
        ushort maxTx = BinaryPrimitives.ReadUInt16LittleEndian(data[VirtioNetRss.MaxTxVq(tableLength)..]);
        if ((hashTypes & ~RssHashTypes) != 0 || unclassified >= MaxPairs || maxTx < 1 || maxTx > MaxPairs) { return VirtioNetControl.Error; }
        var table = new ushort[tableLength];
        for (int i = 0; i < tableLength; i++)
        {
            table[i] = BinaryPrimitives.ReadUInt16LittleEndian(data[(VirtioNetRss.IndirectionTable + 2 * i)..]);
            if (table[i] >= MaxPairs) { return VirtioNetControl.Error; }
        }
        // RSS_CONFIG also does what VQ_PAIRS_SET does: the pairs in use are those the table and max_tx_vq name.
        int highest = Math.Max(maxTx, unclassified + 1);
        foreach (var q in table) { highest = Math.Max(highest, q + 1); }
        ActivePairs = highest;
        _rss = new RssState(hashTypes, table, unclassified, data.Slice(keyAt + 1, data[keyAt]).ToArray());
        return VirtioNetControl.Ok;
    }

    /// <summary>
    /// The receive queue pair for <paramref name="frame"/>, sent on the peer's <paramref name="sentOn"/> pair: without
    /// RSS the same pair (automatic steering, §5.1.6.5.5); with it, the Toeplitz hash of the flow masked into the
    /// indirection table, or unclassified_queue for a frame no enabled hash type covers (§5.1.6.4.3).
    /// </summary>
    private int ReceivePairFor(int sentOn, ReadOnlySpan<byte> frame)
    {
        int pair = _rss is { } rss
            ? Toeplitz.TryHashFrame(rss.Key, frame, rss.HashTypes, out uint hash) ? rss.Table[hash & (uint)(rss.Table.Length - 1)] : rss.Unclassified
            : sentOn;
        if (pair >= ActivePairs) { pair = 0; }
        if (_receivedPerPair.Length != MaxPairs) { _receivedPerPair = new long[MaxPairs]; }
        _receivedPerPair[pair]++;
        return pair;
    }
}
