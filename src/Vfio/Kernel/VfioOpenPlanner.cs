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
    bool HasCapSysRawio);

/// <summary>The decision: which group node to open in which mode.</summary>
internal readonly record struct OpenPlan(VfioMode Mode, string GroupPath);

/// <summary>
/// Decides how to open a device, refusing with a specific exception for each reason it cannot be opened.
/// Pure over <see cref="OpenFacts"/>, so every branch is unit-tested without a kernel.
/// </summary>
internal static class VfioOpenPlanner
{
    public static OpenPlan Plan(PciHost host, PciAddress address, VfioOpenOptions options) =>
        Decide(address, Gather(host, address), options);

    public static OpenFacts Gather(PciHost host, PciAddress address)
    {
        if (host.TryGetDevice(address) is not { } device)
        {
            return default;
        }
        var state = host.GetNoIommuState();
        bool rawio = host.GetCapabilities().HasCapability(LinuxCapability.SysRawIo);
        return new OpenFacts(true, device.Driver, device.IommuGroup?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            device.IsNoIommu, state.VfioModuleLoaded, state.ParameterPresent, state.IsEnabled, rawio);
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
        if (facts.GroupIsNoIommu)
        {
            if (options.Mode == VfioMode.Type1)
            {
                throw new VfioException("type1 mode was requested but the device is in a No-IOMMU group: the host has no IOMMU for it", address,
                    "use VfioMode.Auto or NoIommu with AllowNoIommu, or run on a host with an IOMMU (intel_iommu=on)");
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
        return new OpenPlan(VfioMode.Type1, Path.Combine(devDir, facts.Group));
    }
}
