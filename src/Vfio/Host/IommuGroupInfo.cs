namespace Vfio.Host;

/// <summary>One device of an IOMMU group and the driver it is bound to.</summary>
/// <param name="Address">The device.</param>
/// <param name="Driver">Its driver, or null when none is bound.</param>
public sealed record IommuGroupMember(PciAddress Address, string? Driver)
{
    /// <summary>
    /// The device does not keep its group from being handed to user space. VFIO accepts a group only when
    /// every device in it is bound to vfio-pci or to no driver, or to a driver that leaves DMA to its owner:
    /// pci-stub and the PCIe port driver (pcieport), which bind bridges. Kernels since 5.19 say this with
    /// <c>driver_managed_dma</c> (drivers/iommu/iommu.c, iommu_group_claim_dma_owner); older ones listed
    /// pci-stub in vfio_driver_allowed and let non-normal headers (bridges) through in vfio_dev_driver_allowed.
    /// Any other driver (nvme, e1000e, a GPU driver) blocks the group.
    /// </summary>
    public bool AllowsViability => Driver is null || PciHost.DriversAllowedInViableGroup.Contains(Driver);
}

/// <summary>An IOMMU group: the smallest set of devices the IOMMU can isolate from one another.</summary>
/// <param name="Id">The group number (<c>/sys/kernel/iommu_groups/N</c>).</param>
/// <param name="IsNoIommu">VFIO made the group up in No-IOMMU mode: it isolates nothing.</param>
/// <param name="Devices">Every device of the group (<c>/sys/kernel/iommu_groups/N/devices</c>) with its driver.</param>
/// <param name="DevicePath">The character device to open: <c>/dev/vfio/N</c>, or <c>/dev/vfio/noiommu-N</c>.</param>
public sealed record IommuGroupInfo(int Id, bool IsNoIommu, IReadOnlyList<IommuGroupMember> Devices, string DevicePath)
{
    /// <summary>The group's name under /dev/vfio: <c>N</c>, or <c>noiommu-N</c> for a No-IOMMU group.</summary>
    public string Name => IsNoIommu ? $"noiommu-{Id}" : Id.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Devices bound to a driver that keeps VFIO from handing out the group (see <see cref="IommuGroupMember.AllowsViability"/>).</summary>
    public IReadOnlyList<PciAddress> BlockingDevices => [.. Devices.Where(d => !d.AllowsViability).Select(d => d.Address)];

    /// <summary>VFIO will hand out this group: no device in it is bound to a blocking driver.</summary>
    public bool IsViable => Devices.All(d => d.AllowsViability);
}
