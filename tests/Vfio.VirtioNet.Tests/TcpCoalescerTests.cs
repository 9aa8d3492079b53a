using System.Buffers.Binary;
using PacketDotNet;
using Vfio.Net;

namespace Vfio.VirtioNet.Tests;

/// <summary>
/// <see cref="TcpCoalescer"/>: segments cut by <see cref="TcpSegmentation"/> from packets PacketDotNet built join back
/// into one packet, whose partial checksum PacketDotNet accepts once finished; what must not join does not.
/// </summary>
public sealed class TcpCoalescerTests
{
    private static List<byte[]> Segments(byte[] frame, int mss)
    {
        Assert.True(TcpSegmentation.TryPlan(frame, mss, out var plan));
        var list = new List<byte[]>();
        for (int i = 0; i < plan.SegmentCount; i++)
        {
            var room = new byte[2048];
            list.Add(room[..plan.WriteSegment(frame, i, room)]);
        }
        return list;
    }

    /// <summary>A TCP packet of <paramref name="length"/> payload bytes, ACK only (no FIN, PSH or CWR).</summary>
    private static byte[] Bulk(bool ipv6, int length, int seed = 7) =>
        TcpSegmentationTests.Frame(ipv6, Payload(length, seed), fin: false, psh: false, cwr: false);

    private static byte[] Payload(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Finishes the partial checksum as the kernel would (the sum over the TCP segment, the field holding the pseudo-header sum).</summary>
    private static byte[] Finished(ReadOnlySpan<byte> packet, int tcpStart)
    {
        var bytes = packet.ToArray();
        ushort sum = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, bytes.AsSpan(tcpStart)));
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(tcpStart + 16), sum);
        return bytes;
    }

    [Theory]
    [InlineData(false, 60000, 1448)]
    [InlineData(true, 60000, 1428)]
    [InlineData(false, 1448 * 10, 1448)]   // all full
    [InlineData(true, 3000, 1428)]         // a short last one
    public void Segments_cut_from_a_packet_join_back_into_it(bool ipv6, int length, int mss)
    {
        var original = Bulk(ipv6, length);
        var segments = Segments(original, mss);
        var coalescer = new TcpCoalescer();
        foreach (var s in segments) { Assert.True(coalescer.TryAdd(s, checksumVerified: false)); }
        Assert.Equal(segments.Count, coalescer.SegmentCount);
        Assert.Equal(mss, coalescer.MaxSegmentSize);
        Assert.Equal(!ipv6, coalescer.IsIpv4);
        int total = coalescer.Complete();
        Assert.Equal(0, coalescer.SegmentCount);
        var packet = Finished(coalescer.Packet[..total], coalescer.TransportStart);
        Assert.Equal(original.Length, packet.Length);

        var eth = (EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, packet);
        var ip = (IPPacket)eth.PayloadPacket;
        var tcp = (TcpPacket)ip.PayloadPacket;
        Assert.True(tcp.ValidChecksum);
        if (ip is IPv4Packet v4) { Assert.True(v4.ValidIPChecksum); Assert.Equal(packet.Length - 14, v4.TotalLength); }
        var first = (TcpPacket)((IPPacket)((EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, original)).PayloadPacket).PayloadPacket;
        Assert.Equal(first.SequenceNumber, tcp.SequenceNumber);
        Assert.Equal(first.PayloadData, tcp.PayloadData);
        Assert.Equal(first.Options, tcp.Options);
    }

    [Fact]
    public void What_does_not_continue_the_packet_is_refused_and_the_packet_is_unchanged()
    {
        var segments = Segments(Bulk(false, 1448 * 4), 1448);
        var other = Segments(Bulk(false, 1448 * 2, seed: 8), 1448);
        var coalescer = new TcpCoalescer();
        Assert.True(coalescer.TryAdd(segments[0], false));
        Assert.False(coalescer.TryAdd(segments[2], false));               // a hole: out of order
        Assert.False(coalescer.TryAdd(segments[0], false));               // a retransmission
        var otherPort = (byte[])segments[1].Clone();
        otherPort[14 + 20 + 1] ^= 1;                                       // another source port: another flow
        Assert.False(coalescer.TryAdd(otherPort, true));
        var otherWindow = (byte[])segments[1].Clone();
        otherWindow[14 + 20 + 14] ^= 1;
        Assert.False(coalescer.TryAdd(otherWindow, true));
        var otherTtl = (byte[])segments[1].Clone();
        otherTtl[14 + 8] ^= 1;
        Assert.False(coalescer.TryAdd(otherTtl, true));
        var corrupt = (byte[])segments[1].Clone();
        corrupt[^1] ^= 0x40;                                               // payload changed: the checksum is wrong
        Assert.False(coalescer.TryAdd(corrupt, checksumVerified: false));
        var fin = (byte[])segments[1].Clone();
        fin[14 + 20 + 13] |= 0x01;
        Assert.False(coalescer.TryAdd(fin, true));
        Assert.Equal(1, coalescer.SegmentCount);
        Assert.True(coalescer.TryAdd(segments[1], false));
        Assert.Equal(2, coalescer.SegmentCount);
        Assert.False(coalescer.TryAdd(other[1], false));                   // another packet's data, same flow, wrong sequence
    }

    /// <summary>Rewrites the IPv4 identification of an IPv4 segment and its header checksum (so only the ID differs).</summary>
    private static byte[] WithId(byte[] segment, ushort id, bool dontFragment)
    {
        var copy = (byte[])segment.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(14 + 4), id);
        copy[14 + 6] = (byte)((copy[14 + 6] & ~0x40) | (dontFragment ? 0x40 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(14 + 10), 0);
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(14 + 10), (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, copy.AsSpan(14, 20))));
        return copy;
    }

    [Fact]
    public void A_wrong_ipv4_header_checksum_is_refused_unless_the_port_checked_it()
    {
        var segments = Segments(Bulk(false, 1448 * 3), 1448);
        var ttl = (byte[])segments[0].Clone();
        ttl[14 + 8] ^= 1;   // TTL changed, the header checksum not: the TCP checksum does not cover it
        var coalescer = new TcpCoalescer();
        Assert.False(coalescer.TryAdd(ttl, checksumVerified: true));
        Assert.True(coalescer.TryAdd(segments[0], checksumVerified: true));
        var bad = (byte[])segments[1].Clone();
        bad[14 + 10] ^= 1;
        Assert.False(coalescer.TryAdd(bad, checksumVerified: true));
        Assert.True(coalescer.TryAdd(bad, checksumVerified: true, ipChecksumVerified: true));   // the port's word is taken
    }

    [Theory]
    [InlineData(true, true, true)]     // the same ID throughout, DF set: joins
    [InlineData(true, false, false)]   // the same ID without DF: a fragmentable packet's IDs must differ
    [InlineData(false, false, true)]   // one more each segment: joins
    public void The_ipv4_id_either_increments_or_stays_with_df(bool fixedId, bool dontFragment, bool joins)
    {
        var segments = Segments(Bulk(false, 1448 * 3), 1448);
        for (int i = 0; i < 3; i++) { segments[i] = WithId(segments[i], (ushort)(100 + (fixedId ? 0 : i)), dontFragment); }
        var coalescer = new TcpCoalescer();
        Assert.True(coalescer.TryAdd(segments[0], false));
        Assert.Equal(joins, coalescer.TryAdd(segments[1], false));
        if (joins)
        {
            Assert.True(coalescer.TryAdd(segments[2], false));
            Assert.Equal(3, coalescer.SegmentCount);
        }
    }

    [Fact]
    public void The_second_segment_decides_the_id_mode_and_the_rest_keep_to_it()
    {
        var segments = Segments(Bulk(false, 1448 * 3), 1448);
        var coalescer = new TcpCoalescer();
        Assert.True(coalescer.TryAdd(WithId(segments[0], 7, true), false));
        Assert.True(coalescer.TryAdd(WithId(segments[1], 7, true), false));    // fixed
        Assert.False(coalescer.TryAdd(WithId(segments[2], 8, true), false));   // then incrementing: refused
        Assert.True(coalescer.TryAdd(WithId(segments[2], 7, true), false));
    }

    [Fact]
    public void Psh_and_a_short_segment_end_the_packet()
    {
        var segments = Segments(TcpSegmentationTests.Frame(false, Payload(1448 * 3 + 100, 3), fin: false, psh: true, cwr: false), 1448);
        var coalescer = new TcpCoalescer();
        for (int i = 0; i < 3; i++) { Assert.True(coalescer.TryAdd(segments[i], false)); }
        Assert.True(coalescer.TryAdd(segments[3], false));   // the short one carrying PSH joins, then nothing more
        Assert.False(coalescer.TryAdd(segments[3], false));
        coalescer.Complete();
        var packet = coalescer.Packet;
        Assert.Equal(0x18, packet[14 + 20 + 13]);             // ACK | PSH on the joined packet

        var shortFirst = Segments(Bulk(false, 1448 + 500), 1448);
        Assert.True(coalescer.TryAdd(shortFirst[1], false));   // starts with the short one: the MSS is its payload
        Assert.Equal(500, coalescer.MaxSegmentSize);
    }

    [Fact]
    public void A_packet_never_grows_past_64_KiB()
    {
        // 40 segments of one packet, then more that continue its sequence (copies of the second with the sequence
        // number moved on; offered as checked, so their checksums are not summed).
        var segments = Segments(Bulk(true, 1428 * 40), 1428);
        uint next = BinaryPrimitives.ReadUInt32BigEndian(segments[^1].AsSpan(14 + 40 + 4)) + 1428;
        for (int i = 0; i < 10; i++, next += 1428)
        {
            var more = (byte[])segments[1].Clone();
            BinaryPrimitives.WriteUInt32BigEndian(more.AsSpan(14 + 40 + 4), next);
            segments.Add(more);
        }
        var coalescer = new TcpCoalescer();
        int joined = 0;
        foreach (var s in segments)
        {
            if (!coalescer.TryAdd(s, true)) { break; }
            joined++;
        }
        Assert.Equal((65535 - 32) / 1428, joined);   // as many as fit under the 16-bit IPv6 payload length
        int length = coalescer.Complete();
        Assert.True(length - 14 <= 65535, $"{length} bytes");
    }

    [Fact]
    public void Not_tcp_data_is_refused_and_one_segment_stays_as_it_came()
    {
        var coalescer = new TcpCoalescer();
        Assert.Throws<InvalidOperationException>(() => coalescer.Complete());
        Assert.False(coalescer.TryAdd(TcpSegmentationTests.Frame(false, [], fin: false, psh: false, cwr: false), true));   // a bare ACK
        Assert.False(coalescer.TryAdd(new byte[60], true));
        var one = Segments(Bulk(false, 1000), 1448)[0];
        Assert.True(coalescer.TryAdd(one, false));
        int length = coalescer.Complete();
        Assert.Equal(one, coalescer.Packet[..length].ToArray());
    }
}
