using System.Buffers.Binary;
using Vfio.Spec.Virtio;

namespace Vfio.Emulation.VirtioNet;

/// <summary>
/// The Toeplitz hash of receive-side scaling, as the virtio-net model computes it (virtio 1.2 §5.1.6.4.3 refers to
/// Microsoft's "RSS hashing" definition): each set bit of the input, most significant bit of the first byte first,
/// XORs in the 32 key bits that start at that bit's position. The model keeps its own copy: device models may not
/// depend on drivers, which is where the igb driver's hash lives.
/// </summary>
internal static class Toeplitz
{
    /// <summary>The hash of <paramref name="input"/>; <paramref name="key"/> must hold at least 4 bytes more than the input.</summary>
    /// <exception cref="ArgumentException">The key is too short.</exception>
    public static uint Hash(ReadOnlySpan<byte> key, ReadOnlySpan<byte> input)
    {
        if (key.Length < input.Length + 4) { throw new ArgumentException($"a key of {key.Length} bytes is too short for {input.Length} input bytes", nameof(key)); }
        uint hash = 0;
        for (int bit = 0; bit < 8 * input.Length; bit++)
        {
            if ((input[bit >> 3] & (0x80 >> (bit & 7))) == 0) { continue; }
            hash ^= KeyWindow(key, bit);
        }
        return hash;
    }

    /// <summary>Key bits [bit, bit + 32), as a big-endian 32-bit value.</summary>
    private static uint KeyWindow(ReadOnlySpan<byte> key, int bit)
    {
        int first = bit >> 3, shift = bit & 7;
        // Five bytes cover any 32-bit window that starts inside the first of them.
        ulong five = (ulong)BinaryPrimitives.ReadUInt32BigEndian(key[first..]) << 8 | (first + 4 < key.Length ? key[first + 4] : 0u);
        return (uint)(five >> (8 - shift));
    }

    /// <summary>
    /// Hashes an untagged Ethernet frame's IPv4 flow with the enabled <paramref name="hashTypes"/> (§5.1.6.4.3.1):
    /// TCP or UDP with ports when that type is on and the packet is not a fragment, else the addresses with IPv4 on.
    /// False for anything else (IPv6 is not offered by the model, options and VLAN tags are not parsed beyond the IHL).
    /// </summary>
    public static bool TryHashFrame(ReadOnlySpan<byte> key, ReadOnlySpan<byte> frame, uint hashTypes, out uint hash)
    {
        hash = 0;
        const int EtherHeader = 14;
        if (frame.Length < EtherHeader + 20 || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != 0x0800) { return false; }
        var ip = frame[EtherHeader..];
        int ihl = (ip[0] & 0x0f) * 4;
        if (ip[0] >> 4 != 4 || ihl < 20 || ip.Length < ihl) { return false; }
        bool fragment = (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3fff) != 0;
        byte protocol = ip[9];
        Span<byte> input = stackalloc byte[12];
        ip.Slice(12, 8).CopyTo(input);   // source then destination address
        bool ports = !fragment && ip.Length >= ihl + 4 && (protocol == 6 && (hashTypes & VirtioNetRss.HashTcpIPv4) != 0
            || protocol == 17 && (hashTypes & VirtioNetRss.HashUdpIPv4) != 0);
        if (ports)
        {
            ip.Slice(ihl, 4).CopyTo(input[8..]);   // source then destination port
            hash = Hash(key, input);
            return true;
        }
        if ((hashTypes & VirtioNetRss.HashIPv4) == 0) { return false; }
        hash = Hash(key, input[..8]);
        return true;
    }
}
