using Vfio.Spec.Virtio;
using static Vfio.Spec.Virtio.VirtioFeatures;

namespace Vfio.Spec.Tests.Virtio;

/// <summary>virtio 1.2 6 "Reserved Feature Bits" and 5.1.3 "Feature bits" (network device).</summary>
public sealed class FeatureBitTests
{
    // Each constant is a mask: 1 << the bit number the spec gives.
    public static TheoryData<ulong, int, string> Bits => new()
    {
        // 5.1.3 Network device feature bits.
        { NetCsum, 0, "VIRTIO_NET_F_CSUM" },
        { NetGuestCsum, 1, "VIRTIO_NET_F_GUEST_CSUM" },
        { NetMtu, 3, "VIRTIO_NET_F_MTU" },
        { NetMac, 5, "VIRTIO_NET_F_MAC" },
        { NetGuestTso4, 7, "VIRTIO_NET_F_GUEST_TSO4" },
        { NetGuestTso6, 8, "VIRTIO_NET_F_GUEST_TSO6" },
        { NetHostTso4, 11, "VIRTIO_NET_F_HOST_TSO4" },
        { NetHostTso6, 12, "VIRTIO_NET_F_HOST_TSO6" },
        { NetMergeRxBuffers, 15, "VIRTIO_NET_F_MRG_RXBUF" },
        { NetStatus, 16, "VIRTIO_NET_F_STATUS" },
        { NetControlQueue, 17, "VIRTIO_NET_F_CTRL_VQ" },
        { NetMultiQueue, 22, "VIRTIO_NET_F_MQ" },
        // 6 Reserved feature bits (device independent).
        { RingIndirectDesc, 28, "VIRTIO_F_INDIRECT_DESC" },
        { RingEventIndex, 29, "VIRTIO_F_EVENT_IDX" },
        { Version1, 32, "VIRTIO_F_VERSION_1" },
        { AccessPlatform, 33, "VIRTIO_F_ACCESS_PLATFORM" },
        { RingPacked, 34, "VIRTIO_F_RING_PACKED" },
        { InOrder, 35, "VIRTIO_F_IN_ORDER" },
    };

    [Theory]
    [MemberData(nameof(Bits))]
    public void FeatureBitNumbersAreTheSpecs(ulong mask, int bit, string specName)
    {
        Assert.True(mask == 1UL << bit, $"{specName} is bit {bit}");
    }

    [Theory]
    [MemberData(nameof(Bits))]
    public void NetworkBitsAgreeWithTheKernelsHeader(ulong mask, int bit, string specName)
    {
        // linux/virtio_net.h (linux-libc-dev) defines each VIRTIO_NET_F_ bit by number; the device-independent ones
        // live in virtio_config.h, the two ring ones in virtio_ring.h as VIRTIO_RING_F_.
        var (header, name) = specName switch
        {
            _ when specName.StartsWith("VIRTIO_NET_F_", StringComparison.Ordinal) => ("/usr/include/linux/virtio_net.h", specName),
            "VIRTIO_F_INDIRECT_DESC" or "VIRTIO_F_EVENT_IDX" => ("/usr/include/linux/virtio_ring.h", specName.Replace("VIRTIO_F_", "VIRTIO_RING_F_")),
            _ => ("/usr/include/linux/virtio_config.h", specName),
        };
        var line = File.ReadLines(header).Select(l => l.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
            .FirstOrDefault(w => w.Length >= 3 && w[0] == "#define" && w[1] == name);
        Assert.True(line is not null, $"{name} is defined in {header}");
        Assert.Equal(bit, int.Parse(line![2], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1UL << bit, mask);
    }

    [Fact]
    public void DescribesBitsByName()
    {
        Assert.Equal("MAC VERSION_1 ACCESS_PLATFORM bit63", Describe(NetMac | Version1 | AccessPlatform | (1UL << 63)));
        Assert.Equal("none", Describe(0));
    }

    [Theory]
    [MemberData(nameof(Bits))]
    public void EveryKnownBitIsNamedAsTheSpecNamesIt(ulong mask, int bit, string specName)
    {
        // The short names drop the VIRTIO_F_ / VIRTIO_NET_F_ prefix of the spec's names.
        string name = specName.Replace("VIRTIO_NET_F_", "").Replace("VIRTIO_F_", "");
        Assert.Equal(name, Describe(mask));
        Assert.NotEqual($"bit{bit}", Describe(mask));
    }
}
