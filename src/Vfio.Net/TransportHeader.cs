using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// Where an Ethernet frame's TCP or UDP header is, what checksum offload needs to know of it (the IP header's offset
/// and length, the checksum field, the pseudo-header sum), found by <see cref="TryLocate"/>. Frames understood:
/// Ethernet II, at most one 802.1Q tag, IPv4 (any IHL, not a fragment) or IPv6 without extension headers, carrying TCP
/// or UDP whose header fits in what the IP header says. Drivers use it to fill their devices' offload descriptors
/// (virtio-net's csum_start/csum_offset, the 82576's MACLEN/IPLEN context) from a packet's
/// <see cref="PacketFlags.TxL4Checksum"/>.
/// </summary>
/// <param name="IpStart">Offset of the IP header in the frame (the 82576's MACLEN).</param>
/// <param name="IsIpv4">IPv4; otherwise IPv6.</param>
/// <param name="Start">Offset of the TCP/UDP header in the frame (virtio's csum_start).</param>
/// <param name="IsTcp">TCP; otherwise UDP.</param>
/// <param name="Length">TCP/UDP header and payload bytes, as the IP header gives them (Ethernet padding excluded).</param>
/// <param name="PseudoHeaderSum">The unfolded ones' complement sum of the pseudo header (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1).</param>
public readonly record struct TransportHeader(int IpStart, bool IsIpv4, int Start, bool IsTcp, int Length, ulong PseudoHeaderSum)
{
    private const int EthernetHeader = 14;
    private const ushort EtherTypeIPv4 = 0x0800, EtherTypeIPv6 = 0x86DD, EtherTypeVlan = 0x8100;
    private const byte ProtocolTcp = 6, ProtocolUdp = 17;

    /// <summary>Offset of the checksum field in a TCP header (RFC 9293 §3.1).</summary>
    public const int TcpChecksumOffset = 16;

    /// <summary>Offset of the checksum field in a UDP header (RFC 768).</summary>
    public const int UdpChecksumOffset = 6;

    /// <summary>Bytes of the IP header: 40 for IPv6, IHL x 4 for IPv4 (the 82576's IPLEN).</summary>
    public int IpHeaderLength => Start - IpStart;

    /// <summary>Offset of the checksum field from <see cref="Start"/> (virtio's csum_offset).</summary>
    public int ChecksumOffset => IsTcp ? TcpChecksumOffset : UdpChecksumOffset;

    /// <summary>
    /// The pseudo-header sum for a TCP/UDP length of <paramref name="length"/> instead of <see cref="Length"/>: that of a
    /// segment cut from this packet, or of a packet joined from segments like it.
    /// </summary>
    public ulong PseudoHeaderSumFor(int length) => PseudoHeaderSum - (ulong)Length + (ulong)length;

    /// <summary>
    /// Sets the IP header of <paramref name="frame"/> (laid out as the frame this was located in) for TCP/UDP of
    /// <paramref name="length"/> bytes: the IPv4 total length and header checksum (RFC 791 §3.1), or the IPv6 payload
    /// length (RFC 8200 §3). Other IPv4 fields (the identification) are to be set before, as the checksum covers them.
    /// </summary>
    public void WriteIpLength(Span<byte> frame, int length)
    {
        if (IsIpv4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(frame[(IpStart + 2)..], (ushort)(IpHeaderLength + length));
            WriteIpv4HeaderChecksum(frame, IpStart);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(frame[(IpStart + 4)..], (ushort)length);
        }
    }

    /// <summary>Writes the header checksum of the IPv4 header at <paramref name="ipStart"/> (RFC 791 §3.1; its IHL gives the length).</summary>
    public static void WriteIpv4HeaderChecksum(Span<byte> frame, int ipStart)
    {
        int ihl = (frame[ipStart] & 0xF) * 4;
        BinaryPrimitives.WriteUInt16BigEndian(frame[(ipStart + 10)..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(frame[(ipStart + 10)..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, frame.Slice(ipStart, ihl))));
    }

    /// <summary>Parses <paramref name="frame"/>; false when it is not TCP or UDP over IPv4 or IPv6 that fits in the frame.</summary>
    public static bool TryLocate(ReadOnlySpan<byte> frame, out TransportHeader header)
    {
        header = default;
        if (frame.Length < EthernetHeader) { return false; }
        int ip = EthernetHeader;
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == EtherTypeVlan)
        {
            if (frame.Length < EthernetHeader + 4) { return false; }
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            ip += 4;
        }
        int start, length, protocol;
        ulong pseudo;
        if (etherType == EtherTypeIPv4)
        {
            // RFC 791 §3.1: IHL in 32-bit words, total length covers the IP header and its payload.
            if (frame.Length < ip + 20 || frame[ip] >> 4 != 4) { return false; }
            int ihl = (frame[ip] & 0xF) * 4;
            int total = BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 2)..]);
            if (ihl < 20 || total < ihl || ip + total > frame.Length) { return false; }
            // Fragments other than the first carry no transport header; the first's checksum covers data not here.
            if ((BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 6)..]) & 0x3FFF) != 0) { return false; }
            protocol = frame[ip + 9];
            start = ip + ihl;
            length = total - ihl;
            pseudo = InternetChecksum.Add(0, frame.Slice(ip + 12, 8)) + (uint)protocol + (uint)length;
        }
        else if (etherType == EtherTypeIPv6)
        {
            // RFC 8200 §3: a 40-byte header; the payload length follows it. Extension headers are not walked.
            if (frame.Length < ip + 40 || frame[ip] >> 4 != 6) { return false; }
            length = BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 4)..]);
            protocol = frame[ip + 6];
            start = ip + 40;
            if (start + length > frame.Length) { return false; }
            pseudo = InternetChecksum.Add(0, frame.Slice(ip + 8, 32)) + (uint)protocol + (uint)length;
        }
        else
        {
            return false;
        }
        if (protocol is not (ProtocolTcp or ProtocolUdp) || length < (protocol == ProtocolTcp ? 20 : 8)) { return false; }
        header = new TransportHeader(ip, etherType == EtherTypeIPv4, start, protocol == ProtocolTcp, length, pseudo);
        return true;
    }
}
