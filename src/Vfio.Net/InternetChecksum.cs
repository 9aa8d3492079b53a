using System.Buffers.Binary;

namespace Vfio.Net;

/// <summary>
/// The Internet checksum (RFC 1071): a 16-bit ones' complement sum, the arithmetic of the IPv4 header checksum
/// (RFC 791) and of the TCP and UDP checksums with their pseudo headers (RFC 793, RFC 768, RFC 8200 §8.1).
/// Accumulate with <see cref="Add"/> (carries kept in the 64-bit sum), then <see cref="Fold"/>.
/// </summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> as big-endian 16-bit words (an odd last byte padded with zero, RFC 1071 §4.1) to <paramref name="sum"/>.</summary>
    public static ulong Add(ulong sum, ReadOnlySpan<byte> data)
    {
        int i = 0;
        for (; i + 1 < data.Length; i += 2) { sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]); }
        if (i < data.Length) { sum += (ulong)data[i] << 8; }
        return sum;
    }

    /// <summary>Folds the carries back in: the 16-bit ones' complement sum (not yet complemented).</summary>
    public static ushort Fold(ulong sum)
    {
        while (sum >> 16 != 0) { sum = (sum & 0xFFFF) + (sum >> 16); }
        return (ushort)sum;
    }
}
