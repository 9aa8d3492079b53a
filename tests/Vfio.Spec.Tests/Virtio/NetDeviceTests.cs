using Vfio.Spec.Virtio;

namespace Vfio.Spec.Tests.Virtio;

/// <summary>virtio 1.2 5.1 "Network Device".</summary>
public sealed class NetDeviceTests
{
    [Fact]
    public void QueueNumbering()
    {
        // 5.1.2 "Virtqueues": receiveq1 0, transmitq1 1, ..., receiveqN 2(N-1), transmitqN 2(N-1)+1, controlq 2N.
        Assert.Equal((0, 1), (VirtioNetQueues.Receive(0), VirtioNetQueues.Transmit(0)));
        Assert.Equal((6, 7), (VirtioNetQueues.Receive(3), VirtioNetQueues.Transmit(3)));
        Assert.Equal(2, VirtioNetQueues.Control(1));   // without MQ: controlq is 2
        Assert.Equal(8, VirtioNetQueues.Control(4));
    }

    [Fact]
    public void HeaderIs12BytesWithVersion1()
    {
        // 5.1.6 "Device Operation": struct virtio_net_hdr { u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size;
        // le16 csum_start; le16 csum_offset; le16 num_buffers; ... }; with VIRTIO_F_VERSION_1, num_buffers is
        // always there, so the header ends at 12 (hash_value and hash_report follow only with HASH_REPORT).
        Assert.Equal(
            (0, 1, 2, 4, 6, 8, 10),
            (VirtioNetHeader.Flags, VirtioNetHeader.GsoType, VirtioNetHeader.HeaderLength, VirtioNetHeader.GsoSize,
             VirtioNetHeader.CsumStart, VirtioNetHeader.CsumOffset, VirtioNetHeader.NumBuffers));
        Assert.Equal(12, VirtioNetHeader.Size);
        Assert.Equal(VirtioNetHeader.Size, VirtioNetHeader.NumBuffers + sizeof(ushort));
    }

    [Fact]
    public void HeaderFlagsAndGsoNone()
    {
        // 5.1.6: VIRTIO_NET_HDR_F_NEEDS_CSUM 1, VIRTIO_NET_HDR_F_DATA_VALID 2, VIRTIO_NET_HDR_F_RSC_INFO 4,
        // VIRTIO_NET_HDR_GSO_NONE 0.
        Assert.Equal((1, 2, 4, 0), (VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.FlagDataValid, VirtioNetHeader.FlagRscInfo, VirtioNetHeader.GsoNone));
    }

    [Fact]
    public void ConfigLayout()
    {
        // 5.1.4 "Device configuration layout": struct virtio_net_config { u8 mac[6]; le16 status;
        // le16 max_virtqueue_pairs; le16 mtu; le32 speed; u8 duplex; ... }.
        Assert.Equal(
            (0, 6, 6, 8, 10, 12, 12),
            (VirtioNetConfig.Mac, VirtioNetConfig.MacLength, VirtioNetConfig.Status, VirtioNetConfig.MaxVirtqueuePairs,
             VirtioNetConfig.Mtu, VirtioNetConfig.Speed, VirtioNetConfig.SizeThroughMtu));
        // 5.1.4: VIRTIO_NET_S_LINK_UP 1, VIRTIO_NET_S_ANNOUNCE 2.
        Assert.Equal((1, 2), (VirtioNetConfig.StatusLinkUp, VirtioNetConfig.StatusAnnounce));
    }

    [Fact]
    public void ControlQueueMultiqueueCommand()
    {
        // 5.1.6.5 "Control Virtqueue": struct virtio_net_ctrl { u8 class; u8 command; u8 command-specific-data[];
        // u8 ack; }, VIRTIO_NET_OK 0, VIRTIO_NET_ERR 1.
        Assert.Equal((0, 1, 2), (VirtioNetControl.Class, VirtioNetControl.Command, VirtioNetControl.Data));
        Assert.Equal((0, 1), (VirtioNetControl.Ok, VirtioNetControl.Error));
        // 5.1.6.5.5 "Automatic receive steering in multiqueue mode": VIRTIO_NET_CTRL_MQ 4,
        // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0, VQ_PAIRS_MIN 1, VQ_PAIRS_MAX 0x8000; data is le16 virtqueue_pairs.
        Assert.Equal((4, 0), (VirtioNetControl.ClassMq, VirtioNetControl.MqVqPairsSet));
        Assert.Equal((1, 0x8000), (VirtioNetControl.MqVqPairsMin, VirtioNetControl.MqVqPairsMax));
        Assert.Equal(VirtioNetControl.Data + sizeof(ushort), VirtioNetControl.MqVqPairsSetLength);
    }
}
