using System.Runtime.InteropServices;

namespace Vfio;

/// <summary>
/// The one place where a failed system call becomes an exception. Each exception names the operation,
/// the device where there is one, the errno and its text, and a hint when the cause is known.
/// </summary>
public static class Errno
{
#pragma warning disable CS1591 // errno names are self-describing
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, EBADF = 9, EAGAIN = 11, ENOMEM = 12,
        EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, ENODEV = 19, EINVAL = 22, ENOTTY = 25, ENOSPC = 28,
        ERANGE = 34, ENOSYS = 38, EMSGSIZE = 90, EOPNOTSUPP = 95, ENOBUFS = 105;
#pragma warning restore CS1591

    /// <summary>The errno of the last P/Invoke declared with SetLastError.</summary>
    public static int Last => Marshal.GetLastPInvokeError();

    /// <summary>The C library's text for <paramref name="errno"/> ("Operation not permitted").</summary>
    public static string Describe(int errno) => $"{Name(errno)}: {Marshal.GetPInvokeErrorMessage(errno)}";

    /// <summary>The symbolic name of an errno value, or its number.</summary>
    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", EINTR => "EINTR", EIO => "EIO", ENXIO => "ENXIO", EBADF => "EBADF",
        EAGAIN => "EAGAIN", ENOMEM => "ENOMEM", EACCES => "EACCES", EFAULT => "EFAULT", EBUSY => "EBUSY",
        EEXIST => "EEXIST", ENODEV => "ENODEV", EINVAL => "EINVAL", ENOTTY => "ENOTTY", ENOSPC => "ENOSPC",
        ERANGE => "ERANGE", ENOSYS => "ENOSYS", EMSGSIZE => "EMSGSIZE", EOPNOTSUPP => "EOPNOTSUPP", ENOBUFS => "ENOBUFS",
        _ => "errno " + errno,
    };

    /// <summary>
    /// Builds the exception for a failed call. <paramref name="operation"/> names what was attempted in the
    /// user's terms ("VFIO_GROUP_GET_DEVICE_FD", "open /dev/vfio/noiommu-0").
    /// </summary>
    public static VfioException ToException(int errno, string operation, PciAddress? device = null, string? hint = null)
    {
        hint ??= DefaultHint(errno, operation);
        return errno switch
        {
            EPERM or EACCES => new VfioPermissionException(operation, device, errno, hint),
            ENOMEM or ENOSPC => new VfioResourceException(operation, device, errno, hint),
            _ => new VfioException(operation, device, errno, hint),
        };
    }

    /// <summary>Throws <see cref="ToException"/> for the last errno.</summary>
    public static Exception ThrowLast(string operation, PciAddress? device = null, string? hint = null) =>
        throw ToException(Last, operation, device, hint);

    /// <summary>Returns <paramref name="result"/> or throws for the last errno when it is negative.</summary>
    public static int Check(int result, string operation, PciAddress? device = null, string? hint = null) =>
        result < 0 ? throw ToException(Last, operation, device, hint) : result;

    /// <summary>Returns <paramref name="result"/> or throws for the last errno when it is negative.</summary>
    public static nint Check(nint result, string operation, PciAddress? device = null, string? hint = null) =>
        result < 0 ? throw ToException(Last, operation, device, hint) : result;

    private static string? DefaultHint(int errno, string operation) => errno switch
    {
        EPERM or EACCES => "run as root, or grant the process access to /dev/vfio and the capabilities the mode needs " +
                           "(CAP_SYS_RAWIO for No-IOMMU mode, CAP_IPC_LOCK or a large RLIMIT_MEMLOCK for DMA memory)",
        ENOMEM when operation.Contains("mlock", StringComparison.Ordinal) || operation.Contains("MAP_DMA", StringComparison.Ordinal) =>
            "the locked-memory limit (ulimit -l / RLIMIT_MEMLOCK) is too low for this DMA mapping",
        ENOMEM when operation.Contains("huge", StringComparison.OrdinalIgnoreCase) =>
            "no free hugepages: reserve some with 'vfio hugepages reserve N' or /proc/sys/vm/nr_hugepages",
        EBUSY => "another process or driver holds the device or group; close it or unbind it first",
        ENODEV or ENOENT => "the device or VFIO node does not exist; is the device bound to vfio-pci and the vfio module loaded?",
        _ => null,
    };
}
