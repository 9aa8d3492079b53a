using System.Collections.ObjectModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vfio.Dma;
using static Interop.Vfio;

namespace Vfio.Devices;

/// <summary>One capability found in an INFO reply's chain: its id, version and offset from the start of the reply.</summary>
/// <param name="Id">Capability id (a namespace per INFO ioctl).</param>
/// <param name="Version">Version, specific to the id.</param>
/// <param name="Offset">Offset of its <c>vfio_info_cap_header</c> from the start of the reply.</param>
internal readonly record struct VfioCapability(ushort Id, ushort Version, int Offset);

/// <summary>What <c>VFIO_IOMMU_GET_INFO</c> reports about a type1 container.</summary>
/// <param name="PageSizes">Bitmap of the IOMMU page sizes (bit n set: 2^n-byte pages); 0 when not reported.</param>
/// <param name="IovaRanges">
/// The usable IOVA ranges, ascending and disjoint, ends inclusive; empty when the kernel did not report any
/// (kernels before 5.4 lack <c>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE</c>).
/// </param>
/// <param name="DmaMappingsAvailable">
/// How many more DMA mappings the container accepts (<c>VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL</c>, the
/// vfio_iommu_type1.dma_entry_limit module parameter minus mappings in use); null when not reported.
/// </param>
internal sealed record IommuType1Info(ulong PageSizes, IReadOnlyList<IovaRange> IovaRanges, uint? DmaMappingsAvailable);

/// <summary>
/// Pure parsers for the replies of VFIO's INFO ioctls, capability chains included (linux/vfio.h, "For extension
/// of INFO ioctls, VFIO makes use of a capability chain designed after PCI/e capabilities"). Each capability
/// starts with a <c>vfio_info_cap_header</c> whose <c>next</c> is an offset from the start of the reply, 0 ending
/// the chain. Every offset and length is checked against the reply before it is read: a malformed reply (a loop,
/// an offset past the end, a truncated capability, an <c>argsz</c> smaller than the fixed part) is reported as a
/// <see cref="VfioException"/> saying what is wrong, never as an index error. Unknown capability ids are skipped:
/// newer kernels add them. Public for implementations of <see cref="IPciDevice"/>: vfio-user carries the same
/// <c>vfio_region_info</c> replies as the kernel (vfio-user spec, VFIO_USER_DEVICE_GET_REGION_INFO).
/// </summary>
public static class VfioCapabilityChain
{
    private static readonly int HeaderSize = Unsafe.SizeOf<vfio_info_cap_header>();

    /// <summary>
    /// Builds a <see cref="RegionInfo"/> from a whole <c>VFIO_DEVICE_GET_REGION_INFO</c> reply (from
    /// <c>Interop.Vfio.VfioInfoBuffer.QueryRegion</c>): the fixed <c>vfio_region_info</c> plus the sparse-mmap,
    /// region-type and MSI-X-mappable capabilities.
    /// </summary>
    /// <exception cref="VfioException">The reply is malformed; the message says how.</exception>
    public static RegionInfo ParseRegionInfo(ReadOnlySpan<byte> buffer)
    {
        const string what = "VFIO_DEVICE_GET_REGION_INFO";
        var reply = FixedPart<vfio_region_info>(buffer, what, nameof(vfio_region_info));
        var info = MemoryMarshal.Read<vfio_region_info>(reply);
        if (info.index > int.MaxValue)
        {
            throw Malformed(what, $"region index {info.index} is out of range");
        }

        IReadOnlyList<SparseArea>? sparse = null;
        RegionType? type = null;
        bool msixMappable = false;
        if ((info.flags & VFIO_REGION_INFO_FLAG_CAPS) != 0)
        {
            foreach (var cap in ReadChain(reply, Unsafe.SizeOf<vfio_region_info>(), info.cap_offset, what))
            {
                switch (cap.Id)
                {
                    case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
                        Once(sparse is not null, cap, what, "SPARSE_MMAP");
                        sparse = ReadSparseAreas(reply, cap, info.size, what);
                        break;
                    case VFIO_REGION_INFO_CAP_TYPE:
                        Once(type is not null, cap, what, "TYPE");
                        var t = MemoryMarshal.Read<vfio_region_info_cap_type>(Body<vfio_region_info_cap_type>(reply, cap, what, "TYPE"));
                        type = new RegionType(t.type, t.subtype);
                        break;
                    case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
                        // A bare header: its presence is the information.
                        Once(msixMappable, cap, what, "MSIX_MAPPABLE");
                        msixMappable = true;
                        break;
                }
            }
        }

        return new RegionInfo
        {
            Index = (int)info.index,
            Flags = (RegionFlags)info.flags,
            Size = info.size,
            Offset = info.offset,
            SparseAreas = sparse,
            Type = type,
            MsixMappable = msixMappable,
        };
    }

    /// <summary>
    /// Parses a whole <c>VFIO_IOMMU_GET_INFO</c> reply of a type1 container (from
    /// <c>Interop.Vfio.VfioInfoBuffer.Query&lt;vfio_iommu_type1_info&gt;</c>): page sizes, IOVA ranges, DMA
    /// mappings available.
    /// </summary>
    /// <exception cref="VfioException">The reply is malformed; the message says how.</exception>
    internal static IommuType1Info ParseIommuType1Info(ReadOnlySpan<byte> buffer)
    {
        const string what = "VFIO_IOMMU_GET_INFO";
        var reply = FixedPart<vfio_iommu_type1_info>(buffer, what, nameof(vfio_iommu_type1_info));
        var info = MemoryMarshal.Read<vfio_iommu_type1_info>(reply);

        IReadOnlyList<IovaRange>? ranges = null;
        uint? available = null;
        if ((info.flags & VFIO_IOMMU_INFO_CAPS) != 0)
        {
            foreach (var cap in ReadChain(reply, Unsafe.SizeOf<vfio_iommu_type1_info>(), info.cap_offset, what))
            {
                switch (cap.Id)
                {
                    case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
                        Once(ranges is not null, cap, what, "IOVA_RANGE");
                        ranges = ReadIovaRanges(reply, cap, what);
                        break;
                    case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
                        Once(available is not null, cap, what, "DMA_AVAIL");
                        available = MemoryMarshal.Read<vfio_iommu_type1_info_dma_avail>(
                            Body<vfio_iommu_type1_info_dma_avail>(reply, cap, what, "DMA_AVAIL")).avail;
                        break;
                }
            }
        }

        ulong pageSizes = (info.flags & VFIO_IOMMU_INFO_PGSIZES) != 0 ? info.iova_pgsizes : 0;
        return new IommuType1Info(pageSizes, ranges ?? ReadOnlyCollection<IovaRange>.Empty, available);
    }

    /// <summary>
    /// Walks the chain starting at <paramref name="firstOffset"/> (0: no capabilities) and returns the capabilities
    /// in chain order. Checks that every header lies after the <paramref name="fixedSize"/>-byte fixed part and
    /// inside <paramref name="reply"/>, and that no offset is visited twice; what follows each header is the
    /// caller's to bound-check (its size depends on the id).
    /// </summary>
    /// <param name="reply">The reply, cut to its <c>argsz</c>.</param>
    /// <param name="fixedSize">Size of the INFO ioctl's fixed struct.</param>
    /// <param name="firstOffset">The fixed struct's <c>cap_offset</c>.</param>
    /// <param name="what">The ioctl's name, for messages.</param>
    /// <exception cref="VfioException">The chain is malformed.</exception>
    internal static IReadOnlyList<VfioCapability> ReadChain(ReadOnlySpan<byte> reply, int fixedSize, uint firstOffset, string what)
    {
        var caps = new List<VfioCapability>();
        var seen = new HashSet<uint>();
        uint offset = firstOffset;
        string from = "cap_offset";
        while (offset != 0)
        {
            if (offset < (uint)fixedSize)
            {
                throw Malformed(what, $"{from} is {offset}, inside the {fixedSize}-byte fixed part");
            }
            if ((ulong)offset + (ulong)HeaderSize > (ulong)reply.Length)
            {
                throw Malformed(what, $"{from} is {offset}, but a {HeaderSize}-byte capability header there would end past " +
                                      $"the {reply.Length}-byte reply");
            }
            if (!seen.Add(offset))
            {
                throw Malformed(what, $"the capability chain loops: {from} leads back to offset {offset}");
            }
            var header = MemoryMarshal.Read<vfio_info_cap_header>(reply[(int)offset..]);
            caps.Add(new VfioCapability(header.id, header.version, (int)offset));
            from = $"the next offset of capability {header.id} at offset {offset}";
            offset = header.next;
        }
        return caps;
    }

    /// <summary>
    /// Checks the fixed part of a reply and returns the reply cut to its <c>argsz</c> (bytes beyond it are not
    /// the kernel's).
    /// </summary>
    private static ReadOnlySpan<byte> FixedPart<T>(ReadOnlySpan<byte> buffer, string what, string structName)
        where T : unmanaged
    {
        int fixedSize = Unsafe.SizeOf<T>();
        if (buffer.Length < fixedSize)
        {
            throw Malformed(what, $"the reply is {buffer.Length} bytes, shorter than the {fixedSize}-byte {structName}");
        }
        uint argsz = MemoryMarshal.Read<uint>(buffer);
        if (argsz < (uint)fixedSize)
        {
            throw Malformed(what, $"argsz is {argsz}, smaller than the {fixedSize}-byte {structName}");
        }
        if (argsz > (uint)buffer.Length)
        {
            // The kernel grew argsz because the capabilities did not fit, and left them out; parsing on would
            // silently lose them (e.g. a BAR's sparse areas, making the MSI-X table look mmap-able).
            throw Malformed(what, $"argsz is {argsz} but the reply buffer holds only {buffer.Length} bytes: the kernel left " +
                                  $"the capabilities out. Query again with a {argsz}-byte buffer (VfioInfoBuffer does)");
        }
        return buffer[..(int)argsz];
    }

    /// <summary>The bytes of a capability whose fixed layout is <typeparamref name="T"/>, after checking they fit.</summary>
    private static ReadOnlySpan<byte> Body<T>(ReadOnlySpan<byte> reply, VfioCapability cap, string what, string name)
        where T : unmanaged => Body(reply, cap, (ulong)Unsafe.SizeOf<T>(), what, name);

    private static ReadOnlySpan<byte> Body(ReadOnlySpan<byte> reply, VfioCapability cap, ulong size, string what, string name)
    {
        ulong end = (ulong)cap.Offset + size;
        if (end > (ulong)reply.Length)
        {
            throw Malformed(what, $"capability {name} (id {cap.Id}) at offset {cap.Offset} is truncated: it needs {size} bytes, " +
                                  $"the reply ends {reply.Length - cap.Offset} bytes after its start");
        }
        return reply.Slice(cap.Offset, (int)size);
    }

    private static ReadOnlyCollection<SparseArea> ReadSparseAreas(ReadOnlySpan<byte> reply, VfioCapability cap, ulong regionSize, string what)
    {
        const string name = "SPARSE_MMAP";
        var head = MemoryMarshal.Read<vfio_region_info_cap_sparse_mmap>(Body<vfio_region_info_cap_sparse_mmap>(reply, cap, what, name));
        int headSize = Unsafe.SizeOf<vfio_region_info_cap_sparse_mmap>();
        int areaSize = Unsafe.SizeOf<vfio_region_sparse_mmap_area>();
        var body = Body(reply, cap, (ulong)headSize + (ulong)head.nr_areas * (ulong)areaSize, what, $"{name} with {head.nr_areas} areas");

        var areas = new SparseArea[head.nr_areas];
        for (int i = 0; i < areas.Length; i++)
        {
            var a = MemoryMarshal.Read<vfio_region_sparse_mmap_area>(body[(headSize + i * areaSize)..]);
            if (a.size > regionSize || a.offset > regionSize - a.size)
            {
                throw Malformed(what, $"sparse mmap area {i} [0x{a.offset:x}, +0x{a.size:x}) lies outside the 0x{regionSize:x}-byte region");
            }
            areas[i] = new SparseArea(a.offset, a.size);
        }
        return Array.AsReadOnly(areas);
    }

    private static ReadOnlyCollection<IovaRange> ReadIovaRanges(ReadOnlySpan<byte> reply, VfioCapability cap, string what)
    {
        const string name = "IOVA_RANGE";
        var head = MemoryMarshal.Read<vfio_iommu_type1_info_cap_iova_range>(Body<vfio_iommu_type1_info_cap_iova_range>(reply, cap, what, name));
        int headSize = Unsafe.SizeOf<vfio_iommu_type1_info_cap_iova_range>();
        int rangeSize = Unsafe.SizeOf<vfio_iova_range>();
        var body = Body(reply, cap, (ulong)headSize + (ulong)head.nr_iovas * (ulong)rangeSize, what, $"{name} with {head.nr_iovas} ranges");

        var ranges = new IovaRange[head.nr_iovas];
        for (int i = 0; i < ranges.Length; i++)
        {
            var r = MemoryMarshal.Read<vfio_iova_range>(body[(headSize + i * rangeSize)..]);
            if (r.start > r.end)
            {
                throw Malformed(what, $"IOVA range {i} starts at 0x{r.start:x}, after its inclusive end 0x{r.end:x}");
            }
            // The kernel reports its sorted list of valid ranges; the IOVA allocator relies on that order.
            if (i > 0 && r.start <= ranges[i - 1].End)
            {
                throw Malformed(what, $"IOVA range {i} [0x{r.start:x}, 0x{r.end:x}] does not follow range {i - 1} " +
                                      $"[0x{ranges[i - 1].Start:x}, 0x{ranges[i - 1].End:x}] (ranges must ascend without overlap)");
            }
            ranges[i] = new IovaRange(r.start, r.end);
        }
        return Array.AsReadOnly(ranges);
    }

    private static void Once(bool alreadySeen, VfioCapability cap, string what, string name)
    {
        if (alreadySeen)
        {
            throw Malformed(what, $"capability {name} (id {cap.Id}) appears twice, again at offset {cap.Offset}");
        }
    }

    private static VfioException Malformed(string what, string detail) =>
        new($"malformed {what} reply: {detail}", null,
            "the reply does not follow linux/vfio.h; report it with the kernel version (uname -r) and the device");
}
