using System.Buffers.Binary;
using Vfio.Spec.Virtio;

namespace Vfio.Emulation.VirtioNet;

// TCP segmentation offload as a device does it (virtio 1.2 §5.1.6.2 with HOST_TSO4/6, §5.1.6.4 with GUEST_TSO4/6).
// The model's own code, not the driver's (nor Vfio.Net's software segmentation): were they shared, one mistake in the
// sequence numbers or checksums would make both sides agree.
public sealed partial class VirtioNetPort
{
    private readonly byte[] _segment = new byte[MaxFrame];

    /// <summary>Frames the driver sent with a gso_type (HOST_TSO4/6), each counted once however it was delivered.</summary>
    public long SegmentationFramesSent { get; private set; }

    /// <summary>Segments this port cut from such frames for a peer that did not negotiate GUEST_TSO for them.</summary>
    public long SegmentsCut { get; private set; }

    /// <summary>§5.1.3.1: HOST_TSO4/6 require CSUM, GUEST_TSO4/6 require GUEST_CSUM.</summary>
    private static bool SegmentationDependenciesMet(ulong features) =>
        ((features & (VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6)) == 0 || (features & VirtioFeatures.NetCsum) != 0)
        && ((features & (VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6)) == 0 || (features & VirtioFeatures.NetGuestCsum) != 0);

    /// <summary>
    /// A transmitted frame whose header asks for segmentation: checked against what the driver negotiated (gso_type
    /// TCPV4 with HOST_TSO4, TCPV6 with HOST_TSO6, no ECN bit as HOST_ECN is not offered, a gso_size, NEEDS_CSUM, and
    /// a TCP packet of that IP version behind an untagged Ethernet header); then passed whole to a peer that
    /// negotiated GUEST_TSO for it and MRG_RXBUF (as QEMU passes GSO packets between guests), or cut here into
    /// segments of gso_size payload bytes with their own IP and TCP fields and checksums. 1 done, 0 the peer ran out
    /// of receive buffers (the segments delivered so far are remembered in <paramref name="q"/>), -1 dropped.
    /// </summary>
    private int TransmitSegmented(QueueState q, Span<byte> header, Span<byte> frame, VirtioNetPort peer, int pair)
    {
        byte type = header[VirtioNetHeader.GsoType];
        ushort size = BinaryPrimitives.ReadUInt16LittleEndian(header[VirtioNetHeader.GsoSize..]);
        bool v4 = type == VirtioNetHeader.GsoTcpV4 && (DriverFeatures & VirtioFeatures.NetHostTso4) != 0;
        bool v6 = type == VirtioNetHeader.GsoTcpV6 && (DriverFeatures & VirtioFeatures.NetHostTso6) != 0;
        if (!(v4 || v6) || size == 0 || (header[VirtioNetHeader.Flags] & VirtioNetHeader.FlagNeedsCsum) == 0)
        {
            Violation($"gso_type {type} with gso_size {size} and flags {header[VirtioNetHeader.Flags]} (§5.1.6.2: TCPV4/TCPV6 as negotiated, with NEEDS_CSUM)");
            return -1;
        }
        if (!TryLocateTcp(frame, v4, out int ipStart, out int tcpStart, out int headersEnd))
        {
            Violation($"gso_type {type} on a {frame.Length}-byte frame that is not TCP over untagged IPv{(v4 ? 4 : 6)} (§5.1.6.2)");
            return -1;
        }
        int receivePair = peer.ReceivePairFor(pair, frame);
        ulong guestTso = v4 ? VirtioFeatures.NetGuestTso4 : VirtioFeatures.NetGuestTso6;
        if ((peer.DriverFeatures & guestTso) != 0 && (peer.DriverFeatures & VirtioFeatures.NetMergeRxBuffers) != 0)
        {
            // §5.1.6.4: a packet with a gso_type arrives with NEEDS_CSUM, its checksum left partial as the sender's
            // driver prepared it (checked to lie inside the frame first).
            int start = BinaryPrimitives.ReadUInt16LittleEndian(header[VirtioNetHeader.CsumStart..]);
            int offset = BinaryPrimitives.ReadUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..]);
            if (start != tcpStart || offset != 16)
            {
                Violation($"gso_type {type} with csum_start {start} and csum_offset {offset}: not the TCP checksum at {tcpStart} (§5.1.6.2)");
                return -1;
            }
            int whole = peer.TryDeliver(receivePair, frame, checksumCompleted: false, ((ushort)start, (ushort)offset), (type, size, (ushort)headersEnd));
            if (whole > 0) { SegmentationFramesSent++; }
            return whole;
        }
        int payload = frame.Length - headersEnd;
        int count = payload == 0 ? 1 : (payload + size - 1) / size;
        var ip = frame[ipStart..];
        uint sequence = BinaryPrimitives.ReadUInt32BigEndian(frame[(tcpStart + 4)..]);
        byte tcpFlags = frame[tcpStart + 13];
        ushort id = v4 ? BinaryPrimitives.ReadUInt16BigEndian(ip[4..]) : (ushort)0;
        for (int i = q.SegmentsDelivered; i < count; i++)
        {
            int offset = i * size;
            int length = Math.Min(size, payload - offset);
            var segment = _segment.AsSpan(0, headersEnd + length);
            frame[..headersEnd].CopyTo(segment);
            frame.Slice(headersEnd + offset, length).CopyTo(segment[headersEnd..]);
            var sip = segment[ipStart..];
            int tcpLength = headersEnd - tcpStart + length;
            uint pseudo;
            if (v4)
            {
                // RFC 791 §3.1: total length and identification per datagram, then the header checksum.
                int ihl = (sip[0] & 0xF) * 4;
                BinaryPrimitives.WriteUInt16BigEndian(sip[2..], (ushort)(ihl + tcpLength));
                BinaryPrimitives.WriteUInt16BigEndian(sip[4..], (ushort)(id + i));
                BinaryPrimitives.WriteUInt16BigEndian(sip[10..], 0);
                BinaryPrimitives.WriteUInt16BigEndian(sip[10..], (ushort)~OnesComplementSum(sip[..ihl]));
                pseudo = OnesComplementSum(sip.Slice(12, 8), (uint)(6 + tcpLength));
            }
            else
            {
                // RFC 8200 §3: the payload length (no extension headers here).
                BinaryPrimitives.WriteUInt16BigEndian(sip[4..], (ushort)tcpLength);
                pseudo = OnesComplementSum(sip.Slice(8, 32), (uint)(6 + tcpLength));
            }
            // RFC 9293 §3.4 / RFC 3168 §6.1.2: each segment's sequence number is the first byte it carries; FIN and
            // PSH stay on the last segment, CWR on the first.
            var tcp = segment[tcpStart..];
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence + (uint)offset);
            byte flags = tcpFlags;
            if (i != count - 1) { flags &= unchecked((byte)~0x09); }
            if (i != 0) { flags &= unchecked((byte)~0x80); }
            tcp[13] = flags;
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], 0);
            ushort check = (ushort)~OnesComplementSum(tcp, pseudo);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], check == 0 ? (ushort)0xFFFF : check);
            int r = peer.TryDeliver(receivePair, segment, checksumCompleted: true, partial: null);
            if (r == 0) { q.SegmentsDelivered = i; return 0; }
            if (r < 0) { q.SegmentsDelivered = 0; return -1; }
            SegmentsCut++;
        }
        q.SegmentsDelivered = 0;
        SegmentationFramesSent++;
        return 1;
    }

    /// <summary>Where the IP and TCP headers of an untagged Ethernet frame are and where its TCP header ends.</summary>
    private static bool TryLocateTcp(ReadOnlySpan<byte> frame, bool v4, out int ipStart, out int tcpStart, out int headersEnd)
    {
        ipStart = 14;
        tcpStart = headersEnd = 0;
        if (frame.Length < ipStart + 40) { return false; }
        var ip = frame[ipStart..];
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (v4)
        {
            int ihl = (ip[0] & 0xF) * 4;
            if (etherType != 0x0800 || ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6) { return false; }
            if (BinaryPrimitives.ReadUInt16BigEndian(ip[2..]) != frame.Length - ipStart) { return false; }
            if ((BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3FFF) != 0) { return false; }   // a fragment
            tcpStart = ipStart + ihl;
        }
        else
        {
            if (etherType != 0x86DD || ip[0] >> 4 != 6 || ip[6] != 6) { return false; }
            if (BinaryPrimitives.ReadUInt16BigEndian(ip[4..]) != frame.Length - ipStart - 40) { return false; }
            tcpStart = ipStart + 40;
        }
        if (frame.Length < tcpStart + 20) { return false; }
        int dataOffset = (frame[tcpStart + 12] >> 4) * 4;
        if (dataOffset < 20 || tcpStart + dataOffset > frame.Length) { return false; }
        headersEnd = tcpStart + dataOffset;
        return true;
    }
}
