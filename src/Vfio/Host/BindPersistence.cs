namespace Vfio.Host;

/// <summary>
/// Records a vfio-pci binding so it survives a reboot, the way driverctl does: one udev rule per
/// device that sets <c>driver_override</c> to <c>vfio-pci</c> when the device is added, so the
/// kernel never hands it to its usual driver. A udev rule (not a systemd unit) is used because it
/// acts at device add time, before any driver probes, and needs no service ordering.
/// </summary>
public sealed class BindPersistence
{
    private readonly string _rulesDirectory;

    /// <summary>Creates a recorder whose files live under <paramref name="root"/> (normally "/").</summary>
    /// <param name="root">Root directory; the rules go to <c>root/etc/udev/rules.d</c>.</param>
    public BindPersistence(string root = "/")
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        _rulesDirectory = Path.Combine(root, "etc", "udev", "rules.d");
    }

    /// <summary>The rule file path used for <paramref name="device"/>.</summary>
    /// <param name="device">The PCI device.</param>
    public string RulePath(PciAddress device) =>
        Path.Combine(_rulesDirectory, $"70-vfio-pci-{device}.rules".Replace(':', '-'));

    /// <summary>The rule text written for <paramref name="device"/>.</summary>
    /// <param name="device">The PCI device.</param>
    public static string RuleText(PciAddress device) =>
        "# Written by vfio bind --persist; removed by vfio unbind --persist.\n" +
        $"ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{device}\", ATTR{{driver_override}}=\"vfio-pci\"\n";

    /// <summary>Whether a binding is recorded for <paramref name="device"/>.</summary>
    /// <param name="device">The PCI device.</param>
    public bool IsPersisted(PciAddress device) => File.Exists(RulePath(device));

    /// <summary>Writes (or rewrites) the rule for <paramref name="device"/> and returns its path.</summary>
    /// <param name="device">The PCI device.</param>
    /// <exception cref="VfioPermissionException">The process may not write the rules folder (not root).</exception>
    /// <exception cref="VfioException">The file could not be written.</exception>
    public string Persist(PciAddress device)
    {
        string path = RulePath(device);
        return Guard($"write the udev rule {path}", device, () =>
        {
            Directory.CreateDirectory(_rulesDirectory);
            string temp = path + ".tmp";
            File.WriteAllText(temp, RuleText(device));
            File.Move(temp, path, overwrite: true);
            return path;
        });
    }

    /// <summary>Removes the rule for <paramref name="device"/>; returns false when none was recorded.</summary>
    /// <param name="device">The PCI device.</param>
    /// <exception cref="VfioPermissionException">The process may not remove the file (not root).</exception>
    /// <exception cref="VfioException">The file could not be removed.</exception>
    public bool Remove(PciAddress device)
    {
        string path = RulePath(device);
        return Guard($"remove the udev rule {path}", device, () =>
        {
            if (!File.Exists(path))
                return false;
            File.Delete(path);
            return true;
        });
    }

    /// <summary>Reports a failed file operation as the library's exceptions do (every one derives from VfioException).</summary>
    private static T Guard<T>(string operation, PciAddress device, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (UnauthorizedAccessException)
        {
            throw new VfioPermissionException(operation, device, Errno.EACCES, "run as root: the rules live in /etc/udev/rules.d");
        }
        catch (IOException e) when (e is not VfioException)
        {
            throw new VfioException(operation, device, 0, e.Message, e);
        }
    }
}
