using Vfio.Host;

namespace Vfio.Kernel;

/// <summary>What the host says about a device, gathered before anything is opened.</summary>
internal readonly record struct OpenFacts(
    bool DeviceExists,
    string? Driver,
    string? Group,
    bool GroupIsNoIommu,
    bool VfioLoaded,
    bool NoIommuParameterPresent,
    bool NoIommuParameterOn,
    bool HasCapSysRawio,
    string? Cdev = null,
    bool IommufdPresent = false);

/// <summary>
/// The decision: which node to open in which mode: the group node (<c>/dev/vfio/N</c>, <c>/dev/vfio/noiommu-N</c>)
/// for <see cref="VfioMode.Type1"/> and <see cref="VfioMode.NoIommu"/>, the device cdev
/// (<c>/dev/vfio/devices/vfioN</c>) for <see cref="VfioMode.Iommufd"/>.
/// </summary>
internal readonly record struct OpenPlan(VfioMode Mode, string NodePath);

/// <summary>
/// Decides how to open a device, refusing with a specific exception for each reason it cannot be opened.
/// Pure over <see cref="OpenFacts"/>, so every branch is unit-tested without a kernel.
/// </summary>
internal static class VfioOpenPlanner
{
    /// <summary>The environment variable that overrides <see cref="VfioMode.Auto"/> (auto, iommufd, type1, noiommu).</summary>
    public const string ModeVariable = "VFIO_DOTNET_MODE";

    public static OpenPlan Plan(PciHost host, PciAddress address, VfioOpenOptions options)
    {
        if (options.Mode == VfioMode.Auto && ParseMode(Environment.GetEnvironmentVariable(ModeVariable)) is { } forced)
        {
            options = options with { Mode = forced };
        }
        return Decide(address, Gather(host, address), options);
    }

    /// <summary>Reads a <see cref="ModeVariable"/> value: null or empty means no override.</summary>
    /// <exception cref="ArgumentException">Not one of auto, iommufd, type1, noiommu.</exception>
    public static VfioMode? ParseMode(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => null,
        "iommufd" or "cdev" => VfioMode.Iommufd,
        "type1" or "group" => VfioMode.Type1,
        "noiommu" => VfioMode.NoIommu,
        _ => throw new ArgumentException($"{ModeVariable}='{value}' is not a VFIO mode; use auto, iommufd, type1 or noiommu", nameof(value)),
    };

    public static OpenFacts Gather(PciHost host, PciAddress address)
    {
        if (host.TryGetDevice(address) is not { } device)
        {
            return default;
        }
        var state = host.GetNoIommuState();
        bool rawio = host.GetCapabilities().HasCapability(LinuxCapability.SysRawIo);
        return new OpenFacts(true, device.Driver, device.IommuGroup?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            device.IsNoIommu, state.VfioModuleLoaded, state.ParameterPresent, state.IsEnabled, rawio,
            FindCdev(host, address), Iommufd.IsAvailable(host.DevRoot));
    }

    /// <summary>
    /// The device's cdev name (<c>vfioN</c>): listed in <c>/sys/bus/pci/devices/BDF/vfio-dev/</c> on kernels with
    /// CONFIG_VFIO_DEVICE_CDEV, and only a cdev when <c>/dev/vfio/devices/vfioN</c> exists too (6.12 lists No-IOMMU
    /// devices in sysfs but gives them no node). Null when there is none.
    /// </summary>
    private static string? FindCdev(PciHost host, PciAddress address)
    {
        string dir = Path.Combine(host.SysfsRoot, "bus", "pci", "devices", address.ToString(), "vfio-dev");
        return Directory.Exists(dir)
            ? Directory.EnumerateFileSystemEntries(dir, "vfio*").Select(Path.GetFileName).Order(StringComparer.Ordinal)
                .FirstOrDefault(name => File.Exists(Path.Combine(host.DevRoot, "vfio", "devices", name!)))
            : null;
    }

    public static OpenPlan Decide(PciAddress address, OpenFacts facts, VfioOpenOptions options, string devRoot = "/dev")
    {
        if (!facts.DeviceExists)
        {
            throw new DeviceNotFoundException(address);
        }
        if (facts.Group is null)
        {
            // vfio-pci cannot even bind such a device unless No-IOMMU mode gives it a fake group.
            if (!facts.NoIommuParameterOn)
            {
                throw new NoIommuModeDisabledException(address, facts.NoIommuParameterPresent || !facts.VfioLoaded
                    ? "device has no IOMMU group (the host has no IOMMU for it)"
                    : "device has no IOMMU group and this kernel's vfio module has no No-IOMMU support (CONFIG_VFIO_NOIOMMU)");
            }
            throw new DeviceNotBoundException(address, facts.Driver);
        }
        if (facts.Driver != "vfio-pci")
        {
            throw new DeviceNotBoundException(address, facts.Driver);
        }
        string devDir = Path.Combine(options.DevRoot ?? devRoot, "vfio");
        if (options.Container is not null && options.Ioas is not null)
        {
            throw new ArgumentException("VfioOpenOptions.Container and Ioas are exclusive: a device joins one IOMMU context", nameof(options));
        }
        if (facts.GroupIsNoIommu)
        {
            if (options.Mode == VfioMode.Type1 || options.Mode == VfioMode.Iommufd || options.Ioas is not null)
            {
                throw new VfioException($"{(options.Mode == VfioMode.Type1 ? "type1" : "iommufd")} mode was requested but the device is in a No-IOMMU group: the host has no IOMMU for it", address,
                    "use VfioMode.Auto or NoIommu with AllowNoIommu, or run on a host with an IOMMU (intel_iommu=on)" +
                    (options.Mode == VfioMode.Type1 ? "" : "; the VFIO device cdev does not serve No-IOMMU devices"));
            }
            if (!options.AllowNoIommu)
            {
                throw new NoIommuNotPermittedException(address, "noiommu-" + facts.Group);
            }
            if (!facts.HasCapSysRawio)
            {
                throw new MissingCapabilityException("CAP_SYS_RAWIO", "opening a device in No-IOMMU mode", address,
                    "the kernel lets only processes with CAP_SYS_RAWIO use a device without an IOMMU");
            }
            return new OpenPlan(VfioMode.NoIommu, Path.Combine(devDir, "noiommu-" + facts.Group));
        }
        if (options.Mode == VfioMode.NoIommu)
        {
            throw new VfioException($"No-IOMMU mode was requested but the device is in IOMMU group {facts.Group}", address,
                "the kernel puts a device with an IOMMU in a normal group; use type1 (VfioMode.Auto), which also isolates its DMA");
        }
        var groupPlan = new OpenPlan(VfioMode.Type1, Path.Combine(devDir, facts.Group));
        bool wantIommufd = options.Mode == VfioMode.Iommufd || options.Ioas is not null;
        if (options.Mode == VfioMode.Type1 || options.Container is not null)
        {
            return wantIommufd
                ? throw new ArgumentException("VfioOpenOptions: a container (type1) and iommufd were both asked for", nameof(options))
                : groupPlan;
        }
        if (facts.Cdev is { } cdev && facts.IommufdPresent)
        {
            return new OpenPlan(VfioMode.Iommufd, Path.Combine(devDir, "devices", cdev));
        }
        if (!wantIommufd)
        {
            return groupPlan;
        }
        throw facts.Cdev is null
            ? new VfioUnavailableException($"{address}: iommufd mode was requested but the device has no VFIO device cdev (no vfio-dev/vfioN in sysfs with a /dev/vfio/devices node)",
                "the device cdev needs Linux 6.6+ built with CONFIG_VFIO_DEVICE_CDEV; use VfioMode.Auto or Type1 to open through the group")
            : new VfioUnavailableException($"{address}: iommufd mode was requested but /dev/iommu does not exist",
                "the kernel needs CONFIG_IOMMUFD; use VfioMode.Auto or Type1 to open through the group");
    }
}
