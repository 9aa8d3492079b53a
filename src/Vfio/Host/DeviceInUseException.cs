namespace Vfio.Host;

/// <summary>
/// The host still uses the device that was to be taken from its kernel driver: a mounted filesystem, swap, a
/// device-mapper or md holder, an open file, a network interface with addresses or the default route, or the boot
/// device. Unbinding the driver would pull it away under the host. Nothing was changed.
/// </summary>
public sealed class DeviceInUseException(PciAddress device, string driver, IReadOnlyList<DeviceUse> uses)
    : VfioException(
        $"refusing to take the device from {driver}: {string.Join("; ", uses)}", device,
        "stop using it first (unmount, swapoff, remove the dm/md device, close the files, bring the interface down), " +
        $"or override at the risk of data loss or a lost connection: 'vfio bind --force {device}' " +
        "(PciHost.BindToVfio(device, force: true))")
{
    /// <summary>The driver that holds the device.</summary>
    public string Driver { get; } = driver;

    /// <summary>Every use found, the most serious first.</summary>
    public IReadOnlyList<DeviceUse> Uses { get; } = uses;
}
