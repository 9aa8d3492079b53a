using System.Buffers.Binary;
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
