using System.Globalization;

namespace Vfio.Host;

/// <summary>
/// The process's locked-memory limit (RLIMIT_MEMLOCK, setrlimit(2)). Pinned DMA memory counts against it: mlock'ed
/// buffers and, for type1 containers, every page VFIO_IOMMU_MAP_DMA pins, unless the process has CAP_IPC_LOCK.
/// </summary>
/// <param name="Soft">The enforced limit in bytes; <see cref="ulong.MaxValue"/> means unlimited.</param>
/// <param name="Hard">The ceiling an unprivileged process may raise the soft limit to.</param>
public readonly record struct MemoryLockLimit(ulong Soft, ulong Hard)
{
    /// <summary>No limit is enforced.</summary>
    public bool IsUnlimited => Soft == Interop.Libc.RLIM_INFINITY;

    /// <summary>Reads the calling process's limit with getrlimit(RLIMIT_MEMLOCK).</summary>
    /// <exception cref="VfioException">getrlimit failed (it does not, for a valid resource).</exception>
    public static MemoryLockLimit Query()
    {
        Errno.Check(Interop.Libc.getrlimit(Interop.Libc.RLIMIT_MEMLOCK, out var limit), "getrlimit(RLIMIT_MEMLOCK)");
        return new MemoryLockLimit(limit.rlim_cur, limit.rlim_max);
    }

    /// <summary>
    /// Whether <paramref name="bytes"/> more bytes can be locked, given <paramref name="alreadyLocked"/> bytes the process
    /// holds locked. Does not account for CAP_IPC_LOCK, which lifts the limit.
    /// </summary>
    public bool Allows(ulong bytes, ulong alreadyLocked = 0) =>
        IsUnlimited || (alreadyLocked <= Soft && bytes <= Soft - alreadyLocked);

    /// <summary>"64 KiB (hard limit 64 KiB)", or "unlimited".</summary>
    public override string ToString() =>
        IsUnlimited ? "unlimited" : $"{Format(Soft)} (hard limit {Format(Hard)})";

    internal static string Format(ulong bytes) => bytes switch
    {
        Interop.Libc.RLIM_INFINITY => "unlimited",
        >= 1UL << 30 when bytes % (1UL << 30) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 30} GiB"),
        >= 1UL << 20 when bytes % (1UL << 20) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 20} MiB"),
        >= 1UL << 10 when bytes % (1UL << 10) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 10} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes"),
    };
}
