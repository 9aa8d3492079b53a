using Vfio.Host;

namespace Vfio.Dma;

/// <summary>
/// The kernel had too few free hugepages for a DMA allocation (a hugetlb <c>mmap</c> failed with ENOMEM).
/// The message says how many are free and how to reserve more.
/// </summary>
public sealed class HugePagesUnavailableException : VfioResourceException
{
    /// <summary>Creates the exception for a shortage of <paramref name="needed"/> pages in <paramref name="pool"/>.</summary>
    /// <param name="pageSize">Bytes per hugepage.</param>
    /// <param name="needed">Hugepages the allocation needed.</param>
    /// <param name="pool">The pool's state when the allocation failed, or null when the kernel has no such pool.</param>
    public HugePagesUnavailableException(ulong pageSize, long needed, HugePageInfo? pool)
        : base($"mapping {needed} hugepage{(needed == 1 ? "" : "s")} of {pageSize >> 20} MiB for DMA", null, Errno.ENOMEM, Describe(pageSize, needed, pool))
    {
        PageSize = pageSize;
        Needed = needed;
        Pool = pool;
    }

    /// <summary>Bytes per hugepage.</summary>
    public ulong PageSize { get; }

    /// <summary>Hugepages the allocation needed.</summary>
    public long Needed { get; }

    /// <summary>The pool's state when the allocation failed, or null when the kernel has no pool of this size.</summary>
    public HugePageInfo? Pool { get; }

    internal static string Describe(ulong pageSize, long needed, HugePageInfo? pool)
    {
        var sysfs = $"/sys/kernel/mm/hugepages/hugepages-{pageSize / 1024}kB/nr_hugepages";
        if (pool is not { } p)
        {
            return $"the kernel has no {pageSize >> 20} MiB hugepage pool ({sysfs} does not exist); boot with hugepagesz={pageSize >> 20}M " +
                   "or use a kernel with CONFIG_HUGETLBFS";
        }
        var want = p.Total + Math.Max(1, needed - p.Available);
        var state = p.Total == 0
            ? $"no {pageSize >> 20} MiB hugepages are reserved on this host (nr_hugepages is 0)"
            : $"{p.Available} of {p.Total} hugepages are free ({p.Free} unused, {p.Reserved} of them promised to other mappings)";
        return $"{state}, {needed} needed. Reserve more: 'vfio hugepages reserve {want}', or 'echo {want} > /proc/sys/vm/nr_hugepages' " +
               $"(or {sysfs} when {pageSize >> 20} MiB is not the default hugepage size)";
    }
}
