using System.Buffers.Binary;

namespace Vfio.User.Protocol;

/// <summary>vfio-user commands (QEMU docs/devel/vfio-user.rst, "Commands"; libvfio-user include/vfio-user.h).</summary>
public enum Command : ushort
{
    /// <summary>Version and capability negotiation; the first message of a connection.</summary>
    Version = 1,
    /// <summary>The client makes a range of its memory available for DMA (an fd when it can be mmap'd).</summary>
    DmaMap = 2,
    /// <summary>The client withdraws a DMA range.</summary>
    DmaUnmap = 3,
    /// <summary>Device flags and region/IRQ counts.</summary>
    DeviceGetInfo = 4,
    /// <summary>One region's description, with an fd when it can be mmap'd.</summary>
    DeviceGetRegionInfo = 5,
    /// <summary>ioeventfds/ioregionfds for a region (answered with none).</summary>
    DeviceGetRegionIoFds = 6,
    /// <summary>One IRQ index's description.</summary>
    DeviceGetIrqInfo = 7,
    /// <summary>Wires eventfds to vectors, masks, unmasks or triggers them.</summary>
    DeviceSetIrqs = 8,
    /// <summary>Reads bytes of a region.</summary>
    RegionRead = 9,
    /// <summary>Writes bytes of a region.</summary>
    RegionWrite = 10,
    /// <summary>The server reads client memory that was mapped without an fd.</summary>
    DmaRead = 11,
    /// <summary>The server writes client memory that was mapped without an fd.</summary>
    DmaWrite = 12,
    /// <summary>Resets the device.</summary>
    DeviceReset = 13,
}

/// <summary>Message type, bits 0-3 of the header flags.</summary>
public enum MessageType : byte
{
    /// <summary>A command (request).</summary>
    Command = 0,
    /// <summary>A reply to the command with the same message ID.</summary>
    Reply = 1,
}

/// <summary>
/// The 16-byte header before every vfio-user message: msg_id u16, command u16, message size u32 (header
/// included), flags u32 (type in bits 0-3, no-reply bit 4, error bit 5), error number u32. Little endian.
/// </summary>
/// <param name="MessageId">Chosen by the sender of a command, echoed by the reply.</param>
/// <param name="Command">The command.</param>
/// <param name="Size">Size of the whole message, header included.</param>
/// <param name="Flags">Raw flags word.</param>
/// <param name="ErrorNumber">An errno when <see cref="IsError"/>.</param>
public readonly record struct MessageHeader(ushort MessageId, Command Command, uint Size, uint Flags, uint ErrorNumber)
{
    /// <summary>Bytes in the header.</summary>
    public const int Length = 16;

    /// <summary>Mask of the type field in <see cref="Flags"/>.</summary>
    public const uint TypeMask = 0xF;
    /// <summary>The sender expects no reply.</summary>
    public const uint NoReplyFlag = 1 << 4;
    /// <summary>The reply reports a failure; <see cref="ErrorNumber"/> says which.</summary>
    public const uint ErrorFlag = 1 << 5;

    /// <summary>Command or reply; values other than 0 and 1 are invalid.</summary>
    public uint RawType => Flags & TypeMask;

    /// <summary>True for replies.</summary>
    public bool IsReply => RawType == (uint)MessageType.Reply;

    /// <summary>True for commands.</summary>
    public bool IsCommand => RawType == (uint)MessageType.Command;

    /// <summary>True when the sender wants no reply.</summary>
    public bool NoReply => (Flags & NoReplyFlag) != 0;

    /// <summary>True for error replies.</summary>
    public bool IsError => (Flags & ErrorFlag) != 0;

    /// <summary>Bytes after the header.</summary>
    public int BodyLength => (int)(Size - Length);

    /// <summary>A command header.</summary>
    public static MessageHeader ForCommand(ushort id, Command command, int bodyLength, bool noReply = false) =>
        new(id, command, (uint)(Length + bodyLength), (uint)MessageType.Command | (noReply ? NoReplyFlag : 0), 0);

    /// <summary>A successful reply header.</summary>
    public static MessageHeader ForReply(ushort id, Command command, int bodyLength) =>
        new(id, command, (uint)(Length + bodyLength), (uint)MessageType.Reply, 0);

    /// <summary>An error reply header (no body).</summary>
    public static MessageHeader ForError(ushort id, Command command, int errno) =>
        new(id, command, Length, (uint)MessageType.Reply | ErrorFlag, (uint)errno);

    /// <summary>Writes the header into the first 16 bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(destination, MessageId);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], (ushort)Command);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Size);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], ErrorNumber);
    }

    /// <summary>Reads a header from the first 16 bytes of <paramref name="source"/> (no validation).</summary>
    public static MessageHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt16LittleEndian(source),
        (Command)BinaryPrimitives.ReadUInt16LittleEndian(source[2..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[12..]));
}
