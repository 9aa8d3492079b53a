using Microsoft.Extensions.Logging;

namespace Vfio.Kernel;

/// <summary>Which VFIO path to use when opening a device.</summary>
public enum VfioMode
{
    /// <summary>
    /// Pick from what the host offers: the device cdev bound to an iommufd where the kernel has both (6.6+ with
    /// CONFIG_VFIO_DEVICE_CDEV and CONFIG_IOMMUFD), a type1 container through the device's IOMMU group otherwise,
    /// and No-IOMMU only when its group is a No-IOMMU group and <see cref="VfioOpenOptions.AllowNoIommu"/> is set.
    /// The environment variable <c>VFIO_DOTNET_MODE</c> (auto, iommufd, type1, noiommu) overrides Auto.
    /// </summary>
    Auto,
    /// <summary>Require an IOMMU, through the device's group in a type1 (v2) container.</summary>
    Type1,
    /// <summary>Require No-IOMMU mode (still needs <see cref="VfioOpenOptions.AllowNoIommu"/>).</summary>
    NoIommu,
    /// <summary>Require an IOMMU, through the device cdev (<c>/dev/vfio/devices/vfioN</c>) bound to an iommufd IOAS.</summary>
    Iommufd,
}

/// <summary>How to open a device through kernel VFIO.</summary>
public sealed record VfioOpenOptions
{
    /// <summary>
    /// The caller's explicit acceptance of No-IOMMU mode: the device may then DMA anywhere in host memory and the
    /// kernel is tainted. Off by default; without it a device in a No-IOMMU group is refused.
    /// </summary>
    public bool AllowNoIommu { get; init; }

    /// <summary>Force a path, or pick automatically (default).</summary>
    public VfioMode Mode { get; init; } = VfioMode.Auto;

    /// <summary>
    /// No-IOMMU mode only: back DMA buffers with ordinary locked 4 KiB pages when no hugepages are free. mlock does
    /// not stop the kernel from migrating or compacting such pages, after which the device would write to memory
    /// that is no longer the buffer. Off by default.
    /// </summary>
    public bool AllowMigratableDmaPages { get; init; }

    /// <summary>
    /// Join an existing container (so several devices share one IOMMU address space and DMA buffers); the device
    /// then opens through its group. See <see cref="SharingDmaWith"/>.
    /// </summary>
    public VfioContainer? Container { get; init; }

    /// <summary>
    /// Attach to an existing iommufd IOAS (so several devices share one IOMMU address space and DMA buffers); the
    /// device then opens through its cdev. See <see cref="SharingDmaWith"/>.
    /// </summary>
    public IommufdIoas? Ioas { get; init; }

    /// <summary>
    /// These options, set to open the next device into the same IOMMU context as <paramref name="device"/> (its
    /// container or its IOAS, whichever it was opened with), so DMA buffers of one reach both.
    /// </summary>
    public VfioOpenOptions SharingDmaWith(VfioDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.Ioas is { } ioas
            ? this with { Ioas = ioas, Container = null, Mode = VfioMode.Iommufd }
            : this with { Container = device.Container, Ioas = null, Mode = device.Mode };
    }

    /// <summary>Where logs go; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Root of sysfs (tests point it elsewhere).</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Root of /dev.</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>Root of procfs.</summary>
    public string ProcRoot { get; init; } = "/proc";
}
