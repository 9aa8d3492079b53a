using System.Numerics;
using System.Runtime.InteropServices;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>The first block of a read that did not hold its pattern.</summary>
/// <param name="Lba">The block.</param>
/// <param name="Offset">The first byte within the block that differs.</param>
/// <param name="Expected">The pattern's byte there.</param>
/// <param name="Actual">The byte read.</param>
internal readonly record struct PatternMismatch(ulong Lba, int Offset, byte Expected, byte Actual)
{
    /// <inheritdoc />
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"LBA {Lba} byte {Offset}: expected 0x{Expected:x2}, read 0x{Actual:x2}");
}

/// <summary>
/// The data <c>vfio nvme perf --verify</c> writes: every logical block's bytes are a function of its LBA and a seed
/// only, so any write of a block writes the same bytes and a read can be checked without knowing which write
/// landed last, on any queue. Each 8-byte word is the block's key (SplitMix64 of LBA and seed: blocks differ
/// everywhere) plus the word's index times the golden ratio (words within a block differ, so a shifted transfer
/// is caught too). Blocks are whole multiples of 8 bytes (NVMe LBA data sizes are 2^9 and up).
/// </summary>
internal static class VerifyPattern
{
    /// <summary>The seed <c>perf</c> uses ("VFIONVME").</summary>
    public const ulong DefaultSeed = 0x5646_494F_4E56_4D45;

    private const ulong Golden = 0x9E37_79B9_7F4A_7C15;

    /// <summary>Fills <paramref name="data"/>, whole blocks from <paramref name="lba"/> on, with their pattern.</summary>
    public static void Fill(Span<byte> data, ulong lba, int blockSize, ulong seed)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int perBlock = blockSize / sizeof(ulong);
        for (int b = 0; b * perBlock < words.Length; b++)
        {
            ulong key = Key(lba + (ulong)b, seed);
            var block = words.Slice(b * perBlock, perBlock);
            for (int i = 0; i < block.Length; i++) { block[i] = key + (ulong)i * Golden; }
        }
    }

    /// <summary>
    /// Checks whole blocks of <paramref name="data"/>, read from <paramref name="lba"/> on, against their pattern;
    /// returns how many blocks differ, and the first of them in <paramref name="first"/>.
    /// </summary>
    public static int Check(ReadOnlySpan<byte> data, ulong lba, int blockSize, ulong seed, out PatternMismatch first)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int perBlock = blockSize / sizeof(ulong);
        int bad = 0;
        first = default;
        for (int b = 0; b * perBlock < words.Length; b++)
        {
            ulong key = Key(lba + (ulong)b, seed);
            var block = words.Slice(b * perBlock, perBlock);
            for (int i = 0; i < block.Length; i++)
            {
                ulong expected = key + (ulong)i * Golden;
                ulong diff = block[i] ^ expected;
                if (diff == 0) { continue; }
                if (bad++ == 0)
                {
                    // Little-endian words (the driver requires a little-endian host): the lowest set bit is the first byte.
                    int byteInWord = BitOperations.TrailingZeroCount(diff) / 8;
                    first = new PatternMismatch(lba + (ulong)b, i * sizeof(ulong) + byteInWord,
                        (byte)(expected >> (8 * byteInWord)), (byte)(block[i] >> (8 * byteInWord)));
                }
                break;
            }
        }
        return bad;
    }

    /// <summary>SplitMix64's finaliser (Steele, Lea, Flood 2014) over LBA and seed.</summary>
    private static ulong Key(ulong lba, ulong seed)
    {
        ulong z = lba * Golden + seed;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB;
        return z ^ (z >> 31);
    }
}
