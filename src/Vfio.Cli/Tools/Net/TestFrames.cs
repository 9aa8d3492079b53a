using System.Buffers.Binary;
using Vfio.Net;
using PhysicalAddress = System.Net.NetworkInformation.PhysicalAddress;

namespace Vfio.Cli.Tools.Net;

/// <summary>
/// Test frames a receiver can check without knowing what was sent: an Ethernet II header with the local
/// experimental EtherType 0x88B5 (IEEE 802 "Local Experimental Ethertype 1"), a 64-bit sequence number, the frame's
/// length, and a payload that is a function of both, so any corruption or truncation shows.
/// </summary>
internal static class TestFrames
{
    /// <summary>The EtherType used.</summary>
    public const ushort EtherType = 0x88B5;
    /// <summary>Ethernet header (14) + sequence (8) + length (2).</summary>
    public const int MinSize = 24;
    /// <summary>The largest frame without jumbo support: 1514 bytes (1500 payload + 14 header).</summary>
    public const int MaxSize = 1514;

    /// <summary>Writes a frame of <paramref name="size"/> bytes into <paramref name="frame"/>.</summary>
    public static void Write(Span<byte> frame, int size, ulong sequence, ReadOnlySpan<byte> destination, ReadOnlySpan<byte> source)
    {
        if (size < MinSize || size > frame.Length) { throw new ArgumentOutOfRangeException(nameof(size), size, $"frame size must be {MinSize}..{frame.Length}"); }
        destination[..6].CopyTo(frame);
        source[..6].CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherType);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[14..], sequence);
        BinaryPrimitives.WriteUInt16LittleEndian(frame[22..], (ushort)size);
        byte seed = (byte)(sequence * 31 + (ulong)size);
        for (int i = MinSize; i < size; i++) { frame[i] = (byte)(seed + i); }
    }

    /// <summary>Bytes of the headers <see cref="WriteUdp"/> writes: Ethernet II (14), IPv4 (20), UDP (8).</summary>
    public const int UdpHeaders = 14 + 20 + 8;

    /// <summary>
    /// Writes a UDP/IPv4 frame of <paramref name="size"/> bytes (198.18.0.1 to 198.18.0.2, RFC 2544's benchmark range)
    /// whose UDP source port is 1024 + <paramref name="flow"/>: frames of different flows hash to different RSS buckets
    /// (Toeplitz over addresses and ports), so a receiver with RSS spreads them over its queues. The IPv4 header
    /// checksum is filled (RFC 791); the UDP checksum is 0, "none" (RFC 768). The payload starts with the sequence.
    /// </summary>
    public static void WriteUdp(Span<byte> frame, int size, ulong sequence, ReadOnlySpan<byte> destination, ReadOnlySpan<byte> source, int flow)
    {
        if (size < UdpHeaders + 8 || size > frame.Length) { throw new ArgumentOutOfRangeException(nameof(size), size, $"frame size must be {UdpHeaders + 8}..{frame.Length}"); }
        destination[..6].CopyTo(frame);
        source[..6].CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], 0x0800);
        var ip = frame.Slice(14, 20);
        ip.Clear();
        ip[0] = 0x45;                                                        // version 4, 5 words
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(size - 14)); // total length
        ip[8] = 64;                                                          // TTL
        ip[9] = 17;                                                          // UDP
        ip[12] = 198; ip[13] = 18; ip[14] = 0; ip[15] = 1;
        ip[16] = 198; ip[17] = 18; ip[18] = 0; ip[19] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, ip)));
        var udp = frame.Slice(34, 8);
        BinaryPrimitives.WriteUInt16BigEndian(udp, (ushort)(1024 + flow));
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], 9);                  // discard
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(size - 34));
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[UdpHeaders..], sequence);
        frame[(UdpHeaders + 8)..size].Clear();
    }

    /// <summary>Reads the sequence number of a test frame; false when the frame is not one or is damaged.</summary>
    public static bool TryRead(ReadOnlySpan<byte> frame, out ulong sequence)
    {
        sequence = 0;
        if (frame.Length < MinSize || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherType) { return false; }
        sequence = BinaryPrimitives.ReadUInt64LittleEndian(frame[14..]);
        int size = BinaryPrimitives.ReadUInt16LittleEndian(frame[22..]);
        if (size != frame.Length) { return false; }
        byte seed = (byte)(sequence * 31 + (ulong)size);
        for (int i = MinSize; i < size; i++)
        {
            if (frame[i] != (byte)(seed + i)) { return false; }
        }
        return true;
    }

    /// <summary>The broadcast address, for ports without a MAC.</summary>
    public static byte[] Broadcast => [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    /// <summary>A MAC's bytes, or a locally administered placeholder when the device has none.</summary>
    public static byte[] MacBytes(PhysicalAddress? mac) => mac?.GetAddressBytes() is { Length: 6 } b ? b : [0x02, 0, 0, 0, 0, 0x01];
}
