using Microsoft.Extensions.Logging;
using Vfio.Dma;
using static Interop.Iommufd;

namespace Vfio.Kernel;

/// <summary>
/// An iommufd I/O address space (IOAS): the IOVA space that devices attached to it DMA into, and that this process
/// maps its memory into with <c>IOMMU_IOAS_MAP</c>. It plays the part a type1 container plays on the group path, so
/// DMA buffers come from the same <see cref="Type1DmaAllocator"/> (<see cref="GetDmaAllocator()"/>).
/// </summary>
public sealed partial class IommufdIoas : IIommuMapper, IDisposable
{
    private readonly ILogger _logger;
    private readonly ILoggerFactory? _loggerFactory;
    private readonly object _lock = new();
    private IDmaAllocator? _allocator;
    private bool _disposed;

    internal IommufdIoas(Iommufd iommufd, uint id, ILogger logger, ILoggerFactory? loggerFactory)
    {
        Iommufd = iommufd;
        Id = id;
        _logger = logger;
        _loggerFactory = loggerFactory;
    }

    /// <summary>The iommufd the IOAS lives in.</summary>
    public Iommufd Iommufd { get; }

    /// <summary>The IOAS object id (what <c>VFIO_DEVICE_ATTACH_IOMMUFD_PT</c> takes).</summary>
    public uint Id { get; }

    /// <summary>
    /// The IOVA ranges mapping may use, ends inclusive (<c>IOMMU_IOAS_IOVA_RANGES</c>). Read fresh on every call:
    /// each attached device narrows them to what its IOMMU accepts (a fresh IOAS reports the full 64-bit space).
    /// </summary>
    public IReadOnlyList<IovaRange> IovaRanges => QueryRanges().Ranges;

    /// <summary>
    /// The mapping granularity as a page-size bitmap (one bit): the IOAS's <c>out_iova_alignment</c>, at least the
    /// CPU page size (memory is mapped in whole pages either way).
    /// </summary>
    public ulong PageSizes => Math.Max(QueryRanges().Alignment, (ulong)Environment.SystemPageSize);

    /// <summary>The allocator for DMA memory reachable by every device attached to this IOAS.</summary>
    public IDmaAllocator GetDmaAllocator() => GetDmaAllocator(null);

    /// <summary>As <see cref="GetDmaAllocator()"/>, the memory preferring NUMA node <paramref name="preferredNode"/>; the first device to ask decides.</summary>
    internal IDmaAllocator GetDmaAllocator(int? preferredNode)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _allocator ??= new Type1DmaAllocator(this, new Type1DmaAllocatorOptions { PreferredNumaNode = preferredNode },
                logger: _loggerFactory?.CreateLogger<Type1DmaAllocator>());
        }
    }

    /// <inheritdoc />
    public unsafe void MapDma(nint vaddr, Iova iova, ulong size)
    {
        var map = new iommu_ioas_map
        {
            size = (uint)sizeof(iommu_ioas_map),
            flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
            ioas_id = Id,
            user_va = (ulong)vaddr,
            length = size,
            iova = iova.Value,
        };
        // SAFETY: map is a local of the size its size field states; the kernel pins the pages it names.
        VfioIoctl.Call(Iommufd.Handle, IOMMU_IOAS_MAP, &map, $"IOMMU_IOAS_MAP(ioas {Id}, {iova}, 0x{size:x} bytes)");
    }

    /// <inheritdoc />
    public unsafe void UnmapDma(Iova iova, ulong size)
    {
        if (Iommufd.Handle.IsClosed)
        {
            // Closing the iommufd destroyed the IOAS and every mapping in it: nothing is left to unmap, and the
            // pages may be freed (a driver closed the device on a hot-unplug before its owner freed the buffers).
            return;
        }
        var unmap = new iommu_ioas_unmap
        {
            size = (uint)sizeof(iommu_ioas_unmap),
            ioas_id = Id,
            iova = iova.Value,
            length = size,
        };
        // SAFETY: unmap is a local of the size its size field states.
        VfioIoctl.Call(Iommufd.Handle, IOMMU_IOAS_UNMAP, &unmap, $"IOMMU_IOAS_UNMAP(ioas {Id}, {iova}, 0x{size:x} bytes)");
        if (unmap.length != size)
        {
            throw new VfioException($"IOMMU_IOAS_UNMAP(ioas {Id}, {iova}) unmapped 0x{unmap.length:x} of 0x{size:x} bytes");
        }
    }

    /// <summary>
    /// <c>IOMMU_IOAS_IOVA_RANGES</c>: first with room for a few ranges, again with exactly the count the kernel
    /// asked for when it answers EMSGSIZE (ranges can change in between, so it loops).
    /// </summary>
    private unsafe (IReadOnlyList<IovaRange> Ranges, ulong Alignment) QueryRanges()
    {
        uint capacity = 8;
        for (int attempt = 0; attempt < 8; attempt++)
        {
            var buffer = new iommu_iova_range[capacity];
            fixed (iommu_iova_range* ranges = buffer)
            {
                var query = new iommu_ioas_iova_ranges
                {
                    size = (uint)sizeof(iommu_ioas_iova_ranges),
                    ioas_id = Id,
                    num_iovas = capacity,
                    allowed_iovas = (ulong)ranges,
                };
                // SAFETY: query is a local of the size its size field states; allowed_iovas points at num_iovas
                // pinned elements, and the kernel writes no more than that.
                int r = VfioIoctl.Raw(Iommufd.Handle, IOMMU_IOAS_IOVA_RANGES, &query);
                if (r < 0)
                {
                    int errno = Errno.Last;
                    if (errno == Errno.EMSGSIZE && query.num_iovas > capacity)
                    {
                        capacity = query.num_iovas;
                        continue;
                    }
                    throw Errno.ToException(errno, $"IOMMU_IOAS_IOVA_RANGES(ioas {Id})");
                }
                var result = new IovaRange[query.num_iovas];
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = new IovaRange(buffer[i].start, buffer[i].last);
                }
                return (result, query.out_iova_alignment);
            }
        }
        throw new VfioException($"IOMMU_IOAS_IOVA_RANGES(ioas {Id}): the range count kept growing between calls");
    }

    /// <summary>
    /// Destroys the IOAS (<c>IOMMU_DESTROY</c>), which drops its remaining mappings. Attached devices must be closed
    /// (or detached) first; the kernel refuses with EBUSY otherwise, which is logged, and the IOAS then goes when its
    /// iommufd closes.
    /// </summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) { return; }
            _disposed = true;
        }
        if (Iommufd.Handle.IsClosed) { return; }
        try
        {
            Iommufd.Destroy(Id, "IOAS");
        }
        catch (VfioException e)
        {
            LogDestroyFailed(_logger, Id, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "IOAS {Id}: {Problem}")]
    private static partial void LogDestroyFailed(ILogger logger, uint id, string problem);
}
