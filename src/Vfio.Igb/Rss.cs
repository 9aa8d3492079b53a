using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Vfio.Igb;

/// <summary>
/// The Toeplitz hash receive-side scaling uses (82576 datasheet §7.1.2.8.1 "RSS Hash Function"; Microsoft's
/// "RSS hashing functions"): for every set bit of the input, most significant first, the 32 key bits starting at
/// that bit position are XORed into the result.
/// </summary>
public static class ToeplitzHash
{
    /// <summary>Hashes <paramref name="input"/> with <paramref name="key"/>, which must be at least 4 bytes longer than the input.</summary>
    /// <exception cref="ArgumentException">The key is too short for the input.</exception>
    public static uint Compute(ReadOnlySpan<byte> key, ReadOnlySpan<byte> input)
    {
        if (key.Length < input.Length + 4)
        {
            throw new ArgumentException($"a {input.Length}-byte input needs a key of at least {input.Length + 4} bytes, got {key.Length}", nameof(key));
        }
        uint result = 0;
        // The 32-bit window of the key that lines up with the current input bit; shifted left one bit per input bit.
        uint window = BinaryPrimitives.ReadUInt32BigEndian(key);
        int nextKeyByte = 4;
        for (int i = 0; i < input.Length; i++)
        {
            byte b = input[i];
            byte following = key[nextKeyByte++];
            for (int bit = 7; bit >= 0; bit--)
            {
                if ((b & (1 << bit)) != 0) { result ^= window; }
                window = (window << 1) | (uint)((following >> bit) & 1);
            }
        }
        return result;
    }

    /// <summary>
    /// The hash of an IPv4 or IPv6 flow as the device computes it (§7.1.2.8.1): source address, destination address,
    /// then with ports source port and destination port, all in network byte order.
    /// </summary>
    /// <exception cref="ArgumentException">The addresses are of different families, or neither IPv4 nor IPv6.</exception>
    public static uint ComputeFlow(ReadOnlySpan<byte> key, IPAddress source, IPAddress destination, ushort? sourcePort = null, ushort? destinationPort = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (source.AddressFamily != destination.AddressFamily || source.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            throw new ArgumentException("source and destination must both be IPv4 or both IPv6", nameof(destination));
        }
        int addressLength = source.AddressFamily == AddressFamily.InterNetwork ? 4 : 16;
        bool ports = sourcePort is not null && destinationPort is not null;
        Span<byte> input = stackalloc byte[2 * addressLength + (ports ? 4 : 0)];
        source.TryWriteBytes(input[..addressLength], out _);
        destination.TryWriteBytes(input.Slice(addressLength, addressLength), out _);
        if (ports)
        {
            BinaryPrimitives.WriteUInt16BigEndian(input[(2 * addressLength)..], sourcePort!.Value);
            BinaryPrimitives.WriteUInt16BigEndian(input[(2 * addressLength + 2)..], destinationPort!.Value);
        }
        return Compute(key, input);
    }
}

/// <summary>
/// Receive-side scaling settings: the 40-byte hash key (RSSRK, §8.10.24) and the 128-entry redirection table
/// (RETA, §8.10.23) that maps the low 7 bits of a packet's hash to a receive queue.
/// </summary>
public sealed class IgbRssConfiguration
{
    /// <summary>Bytes of the key.</summary>
    public const int KeyLength = 40;
    /// <summary>Entries of the redirection table.</summary>
    public const int TableLength = 128;

    /// <summary>
    /// The key Microsoft's RSS verification suite uses, which the 82576 datasheet reproduces (§7.1.2.8.3); a
    /// reasonable default that also makes hashes comparable with other tools.
    /// </summary>
    public static ReadOnlySpan<byte> VerificationKey =>
    [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
        0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
        0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// <summary>Creates a configuration from a key and a table of queue numbers.</summary>
    /// <exception cref="ArgumentException">The key is not 40 bytes, or the table not 128 entries.</exception>
    public IgbRssConfiguration(ReadOnlySpan<byte> key, ReadOnlySpan<byte> redirectionTable)
    {
        if (key.Length != KeyLength) { throw new ArgumentException($"the RSS key is {KeyLength} bytes, got {key.Length}", nameof(key)); }
        if (redirectionTable.Length != TableLength)
        {
            throw new ArgumentException($"the redirection table has {TableLength} entries, got {redirectionTable.Length}", nameof(redirectionTable));
        }
        Key = key.ToArray();
        RedirectionTable = redirectionTable.ToArray();
    }

    /// <summary>The verification key and a table spreading entries round-robin over <paramref name="queues"/> queues.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="queues"/> is not between 1 and 16.</exception>
    public static IgbRssConfiguration RoundRobin(int queues)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(queues, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(queues, IgbReg.MaxQueues);
        var table = new byte[TableLength];
        for (int i = 0; i < table.Length; i++) { table[i] = (byte)(i % queues); }
        return new IgbRssConfiguration(VerificationKey, table);
    }

    /// <summary>The 40 key bytes.</summary>
    public IReadOnlyList<byte> Key { get; }

    /// <summary>The queue of each of the 128 hash buckets.</summary>
    public IReadOnlyList<byte> RedirectionTable { get; }

    /// <summary>The queue a packet with RSS hash <paramref name="hash"/> lands on: RETA[hash bits 6:0] (§7.1.2.8).</summary>
    public int QueueFor(uint hash) => RedirectionTable[(int)(hash & (TableLength - 1))];

    /// <summary>RSSRK register n: key bytes 4n..4n+3, the first in the low byte (§8.10.24).</summary>
    internal uint KeyRegister(int n) =>
        (uint)(Key[4 * n] | Key[4 * n + 1] << 8 | Key[4 * n + 2] << 16 | Key[4 * n + 3] << 24);

    /// <summary>RETA register n: entries 4n..4n+3, the first in the low byte (§8.10.23).</summary>
    internal uint TableRegister(int n) =>
        (uint)(RedirectionTable[4 * n] | RedirectionTable[4 * n + 1] << 8 | RedirectionTable[4 * n + 2] << 16 | RedirectionTable[4 * n + 3] << 24);
}
