namespace Vfio.Host;

/// <summary>Why the host still needs a device that a kernel driver holds.</summary>
public enum DeviceUseKind
{
    /// <summary>The root filesystem lives on one of the device's block devices (directly or under dm/md).</summary>
    BootDevice,

    /// <summary>One of the device's network interfaces carries the host's default route (IPv4 or IPv6).</summary>
    DefaultRoute,

    /// <summary>A block device of the device has a mounted filesystem.</summary>
    Mounted,

    /// <summary>A block device of the device is active swap.</summary>
    Swap,

    /// <summary>A block device of the device is held by device-mapper, md or another stacked driver.</summary>
    Holder,

    /// <summary>A process has a block device (or the NVMe controller node) of the device open.</summary>
    OpenFile,

    /// <summary>A network interface of the device is up with addresses or routes.</summary>
    InterfaceUp,
}

/// <summary>
/// One reason a device is in use by the host: what kind of use, who holds it (a mount point, a process, a
/// dm device, an interface) and the kernel object it was found on.
/// </summary>
/// <param name="Kind">The kind of use.</param>
/// <param name="Object">The device's kernel object in use: a block device (<c>nvme0n1p1</c>) or an interface (<c>eth0</c>).</param>
/// <param name="Holder">What holds it: a mount point, a process, a holder device, or the interface's addresses.</param>
public sealed record DeviceUse(DeviceUseKind Kind, string Object, string Holder)
{
    /// <summary>A phrase naming the use, e.g. "nvme0n1p1 is mounted on /data".</summary>
    public override string ToString() => Kind switch
    {
        DeviceUseKind.BootDevice => $"{Object} holds the root filesystem (the boot device: {Holder})",
        DeviceUseKind.DefaultRoute =>
            $"interface {Object} carries the host's DEFAULT ROUTE ({Holder}): taking it cuts this machine off the network",
        DeviceUseKind.Mounted => $"{Object} is mounted on {Holder}",
        DeviceUseKind.Swap => $"{Object} is in use as swap",
        DeviceUseKind.Holder => $"{Object} is held by {Holder} (device-mapper/md)",
        DeviceUseKind.OpenFile => $"{Object} is open in {Holder}",
        DeviceUseKind.InterfaceUp => $"interface {Object} is up with {Holder}",
        _ => $"{Object}: {Kind} ({Holder})",
    };
}
