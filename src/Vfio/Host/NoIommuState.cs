namespace Vfio.Host;

/// <summary>
/// Whether this host can give VFIO a device that sits behind no IOMMU, and what is missing if not.
/// No-IOMMU mode (Documentation/driver-api/vfio.rst, "VFIO No-IOMMU mode") lets vfio-pci bind such a device and
/// gives it DMA to all of physical memory: no isolation, so the kernel taints itself when it is used.
/// </summary>
/// <param name="VfioModuleLoaded">The vfio core is loaded or built in (<c>/sys/module/vfio</c> exists).</param>
/// <param name="ParameterPresent">The <c>enable_unsafe_noiommu_mode</c> parameter exists. When vfio is loaded and the
/// parameter is absent, the kernel was built without CONFIG_VFIO_NOIOMMU (Debian's kernels are).</param>
/// <param name="Enabled">The parameter's value (Y/N), or null when it is absent.</param>
/// <param name="ContainerDeviceExists"><c>/dev/vfio/vfio</c>, the legacy container, exists (No-IOMMU groups are used
/// through it, or through iommufd's emulation of it).</param>
/// <param name="IommufdDeviceExists"><c>/dev/iommu</c> exists (the kernel has iommufd).</param>
/// <param name="VfioPciDriverLoaded">The vfio-pci driver is registered (<c>/sys/bus/pci/drivers/vfio-pci</c> exists).</param>
public sealed record NoIommuState(
    bool VfioModuleLoaded,
    bool ParameterPresent,
    bool? Enabled,
    bool ContainerDeviceExists,
    bool IommufdDeviceExists,
    bool VfioPciDriverLoaded)
{
    /// <summary>The kernel supports No-IOMMU mode (it was built with CONFIG_VFIO_NOIOMMU and vfio is loaded).</summary>
    public bool IsSupported => VfioModuleLoaded && ParameterPresent;

    /// <summary>No-IOMMU mode is on: vfio-pci will bind devices that have no IOMMU group.</summary>
    public bool IsEnabled => Enabled == true;

    /// <summary>One or two sentences for a person: the state and, when it is not on, the next step.</summary>
    public string Summary =>
        !VfioModuleLoaded
            ? "The vfio module is not loaded. Load it with 'modprobe vfio enable_unsafe_noiommu_mode=1' " +
              "(and 'modprobe vfio-pci') to use devices that have no IOMMU."
        : !ParameterPresent
            ? "The vfio module has no enable_unsafe_noiommu_mode parameter: this kernel was built without " +
              "CONFIG_VFIO_NOIOMMU, so devices without an IOMMU cannot be used through VFIO. Rebuild vfio with it."
        : Enabled == true
            ? "No-IOMMU mode is ON (unsafe: devices bound to vfio-pci without an IOMMU get DMA to all memory)." +
              (ContainerDeviceExists ? "" : " /dev/vfio/vfio is missing, so No-IOMMU groups cannot be opened yet.") +
              (VfioPciDriverLoaded ? "" : " The vfio-pci driver is not loaded: 'modprobe vfio-pci'.")
        : "No-IOMMU mode is off. To opt in (unsafe, taints the kernel): " +
          "'echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode', then rebind the device.";
}
