namespace Vfio.Dma;

/// <summary>
/// Where DMA allocators get their pages: the real one maps anonymous memory, tests substitute plain heap
/// memory and record the calls. Lengths and addresses are multiples of <see cref="PageSize"/>.
/// </summary>
internal interface IPageMemory
{
    /// <summary>The page size of the memory; lengths passed to <see cref="Map"/> are multiples of it.</summary>
    ulong PageSize { get; }

    /// <summary>What kind of memory this is, for logs ("2 MiB hugepages").</summary>
    string Description { get; }

    /// <summary>Maps <paramref name="length"/> bytes of zeroed memory aligned to <see cref="PageSize"/>.</summary>
    /// <exception cref="HugePagesUnavailableException">Hugepage-backed memory and too few free hugepages.</exception>
    /// <exception cref="VfioException">The mapping failed otherwise.</exception>
    nint Map(ulong length);

    /// <summary>Unmaps what <see cref="Map"/> returned.</summary>
    void Unmap(nint address, ulong length);
}

/// <summary>Anonymous memory from <c>mmap</c>, in the flavours the DMA allocators need.</summary>
internal sealed class AnonymousPageMemory : IPageMemory
{
    /// <summary>Bytes per hugepage on every architecture this library targets (x86-64 PMD size).</summary>
    public const ulong HugePageSize = 2UL << 20;

    private readonly int _flags;
    private readonly bool _lock;

    private AnonymousPageMemory(ulong pageSize, int flags, bool lockPages, string description, int? preferredNode = null)
    {
        PageSize = pageSize;
        _flags = flags;
        _lock = lockPages;
        Description = description;
        PreferredNode = preferredNode;
    }

    /// <summary>The NUMA node new mappings prefer (<see cref="NumaPlacement"/>), or null for the kernel's default policy.</summary>
    public int? PreferredNode { get; }

    /// <summary>The same memory, preferring <paramref name="node"/> (null: the default policy).</summary>
    public AnonymousPageMemory OnNode(int? node) => node == PreferredNode ? this : new(PageSize, _flags, _lock, Description, node);

    /// <inheritdoc />
    public ulong PageSize { get; }

    /// <inheritdoc />
    public string Description { get; }

    private bool IsHugetlb => (_flags & Interop.Libc.MAP_HUGETLB) != 0;

    /// <summary>
    /// No-IOMMU memory: 2 MiB hugetlb pages, shared, populated and locked. Hugetlb pages are never swapped, and
    /// neither background compaction nor NUMA balancing moves them, so the physical address read once from pagemap
    /// stays valid (what DPDK relies on too). Memory hot-remove, soft-offlining of a failing page and
    /// contiguous-range allocation (CMA, gigantic pages) can still migrate them; no userspace mode can rule that out.
    /// </summary>
    /// <remarks>
    /// Why anonymous <c>MAP_SHARED</c> rather than <c>MAP_PRIVATE</c> or a <c>memfd_create(MFD_HUGETLB)</c> file:
    /// a shared mapping is never copy-on-write, so even if a child process inherited it (MADV_DONTFORK already
    /// prevents that) no write could ever swap the parent's page for a copy at another physical address. A memfd
    /// would add a descriptor per chunk and buys nothing here: No-IOMMU devices address physical memory, so there
    /// is no one to pass the fd to. <c>MAP_POPULATE</c> faults every page in at once, so pagemap has a frame to
    /// report and a shortage shows at allocation, not as SIGBUS at first touch. <c>mlock</c> is a no-op for hugetlb
    /// pages (never swapped) and is kept only to make the intent explicit.
    /// </remarks>
    public static AnonymousPageMemory NoIommuHugePages() => new(HugePageSize,
        Interop.Libc.MAP_SHARED | Interop.Libc.MAP_ANONYMOUS | Interop.Libc.MAP_HUGETLB | Interop.Libc.MAP_HUGE_2MB | Interop.Libc.MAP_POPULATE,
        lockPages: true, "2 MiB hugepages");

    /// <summary>
    /// No-IOMMU fallback: ordinary pages, shared, populated and locked. <c>mlock</c> keeps them resident but does
    /// not stop compaction or migration from moving them (compact_unevictable_allowed defaults to 1), after which
    /// the device would DMA to whatever now occupies the old frame. Only used when the caller opts in.
    /// </summary>
    public static AnonymousPageMemory NoIommuMigratablePages() => new((ulong)Environment.SystemPageSize,
        Interop.Libc.MAP_SHARED | Interop.Libc.MAP_ANONYMOUS | Interop.Libc.MAP_POPULATE,
        lockPages: true, "locked 4 KiB pages (migratable)");

    /// <summary>
    /// IOMMU memory: ordinary private anonymous pages. Not locked: <c>VFIO_IOMMU_MAP_DMA</c> pins them itself and
    /// charges them to RLIMIT_MEMLOCK, and an extra mlock would be charged a second time.
    /// </summary>
    public static AnonymousPageMemory IommuPages() => new((ulong)Environment.SystemPageSize,
        Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS, lockPages: false, "4 KiB pages");

    /// <summary>IOMMU memory on 2 MiB hugetlb pages, so the IOMMU can map each with one 2 MiB page-table entry.</summary>
    public static AnonymousPageMemory IommuHugePages() => new(HugePageSize,
        Interop.Libc.MAP_PRIVATE | Interop.Libc.MAP_ANONYMOUS | Interop.Libc.MAP_HUGETLB | Interop.Libc.MAP_HUGE_2MB,
        lockPages: false, "2 MiB hugepages");

    /// <inheritdoc />
    public nint Map(ulong length)
    {
        if (length == 0 || length % PageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be a non-zero multiple of {PageSize}");
        }
        // With a node to prefer, the policy must be set before the first fault: map unpopulated, mbind, then populate.
        bool populate = (_flags & Interop.Libc.MAP_POPULATE) != 0;
        int flags = PreferredNode is null ? _flags : _flags & ~Interop.Libc.MAP_POPULATE;
        var address = Interop.Libc.mmap(0, (nuint)length, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, flags, -1, 0);
        if (address == Interop.Libc.MAP_FAILED)
        {
            var errno = Errno.Last;
            if (IsHugetlb && errno == Errno.ENOMEM)
            {
                throw new HugePagesUnavailableException(PageSize, (long)(length / PageSize), new Host.HugePages().GetPool(PageSize));
            }
            throw Errno.ToException(errno, $"mmap {length} bytes of {Description} for DMA",
                hint: IsHugetlb && errno == Errno.EINVAL ? $"the kernel has no {PageSize >> 20} MiB hugepage pool" : null);
        }
        try
        {
            if (PreferredNode is { } node)
            {
                NumaPlacement.Prefer(address, length, node);
                if (populate) { Populate(address, length); }
            }
            // A forked child must not share DMA memory: it would see device writes, and with a private mapping a
            // copy-on-write fault could move the parent's page away from the address the device was given.
            Errno.Check(Interop.Libc.madvise(address, (nuint)length, Interop.Libc.MADV_DONTFORK), "madvise(MADV_DONTFORK) on DMA memory");
            if (_lock)
            {
                Errno.Check(Interop.Libc.mlock(address, (nuint)length), $"mlock {length} bytes of DMA memory");
            }
        }
        catch
        {
            Interop.Libc.munmap(address, (nuint)length);
            throw;
        }
        return address;
    }

    /// <summary>
    /// What MAP_POPULATE would have done, after the policy is set: MADV_POPULATE_WRITE (Linux 5.14), which reports a
    /// shortage as an error; on an older kernel, a write to each page (hugetlb pages were reserved at mmap, so the
    /// faults find pages; MPOL_PREFERRED falls back to other nodes rather than fail).
    /// </summary>
    private unsafe void Populate(nint address, ulong length)
    {
        if (Interop.Libc.madvise(address, (nuint)length, Interop.Libc.MADV_POPULATE_WRITE) == 0) { return; }
        var errno = Errno.Last;
        if (errno != Errno.EINVAL)
        {
            if (IsHugetlb && errno == Errno.ENOMEM)
            {
                throw new HugePagesUnavailableException(PageSize, (long)(length / PageSize), new Host.HugePages().GetPool(PageSize));
            }
            throw Errno.ToException(errno, $"madvise(MADV_POPULATE_WRITE) on {length} bytes of {Description} for DMA");
        }
        for (ulong at = 0; at < length; at += PageSize)
        {
            // SAFETY: address..address+length was just mapped readable and writable by this call's mmap; the memory
            // is zero, and writing zero faults the page in without changing it.
            Volatile.Write(ref *(byte*)(address + (nint)at), 0);
        }
    }

    /// <inheritdoc />
    public void Unmap(nint address, ulong length) =>
        Errno.Check(Interop.Libc.munmap(address, (nuint)length), $"munmap {length} bytes of DMA memory at 0x{address:x}");
}
