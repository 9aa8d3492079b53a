using System.Buffers.Binary;
using Vfio.Devices;

namespace Vfio.User.Protocol;

// Message bodies, after the 16-byte header. Layouts follow QEMU docs/devel/vfio-user.rst (protocol 0.1), which
// reuses the kernel's vfio_* structures from linux/vfio.h where a command has a kernel counterpart. Every Read
// checks the length first and throws VfioUserCommandException (EINVAL) for a short body, never reads past it.

/// <summary>VFIO_USER_DMA_MAP: argsz u32, flags u32, offset u64 (into the passed fd), address u64 (IOVA), size u64.</summary>
/// <param name="Flags">Read/write permissions.</param>
/// <param name="Offset">Offset of the range in the passed file descriptor.</param>
/// <param name="Address">The IOVA the device uses for the first byte.</param>
/// <param name="Size">Bytes.</param>
public readonly record struct DmaMapRequest(DmaMapFlags Flags, ulong Offset, ulong Address, ulong Size)
{
    /// <summary>Body bytes.</summary>
    public const int Length = 32;

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], Offset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b[24..], Size);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static DmaMapRequest Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DmaMap);
        return new((DmaMapFlags)BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadUInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(b[16..]), BinaryPrimitives.ReadUInt64LittleEndian(b[24..]));
    }
}

/// <summary>Flags of <see cref="DmaMapRequest"/>.</summary>
[Flags]
public enum DmaMapFlags : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>The device may read the range.</summary>
    Read = 1 << 0,
    /// <summary>The device may write the range.</summary>
    Write = 1 << 1,
}

/// <summary>VFIO_USER_DMA_UNMAP: argsz u32, flags u32, address u64, size u64 (dirty bitmaps are not supported).</summary>
/// <param name="Flags">Flags (bit 0 dirty bitmap: refused; bit 1 unmap all).</param>
/// <param name="Address">IOVA of the range.</param>
/// <param name="Size">Bytes.</param>
public readonly record struct DmaUnmapRequest(uint Flags, ulong Address, ulong Size)
{
    /// <summary>Body bytes.</summary>
    public const int Length = 24;
    /// <summary>Unmap every range (VFIO_DMA_UNMAP_FLAG_ALL).</summary>
    public const uint UnmapAll = 1 << 1;

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], Size);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static DmaUnmapRequest Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DmaUnmap);
        return new(BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadUInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(b[16..]));
    }
}

/// <summary>VFIO_USER_DEVICE_GET_INFO reply: argsz u32, flags u32, num_regions u32, num_irqs u32.</summary>
/// <param name="Flags">Device flags.</param>
/// <param name="RegionCount">Regions.</param>
/// <param name="IrqCount">IRQ indexes.</param>
public readonly record struct DeviceInfoReply(DeviceFlags Flags, uint RegionCount, uint IrqCount)
{
    /// <summary>Body bytes (the request carries only argsz and zeros).</summary>
    public const int Length = 16;

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], RegionCount);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], IrqCount);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static DeviceInfoReply Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DeviceGetInfo);
        return new((DeviceFlags)BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));
    }
}

/// <summary>
/// VFIO_USER_DEVICE_GET_REGION_INFO (struct vfio_region_info): argsz u32, flags u32, index u32, cap_offset u32,
/// size u64, offset u64. In the reply, offset is where to mmap the passed fd. This implementation sends no capability chain.
/// </summary>
/// <param name="ArgSize">argsz: in a request, the reply buffer the client has; in a reply, the bytes the reply needs.</param>
/// <param name="Flags">Region flags.</param>
/// <param name="Index">Region index.</param>
/// <param name="CapOffset">Offset of the first capability, 0 for none.</param>
/// <param name="Size">Region size.</param>
/// <param name="Offset">File offset for mmap of the passed fd.</param>
public readonly record struct RegionInfoMessage(uint ArgSize, RegionFlags Flags, uint Index, uint CapOffset, ulong Size, ulong Offset)
{
    /// <summary>Body bytes.</summary>
    public const int Length = 32;

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, ArgSize);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], CapOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(b[24..], Offset);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static RegionInfoMessage Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DeviceGetRegionInfo);
        return new(BinaryPrimitives.ReadUInt32LittleEndian(b), (RegionFlags)BinaryPrimitives.ReadUInt32LittleEndian(b[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(b[8..]), BinaryPrimitives.ReadUInt32LittleEndian(b[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(b[16..]), BinaryPrimitives.ReadUInt64LittleEndian(b[24..]));
    }
}

/// <summary>VFIO_USER_DEVICE_GET_IRQ_INFO (struct vfio_irq_info): argsz u32, flags u32, index u32, count u32.</summary>
/// <param name="Flags">IRQ flags.</param>
/// <param name="Index">IRQ index.</param>
/// <param name="Count">Vectors.</param>
public readonly record struct IrqInfoMessage(IrqFlags Flags, uint Index, uint Count)
{
    /// <summary>Body bytes.</summary>
    public const int Length = 16;

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Count);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static IrqInfoMessage Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DeviceGetIrqInfo);
        return new((IrqFlags)BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));
    }
}

/// <summary>
/// VFIO_USER_DEVICE_SET_IRQS (struct vfio_irq_set): argsz u32, flags u32, index u32, start u32, count u32; eventfds
/// travel as SCM_RIGHTS (DATA_EVENTFD), DATA_BOOL carries one byte per vector after the struct.
/// </summary>
/// <param name="Flags">VFIO_IRQ_SET_DATA_* | VFIO_IRQ_SET_ACTION_*.</param>
/// <param name="Index">IRQ index.</param>
/// <param name="Start">First vector.</param>
/// <param name="Count">Vectors.</param>
public readonly record struct SetIrqsRequest(uint Flags, uint Index, uint Start, uint Count)
{
    /// <summary>Body bytes (without DATA_BOOL bytes).</summary>
    public const int Length = 20;
#pragma warning disable CS1591 // linux/vfio.h names
    public const uint DataNone = 1 << 0, DataBool = 1 << 1, DataEventFd = 1 << 2,
        ActionMask = 1 << 3, ActionUnmask = 1 << 4, ActionTrigger = 1 << 5;
#pragma warning restore CS1591

    /// <summary>Encodes the body.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Start);
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], Count);
    }

    /// <summary>Decodes and checks a body.</summary>
    public static SetIrqsRequest Read(ReadOnlySpan<byte> b)
    {
        Wire.Need(b, Length, Command.DeviceSetIrqs);
        return new(BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(b[12..]), BinaryPrimitives.ReadUInt32LittleEndian(b[16..]));
    }
}

/// <summary>VFIO_USER_REGION_READ/WRITE: offset u64, region u32, count u32, then data (write request, read reply).</summary>
/// <param name="Offset">Offset in the region.</param>
/// <param name="Region">Region index.</param>
/// <param name="Count">Bytes.</param>
public readonly record struct RegionAccess(ulong Offset, uint Region, uint Count)
{
    /// <summary>Bytes before the data.</summary>
    public const int Length = 16;

    /// <summary>Encodes the fixed part.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], Region);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], Count);
    }

    /// <summary>Decodes the fixed part.</summary>
    public static RegionAccess Read(ReadOnlySpan<byte> b, Command command)
    {
        Wire.Need(b, Length, command);
        return new(BinaryPrimitives.ReadUInt64LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(b[12..]));
    }
}

/// <summary>VFIO_USER_DMA_READ/WRITE: address u64, count u64, then data (write request, read reply).</summary>
/// <param name="Address">IOVA.</param>
/// <param name="Count">Bytes.</param>
public readonly record struct DmaAccess(ulong Address, ulong Count)
{
    /// <summary>Bytes before the data.</summary>
    public const int Length = 16;

    /// <summary>Encodes the fixed part.</summary>
    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Address);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], Count);
    }

    /// <summary>Decodes the fixed part.</summary>
    public static DmaAccess Read(ReadOnlySpan<byte> b, Command command)
    {
        Wire.Need(b, Length, command);
        return new(BinaryPrimitives.ReadUInt64LittleEndian(b), BinaryPrimitives.ReadUInt64LittleEndian(b[8..]));
    }
}

internal static class Wire
{
    public static void Need(ReadOnlySpan<byte> body, int length, Command command)
    {
        if (body.Length < length)
        {
            throw VfioUserCommandException.Invalid(command, $"body of {body.Length} bytes is shorter than the {length} the command needs");
        }
    }
}
