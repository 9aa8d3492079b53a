using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Dma;

/// <summary>Options of a <see cref="NoIommuDmaAllocator"/>.</summary>
public sealed record NoIommuDmaAllocatorOptions
{
    /// <summary>
    /// UNSAFE. When no hugepage is free, fall back to ordinary 4 KiB pages locked with <c>mlock</c> instead of
    /// failing. Off by default. <c>mlock</c> keeps a page resident but does not keep it in place: memory
    /// compaction (with the default <c>vm.compact_unevictable_allowed = 1</c>), NUMA balancing and memory
    /// hot-remove may move it to another frame, and the device, which was given the old physical address, then
    /// DMAs into memory that now belongs to someone else. Set it only for experiments on a machine you can lose.
    /// Such buffers are physically contiguous only within each 4 KiB page.
    /// </summary>
    public bool AllowMigratablePages { get; init; }

    /// <summary>
    /// The NUMA node to take the pages from when the node has free ones (mbind(2) MPOL_PREFERRED before the pages are
    /// faulted in), or null for the kernel's default policy. Kernel VFIO sets it to the device's node on hosts with
    /// more than one (<c>numa_node</c> in sysfs); reserve hugepages there with <c>vfio hugepages reserve --node</c>.
    /// </summary>
    public int? PreferredNumaNode { get; init; }
}

/// <summary>
/// DMA memory for No-IOMMU mode, where a device reaches memory by host physical address. Buffers live in
/// 2 MiB hugepages (which the kernel neither swaps nor migrates) and their device addresses come from
/// <c>/proc/self/pagemap</c>, which needs CAP_SYS_ADMIN.
/// </summary>
/// <remarks>
/// <para>Requests up to 2 MiB are carved from shared 2 MiB chunks (one hugepage each) at 4 KiB granularity, so
/// small queues do not cost a hugepage apiece; a chunk is unmapped when its last buffer is disposed. Such a
/// buffer is always physically contiguous. A larger request gets hugepages of its own; its device address is
/// contiguous only within each hugepage (<see cref="DmaBuffer.GetContiguousLength"/> says how far), so it
/// needs <see cref="DmaAllocationOptions.Contiguous"/> = false unless the hugepages happen to be physically
/// adjacent, which is checked.</para>
/// <para>Disposing the allocator closes pagemap; buffers already allocated stay valid until they are disposed.</para>
/// </remarks>
public sealed partial class NoIommuDmaAllocator : IDmaAllocator, IDisposable
{
    /// <summary>Bytes per hugepage, and per chunk that small buffers are carved from.</summary>
    public const ulong HugePageSize = AnonymousPageMemory.HugePageSize;

    private const ulong MinAlignment = 4096;
    private readonly IPageMemory _hugePages;
    private readonly IPageMemory? _migratablePages;
    private readonly IPhysicalAddressResolver _resolver;
    private readonly IDisposable? _ownedResolver;
    private readonly CarvingPool<PinnedBlock> _hugePool;
    private readonly CarvingPool<PinnedBlock>? _migratablePool;
    private readonly ILogger _logger;
    private int _disposed;

    /// <summary>
    /// Creates an allocator on the host's 2 MiB hugepages. Opens <c>/proc/self/pagemap</c> and checks at once
    /// that it reveals physical addresses.
    /// </summary>
    /// <exception cref="MissingCapabilityException">The process lacks CAP_SYS_ADMIN, so pagemap hides physical addresses.</exception>
    public NoIommuDmaAllocator(NoIommuDmaAllocatorOptions? options = null, ILogger<NoIommuDmaAllocator>? logger = null)
        : this(AnonymousPageMemory.NoIommuHugePages().OnNode(options?.PreferredNumaNode),
            options?.AllowMigratablePages == true ? AnonymousPageMemory.NoIommuMigratablePages().OnNode(options.PreferredNumaNode) : null,
            OpenCheckedPagemap(), ownsResolver: true, (ILogger?)logger ?? NullLogger.Instance)
    {
    }

    /// <summary>Creates an allocator on injected memory and address translation (tests).</summary>
    internal NoIommuDmaAllocator(IPageMemory hugePages, IPageMemory? migratablePages, IPhysicalAddressResolver resolver,
        bool ownsResolver, ILogger logger)
    {
        _hugePages = hugePages;
        _migratablePages = migratablePages;
        _resolver = resolver;
        _ownedResolver = ownsResolver ? resolver as IDisposable : null;
        _logger = logger;
        _hugePool = new CarvingPool<PinnedBlock>(HugePageSize, MinAlignment,
            () => MapBlock(hugePages, HugePageSize), block => UnmapBlock(hugePages, block));
        if (migratablePages is not null)
        {
            _migratablePool = new CarvingPool<PinnedBlock>(HugePageSize, MinAlignment,
                () => MapBlock(migratablePages, HugePageSize), block => UnmapBlock(migratablePages, block));
            LogMigratableAllowed(_logger);
        }
    }

    /// <inheritdoc />
    public DmaAddressing Addressing => DmaAddressing.Physical;

    /// <summary>This allocator's live buffers by physical address, for <see cref="DmaAudit"/>.</summary>
    public DmaBufferRegistry Registry { get; } = new("No-IOMMU physical addresses");

    /// <summary>Chunks (2 MiB each) currently held for carving small buffers, over both page kinds.</summary>
    public int ChunkCount => _hugePool.ChunkCount + (_migratablePool?.ChunkCount ?? 0);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">
    /// <see cref="DmaAllocationOptions.Contiguous"/> was asked of more than one hugepage and the hugepages the
    /// kernel gave are not physically adjacent, or the alignment asked for cannot be met.
    /// </exception>
    /// <exception cref="HugePagesUnavailableException">Too few free hugepages (and no opt-in to migratable pages).</exception>
    /// <exception cref="MissingCapabilityException">pagemap hides physical addresses.</exception>
    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        options ??= new DmaAllocationOptions();
        ValidateRequest(size, options);
        try
        {
            return AllocateFrom(_hugePages, _hugePool, size, options);
        }
        catch (HugePagesUnavailableException e) when (_migratablePages is not null)
        {
            LogFallingBack(_logger, size, e.Message);
            return AllocateFrom(_migratablePages, _migratablePool!, size, options);
        }
    }

    /// <summary>Closes pagemap. Buffers already allocated stay valid.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ownedResolver?.Dispose();
        }
    }

    internal static void ValidateRequest(ulong size, DmaAllocationOptions options)
    {
        if (size == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "cannot allocate an empty DMA buffer");
        }
        if (size > long.MaxValue)
        {
            // No address space is that large; refusing here keeps both allocators from answering with whatever mmap says.
            throw new ArgumentOutOfRangeException(nameof(size), size, $"DMA buffer size is too large (at most {long.MaxValue} bytes; a negative size cast to ulong?)");
        }
        if (!ulong.IsPow2(options.Alignment) || options.Alignment < MinAlignment)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Alignment, "DMA alignment must be a power of two of at least 4096");
        }
    }

    private DmaBuffer AllocateFrom(IPageMemory memory, CarvingPool<PinnedBlock> pool, ulong size, DmaAllocationOptions options)
    {
        DmaBuffer buffer;
        if (pool.Fits(size, options.Alignment))
        {
            var chunk = pool.Carve(size, options.Alignment, out var offset);
            buffer = new PhysicalDmaBuffer(chunk.Value, offset, size, options.Name, () => pool.Return(chunk, offset), Registry);
            // A carving may reuse bytes an earlier buffer left behind.
            ClearMemory(buffer.Pointer, size);
        }
        else
        {
            var length = (size + (memory.PageSize - 1)) & ~(memory.PageSize - 1);
            if (length < size)
            {
                throw new ArgumentOutOfRangeException(nameof(size), size, "DMA buffer size is too large");
            }
            var block = MapBlock(memory, length);
            buffer = new PhysicalDmaBuffer(block, 0, size, options.Name, () => UnmapBlock(memory, block), Registry);
        }
        try
        {
            CheckPlacement(buffer, size, options, memory);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
        return buffer;
    }

    // Carving guarantees both properties inside one hugepage; across pages (large buffers, 4 KiB pages) they
    // depend on where the kernel put the frames, so they are checked rather than assumed.
    private static void CheckPlacement(DmaBuffer buffer, ulong size, DmaAllocationOptions options, IPageMemory memory)
    {
        var first = buffer.DeviceAddress;
        if (first.Value % options.Alignment != 0)
        {
            throw new ArgumentException(
                $"cannot place a DMA buffer at a physical address aligned to 0x{options.Alignment:x}: {memory.Description} " +
                $"are physically aligned only to 0x{memory.PageSize:x}, and this one landed at {first}", nameof(options));
        }
        if (options.Contiguous && buffer.GetContiguousLength(0) < size)
        {
            throw new ArgumentException(
                $"a {size}-byte DMA buffer with Contiguous = true needs physically contiguous memory, but in No-IOMMU mode " +
                $"{memory.Description} are contiguous only page by page and the pages the kernel gave are not adjacent " +
                $"(contiguous for {buffer.GetContiguousLength(0)} bytes from {first}). Allocate with Contiguous = false and walk " +
                $"GetContiguousLength to build scatter-gather entries, or use buffers of at most {memory.PageSize} bytes",
                nameof(options));
        }
    }

    private PinnedBlock MapBlock(IPageMemory memory, ulong length)
    {
        var address = memory.Map(length);
        try
        {
            var pages = new PhysicalAddress[length / memory.PageSize];
            for (var i = 0; i < pages.Length; i++)
            {
                var pa = _resolver.GetPhysicalAddress(address + (nint)((ulong)i * memory.PageSize));
                if (pa.Value % memory.PageSize != 0)
                {
                    // A 2 MiB hugetlb page is 2 MiB-aligned in physical memory; anything else means the mapping is
                    // not backed the way it was asked to be, and carving offsets would not be physical offsets.
                    throw new VfioException(
                        $"{memory.Description} at 0x{address:x} page {i} is at {pa}, which is not aligned to 0x{memory.PageSize:x}",
                        null, "the memory is not backed by whole pages of the expected size; is hugetlbfs working on this kernel?");
                }
                pages[i] = pa;
            }
            LogMapped(_logger, length, memory.Description, address, pages[0]);
            DmaCounters.Pinned(DmaAddressing.Physical, (long)length);
            return new PinnedBlock(address, length, memory.PageSize, pages);
        }
        catch
        {
            memory.Unmap(address, length);
            throw;
        }
    }

    private void UnmapBlock(IPageMemory memory, PinnedBlock block)
    {
        memory.Unmap(block.Address, block.Length);
        DmaCounters.Pinned(DmaAddressing.Physical, -(long)block.Length);
        LogUnmapped(_logger, block.Length, memory.Description, block.Address);
    }

    private static unsafe void ClearMemory(nint address, ulong length)
    {
        // SAFETY: callers pass a range inside a block they own and that stays mapped until its buffer is disposed.
        NativeMemory.Clear((void*)address, (nuint)length);
    }

    private static unsafe Pagemap OpenCheckedPagemap()
    {
        var pagemap = new Pagemap();
        try
        {
            // A byte on this thread's stack is certainly resident, so its entry is present: a PFN of 0 there can
            // only mean the kernel hides frame numbers from this process. Failing now beats failing at the first
            // allocation, deep inside a driver's initialisation.
            byte probe = 1;
            // SAFETY: taking the address of a local for the duration of one call; nothing is written through it.
            pagemap.GetPhysicalAddress((nint)(&probe));
            return pagemap;
        }
        catch
        {
            pagemap.Dispose();
            throw;
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Mapped {Length} bytes of {Kind} for DMA at 0x{Address:x}, first page at {Physical}")]
    private static partial void LogMapped(ILogger logger, ulong length, string kind, nint address, PhysicalAddress physical);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Unmapped {Length} bytes of {Kind} at 0x{Address:x}")]
    private static partial void LogUnmapped(ILogger logger, ulong length, string kind, nint address);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No-IOMMU DMA allocator may fall back to migratable 4 KiB pages (AllowMigratablePages): " +
        "if the kernel migrates such a page, the device will DMA into memory that is no longer the buffer")]
    private static partial void LogMigratableAllowed(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No hugepage for a {Size}-byte DMA buffer ({Reason}); using migratable locked 4 KiB pages instead")]
    private static partial void LogFallingBack(ILogger logger, ulong size, string reason);
}
