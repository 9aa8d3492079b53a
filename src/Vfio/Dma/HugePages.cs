using System.Globalization;

namespace Vfio.Dma;

/// <summary>The state of one hugepage pool, from <c>/sys/kernel/mm/hugepages/hugepages-&lt;size&gt;kB/</c>.</summary>
/// <param name="PageSize">Bytes per hugepage.</param>
/// <param name="Total">Pages in the pool (<c>nr_hugepages</c>).</param>
/// <param name="Free">Pages not faulted in by anyone (<c>free_hugepages</c>).</param>
/// <param name="Reserved">Free pages already promised to existing mappings (<c>resv_hugepages</c>).</param>
public readonly record struct HugePagePool(ulong PageSize, long Total, long Free, long Reserved)
{
    /// <summary>Where the kernel describes its hugepage pools.</summary>
    public const string SysfsRoot = "/sys/kernel/mm/hugepages";

    /// <summary>Pages a new mapping can still get: free and not reserved for another mapping.</summary>
    public long Available => Math.Max(0, Free - Reserved);

    /// <summary>Reads the pool of <paramref name="pageSize"/>-byte pages, or null when the kernel has no such pool.</summary>
    /// <param name="pageSize">Hugepage size in bytes.</param>
    /// <param name="sysfsRoot">The directory holding <c>hugepages-*kB</c>; tests pass a fake tree.</param>
    public static HugePagePool? Read(ulong pageSize, string sysfsRoot = SysfsRoot)
    {
        var dir = System.IO.Path.Combine(sysfsRoot, $"hugepages-{pageSize / 1024}kB");
        try
        {
            return new HugePagePool(pageSize, ReadLong(dir, "nr_hugepages"), ReadLong(dir, "free_hugepages"), ReadLong(dir, "resv_hugepages"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private static long ReadLong(string dir, string name) =>
        long.Parse(File.ReadAllText(System.IO.Path.Combine(dir, name)).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
}

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
    public HugePagesUnavailableException(ulong pageSize, long needed, HugePagePool? pool)
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
    public HugePagePool? Pool { get; }

    internal static string Describe(ulong pageSize, long needed, HugePagePool? pool)
    {
        var sysfs = $"{HugePagePool.SysfsRoot}/hugepages-{pageSize / 1024}kB/nr_hugepages";
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
