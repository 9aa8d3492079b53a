using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// Receive-side TCP coalescing in software (what Linux calls GRO, a NIC LRO): consecutive in-order segments of one TCP
/// flow, as a port receives them in a burst, joined into one packet of up to 64 KiB, which a TAP with a virtio_net_hdr
/// takes in one write (gso_type TCPV4/TCPV6, gso_size the segments' payload) instead of one write per frame. The
/// reverse of <see cref="TcpSegmentation"/>.
/// </summary>
/// <remarks>
/// <para>A segment joins the packet being built when it continues it exactly, as Linux's tcp_gro_receive requires: the
/// same Ethernet, IP and TCP headers except the IP length, the IPv4 identification and header checksum (the
/// identification one more each segment, or, with DF set, the same for all: the second segment decides which, as in
/// Linux's inet_gro_receive), the TCP sequence number (the next byte expected) and checksum; only ACK set, or ACK and
/// PSH (which ends the packet); a payload no longer than the first one's (a shorter one ends the packet). Only
/// segments whose TCP checksum and IPv4 header checksum are right join: one the port did not check is checked here
/// (the coalesced packet gets a fresh IPv4 header checksum, which would hide a bad one), and one that is wrong stays as
/// it came, for the kernel to drop. What does not join is left to the caller, who sends it as it is.</para>
/// <para>The packet carries a partial checksum (the pseudo-header sum in the TCP checksum field, csum_start at the TCP
/// header, virtio 1.2 §5.1.6.2's NEEDS_CSUM), as the kernel's own GRO packets do; every segment in it was checked.
/// One thread uses an instance at a time; nothing is allocated after construction.</para>
/// </remarks>
public sealed class TcpCoalescer
{
    private const byte Ack = 0x10, Psh = 0x08;
    private const int MaxIpPacket = 65535;
    private readonly byte[] _packet;
    private TransportHeader _transport;
    private int _headerLength, _length, _segments, _mss;
    private uint _nextSequence;
    private ushort _firstId;
    private bool _closed, _fixedId, _dontFragment;

    /// <summary>Creates a coalescer whose packets hold up to 64 KiB of IP packet plus an Ethernet header with one VLAN tag.</summary>
    public TcpCoalescer() => _packet = new byte[MaxIpPacket + 18];

    /// <summary>Segments in the packet being built (0: none).</summary>
    public int SegmentCount => _segments;

    /// <summary>The packet being built: the first segment's headers, every segment's payload in order (see <see cref="Complete"/>).</summary>
    public ReadOnlySpan<byte> Packet => _packet.AsSpan(0, _length);

    /// <summary>Bytes of the Ethernet, IP and TCP headers of the packet (virtio's hdr_len).</summary>
    public int HeaderLength => _headerLength;

    /// <summary>Payload bytes of the first segment, which no later one exceeds (virtio's gso_size).</summary>
    public int MaxSegmentSize => _mss;

    /// <summary>Offset of the TCP header in the packet (virtio's csum_start).</summary>
    public int TransportStart => _transport.Start;

    /// <summary>IPv4, or IPv6 (virtio's gso_type TCPV4 or TCPV6).</summary>
    public bool IsIpv4 => _transport.IsIpv4;

    /// <summary>
    /// Adds <paramref name="frame"/>: true when it joined the packet being built, or started one (when none is being
    /// built); false when it cannot join (another flow, out of order, flags other than ACK/PSH, a wrong checksum, no
    /// room, not TCP): the caller then <see cref="Complete"/>s and sends what is built, and offers the frame again
    /// (to start the next packet) or sends it as it is.
    /// </summary>
    /// <param name="frame">An Ethernet frame as the port received it.</param>
    /// <param name="checksumVerified">The port checked the TCP checksum and found it right (<see cref="PacketFlags.L4ChecksumGood"/>): it is not summed again.</param>
    /// <param name="ipChecksumVerified">The port checked the IPv4 header checksum and found it right (<see cref="PacketFlags.IpChecksumGood"/>).</param>
    public bool TryAdd(ReadOnlySpan<byte> frame, bool checksumVerified, bool ipChecksumVerified = false)
    {
        if (!TransportHeader.TryLocate(frame, out var transport) || !transport.IsTcp) { return false; }
        int tcp = transport.Start;
        int tcpHeader = (frame[tcp + 12] >> 4) * 4;
        if (tcpHeader < 20 || tcpHeader > transport.Length) { return false; }
        int headerLength = tcp + tcpHeader;
        int payload = transport.Length - tcpHeader;
        byte flags = frame[tcp + 13];
        if (payload == 0 || (flags & ~Psh) != Ack) { return false; }
        uint sequence = BinaryPrimitives.ReadUInt32BigEndian(frame[(tcp + 4)..]);
        ushort id = transport.IsIpv4 ? BinaryPrimitives.ReadUInt16BigEndian(frame[(transport.IpStart + 4)..]) : (ushort)0;
        if (_segments == 0)
        {
            // IPv4 options are left alone: Linux's GRO does not merge them either.
            if (transport.IsIpv4 && transport.IpHeaderLength != 20) { return false; }
            if (!ChecksumsAreRight(frame, transport, checksumVerified, ipChecksumVerified)) { return false; }
            frame[..(headerLength + payload)].CopyTo(_packet);
            _transport = transport;
            _headerLength = headerLength;
            _length = headerLength + payload;
            _mss = payload;
            _nextSequence = unchecked(sequence + (uint)payload);
            _firstId = id;
            _dontFragment = transport.IsIpv4 && (frame[transport.IpStart + 6] & 0x40) != 0;
            _fixedId = false;
            _segments = 1;
            _closed = (flags & Psh) != 0;
            return true;
        }
        if (_closed || headerLength != _headerLength || transport.IpStart != _transport.IpStart || payload > _mss
            || sequence != _nextSequence || _length + payload - _transport.IpStart > MaxIpPacket
            || (transport.IsIpv4 && !IdContinues(id))
            || !SameHeaders(frame, transport))
        {
            return false;
        }
        if (!ChecksumsAreRight(frame, transport, checksumVerified, ipChecksumVerified)) { return false; }
        if (transport.IsIpv4 && _segments == 1) { _fixedId = id == _firstId; }
        frame.Slice(headerLength, payload).CopyTo(_packet.AsSpan(_length));
        _length += payload;
        _nextSequence = unchecked(sequence + (uint)payload);
        _segments++;
        // PSH ends a packet, and so does a short segment (the sender had no more at hand).
        if ((flags & Psh) != 0)
        {
            _packet[_transport.Start + 13] |= Psh;
            _closed = true;
        }
        if (payload < _mss) { _closed = true; }
        return true;
    }

    /// <summary>
    /// Finishes the packet being built and returns its length: the IP lengths (and the IPv4 header checksum) cover
    /// every segment, and the TCP checksum field holds the pseudo-header sum (a partial checksum, NEEDS_CSUM at
    /// <see cref="TransportStart"/> + 16). A packet of one segment is left as it came, its own checksum in place:
    /// send it as a plain frame. The next <see cref="TryAdd"/> starts a new packet; <see cref="Packet"/> stays
    /// readable until then.
    /// </summary>
    /// <exception cref="InvalidOperationException">No packet is being built.</exception>
    public int Complete()
    {
        if (_segments == 0) { throw new InvalidOperationException("no packet is being built: TryAdd a segment first"); }
        int length = _length;
        if (_segments > 1)
        {
            var packet = _packet.AsSpan(0, length);
            int tcpLength = length - _transport.Start;
            _transport.WriteIpLength(packet, tcpLength);
            BinaryPrimitives.WriteUInt16BigEndian(packet[(_transport.Start + TransportHeader.TcpChecksumOffset)..],
                InternetChecksum.Fold(_transport.PseudoHeaderSumFor(tcpLength)));
        }
        _segments = 0;
        return length;
    }

    /// <summary>
    /// Whether the IPv4 identification continues the packet's: one more per segment, or the same for every one when DF
    /// is set; the second segment decides which (Linux's inet_gro_receive), and the rest must keep to it.
    /// </summary>
    private bool IdContinues(ushort id)
    {
        if (_segments == 1) { return id == (ushort)(_firstId + 1) || (id == _firstId && _dontFragment); }
        return id == (_fixedId ? _firstId : (ushort)(_firstId + _segments));
    }

    /// <summary>
    /// Whether the segment's checksums are right where the port did not check them: the TCP sum over pseudo header and
    /// segment, checksum included, is all ones, and so is the IPv4 header's.
    /// </summary>
    private static bool ChecksumsAreRight(ReadOnlySpan<byte> frame, TransportHeader transport, bool tcpVerified, bool ipVerified)
    {
        if (transport.IsIpv4 && !ipVerified
            && InternetChecksum.Fold(InternetChecksum.Add(0, frame.Slice(transport.IpStart, transport.IpHeaderLength))) != 0xFFFF)
        {
            return false;
        }
        return tcpVerified
            || InternetChecksum.Fold(InternetChecksum.Add(transport.PseudoHeaderSum, frame.Slice(transport.Start, transport.Length))) == 0xFFFF;
    }

    /// <summary>The headers of <paramref name="frame"/> equal the packet's but for the fields that differ from segment to segment.</summary>
    private bool SameHeaders(ReadOnlySpan<byte> frame, TransportHeader transport)
    {
        var first = _packet.AsSpan(0, _headerLength);
        int ip = transport.IpStart, tcp = transport.Start;
        // Ethernet (and the VLAN tag) up to the IP header.
        if (!frame[..ip].SequenceEqual(first[..ip])) { return false; }
        if (transport.IsIpv4)
        {
            // Version/IHL and TOS; then flags/fragment, TTL, protocol; the addresses. Not the length, ID or checksum.
            if (!frame.Slice(ip, 2).SequenceEqual(first.Slice(ip, 2))
                || !frame.Slice(ip + 6, 4).SequenceEqual(first.Slice(ip + 6, 4))
                || !frame.Slice(ip + 12, 8).SequenceEqual(first.Slice(ip + 12, 8)))
            {
                return false;
            }
        }
        else
        {
            // Version, traffic class, flow label; next header, hop limit, addresses. Not the payload length.
            if (!frame.Slice(ip, 4).SequenceEqual(first.Slice(ip, 4)) || !frame.Slice(ip + 6, 34).SequenceEqual(first.Slice(ip + 6, 34)))
            {
                return false;
            }
        }
        // TCP: the ports; the acknowledgment number, data offset, window; the urgent pointer and the options. Not the
        // sequence number or checksum; the flags were checked (ACK, maybe PSH).
        return frame.Slice(tcp, 4).SequenceEqual(first.Slice(tcp, 4))
            && frame.Slice(tcp + 8, 5).SequenceEqual(first.Slice(tcp + 8, 5))
            && frame.Slice(tcp + 14, 2).SequenceEqual(first.Slice(tcp + 14, 2))
            && frame[(tcp + 18).._headerLength].SequenceEqual(first[(tcp + 18).._headerLength]);
    }
}
