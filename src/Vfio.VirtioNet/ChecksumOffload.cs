using System.Buffers.Binary;
using Vfio.Net;

namespace Vfio.VirtioNet;

/// <summary>
/// The driver's side of virtio-net checksum offload (virtio 1.2 §5.1.6.2 "Packet Transmission", §5.1.6.4 "Processing
/// of Incoming Packets"): finding the TCP/UDP header of an Ethernet frame and the Internet checksum arithmetic
/// (RFC 1071) the driver does itself. Frames understood: Ethernet II, at most one 802.1Q tag, IPv4 (any IHL) or IPv6
/// without extension headers, carrying TCP or UDP.
/// </summary>
internal static class ChecksumOffload
{
    private const int EthernetHeader = 14;
    private const ushort EtherTypeIPv4 = 0x0800, EtherTypeIPv6 = 0x86DD, EtherTypeVlan = 0x8100;
    private const byte ProtocolTcp = 6, ProtocolUdp = 17;

    /// <summary>Offset of the checksum field in a TCP header (RFC 9293 §3.1) and in a UDP header (RFC 768).</summary>
    public const int TcpChecksumOffset = 16, UdpChecksumOffset = 6;

    /// <summary>Where a frame's transport header is and what its pseudo header adds up to.</summary>
    /// <param name="Start">Offset of the TCP/UDP header in the frame: csum_start.</param>
    /// <param name="ChecksumOffset">Offset of its checksum field from <paramref name="Start"/>: csum_offset.</param>
    /// <param name="Length">TCP/UDP header and payload bytes, as the IP header gives them (Ethernet padding excluded).</param>
    /// <param name="PseudoHeaderSum">The unfolded ones' complement sum of the pseudo header (RFC 9293 §3.1, RFC 8200 §8.1).</param>
    /// <param name="Ipv4HeaderStart">Offset of the IPv4 header, or -1 for IPv6.</param>
    public readonly record struct Layer4(int Start, int ChecksumOffset, int Length, ulong PseudoHeaderSum, int Ipv4HeaderStart);

    /// <summary>Parses <paramref name="frame"/>; false when it is not TCP or UDP over IPv4 or IPv6 that fits in the frame.</summary>
    public static bool TryLocate(ReadOnlySpan<byte> frame, out Layer4 layer4)
    {
        layer4 = default;
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
        int offset = protocol switch { ProtocolTcp => TcpChecksumOffset, ProtocolUdp => UdpChecksumOffset, _ => -1 };
        int headerNeeded = protocol == ProtocolTcp ? 20 : 8;
        if (offset < 0 || length < headerNeeded) { return false; }
        layer4 = new Layer4(start, offset, length, pseudo, etherType == EtherTypeIPv4 ? ip : -1);
        return true;
    }

    /// <summary>
    /// Stores the checksum of <paramref name="covered"/> (whose checksum field holds the pseudo-header sum or zero
    /// plus <paramref name="extra"/>) at <paramref name="field"/>: the complement of the sum, 0xFFFF for 0 (the same
    /// value in ones' complement, and what UDP needs, as 0 there means "no checksum", RFC 768).
    /// </summary>
    public static void Complete(Span<byte> covered, int field, ulong extra)
    {
        ushort value = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(extra, covered));
        BinaryPrimitives.WriteUInt16BigEndian(covered[field..], value == 0 ? (ushort)0xFFFF : value);
    }

    /// <summary>Writes the IPv4 header checksum of the header at <paramref name="ip"/> (RFC 791 §3.1): virtio has no offload for it.</summary>
    public static void WriteIpv4HeaderChecksum(Span<byte> frame, int ip)
    {
        int ihl = (frame[ip] & 0xF) * 4;
        BinaryPrimitives.WriteUInt16BigEndian(frame[(ip + 10)..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(frame[(ip + 10)..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, frame.Slice(ip, ihl))));
    }
}
