using System.Buffers.Binary;
using System.Net;
using Vfio.Emulation.VirtioNet;
using Vfio.Net;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.VirtioNet.Tests;

/// <summary>The model's own Toeplitz hash against Microsoft's published RSS verification vectors (IPv4, with and without ports).</summary>
public sealed class ToeplitzTests
{
    /// <summary>The verification key of Microsoft's "Verifying the RSS Hash Calculation".</summary>
    internal static readonly byte[] VerificationKey =
    [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
        0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
        0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    [Theory]
    [InlineData("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323e8fc2u, 0x51ccc178u)]
    [InlineData("199.92.111.2", 14230, "65.69.140.83", 4739, 0xd718262au, 0xc626b0eau)]
    [InlineData("24.19.198.95", 12898, "12.22.207.184", 38024, 0xd2d0a5deu, 0x5c2b394au)]
    public void The_published_ipv4_vectors_hash_to_the_published_values(string source, ushort sourcePort, string destination, ushort destinationPort, uint addresses, uint withPorts)
    {
        var input = new byte[12];
        IPAddress.Parse(source).TryWriteBytes(input, out _);
        IPAddress.Parse(destination).TryWriteBytes(input.AsSpan(4), out _);
        BinaryPrimitives.WriteUInt16BigEndian(input.AsSpan(8), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(input.AsSpan(10), destinationPort);
        Assert.Equal(addresses, Toeplitz.Hash(VerificationKey, input.AsSpan(0, 8)));
        Assert.Equal(withPorts, Toeplitz.Hash(VerificationKey, input));
    }

    [Fact]
    public void A_frame_hashes_its_flow_by_the_enabled_types()
    {
        var frame = RssTests.UdpFrame(IPAddress.Parse("66.9.149.187"), 2794, IPAddress.Parse("161.142.100.80"), 1766, 0);
        Assert.True(Toeplitz.TryHashFrame(VerificationKey, frame, VirtioNetRss.HashUdpIPv4 | VirtioNetRss.HashIPv4, out uint h));
        Assert.Equal(0x51ccc178u, h);   // UDP hashes the same 4-tuple as TCP
        Assert.True(Toeplitz.TryHashFrame(VerificationKey, frame, VirtioNetRss.HashIPv4, out h));
        Assert.Equal(0x323e8fc2u, h);   // UDP ports off: the addresses only
        Assert.False(Toeplitz.TryHashFrame(VerificationKey, frame, VirtioNetRss.HashTcpIPv4, out _));
        Assert.False(Toeplitz.TryHashFrame(VerificationKey, frame.AsSpan(0, 30), VirtioNetRss.HashIPv4, out _));
        Assert.Throws<ArgumentException>(() => Toeplitz.Hash(VerificationKey.AsSpan(0, 15), new byte[12]));
    }
}

/// <summary>virtio-net RSS (VIRTIO_NET_F_RSS, virtio 1.2 §5.1.6.5.7) between the driver and the model, on each transport.</summary>
public abstract class RssTests(VirtioTransport transport) : IDisposable
{
    private const int Flows = 64;
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        for (int i = _disposables.Count - 1; i >= 0; i--) { _disposables[i].Dispose(); }
    }

    /// <summary>An IPv4/UDP frame, no options, with <paramref name="sequence"/> as its 8-byte payload.</summary>
    internal static byte[] UdpFrame(IPAddress source, ushort sourcePort, IPAddress destination, ushort destinationPort, ulong sequence)
    {
        var f = new byte[14 + 20 + 8 + 8];
        f.AsSpan(0, 6).Fill(0xff);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        f[14] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), 20 + 8 + 8);
        f[22] = 64;
        f[23] = 17;
        source.TryWriteBytes(f.AsSpan(26), out _);
        destination.TryWriteBytes(f.AsSpan(30), out _);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(34), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(36), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(38), 8 + 8);
        BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(42), sequence);
        return f;
    }

    private static byte[] FlowFrame(int flow) =>
        UdpFrame(IPAddress.Parse("169.254.0.1"), (ushort)(40000 + flow), IPAddress.Parse("169.254.0.2"), 4789, (ulong)flow);

    private (EmulatedVirtioNet DevA, VirtioNetDevice A, VirtioNetDevice B) Open(bool offerRss)
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 128, maxPairs: 2, transport: transport);
        _disposables.Add(devA);
        _disposables.Add(devB);
        if (offerRss) { devA.OfferedFeatures |= VirtioFeatures.NetRss; }
        var a = VirtioNetDevice.Open(devA, new VirtioNetOptions { QueuePairs = 2 });
        _disposables.Add(a);
        var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { QueuePairs = 2, Pool = transport == VirtioTransport.InProcess ? a.Pool : null });
        _disposables.Add(b);
        return (devA, a, b);
    }

    private static ushort[] Alternating(int length) => [.. Enumerable.Range(0, length).Select(i => (ushort)(i % 2))];

    /// <summary>Sends every flow's frame from B on its pair 0; returns the flows A received on each of its queues.</summary>
    private static List<int>[] SendFlowsAndReceive(VirtioNetDevice a, VirtioNetDevice b)
    {
        var tx = new PacketBuffer[Flows];
        Assert.Equal(Flows, b.Pool.Allocate(tx));
        for (int i = 0; i < Flows; i++)
        {
            var frame = FlowFrame(i);
            frame.CopyTo(tx[i].Room);
            tx[i].Length = frame.Length;
        }
        Assert.Equal(Flows, b.Transmit(tx, queuePair: 0));
        var got = new[] { new List<int>(), new List<int>() };
        var rx = new PacketBuffer[Flows];
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (got[0].Count + got[1].Count < Flows && DateTime.UtcNow < deadline)
        {
            for (int q = 0; q < 2; q++)
            {
                int n = a.Receive(rx, queuePair: q);
                for (int i = 0; i < n; i++) { got[q].Add((int)BinaryPrimitives.ReadUInt64BigEndian(rx[i].Data[42..])); }
                PacketPool.Free(rx.AsSpan(0, n));
            }
            b.TransmitInFlight(0);
        }
        Assert.Equal(Flows, got[0].Count + got[1].Count);
        return got;
    }

    [Fact]
    public void Flows_spread_across_the_queues_as_the_toeplitz_hash_and_the_table_say()
    {
        var (devA, a, b) = Open(offerRss: true);
        INetPort port = a;
        Assert.Equal(new NetRssCapability(true, 40, 128, "toeplitz"), port.Rss);
        Assert.NotEqual(0UL, a.NegotiatedFeatures & VirtioFeatures.NetRss);
        var table = Alternating(128);
        Assert.Equal(NetRssResult.Applied, port.ConfigureRss(ToeplitzTests.VerificationKey, table));
        Assert.True(devA.Model.RssConfigured);
        var got = SendFlowsAndReceive(a, b);
        Assert.NotEmpty(got[0]);
        Assert.NotEmpty(got[1]);
        for (int q = 0; q < 2; q++)
        {
            foreach (int flow in got[q])
            {
                Assert.True(Toeplitz.TryHashFrame(ToeplitzTests.VerificationKey, FlowFrame(flow), VirtioNetRss.HashUdpIPv4, out uint hash));
                Assert.Equal(table[hash & 127], q);
            }
        }
        // A reset forgets the device's RSS state (§5.1.6.5.7); the driver sends the configuration again.
        a.Reset();
        Assert.True(devA.Model.RssConfigured);
        var again = SendFlowsAndReceive(a, b);
        Assert.Equal(got[1].Order(), again[1].Order());
    }

    [Fact]
    public void A_bad_table_key_or_queue_is_refused_before_the_device_sees_it_and_the_port_goes_on()
    {
        var (devA, a, b) = Open(offerRss: true);
        INetPort port = a;
        Assert.Equal(NetRssResult.BadTableSize, port.ConfigureRss(ToeplitzTests.VerificationKey, Alternating(64)));
        Assert.Equal(NetRssResult.BadKeySize, port.ConfigureRss(ToeplitzTests.VerificationKey.AsSpan(0, 39), Alternating(128)));
        ushort[] tooHigh = Alternating(128);
        tooHigh[5] = 2;
        Assert.Equal(NetRssResult.BadQueue, port.ConfigureRss(ToeplitzTests.VerificationKey, tooHigh));
        Assert.False(devA.Model.RssConfigured);
        var got = SendFlowsAndReceive(a, b);
        Assert.Equal(Flows, got[0].Count);   // no RSS: frames sent on pair 0 arrive on queue 0
    }

    [Fact]
    public void A_device_without_rss_says_so_and_configures_nothing()
    {
        var (_, a, _) = Open(offerRss: false);
        INetPort port = a;
        Assert.Equal(NetRssCapability.NotSupported, port.Rss);
        Assert.Equal(NetRssResult.NotSupported, port.ConfigureRss(ToeplitzTests.VerificationKey, Alternating(128)));
    }
}

public sealed class InProcessRssTests() : RssTests(VirtioTransport.InProcess);

public sealed class SocketRssTests() : RssTests(VirtioTransport.Socket);
