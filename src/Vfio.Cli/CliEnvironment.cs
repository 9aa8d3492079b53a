using Vfio.Devices;
using Vfio.Host;
using Vfio.Kernel;

namespace Vfio.Cli;

/// <summary>
/// What the vfio command takes from its surroundings, so that a host (a test, another tool) can run it in-process
/// against fakes: the writer for sysfs attributes, the pci.ids files, how devices are opened, and the terminal.
/// </summary>
public sealed class CliEnvironment
{
    /// <summary>The environment of the real command: the kernel's sysfs, the system's pci.ids, kernel VFIO.</summary>
    public static CliEnvironment Default { get; } = new();

    /// <summary>Performs every sysfs/procfs write; the real file writer when null.</summary>
    public ISysfsWriter? SysfsWriter { get; init; }

    /// <summary>
    /// Where to look for the PCI ID database when <c>--pci-ids</c> is not given; the first file that exists is used.
    /// </summary>
    public IReadOnlyList<string> PciIdsPaths { get; init; } = ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"];

    /// <summary>Opens a device for <c>vfio info</c>; <see cref="VfioDevice.Open(PciAddress, VfioOpenOptions?)"/> when null.</summary>
    public Func<PciAddress, VfioOpenOptions, IPciDevice>? OpenDevice { get; init; }

    /// <summary>The NIC drivers <c>vfio net</c> matches ports against; the command's own (virtio-net, ...) when null.</summary>
    public Vfio.Net.NetDriverRegistry? NetDrivers { get; init; }

    /// <summary>
    /// Standard output as a byte stream, for commands that write bytes rather than text (<c>nvme get-log -b</c>); the
    /// program passes the process's own. When null, such commands say the host gives them none.
    /// </summary>
    public Func<Stream>? OpenBinaryOutput { get; init; }

    /// <summary>The locked-memory limit <c>doctor</c> reports; the process's own (getrlimit) when null.</summary>
    public Func<MemoryLockLimit>? MemoryLockLimit { get; init; }

    /// <summary>
    /// The root under which <c>bind --persist</c> and <c>unbind --persist</c> keep their udev rules
    /// (<c>ROOT/etc/udev/rules.d</c>); "/" for the real command, a temporary folder in tests.
    /// </summary>
    public string PersistRoot { get; init; } = "/";

    /// <summary>
    /// Standard output is a terminal: tables get colour and the terminal's width. When false, output has no escape
    /// sequences and tables are laid out for a wide page, so that pipes and files see whole lines.
    /// </summary>
    public bool IsTerminal { get; init; }
}
