namespace Vfio;

/// <summary>
/// Base of every error the library reports. Carries what was attempted, on which device, the errno (0 when
/// the failure is the library's own check) and, where the cause is known, what to do about it.
/// </summary>
public class VfioException : IOException
{
    /// <summary>Creates an exception for a failed operation.</summary>
    public VfioException(string operation, PciAddress? device, int errno, string? hint, Exception? inner = null)
        : base(Format(operation, device, errno, hint), inner)
    {
        Operation = operation;
        Device = device;
        ErrorNumber = errno;
        Hint = hint;
        HResult = errno != 0 ? errno : HResult;
    }

    /// <summary>Creates an exception for a check the library made itself (no errno).</summary>
    public VfioException(string message, PciAddress? device = null, string? hint = null)
        : this(message, device, 0, hint) { }

    /// <summary>What was attempted.</summary>
    public string Operation { get; }

    /// <summary>The device concerned, when there is one.</summary>
    public PciAddress? Device { get; }

    /// <summary>The errno the kernel returned, or 0 when the library refused on its own.</summary>
    public int ErrorNumber { get; }

    /// <summary>What the caller can do about it, when known.</summary>
    public string? Hint { get; }

    private static string Format(string operation, PciAddress? device, int errno, string? hint)
    {
        var text = device is { } d ? $"{d}: {operation}" : operation;
        if (errno != 0)
        {
            text += $" failed ({Errno.Describe(errno)})";
        }
        return hint is null ? text : $"{text}. {hint}";
    }
}

/// <summary>The kernel refused for lack of privilege (EPERM/EACCES).</summary>
public class VfioPermissionException(string operation, PciAddress? device, int errno, string? hint)
    : VfioException(operation, device, errno, hint);

/// <summary>The kernel ran out of a resource (memory, locked-memory limit, hugepages, IOVA space).</summary>
public class VfioResourceException(string operation, PciAddress? device, int errno, string? hint)
    : VfioException(operation, device, errno, hint);

/// <summary>
/// The device sits in a No-IOMMU group and the caller did not opt in. No-IOMMU mode gives the device DMA
/// to all of physical memory; the library never uses it unless asked.
/// </summary>
public sealed class NoIommuNotPermittedException(PciAddress device, string group)
    : VfioException($"device is in No-IOMMU group {group} and the caller did not opt in to No-IOMMU mode", device,
        "No-IOMMU mode gives the device unrestricted DMA to host memory. To accept that, set " +
        "VfioOpenOptions.AllowNoIommu = true (CLI: --unsafe-noiommu)")
{
    /// <summary>The group's name under /dev/vfio, e.g. <c>noiommu-0</c>.</summary>
    public string Group { get; } = group;
}

/// <summary>
/// The device has no IOMMU group and the vfio module's No-IOMMU parameter is off, so it cannot be used through
/// VFIO at all on this host.
/// </summary>
public sealed class NoIommuModeDisabledException(PciAddress? device, string detail)
    : VfioException(detail, device,
        "the host has no IOMMU for this device and vfio.enable_unsafe_noiommu_mode is off. To opt in (unsafe: no DMA " +
        "isolation, taints the kernel): 'modprobe vfio enable_unsafe_noiommu_mode=1' or " +
        "'echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode' (then rebind the device); CLI: 'vfio noiommu enable --unsafe'");

/// <summary>The process lacks a Linux capability the operation needs.</summary>
public sealed class MissingCapabilityException(string capability, string operation, PciAddress? device, string why)
    : VfioException($"{operation} needs {capability}, which this process does not have", device,
        $"{why}. Run as root or grant it (e.g. 'setcap {capability.ToLowerInvariant()}+ep' on the executable, or " +
        $"'setpriv --inh-caps +{capability.Replace("CAP_", "", StringComparison.Ordinal).ToLowerInvariant()} --ambient-caps ...')")
{
    /// <summary>The missing capability, e.g. <c>CAP_SYS_RAWIO</c>.</summary>
    public string Capability { get; } = capability;
}

/// <summary>The device is not bound to vfio-pci.</summary>
public sealed class DeviceNotBoundException(PciAddress device, string? currentDriver)
    : VfioException(currentDriver is null
            ? "device is not bound to any driver, so VFIO cannot open it"
            : $"device is bound to '{currentDriver}', not vfio-pci", device,
        $"bind it first: 'vfio bind {device}' or PciHost.BindToVfio(\"{device}\")")
{
    /// <summary>The driver that holds the device, or null when none does.</summary>
    public string? CurrentDriver { get; } = currentDriver;
}

/// <summary>
/// The device's IOMMU group is not viable: other devices in it are bound to host drivers, and VFIO hands out
/// a group only whole.
/// </summary>
public sealed class GroupNotViableException(PciAddress device, string group, IReadOnlyList<PciAddress> blocking)
    : VfioException($"IOMMU group {group} is not viable: {string.Join(", ", blocking)} " +
                    $"{(blocking.Count == 1 ? "is" : "are")} bound to a host driver", device,
        "bind every device of the group to vfio-pci (or unbind it from its driver)")
{
    /// <summary>The group number or name.</summary>
    public string Group { get; } = group;

    /// <summary>Devices of the group that keep it from being viable.</summary>
    public IReadOnlyList<PciAddress> BlockingDevices { get; } = blocking;
}

/// <summary>No PCI device with this address exists on the host.</summary>
public sealed class DeviceNotFoundException(PciAddress device)
    : VfioException("no such PCI device", device, "list devices with 'vfio list' or lspci -D");

/// <summary>VFIO itself is not available (module not loaded, /dev/vfio/vfio missing, API version mismatch).</summary>
public sealed class VfioUnavailableException(string detail, string? hint = null)
    : VfioException(detail, null, hint ?? "load the vfio-pci module: 'modprobe vfio-pci'");

/// <summary>The device offers no reset method VFIO can use.</summary>
public sealed class ResetNotSupportedException(PciAddress device)
    : VfioException("device does not support reset (VFIO_DEVICE_FLAGS_RESET is clear: no FLR, PM reset or bus reset)", device,
        "reinitialise the device through its own registers instead");

/// <summary>
/// The host took the device back (hot-unplug, or an unbind through sysfs): the kernel raised the VFIO request
/// interrupt (<see cref="Devices.IPciDevice.ReleaseRequested"/>) and the driver stopped the device and released it.
/// Work that was pending or submitted afterwards fails with this exception; the process goes on. To use the device
/// again, wait until it reappears (<c>echo 1 &gt; /sys/bus/pci/rescan</c> after a sysfs remove), bind it to vfio-pci
/// and open it anew.
/// </summary>
public sealed class DeviceReleasedException(PciAddress device, string detail)
    : VfioException($"the host asked for the device back and the driver released it: {detail}", device,
        "the device is no longer usable through this handle; reopen it once it is back and bound to vfio-pci");

/// <summary>
/// A device did not reach a state it was asked for within the time the driver allows (an NVMe controller's
/// CSTS.RDY or shutdown status, a virtio device_status returning to 0 after a reset). The device may be wedged;
/// a function reset (<see cref="Devices.IPciDevice.Reset"/>) is the usual way out.
/// </summary>
public sealed class DeviceTimeoutException(PciAddress device, string what, TimeSpan timeout, string? detail = null)
    : VfioException($"device did not reach {what} within {timeout.TotalMilliseconds} ms{(detail is null ? "" : $" ({detail})")}", device,
        "reset the device (a function reset clears a wedged device), or check that the emulator or hardware is responsive")
{
    /// <summary>The state waited for.</summary>
    public string What { get; } = what;

    /// <summary>How long the driver waited.</summary>
    public TimeSpan Timeout { get; } = timeout;
}

/// <summary>
/// A device wrote a value the specification does not allow where the driver reads it (an NVMe completion for a
/// command that is not outstanding, a submission queue head outside the queue, a completion on another queue; a
/// virtio used id that is not in flight, a length past the buffer). The driver stopped using the queue or the
/// device (it is faulted), kept every buffer the device may still write, and the process is unaffected. A
/// buggy or hostile device, or in No-IOMMU mode a driver bug elsewhere that overwrote the ring.
/// </summary>
public sealed class DeviceProtocolViolationException(PciAddress device, string where, string seen)
    : VfioException($"device broke its protocol at {where}: {seen}", device,
        "the queue is faulted; reset the device (NvmeController.Reset, VirtioNetDevice.Reset) or reopen it, and suspect the device or its emulator")
{
    /// <summary>The structure and field the value was read from.</summary>
    public string Where { get; } = where;

    /// <summary>What the device wrote, and what was allowed.</summary>
    public string Seen { get; } = seen;
}

/// <summary>
/// The DMA audit (<see cref="Dma.DmaAudit"/>) caught a driver about to hand the device an address it must not
/// reach: outside every live DMA buffer, in a freed one, in a buffer leased to another command, or running past
/// the end of the range leased to this one. Thrown before the doorbell or kick, so the device never saw the entry.
/// A driver bug, not a device fault: in No-IOMMU mode nothing else would have stopped the device writing there.
/// </summary>
public sealed class DmaAuditViolationException(PciAddress? device, string queue, string command, Dma.DmaAddress address, ulong length,
    string? buffer, string problem)
    : VfioException($"DMA audit: {command} on {queue} points the device at [{address}, +{length}) (in {(buffer is null ? "no live DMA buffer" : $"buffer '{buffer}'")}): {problem}",
        device, "nothing was submitted (no doorbell was rung); this is a bug in the driver that built the entry")
{
    /// <summary>The queue the entry was for.</summary>
    public string Queue { get; } = queue;

    /// <summary>The command or descriptor, and the field that held the address.</summary>
    public string Command { get; } = command;

    /// <summary>The device address that failed the audit.</summary>
    public Dma.DmaAddress Address { get; } = address;

    /// <summary>Bytes the device would have accessed from <see cref="Address"/>.</summary>
    public ulong Length { get; } = length;

    /// <summary>The name of the live DMA buffer the address lies in, or null when it lies in none.</summary>
    public string? Buffer { get; } = buffer;

    /// <summary>What is wrong with the address.</summary>
    public string Problem { get; } = problem;
}
