using Vfio.Net;
using Vfio.Spec.Virtio;

namespace Vfio.VirtioNet;

public sealed partial class VirtioNetDevice
{
    /// <summary>The key length this driver sends: the 40 bytes every RSS device takes (§5.1.4.1: rss_max_key_size is at least 40).</summary>
    private const int RssKeySize = VirtioNetRss.MinimumMaxKeySize;

    /// <summary>The largest table the driver sends, so an RSS_CONFIG command fits the control buffer.</summary>
    private const int MaxRssTable = 512;

    /// <summary>The hash types asked for, of those the device supports: addresses, and TCP/UDP ports, over IPv4 and IPv6.</summary>
    private const uint WantedHashTypes = VirtioNetRss.HashIPv4 | VirtioNetRss.HashTcpIPv4 | VirtioNetRss.HashUdpIPv4
        | VirtioNetRss.HashIPv6 | VirtioNetRss.HashTcpIPv6 | VirtioNetRss.HashUdpIPv6;

    private NetRssCapability _rssCapability;
    private uint _rssHashTypes;
    private byte[]? _rssKey;
    private ushort[]? _rssTable;

    /// <summary>
    /// The device's RSS limits (§5.1.4: rss_max_key_size, rss_max_indirection_table_length, supported_hash_types),
    /// checked against §5.1.4.1's minimums. The table size offered to callers is the largest power of two the
    /// device takes (indirection_table_mask is length - 1, §5.1.6.5.7.1), at most <see cref="MaxRssTable"/>.
    /// </summary>
    private NetRssCapability ReadRssCapability()
    {
        byte maxKey = _transport.ReadDeviceConfig8(VirtioNetConfig.RssMaxKeySize);
        ushort maxTable = _transport.ReadDeviceConfig16(VirtioNetConfig.RssMaxIndirectionTableLength);
        uint types = _transport.ReadDeviceConfig32(VirtioNetConfig.SupportedHashTypes);
        if (maxKey < VirtioNetRss.MinimumMaxKeySize || maxTable < 128 || (types & WantedHashTypes) == 0)
        {
            throw new DeviceProtocolViolationException(Device.Address, "virtio-net device configuration RSS fields (§5.1.4.1)",
                $"rss_max_key_size {maxKey}, rss_max_indirection_table_length {maxTable}, supported_hash_types 0x{types:x}: at least 40, at least 128 and one hash type are required");
        }
        _rssHashTypes = types & WantedHashTypes;
        int table = (int)Math.Min(MaxRssTable, 1u << (31 - int.LeadingZeroCount(maxTable)));
        return new NetRssCapability(true, RssKeySize, table, "toeplitz");
    }

    /// <summary>
    /// Sends VIRTIO_NET_CTRL_MQ_RSS_CONFIG (§5.1.6.5.7.1) with <paramref name="key"/> and <paramref name="table"/>
    /// (receive queue numbers), after checking them against the capability and the pairs in use; nothing reaches the
    /// device when a check fails. Unclassified packets go to queue 0; max_tx_vq is the pairs in use.
    /// </summary>
    /// <exception cref="VirtioNetException">The device answered VIRTIO_NET_ERR, or did not answer.</exception>
    private NetRssResult ConfigureRss(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> table)
    {
        var result = _rssCapability.Validate(key, table, QueuePairCount);
        if (result != NetRssResult.Applied) { return result; }
        SendRssConfig(key, table);
        _rssKey = key.ToArray();
        _rssTable = table.ToArray();
        return NetRssResult.Applied;
    }

    /// <summary>After a reset the device has forgotten the configuration (§5.1.6.5.7: it starts without RSS): send it again.</summary>
    private void ReapplyRss()
    {
        if (_rssKey is not null && _rssTable is not null && _rssCapability.IsSupported) { SendRssConfig(_rssKey, _rssTable); }
    }

    private void SendRssConfig(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> table)
    {
        Span<byte> command = stackalloc byte[VirtioNetControl.Data + VirtioNetRss.Size(table.Length, key.Length)];
        command[VirtioNetControl.Class] = VirtioNetControl.ClassMq;
        command[VirtioNetControl.Command] = VirtioNetControl.MqRssConfig;
        VirtioNetRss.Write(command[VirtioNetControl.Data..], _rssHashTypes, table, unclassifiedQueue: 0, maxTxVq: (ushort)QueuePairCount, key);
        byte ack = _control!.Execute(command, _time, TimeSpan.FromSeconds(5));
        if (ack != VirtioNetControl.Ok)
        {
            throw new VirtioNetException(Device.Address, $"the device refused VIRTIO_NET_CTRL_MQ_RSS_CONFIG ({table.Length}-entry table, {key.Length}-byte key, hash types 0x{_rssHashTypes:x}; ack {ack})");
        }
    }
}
