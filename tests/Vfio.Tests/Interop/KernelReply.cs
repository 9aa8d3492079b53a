using System.Buffers.Binary;

// Not Vfio.Tests.Interop: a namespace named Interop would hide the global Interop class from every test namespace
// beside it (Vfio.Tests.Kernel's "Interop.Libc.open" would bind to the namespace).
namespace Vfio.Tests.Uapi;

/// <summary>
/// Builds INFO ioctl replies byte by byte, at the offsets linux/vfio.h gives, the way the kernel lays them out:
/// fixed struct first, then capabilities, each padded to 8 bytes (vfio_info_cap_add aligns them), chained by
/// absolute <c>next</c> offsets, the last one 0. Written with BinaryPrimitives rather than the interop structs so a
/// layout mistake in those structs cannot cancel out in the tests.
/// </summary>
internal sealed class KernelReply
{
    private byte[] _bytes;

    public KernelReply(int fixedSize) => _bytes = new byte[fixedSize];

    public int Length => _bytes.Length;

    public byte[] ToArray() => (byte[])_bytes.Clone();

    public KernelReply U8(int offset, byte value) { _bytes[offset] = value; return this; }
    public KernelReply U16(int offset, ushort value) { BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(offset), value); return this; }
    public KernelReply U32(int offset, uint value) { BinaryPrimitives.WriteUInt32LittleEndian(_bytes.AsSpan(offset), value); return this; }
    public KernelReply U64(int offset, ulong value) { BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan(offset), value); return this; }

    /// <summary>Sets argsz (offset 0 of every INFO struct) to the current length.</summary>
    public KernelReply SealArgsz() => U32(0, (uint)_bytes.Length);

    /// <summary>
    /// Appends a capability of <paramref name="size"/> bytes (header included, padded to 8) with id and version set
    /// and next 0, links the previous capability (or the fixed struct's cap_offset at
    /// <paramref name="capOffsetField"/> for the first) to it, and returns its offset.
    /// </summary>
    public int AddCap(ushort id, ushort version, int size, int capOffsetField, ref int previousCap)
    {
        int at = _bytes.Length;
        Array.Resize(ref _bytes, at + ((size + 7) & ~7));
        U16(at, id).U16(at + 2, version).U32(at + 4, 0);
        if (previousCap == 0) { U32(capOffsetField, (uint)at); }
        else { U32(previousCap + 4, (uint)at); }
        previousCap = at;
        return at;
    }

    // ---- struct vfio_region_info (32 bytes): argsz@0 flags@4 index@8 cap_offset@12 size@16 offset@24 ----

    public const int RegionInfoSize = 32;
    public const int RegionCapOffsetField = 12;
    public const uint FlagRead = 1, FlagWrite = 2, FlagMmap = 4, FlagCaps = 8;

    /// <summary>vfio-pci places region N at N &lt;&lt; 40 in the device file (VFIO_PCI_OFFSET_SHIFT).</summary>
    public static ulong RegionOffset(uint index) => (ulong)index << 40;

    public static KernelReply RegionInfo(uint index, uint flags, ulong size) =>
        new KernelReply(RegionInfoSize).U32(4, flags).U32(8, index).U64(16, size).U64(24, RegionOffset(index)).SealArgsz();

    /// <summary>VFIO_REGION_INFO_CAP_SPARSE_MMAP v1: header, nr_areas@8, reserved@12, areas (offset, size) from 16.</summary>
    public int AddSparseMmap(ref int previous, params (ulong Offset, ulong Size)[] areas)
    {
        int at = AddCap(1, 1, 16 + 16 * areas.Length, RegionCapOffsetField, ref previous);
        U32(at + 8, (uint)areas.Length);
        for (int i = 0; i < areas.Length; i++)
        {
            U64(at + 16 + 16 * i, areas[i].Offset).U64(at + 24 + 16 * i, areas[i].Size);
        }
        return at;
    }

    /// <summary>VFIO_REGION_INFO_CAP_TYPE v1: header, type@8, subtype@12.</summary>
    public int AddRegionType(ref int previous, uint type, uint subtype)
    {
        int at = AddCap(2, 1, 16, RegionCapOffsetField, ref previous);
        U32(at + 8, type).U32(at + 12, subtype);
        return at;
    }

    /// <summary>VFIO_REGION_INFO_CAP_MSIX_MAPPABLE v1: a bare header.</summary>
    public int AddMsixMappable(ref int previous) => AddCap(3, 1, 8, RegionCapOffsetField, ref previous);

    // ---- struct vfio_iommu_type1_info (24 bytes): argsz@0 flags@4 iova_pgsizes@8 cap_offset@16, 4 bytes padding ----

    public const int Type1InfoSize = 24;
    public const int Type1CapOffsetField = 16;
    public const uint Type1FlagPgsizes = 1, Type1FlagCaps = 2;

    public static KernelReply Type1Info(uint flags, ulong pageSizes) =>
        new KernelReply(Type1InfoSize).U32(4, flags).U64(8, pageSizes).SealArgsz();

    /// <summary>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE v1: header, nr_iovas@8, reserved@12, ranges (start, end) from 16.</summary>
    public int AddIovaRanges(ref int previous, params (ulong Start, ulong End)[] ranges)
    {
        int at = AddCap(1, 1, 16 + 16 * ranges.Length, Type1CapOffsetField, ref previous);
        U32(at + 8, (uint)ranges.Length);
        for (int i = 0; i < ranges.Length; i++)
        {
            U64(at + 16 + 16 * i, ranges[i].Start).U64(at + 24 + 16 * i, ranges[i].End);
        }
        return at;
    }

    /// <summary>VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION v1: header, flags@8, pgsize_bitmap@16, max_dirty_bitmap_size@24.</summary>
    public int AddMigration(ref int previous)
    {
        int at = AddCap(2, 1, 32, Type1CapOffsetField, ref previous);
        U64(at + 16, 0x1000).U64(at + 24, 256UL << 20);
        return at;
    }

    /// <summary>VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL v1: header, avail@8 (12 bytes, padded to 16).</summary>
    public int AddDmaAvail(ref int previous, uint avail)
    {
        int at = AddCap(3, 1, 12, Type1CapOffsetField, ref previous);
        U32(at + 8, avail);
        return at;
    }
}
