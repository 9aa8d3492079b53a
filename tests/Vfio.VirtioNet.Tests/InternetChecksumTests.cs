using Vfio.Net;

namespace Vfio.VirtioNet.Tests;

/// <summary><see cref="InternetChecksum"/> (native-order 32-bit words, swapped once) against RFC 1071's definition read literally.</summary>
public sealed class InternetChecksumTests
{
    /// <summary>RFC 1071 §1 word by word: big-endian 16-bit words, an odd last byte padded with zero, carries folded at the end.</summary>
    private static ushort Reference(ulong start, ReadOnlySpan<byte> data)
    {
        ulong sum = start;
        for (int i = 0; i < data.Length; i += 2) { sum += (ulong)(data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0)); }
        while (sum >> 16 != 0) { sum = (sum & 0xFFFF) + (sum >> 16); }
        return (ushort)sum;
    }

    [Fact]
    public void Every_length_and_alignment_sums_as_the_rfc_says()
    {
        var random = new Random(1071);
        var bytes = new byte[1600];
        for (int round = 0; round < 20; round++)
        {
            random.NextBytes(bytes);
            if (round == 0) { bytes.AsSpan().Fill(0xFF); }   // every word 0xFFFF: the carries at their largest
            for (int offset = 0; offset < 4; offset++)
            {
                foreach (int length in new[] { 0, 1, 2, 3, 4, 5, 7, 8, 9, 20, 40, 59, 60, 1447, 1448, 1514, 1595 })
                {
                    var data = bytes.AsSpan(offset, length);
                    ulong start = (ulong)random.Next(0, 0x3FFFF);
                    Assert.Equal(Reference(start, data), InternetChecksum.Fold(InternetChecksum.Add(start, data)));
                }
            }
        }
    }

    [Fact]
    public void The_rfc_1071_example_sums_to_ddf2()
    {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        Assert.Equal(0xDDF2, InternetChecksum.Fold(InternetChecksum.Add(0, [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])));
    }
}
