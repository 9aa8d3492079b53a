namespace Vfio.Host;

/// <summary>
/// What sysfs says about one PCI function (<c>/sys/bus/pci/devices/DDDD:BB:DD.F</c>), read at one moment.
/// </summary>
/// <param name="Address">The function's address.</param>
/// <param name="VendorId">The <c>vendor</c> attribute (config space offset 0x00).</param>
/// <param name="DeviceId">The <c>device</c> attribute (offset 0x02).</param>
/// <param name="SubsystemVendorId">The <c>subsystem_vendor</c> attribute (offset 0x2c), 0 when absent.</param>
/// <param name="SubsystemDeviceId">The <c>subsystem_device</c> attribute (offset 0x2e), 0 when absent.</param>
/// <param name="ClassCode">The 24-bit <c>class</c> attribute: base class, subclass, programming interface.</param>
/// <param name="Revision">The <c>revision</c> attribute (offset 0x08).</param>
/// <param name="Driver">The bound driver (the name the <c>driver</c> link points to), or null when none is.</param>
/// <param name="DriverOverride">The <c>driver_override</c> attribute, or null when unset (the kernel shows "(null)").</param>
/// <param name="IommuGroup">The IOMMU group number (the name the <c>iommu_group</c> link points to), or null when the
/// device has no group: no IOMMU, and not (yet) bound to vfio-pci in No-IOMMU mode.</param>
/// <param name="IsNoIommu">The group is a No-IOMMU group VFIO made up for the device (it gives no DMA isolation).</param>
/// <param name="NumaNode">The <c>numa_node</c> attribute, or null when the kernel reports none (-1).</param>
/// <param name="VfioDeviceName">The VFIO device cdev (<c>vfio0</c> from the <c>vfio-dev/vfio0</c> folder, opened as
/// <c>/dev/vfio/devices/vfio0</c>), or null when the kernel made none (not bound, or built without VFIO_DEVICE_CDEV).</param>
public sealed record PciDeviceInfo(
    PciAddress Address,
    ushort VendorId,
    ushort DeviceId,
    ushort SubsystemVendorId,
    ushort SubsystemDeviceId,
    uint ClassCode,
    byte Revision,
    string? Driver,
    string? DriverOverride,
    int? IommuGroup,
    bool IsNoIommu,
    int? NumaNode,
    string? VfioDeviceName)
{
    /// <summary>Base class (PCI Code and ID Assignment spec, e.g. 0x01 mass storage, 0x02 network).</summary>
    public byte BaseClass => (byte)(ClassCode >> 16);

    /// <summary>Subclass within the base class (e.g. 0x08 non-volatile memory under mass storage).</summary>
    public byte SubClass => (byte)(ClassCode >> 8);

    /// <summary>Programming interface (e.g. 0x02 NVM Express I/O controller).</summary>
    public byte ProgrammingInterface => (byte)ClassCode;

    /// <summary>The device is bound to vfio-pci, so VFIO can open it.</summary>
    public bool IsBoundToVfio => Driver == PciHost.VfioPciDriver;
}
