using System.Buffers.Binary;
using Vfio.Spec.Virtio;

namespace Vfio.Emulation.VirtioNet;

// Checksum offload as a device does it (virtio 1.2 §5.1.6.2, §5.1.6.4). Deliberately the model's own code, not the
// driver's: were they shared, one mistake would make both sides agree on a wrong checksum.
public sealed partial class VirtioNetPort
{
    /// <summary>
    /// Receiving side: when this port's driver negotiated VIRTIO_NET_F_GUEST_CSUM, a frame its peer's driver sent with
    /// NEEDS_CSUM arrives with NEEDS_CSUM, the same csum_start and csum_offset and the partial checksum as sent
    /// (§5.1.6.4.1), as QEMU passes it between guests on one host, instead of completed. False (default): completed.
    /// </summary>
    public bool ForwardPartialChecksums { get; set; }

    /// <summary>
    /// §5.1.6.2.1 from the device's side: with VIRTIO_NET_F_CSUM negotiated and NEEDS_CSUM set, the ones' complement
    /// checksum from csum_start to the end of the packet is stored at csum_offset from csum_start, unless
    /// <paramref name="receiver"/> takes partial checksums (<see cref="ForwardPartialChecksums"/>). Returns 1 when
    /// one was asked for (<paramref name="partial"/> set when it was left partial), 0 when none was, -1 (after
    /// flagging the driver's mistake) when csum_start/csum_offset place the field outside the packet.
    /// </summary>
    private int CompleteTransmitChecksum(Span<byte> header, Span<byte> frame, VirtioNetPort receiver, out (ushort Start, ushort Offset)? partial)
    {
        partial = null;
        if ((header[VirtioNetHeader.Flags] & VirtioNetHeader.FlagNeedsCsum) == 0 || (DriverFeatures & VirtioFeatures.NetCsum) == 0) { return 0; }
        int start = BinaryPrimitives.ReadUInt16LittleEndian(header[VirtioNetHeader.CsumStart..]);
        int offset = BinaryPrimitives.ReadUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..]);
        if ((long)start + offset + 2 > frame.Length)
        {
            Violation($"NEEDS_CSUM with csum_start {start} and csum_offset {offset} in a {frame.Length}-byte frame (§5.1.6.2)");
            return -1;
        }
        if (receiver.ForwardPartialChecksums && (receiver.DriverFeatures & VirtioFeatures.NetGuestCsum) != 0)
        {
            partial = ((ushort)start, (ushort)offset);
            return 1;
        }
        var covered = frame[start..];
        // The field holds the pseudo-header sum (§5.1.6.2): it takes part in the sum as it is.
        ushort sum = OnesComplementSum(covered);
        ushort check = (ushort)~sum;
        BinaryPrimitives.WriteUInt16BigEndian(covered[offset..], check == 0 ? (ushort)0xFFFF : check);
        return 1;
    }

    /// <summary>RFC 1071 over <paramref name="data"/>, 32 bits at a time with end-around carry folded at the end.</summary>
    private static ushort OnesComplementSum(ReadOnlySpan<byte> data, uint initial = 0)
    {
        ulong acc = initial;
        while (data.Length >= 4)
        {
            acc += BinaryPrimitives.ReadUInt32BigEndian(data);
            data = data[4..];
        }
        if (data.Length >= 2) { acc += BinaryPrimitives.ReadUInt16BigEndian(data); data = data[2..]; }
        if (data.Length == 1) { acc += (uint)data[0] << 8; }
        acc = (acc >> 32) + (acc & 0xFFFF_FFFF);
        acc = (acc >> 16) + (acc & 0xFFFF);
        acc = (acc >> 16) + (acc & 0xFFFF);
        acc = (acc >> 16) + (acc & 0xFFFF);
        return (ushort)acc;
    }

    /// <summary>
    /// Whether the frame is TCP or UDP over untagged IPv4 or IPv6 (no extension headers) with a right checksum: what
    /// the device checks before marking DATA_VALID (§5.1.6.4). A UDP checksum of 0 (none sent) is not a verified one.
    /// </summary>
    private static bool TransportChecksumVerified(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < 14) { return false; }
        var ip = frame[14..];
        int protocol, l4Length;
        uint pseudo;
        switch (BinaryPrimitives.ReadUInt16BigEndian(frame[12..]))
        {
            case 0x0800 when ip.Length >= 20 && ip[0] >> 4 == 4:
            {
                int ihl = (ip[0] & 0xF) << 2;
                int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
                if (ihl < 20 || total < ihl || total > ip.Length || (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3FFF) != 0) { return false; }
                protocol = ip[9];
                l4Length = total - ihl;
                pseudo = OnesComplementSum(ip.Slice(12, 8), (uint)(protocol + l4Length));
                ip = ip.Slice(ihl, l4Length);
                break;
            }
            case 0x86DD when ip.Length >= 40 && ip[0] >> 4 == 6:
            {
                l4Length = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
                protocol = ip[6];
                if (40 + l4Length > ip.Length) { return false; }
                pseudo = OnesComplementSum(ip.Slice(8, 32), (uint)(protocol + l4Length));
                ip = ip.Slice(40, l4Length);
                break;
            }
            default:
                return false;
        }
        if (protocol == 6 && ip.Length < 20) { return false; }
        if (protocol == 17 && (ip.Length < 8 || BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) == 0)) { return false; }
        if (protocol is not (6 or 17)) { return false; }
        return OnesComplementSum(ip, pseudo) == 0xFFFF;
    }

    /// <summary>
    /// The flags and checksum fields of the header for a frame delivered to this port: DATA_VALID when it negotiated
    /// VIRTIO_NET_F_GUEST_CSUM and the checksum is known good (completed by the sender's port, or verified here); a
    /// hostile mode may instead claim a partial checksum outside the packet.
    /// </summary>
    private void WriteReceiveChecksum(Span<byte> header, ReadOnlySpan<byte> frame, bool completed, (ushort Start, ushort Offset)? partial, int queue)
    {
        if ((DriverFeatures & VirtioFeatures.NetGuestCsum) == 0) { return; }
        if (Act(VirtioNetHostileMode.ChecksumStartPastPacket, queue))
        {
            header[VirtioNetHeader.Flags] = VirtioNetHeader.FlagNeedsCsum;
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumStart..], (ushort)(frame.Length + 1));
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..], 0);
            return;
        }
        if (Act(VirtioNetHostileMode.ChecksumOffsetPastPacket, queue))
        {
            header[VirtioNetHeader.Flags] = VirtioNetHeader.FlagNeedsCsum;
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumStart..], 14);
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..], (ushort)frame.Length);
            return;
        }
        if (partial is { } p)
        {
            header[VirtioNetHeader.Flags] = VirtioNetHeader.FlagNeedsCsum;
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumStart..], p.Start);
            BinaryPrimitives.WriteUInt16LittleEndian(header[VirtioNetHeader.CsumOffset..], p.Offset);
            return;
        }
        if (completed || TransportChecksumVerified(frame)) { header[VirtioNetHeader.Flags] = VirtioNetHeader.FlagDataValid; }
    }
}
