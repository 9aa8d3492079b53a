using Vfio.Dma;

namespace Vfio.Devices;

/// <summary>How a device is reached: which kernel interface or emulation backs it.</summary>
public enum DeviceBackend
{
    /// <summary>Kernel VFIO, group in a <c>VFIO_NOIOMMU_IOMMU</c> container: no DMA isolation, DMA to physical addresses.</summary>
    KernelNoIommu,
    /// <summary>Kernel VFIO, group in a type1 (v2) container: DMA confined to IOVAs the process mapped.</summary>
    KernelType1,
    /// <summary>Kernel VFIO device cdev bound to an iommufd IOAS.</summary>
    KernelIommufd,
    /// <summary>A vfio-user server over a UNIX socket.</summary>
    VfioUser,
    /// <summary>An in-process emulated device.</summary>
    Emulated,
}

/// <summary>
/// The one view of a PCI device that drivers see, whatever backs it (kernel VFIO with or without an IOMMU,
/// vfio-user, emulation): regions, config space, interrupts, DMA memory and reset.
/// </summary>
public interface IPciDevice : IDisposable
{
    /// <summary>The device's PCI address (for emulated devices, the address it pretends to have).</summary>
    PciAddress Address { get; }

    /// <summary>Which interface backs the device.</summary>
    DeviceBackend Backend { get; }

    /// <summary>
    /// True when an IOMMU (or the emulation) confines the device's DMA to memory this process mapped for it;
    /// false in No-IOMMU mode, where a wrong address given to the device corrupts arbitrary host memory.
    /// </summary>
    bool IsDmaIsolated { get; }

    /// <summary>Flags and counts from <c>VFIO_DEVICE_GET_INFO</c>.</summary>
    DeviceInfo Info { get; }

    /// <summary>Describes region <paramref name="index"/> (BARs 0-5, ROM 6, config 7, VGA 8, then device-specific).</summary>
    /// <exception cref="ArgumentOutOfRangeException">No such region.</exception>
    /// <exception cref="ObjectDisposedException">The device is disposed.</exception>
    RegionInfo GetRegionInfo(int index);

    /// <summary>
    /// Opens region <paramref name="index"/> for access. Mappable parts are mmap'd (sparse areas honoured),
    /// the rest goes through read/write of the device file. The caller owns the returned object.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No such region.</exception>
    /// <exception cref="ArgumentException">The region exists in name only (size 0, e.g. an unimplemented BAR).</exception>
    /// <exception cref="ObjectDisposedException">The device is disposed.</exception>
    IDeviceRegion OpenRegion(int index);

    /// <summary>The PCI configuration space (region 7) with typed accessors and capability walks.</summary>
    PciConfigSpace Config { get; }

    /// <summary>Describes interrupt index <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">No such interrupt index.</exception>
    /// <exception cref="ObjectDisposedException">The device is disposed.</exception>
    IrqInfo GetIrqInfo(IrqIndex index);

    /// <summary>
    /// Enables <paramref name="count"/> vectors of <paramref name="index"/>, one eventfd each. Disposing the
    /// returned set disables them. Only one set per index may be enabled at a time.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// No such interrupt index, or <paramref name="count"/> is not between 1 and the vectors the index offers.
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// The index is already enabled, or it is <see cref="IrqIndex.Req"/> or <see cref="IrqIndex.Err"/>, which the backend
    /// watches itself (see <see cref="ReleaseRequested"/> and <see cref="ErrorReported"/>).
    /// </exception>
    /// <exception cref="ObjectDisposedException">The device is disposed.</exception>
    IInterruptSet EnableInterrupts(IrqIndex index, int count);

    /// <summary>Allocates DMA memory this device can reach, addressed as the device must see it.</summary>
    /// <exception cref="ObjectDisposedException">The device is disposed.</exception>
    IDmaAllocator Dma { get; }

    /// <summary>
    /// Cancelled when the host asks for the device back: a hot-unplug, a sysfs <c>remove</c> or an unbind from
    /// vfio-pci. The kernel then waits (blocking the remover) until the process closes the device, so the owner
    /// must stop using it, stop its DMA and dispose it promptly. For kernel VFIO this is the request interrupt
    /// (<see cref="IrqIndex.Req"/>), watched from open on; backends without such a notification never cancel it.
    /// Callbacks registered on the token run on the thread that observed the request and should hand long work
    /// to another thread.
    /// </summary>
    CancellationToken ReleaseRequested => CancellationToken.None;

    /// <summary>
    /// Whether <see cref="ErrorReported"/> can be raised, and if not, why. For kernel VFIO it is available when
    /// <c>VFIO_DEVICE_GET_IRQ_INFO</c> offers the error interrupt (<see cref="IrqIndex.Err"/>, PCIe functions only);
    /// vfio-user and emulated devices report it unavailable unless their host raises errors itself.
    /// </summary>
    ErrorReportingSupport ErrorReporting => ErrorReportingSupport.Unavailable($"the {Backend} backend has no error interrupt");

    /// <summary>
    /// Raised when the device reports a PCIe error. For kernel VFIO this is the error interrupt
    /// (<c>VFIO_PCI_ERR_IRQ_INDEX</c>), watched from open on: Linux's AER driver handles the error first and vfio-pci's
    /// <c>error_detected</c> handler signals it, so it arrives for uncorrectable errors only; a correctable error is
    /// corrected by the hardware and, unless masked, cleared by the host (count those by masking them and reading
    /// <see cref="PciConfigSpace.FindAer"/>'s status). The handler runs on the thread that observed the signal and
    /// should hand long work (a recovery) to another thread. Never raised when <see cref="ErrorReporting"/> is unavailable.
    /// </summary>
    event EventHandler<PciErrorReport>? ErrorReported { add { } remove { } }

    /// <summary>Resets the device (function-level or bus reset, as the kernel offers).</summary>
    /// <exception cref="ResetNotSupportedException">The device has no reset VFIO can perform.</exception>
    void Reset();
}

/// <summary><c>VFIO_DEVICE_GET_INFO</c> in .NET terms.</summary>
/// <param name="Flags">Device flags.</param>
/// <param name="RegionCount">Number of regions.</param>
/// <param name="IrqCount">Number of interrupt indexes.</param>
public readonly record struct DeviceInfo(DeviceFlags Flags, int RegionCount, int IrqCount)
{
    /// <summary>Whether <see cref="IPciDevice.Reset"/> can work.</summary>
    public bool CanReset => (Flags & DeviceFlags.Reset) != 0;
}

/// <summary>
/// Device flags (<c>VFIO_DEVICE_FLAGS_*</c> in linux/vfio.h): which VFIO bus driver serves the device, and what its
/// <c>VFIO_DEVICE_GET_INFO</c> reply carries. A device this library opens is always <see cref="Pci"/>; the others are
/// named so that a reply is shown as the kernel meant it.
/// </summary>
[Flags]
public enum DeviceFlags : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>The device supports <c>VFIO_DEVICE_RESET</c>.</summary>
    Reset = Interop.Vfio.VFIO_DEVICE_FLAGS_RESET,
    /// <summary>Served by vfio-pci: a PCI function.</summary>
    Pci = Interop.Vfio.VFIO_DEVICE_FLAGS_PCI,
    /// <summary>Served by vfio-platform: a memory-mapped device described by device tree or ACPI, not on a bus.</summary>
    Platform = Interop.Vfio.VFIO_DEVICE_FLAGS_PLATFORM,
    /// <summary>Served by vfio-amba: an ARM AMBA (PrimeCell) peripheral.</summary>
    Amba = Interop.Vfio.VFIO_DEVICE_FLAGS_AMBA,
    /// <summary>Served by vfio-ccw: an s390 channel-attached (CCW) subchannel.</summary>
    Ccw = Interop.Vfio.VFIO_DEVICE_FLAGS_CCW,
    /// <summary>Served by vfio-ap: an s390 crypto adjunct processor queue.</summary>
    Ap = Interop.Vfio.VFIO_DEVICE_FLAGS_AP,
    /// <summary>Served by vfio-fsl-mc: an NXP Management Complex object.</summary>
    FslMc = Interop.Vfio.VFIO_DEVICE_FLAGS_FSL_MC,
    /// <summary>The <c>VFIO_DEVICE_GET_INFO</c> reply carries a capability chain (<c>cap_offset</c>).</summary>
    Caps = Interop.Vfio.VFIO_DEVICE_FLAGS_CAPS,
    /// <summary>
    /// Served by vfio-cdx (Linux 6.6+): a device on AMD's CDX bus, the bus through which the firmware of AMD's
    /// adaptive SoCs and FPGA cards exposes devices (drivers/cdx). Not related to the VFIO device cdev.
    /// </summary>
    Cdx = Interop.Vfio.VFIO_DEVICE_FLAGS_CDX,
}
