using System.Buffers.Binary;
using System.Runtime.InteropServices;

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
        // RFC 1071 §2 (B): the sum does not depend on byte order. The data is added as native-order 32-bit words
        // (2^16 = 1 in ones' complement arithmetic, so a 32-bit word counts as its two 16-bit halves), folded, and
        // swapped to network order once, instead of one big-endian 16-bit read per word.
        ulong native = 0;
        var words = MemoryMarshal.Cast<byte, uint>(data);
        for (int w = 0; w < words.Length; w++) { native += words[w]; }
        int i = words.Length * sizeof(uint);
        if (i + 1 < data.Length)
        {
            native += MemoryMarshal.Read<ushort>(data[i..]);
            i += 2;
        }
        // An odd last byte is the high byte of a big-endian word padded with zero (RFC 1071 §4.1).
        if (i < data.Length) { native += BitConverter.IsLittleEndian ? data[i] : (ulong)data[i] << 8; }
        ushort folded = Fold(native);
        return sum + (BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(folded) : folded);
    }

    /// <summary>Folds the carries back in: the 16-bit ones' complement sum (not yet complemented).</summary>
    public static ushort Fold(ulong sum)
    {
        while (sum >> 16 != 0) { sum = (sum & 0xFFFF) + (sum >> 16); }
        return (ushort)sum;
    }
}
