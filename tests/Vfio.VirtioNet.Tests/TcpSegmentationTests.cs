using System.Buffers.Binary;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;
using Vfio.Net;

namespace Vfio.VirtioNet.Tests;

/// <summary>
/// <see cref="TcpSegmentation"/> against PacketDotNet: large TCP packets built by the library, cut by ours, and every
/// segment parsed back by the library, its checksums and fields checked there (not by our own arithmetic).
/// </summary>
public sealed class TcpSegmentationTests
{
    private static readonly PhysicalAddress MacA = PhysicalAddress.Parse("52-54-00-00-00-0a");
    private static readonly PhysicalAddress MacB = PhysicalAddress.Parse("52-54-00-00-00-0b");

    private static byte[] Payload(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>A TCP packet with <paramref name="payload"/>, over IPv4 (with IP options when asked) or IPv6, optionally 802.1Q-tagged.</summary>
    internal static byte[] Frame(bool ipv6, byte[] payload, bool fin = true, bool psh = true, bool cwr = true, bool vlan = false, bool ipOptions = false, bool tcpOptions = true)
    {
        var tcp = new TcpPacket(40000, 5201)
        {
            SequenceNumber = 0xFFFF_F000,   // wraps inside the packet
            AcknowledgmentNumber = 12345,
            Acknowledgment = true,
            Push = psh,
            Finished = fin,
            CongestionWindowReduced = cwr,
            WindowSize = 512,
        };
        tcp.PayloadData = payload;
        IPPacket ip = ipv6
            ? new IPv6Packet(IPAddress.Parse("fe80::a"), IPAddress.Parse("fe80::b")) { HopLimit = 64 }
            : new IPv4Packet(IPAddress.Parse("198.51.100.1"), IPAddress.Parse("198.51.100.2")) { TimeToLive = 64, Id = 0xFFFE };
        ip.PayloadPacket = tcp;
        var eth = new EthernetPacket(MacA, MacB, ipv6 ? EthernetType.IPv6 : EthernetType.IPv4) { PayloadPacket = ip };
        eth.UpdateCalculatedValues();
        tcp.UpdateTcpChecksum();
        if (ip is IPv4Packet v4) { v4.UpdateIPChecksum(); }
        byte[] bytes = eth.Bytes;
        if (tcpOptions)
        {
            // Two NOPs and timestamps (kind 8): a 32-byte TCP header, as Linux sends (PacketDotNet's Options setter
            // cannot grow a header, so the 12 bytes go in here and the lengths follow).
            int tcp0 = 14 + (ipv6 ? 40 : 20);
            byte[] options = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
            var withOptions = new byte[bytes.Length + options.Length];
            bytes.AsSpan(0, tcp0 + 20).CopyTo(withOptions);
            options.CopyTo(withOptions.AsSpan(tcp0 + 20));
            bytes.AsSpan(tcp0 + 20).CopyTo(withOptions.AsSpan(tcp0 + 20 + options.Length));
            withOptions[tcp0 + 12] = 8 << 4;
            int lengthField = ipv6 ? 18 : 16;
            BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(lengthField), (ushort)(BinaryPrimitives.ReadUInt16BigEndian(withOptions.AsSpan(lengthField)) + options.Length));
            bytes = withOptions;
        }
        if (ipOptions)
        {
            // IHL 6: one 4-byte option (four NOPs) after the 20-byte IPv4 header.
            var withOptions = new byte[bytes.Length + 4];
            bytes.AsSpan(0, 34).CopyTo(withOptions);
            withOptions.AsSpan(34, 4).Fill(1);
            bytes.AsSpan(34).CopyTo(withOptions.AsSpan(38));
            withOptions[14] = 0x46;
            BinaryPrimitives.WriteUInt16BigEndian(withOptions.AsSpan(16), (ushort)(BinaryPrimitives.ReadUInt16BigEndian(withOptions.AsSpan(16)) + 4));
            bytes = withOptions;
        }
        if (vlan)
        {
            var tagged = new byte[bytes.Length + 4];
            bytes.AsSpan(0, 12).CopyTo(tagged);
            BinaryPrimitives.WriteUInt16BigEndian(tagged.AsSpan(12), 0x8100);
            BinaryPrimitives.WriteUInt16BigEndian(tagged.AsSpan(14), 42);
            bytes.AsSpan(12).CopyTo(tagged.AsSpan(16));
            bytes = tagged;
        }
        return bytes;
    }

    private static List<byte[]> Cut(byte[] frame, int mss, out TcpSegmentation plan)
    {
        Assert.True(TcpSegmentation.TryPlan(frame, mss, out plan));
        var segments = new List<byte[]>();
        for (int i = 0; i < plan.SegmentCount; i++)
        {
            var room = new byte[2048];
            int length = plan.WriteSegment(frame, i, room);
            Assert.Equal(plan.SegmentLength(i), length);
            segments.Add(room[..length]);
        }
        return segments;
    }

    private static (IPPacket Ip, TcpPacket Tcp) Parse(byte[] segment, bool vlan)
    {
        Packet packet = Packet.ParsePacket(LinkLayers.Ethernet, segment);
        IPPacket? ip = vlan ? packet.PayloadPacket.PayloadPacket as IPPacket : packet.PayloadPacket as IPPacket;
        Assert.NotNull(ip);
        var tcp = ip.PayloadPacket as TcpPacket;
        Assert.NotNull(tcp);
        return (ip, tcp);
    }

    [Theory]
    [InlineData(false, 65000, 1448, false, false)]   // Linux's IPv4 MSS with timestamps, a 64 KiB segment
    [InlineData(true, 65000, 1428, false, false)]    // the same over IPv6
    [InlineData(false, 14480, 1448, false, false)]   // an exact multiple: the last segment is full
    [InlineData(false, 3000, 1000, true, false)]     // 802.1Q-tagged
    [InlineData(false, 5000, 1200, false, true)]     // IPv4 options (IHL 6)
    [InlineData(true, 100, 1428, true, false)]       // shorter than one MSS: one segment
    public void Segments_parse_back_with_valid_checksums_and_carry_the_payload_in_order(bool ipv6, int length, int mss, bool vlan, bool ipOptions)
    {
        var payload = Payload(length, length + mss);
        var frame = Frame(ipv6, payload, vlan: vlan, ipOptions: ipOptions);
        var segments = Cut(frame, mss, out var plan);
        Assert.Equal((length + mss - 1) / mss, segments.Count);
        Assert.Equal(length, plan.PayloadLength);

        var (_, original) = Parse(frame, vlan);
        var joined = new List<byte>();
        for (int i = 0; i < segments.Count; i++)
        {
            var (ip, tcp) = Parse(segments[i], vlan);
            bool last = i == segments.Count - 1;
            Assert.True(tcp.ValidChecksum, $"segment {i}: TCP checksum");
            if (ip is IPv4Packet v4)
            {
                Assert.True(v4.ValidIPChecksum, $"segment {i}: IPv4 header checksum");
                Assert.Equal(segments[i].Length - (vlan ? 18 : 14), v4.TotalLength);
                Assert.Equal((ushort)(0xFFFE + i), v4.Id);                          // wraps past 0xFFFF
                Assert.Equal(ipOptions ? 6 : 5, v4.HeaderLength);
            }
            else
            {
                Assert.Equal(segments[i].Length - (vlan ? 18 : 14) - 40, ((IPv6Packet)ip).PayloadLength);
            }
            Assert.Equal(unchecked(original.SequenceNumber + (uint)(i * mss)), tcp.SequenceNumber);
            Assert.Equal(original.AcknowledgmentNumber, tcp.AcknowledgmentNumber);
            Assert.Equal(last, tcp.Finished);
            Assert.Equal(last, tcp.Push);
            Assert.Equal(i == 0, tcp.CongestionWindowReduced);
            Assert.True(tcp.Acknowledgment);
            Assert.Equal(original.Options, tcp.Options);
            Assert.True(tcp.PayloadData.Length <= mss);
            joined.AddRange(tcp.PayloadData);
        }
        Assert.Equal(payload, joined);
    }

    [Fact]
    public void A_packet_without_payload_is_one_segment_equal_to_itself()
    {
        var frame = Frame(false, [], fin: true, tcpOptions: false);   // as PacketDotNet built it, checksums valid
        var segments = Cut(frame, 1448, out var plan);
        Assert.Equal(1, plan.SegmentCount);
        Assert.Equal(frame, segments[0]);
    }

    [Fact]
    public void The_kernels_partial_checksum_in_the_field_does_not_matter()
    {
        // A TAP's TSO frame carries the pseudo-header sum in the TCP checksum field (NEEDS_CSUM), not a checksum.
        var frame = Frame(true, Payload(4000, 1));
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(14 + 40 + 16), 0x1234);
        Assert.All(Cut(frame, 1428, out _), s => Assert.True(Parse(s, false).Tcp.ValidChecksum));
    }

    [Fact]
    public void What_is_not_tcp_it_understands_is_refused()
    {
        var udp = new UdpPacket(1, 2) { PayloadData = new byte[100] };
        var eth = new EthernetPacket(MacA, MacB, EthernetType.IPv6) { PayloadPacket = new IPv6Packet(IPAddress.Parse("fe80::a"), IPAddress.Parse("fe80::b")) { PayloadPacket = udp } };
        eth.UpdateCalculatedValues();
        Assert.False(TcpSegmentation.TryPlan(eth.Bytes, 1000, out _));
        Assert.False(TcpSegmentation.TryPlan(new byte[10], 1000, out _));

        var frame = Frame(false, Payload(3000, 2));
        frame[14 + 20 + 12] = 0x40;   // data offset 4: shorter than a TCP header
        Assert.False(TcpSegmentation.TryPlan(frame, 1000, out _));
        frame[14 + 20 + 12] = 0xF0;   // 60 bytes: fine while the packet holds them
        Assert.True(TcpSegmentation.TryPlan(frame, 1000, out _));
        var tiny = Frame(false, [], tcpOptions: false);
        tiny[14 + 20 + 12] = 0xF0;    // 60 bytes of header in a 20-byte TCP packet
        Assert.False(TcpSegmentation.TryPlan(tiny, 1000, out _));
    }

    [Fact]
    public void Bad_arguments_are_refused_with_the_reason()
    {
        var frame = Frame(false, Payload(3000, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpSegmentation.TryPlan(frame, 0, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpSegmentation.TryPlan(frame, 65536, out _));
        Assert.True(TcpSegmentation.TryPlan(frame, 1000, out var plan));
        Assert.Throws<ArgumentOutOfRangeException>(() => plan.WriteSegment(frame, 3, new byte[2048]));
        Assert.Throws<ArgumentOutOfRangeException>(() => plan.WriteSegment(frame, -1, new byte[2048]));
        var e = Assert.Throws<ArgumentException>(() => plan.WriteSegment(frame, 0, new byte[100]));
        Assert.Contains("destination holds 100", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => plan.WriteSegment(frame.AsSpan(0, 500), 0, new byte[2048]));
        Assert.Throws<InvalidOperationException>(() => default(TcpSegmentation).SegmentLength(0));
    }
}
