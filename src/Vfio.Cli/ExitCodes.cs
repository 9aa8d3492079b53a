namespace Vfio.Cli;

/// <summary>
/// The exit codes of the vfio command, which scripts may rely on. They are listed in <c>vfio --help</c> and in the
/// command's README; a new kind of failure gets a new code rather than a changed meaning for an old one.
/// </summary>
public static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Ok = 0;

    /// <summary>The command line is wrong: unknown command or option, missing or malformed argument (e.g. a BDF).</summary>
    public const int Usage = 1;

    /// <summary>
    /// <c>vfio doctor</c> only: at least one check failed (the host is not ready). It shares 1 with
    /// <see cref="Usage"/>, as diff and grep use 1 for "ran, and the answer is no"; with <c>--json</c> a not-ready
    /// report is a <c>{"ready": false, ...}</c> document, a usage error an <c>{"error": ...}</c> one.
    /// </summary>
    public const int NotReady = 1;

    /// <summary>The device or the host refused or failed (<see cref="VfioException"/>): no such device, driver not
    /// loaded, group not viable, a sysfs write the kernel rejected, fewer hugepages than asked for.</summary>
    public const int DeviceOrHost = 2;

    /// <summary>The process lacks a permission or capability (<see cref="VfioPermissionException"/>,
    /// <see cref="MissingCapabilityException"/>): run as root, or grant the capability named in the message.</summary>
    public const int Permission = 3;

    /// <summary>No-IOMMU mode was needed and not permitted (<see cref="NoIommuNotPermittedException"/>,
    /// <see cref="NoIommuModeDisabledException"/>, or <c>vfio noiommu enable</c> without <c>--unsafe</c>).</summary>
    public const int NoIommuRefused = 4;

    /// <summary>An unexpected failure: a bug in the command or the library. The stack trace is printed.</summary>
    public const int Internal = 70;
}
