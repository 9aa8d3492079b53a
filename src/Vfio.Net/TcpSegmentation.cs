using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// TCP segmentation in software: what a NIC's TCP segmentation offload does with one large TCP packet, done by the
/// CPU for a port or a device that cannot (Linux calls it GSO). A plan made by <see cref="TryPlan"/> cuts the packet's
/// payload into segments of at most <see cref="MaxSegmentSize"/> bytes, each a complete frame with the original
/// Ethernet, IP and TCP headers adjusted as RFC 9293 and the IP RFCs require: the sequence number advanced by the
/// payload before it (RFC 9293 §3.4), the IPv4 total length, identification (one more per segment, as Linux's GSO
/// does) and header checksum (RFC 791 §3.1) or the IPv6 payload length (RFC 8200 §3), FIN and PSH on the last segment
/// only, CWR on the first only (RFC 3168 §6.1.2), URG and the urgent pointer on the first only, and the TCP checksum
/// over each segment's own pseudo header (RFC 9293 §3.1).
/// </summary>
/// <remarks>
/// Frames understood are those of <see cref="TransportHeader.TryLocate"/> carrying TCP (Ethernet II, one 802.1Q tag at
/// most, IPv4 without fragmentation or IPv6 without extension headers). Nothing is allocated: segments are written
/// into the caller's buffers one at a time.
/// </remarks>
public readonly record struct TcpSegmentation
{
    private const byte Fin = 0x01, Psh = 0x08, Urg = 0x20, Cwr = 0x80;

    private TcpSegmentation(TransportHeader transport, int headerLength, int payloadLength, int maxSegmentSize)
    {
        Transport = transport;
        HeaderLength = headerLength;
        PayloadLength = payloadLength;
        MaxSegmentSize = maxSegmentSize;
    }

    /// <summary>Where the TCP header is, and the IP header before it.</summary>
    public TransportHeader Transport { get; }

    /// <summary>Bytes of the Ethernet, IP and TCP headers that each segment starts with.</summary>
    public int HeaderLength { get; }

    /// <summary>TCP payload bytes of the whole packet.</summary>
    public int PayloadLength { get; }

    /// <summary>The most payload bytes one segment carries (the MSS).</summary>
    public int MaxSegmentSize { get; }

    /// <summary>Segments the packet is cut into: at least one (a packet without payload stays one segment).</summary>
    public int SegmentCount => PayloadLength == 0 ? 1 : (PayloadLength + MaxSegmentSize - 1) / MaxSegmentSize;

    /// <summary>The longest segment frame: the headers and one MSS of payload (or the whole payload when shorter).</summary>
    public int MaxSegmentLength => HeaderLength + Math.Min(PayloadLength, MaxSegmentSize);

    /// <summary>
    /// Plans the segmentation of the TCP packet in <paramref name="frame"/> into segments of at most
    /// <paramref name="maxSegmentSize"/> payload bytes; false when the frame is not TCP over IPv4 or IPv6 that
    /// <see cref="TransportHeader.TryLocate"/> understands, or its TCP data offset is below 5 or past the packet.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxSegmentSize"/> is not 1 to 65535.</exception>
    public static bool TryPlan(ReadOnlySpan<byte> frame, int maxSegmentSize, out TcpSegmentation plan)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSegmentSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxSegmentSize, 65535);
        plan = default;
        if (!TransportHeader.TryLocate(frame, out var transport) || !transport.IsTcp) { return false; }
        // RFC 9293 §3.1: Data Offset, the TCP header's length in 32-bit words, at least 5.
        int tcpHeader = (frame[transport.Start + 12] >> 4) * 4;
        if (tcpHeader < 20 || tcpHeader > transport.Length) { return false; }
        plan = new TcpSegmentation(transport, transport.Start + tcpHeader, transport.Length - tcpHeader, maxSegmentSize);
        return true;
    }

    /// <summary>The frame length of segment <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not below <see cref="SegmentCount"/>.</exception>
    /// <exception cref="InvalidOperationException">The plan is the default value, not one from <see cref="TryPlan"/>.</exception>
    public int SegmentLength(int index)
    {
        if (MaxSegmentSize == 0) { throw new InvalidOperationException("this TcpSegmentation is the default value: make one with TryPlan"); }
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, SegmentCount);
        return HeaderLength + Math.Min(MaxSegmentSize, PayloadLength - index * MaxSegmentSize);
    }

    /// <summary>
    /// Writes segment <paramref name="index"/> of <paramref name="frame"/> (the frame this plan was made from) into
    /// <paramref name="destination"/>; returns its length.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is not below <see cref="SegmentCount"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="frame"/> is shorter than the packet planned, or <paramref name="destination"/>
    /// shorter than the segment.</exception>
    public int WriteSegment(ReadOnlySpan<byte> frame, int index, Span<byte> destination)
    {
        int length = SegmentLength(index);
        if (frame.Length < HeaderLength + PayloadLength)
        {
            throw new ArgumentException($"the frame has {frame.Length} bytes; the packet planned has {HeaderLength + PayloadLength}", nameof(frame));
        }
        if (destination.Length < length)
        {
            throw new ArgumentException($"segment {index} is {length} bytes; the destination holds {destination.Length}", nameof(destination));
        }
        int offset = index * MaxSegmentSize;
        int payload = length - HeaderLength;
        var segment = destination[..length];
        frame[..HeaderLength].CopyTo(segment);
        frame.Slice(HeaderLength + offset, payload).CopyTo(segment[HeaderLength..]);

        int ip = Transport.IpStart, tcp = Transport.Start;
        int tcpLength = length - tcp;
        if (Transport.IsIpv4)
        {
            ushort id = BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 4)..]);
            BinaryPrimitives.WriteUInt16BigEndian(segment[(ip + 4)..], (ushort)(id + index));
        }
        Transport.WriteIpLength(segment, tcpLength);

        uint sequence = BinaryPrimitives.ReadUInt32BigEndian(frame[(tcp + 4)..]);
        BinaryPrimitives.WriteUInt32BigEndian(segment[(tcp + 4)..], unchecked(sequence + (uint)offset));
        byte flags = segment[tcp + 13];
        if (index != SegmentCount - 1) { flags &= unchecked((byte)~(Fin | Psh)); }
        if (index != 0)
        {
            flags &= unchecked((byte)~(Cwr | Urg));
            BinaryPrimitives.WriteUInt16BigEndian(segment[(tcp + 18)..], 0);
        }
        segment[tcp + 13] = flags;

        ulong pseudo = Transport.PseudoHeaderSumFor(tcpLength);
        BinaryPrimitives.WriteUInt16BigEndian(segment[(tcp + TransportHeader.TcpChecksumOffset)..], 0);
        ushort checksum = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(pseudo, segment.Slice(tcp, tcpLength)));
        BinaryPrimitives.WriteUInt16BigEndian(segment[(tcp + TransportHeader.TcpChecksumOffset)..], checksum);
        return length;
    }
}
