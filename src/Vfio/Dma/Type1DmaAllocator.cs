using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Dma;

/// <summary>Options of a <see cref="Type1DmaAllocator"/>.</summary>
public sealed record Type1DmaAllocatorOptions
{
    /// <summary>
    /// Back buffers with 2 MiB hugepages when the kernel has free ones, falling back to 4 KiB pages when it has
    /// not. A hugepage mapped at a 2 MiB-aligned IOVA lets the IOMMU use one 2 MiB page-table entry instead of
    /// 512 small ones (fewer IOTLB misses). Off by default, so the allocator does not take hugepages that other
    /// users of the host (DPDK, a No-IOMMU allocator) reserved.
    /// </summary>
    public bool PreferHugePages { get; init; }

    /// <summary>
    /// The NUMA node to take the pages from when the node has free ones (mbind(2) MPOL_PREFERRED before VFIO pins
    /// them), or null for the kernel's default policy. Kernel VFIO sets it to the device's node on hosts with more
    /// than one.
    /// </summary>
    public int? PreferredNumaNode { get; init; }
}

/// <summary>
/// DMA memory behind an IOMMU (VFIO type1 container or iommufd IOAS): page-aligned anonymous memory mapped
/// through an <see cref="IIommuMapper"/> at an IOVA from an <see cref="IovaAllocator"/>. Every buffer is
/// contiguous in IOVA space, so <see cref="DmaAllocationOptions.Contiguous"/> is always met.
/// </summary>
/// <remarks>
/// Requests up to 2 MiB are carved at 4 KiB granularity from 2 MiB chunks, each mapped once at a 2 MiB-aligned
/// IOVA, which keeps the number of IOMMU mappings (VFIO's <c>dma_entry_limit</c> defaults to 65535) and map
/// calls low. A chunk is unmapped from the IOMMU and then from the process when its last buffer is disposed.
/// Larger requests get a mapping of their own. The device can reach the whole chunk, not only its own buffer:
/// the IOMMU isolates the device from the rest of the host, not buffers of one driver from each other.
/// </remarks>
public sealed partial class Type1DmaAllocator : IDmaAllocator
{
    /// <summary>Bytes per chunk that small buffers are carved from.</summary>
    public const ulong ChunkSize = 2UL << 20;

    private readonly IIommuMapper _mapper;
    private readonly IPageMemory _pages;
    private readonly IPageMemory? _hugePages;
    private readonly CarvingPool<IommuMapping> _pool;
    private readonly ILogger _logger;
    private readonly ulong _granule;

    /// <summary>Creates an allocator that maps through <paramref name="mapper"/>.</summary>
    /// <param name="mapper">The IOMMU address space (the type1 container, an iommufd IOAS).</param>
    /// <param name="options">Options, or null for the defaults.</param>
    /// <param name="iovaAllocator">
    /// The IOVA allocator to take addresses from; pass the one every other user of the same address space shares.
    /// Null builds one from <see cref="IIommuMapper.IovaRanges"/>.
    /// </param>
    /// <param name="logger">Logs mappings at Debug level.</param>
    /// <exception cref="ArgumentException">The mapper reports no page sizes or no usable IOVA range.</exception>
    public Type1DmaAllocator(IIommuMapper mapper, Type1DmaAllocatorOptions? options = null, IovaAllocator? iovaAllocator = null,
        ILogger<Type1DmaAllocator>? logger = null)
        : this(mapper, AnonymousPageMemory.IommuPages().OnNode(options?.PreferredNumaNode),
            options?.PreferHugePages == true ? AnonymousPageMemory.IommuHugePages().OnNode(options.PreferredNumaNode) : null,
            iovaAllocator, (ILogger?)logger ?? NullLogger.Instance)
    {
    }

    /// <summary>Creates an allocator on injected memory (tests).</summary>
    internal Type1DmaAllocator(IIommuMapper mapper, IPageMemory pages, IPageMemory? hugePages, IovaAllocator? iovaAllocator, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(mapper);
        _mapper = mapper;
        _pages = pages;
        _hugePages = hugePages;
        _logger = logger;
        var pageSizes = mapper.PageSizes;
        if (pageSizes == 0)
        {
            throw new ArgumentException("the IOMMU reports no supported page sizes (iova_pgsizes is 0)", nameof(mapper));
        }
        // The lowest set bit is the IOMMU's smallest page: every mapping's address and length must be a multiple of it.
        var iommuPage = pageSizes & (~pageSizes + 1);
        _granule = Math.Max(iommuPage, pages.PageSize);
        if (_granule > ChunkSize)
        {
            throw new NotSupportedException($"the IOMMU's smallest page (0x{iommuPage:x} bytes) is larger than the 2 MiB chunks this allocator maps");
        }
        Iovas = iovaAllocator ?? new IovaAllocator(mapper.IovaRanges, _granule);
        _pool = new CarvingPool<IommuMapping>(ChunkSize, _granule, () => MapRegion(ChunkSize, ChunkSize), UnmapRegion);
    }

    /// <inheritdoc />
    public DmaAddressing Addressing => DmaAddressing.Iova;

    /// <summary>This allocator's live buffers by IOVA, for <see cref="DmaAudit"/>.</summary>
    public DmaBufferRegistry Registry { get; } = new("type1 IOVAs");

    /// <summary>Where this allocator's IOVAs come from.</summary>
    public IovaAllocator Iovas { get; }

    /// <summary>Chunks (2 MiB each) currently mapped for carving small buffers.</summary>
    public int ChunkCount => _pool.ChunkCount;

    /// <inheritdoc />
    /// <exception cref="VfioResourceException">IOVA space or memory is exhausted, or the locked-memory limit is reached.</exception>
    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        options ??= new DmaAllocationOptions();
        NoIommuDmaAllocator.ValidateRequest(size, options);
        if (_pool.Fits(size, options.Alignment))
        {
            var chunk = _pool.Carve(size, options.Alignment, out var offset);
            var pointer = chunk.Value.Address + (nint)offset;
            // A carving may reuse bytes an earlier buffer left behind.
            ClearMemory(pointer, size);
            return new IovaDmaBuffer(pointer, size, chunk.Value.Iova + offset, options.Name, () => _pool.Return(chunk, offset), Registry);
        }
        var mapping = MapRegion(size, options.Alignment);
        return new IovaDmaBuffer(mapping.Address, size, mapping.Iova, options.Name, () => UnmapRegion(mapping), Registry);
    }

    private IommuMapping MapRegion(ulong size, ulong alignment)
    {
        var (memory, address, length) = MapMemory(size);
        Iova iova;
        try
        {
            // Aligning the IOVA to the page size lets the IOMMU use one large page-table entry per hugepage.
            iova = Iovas.Allocate(length, Math.Max(alignment, Math.Max(_granule, memory.PageSize)));
        }
        catch
        {
            memory.Unmap(address, length);
            throw;
        }
        try
        {
            _mapper.MapDma(address, iova, length);
        }
        catch
        {
            Iovas.Free(iova);
            memory.Unmap(address, length);
            throw;
        }
        LogMapped(_logger, length, memory.Description, address, iova);
        DmaCounters.Pinned(DmaAddressing.Iova, (long)length);
        return new IommuMapping(memory, address, length, iova);
    }

    private (IPageMemory Memory, nint Address, ulong Length) MapMemory(ulong size)
    {
        if (_hugePages is not null)
        {
            var hugeLength = RoundUp(size, Math.Max(_hugePages.PageSize, _granule));
            try
            {
                return (_hugePages, _hugePages.Map(hugeLength), hugeLength);
            }
            catch (HugePagesUnavailableException e)
            {
                LogNoHugePages(_logger, size, e.Message);
            }
        }
        var length = RoundUp(size, _granule);
        return (_pages, _pages.Map(length), length);
    }

    // The IOMMU mapping goes first: until it is gone the device may still write the pages, and they must not be
    // handed back to the kernel for reuse while it can.
    private void UnmapRegion(IommuMapping mapping)
    {
        try
        {
            _mapper.UnmapDma(mapping.Iova, mapping.Length);
        }
        catch (Exception e)
        {
            // Leave the IOVA reserved and the memory mapped: the device may still reach them.
            LogUnmapFailed(_logger, e, mapping.Length, mapping.Iova);
            throw;
        }
        Iovas.Free(mapping.Iova);
        mapping.Memory.Unmap(mapping.Address, mapping.Length);
        DmaCounters.Pinned(DmaAddressing.Iova, -(long)mapping.Length);
        LogUnmapped(_logger, mapping.Length, mapping.Iova);
    }

    private static ulong RoundUp(ulong size, ulong granule)
    {
        var rounded = (size + (granule - 1)) & ~(granule - 1);
        return rounded >= size ? rounded : throw new ArgumentOutOfRangeException(nameof(size), size, "DMA buffer size is too large");
    }

    private static unsafe void ClearMemory(nint address, ulong length)
    {
        // SAFETY: callers pass a range inside a chunk they own and that stays mapped until its buffer is disposed.
        NativeMemory.Clear((void*)address, (nuint)length);
    }

    /// <summary>One IOMMU mapping: memory, its IOVA and size.</summary>
    private sealed record IommuMapping(IPageMemory Memory, nint Address, ulong Length, Iova Iova);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Mapped {Length} bytes of {Kind} at 0x{Address:x} to {Iova}")]
    private static partial void LogMapped(ILogger logger, ulong length, string kind, nint address, Iova iova);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Unmapped {Length} bytes at {Iova}")]
    private static partial void LogUnmapped(ILogger logger, ulong length, Iova iova);

    [LoggerMessage(Level = LogLevel.Debug, Message = "No hugepages for a {Size}-byte DMA mapping ({Reason}); using 4 KiB pages")]
    private static partial void LogNoHugePages(ILogger logger, ulong size, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Unmapping {Length} bytes at {Iova} from the IOMMU failed; the memory and IOVA range stay reserved")]
    private static partial void LogUnmapFailed(ILogger logger, Exception exception, ulong length, Iova iova);
}
