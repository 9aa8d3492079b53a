using System.Buffers.Binary;
using Vfio.Net;

namespace Vfio.VirtioNet;

/// <summary>
/// The driver's side of virtio-net checksum offload (virtio 1.2 §5.1.6.2 "Packet Transmission", §5.1.6.4 "Processing
/// of Incoming Packets"): the Internet checksum arithmetic (RFC 1071) the driver does itself, on the TCP/UDP header
/// <see cref="TransportHeader.TryLocate"/> found.
/// </summary>
internal static class ChecksumOffload
{
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
}
