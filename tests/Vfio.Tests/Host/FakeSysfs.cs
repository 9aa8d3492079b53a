using System.Globalization;
using Vfio.Host;

namespace Vfio.Tests.Host;

/// <summary>
/// A throw-away tree shaped like the parts of sysfs, procfs and /dev that the host layer reads, with the links laid
/// out as the kernel lays them out:
/// <code>
/// sys/devices/pci0000:00/BDF                      the device folder (attributes are files)
/// sys/bus/pci/devices/BDF                         -> ../../../devices/pci0000:00/BDF
/// sys/devices/pci0000:00/BDF/driver              -> ../../../bus/pci/drivers/NAME
/// sys/devices/pci0000:00/BDF/iommu_group         -> ../../../kernel/iommu_groups/N
/// sys/kernel/iommu_groups/N/devices/BDF           -> ../../../../devices/pci0000:00/BDF
/// </code>
/// </summary>
public sealed class FakeSysfs : IDisposable
{
    public FakeSysfs()
    {
        Root = Directory.CreateTempSubdirectory("vfio-fake-sysfs-").FullName;
        Sys = Path.Combine(Root, "sys");
        Proc = Path.Combine(Root, "proc");
        Dev = Path.Combine(Root, "dev");
        foreach (var d in new[] { Sys, Proc, Dev, Path.Combine(Sys, "bus", "pci", "devices"), Path.Combine(Sys, "bus", "pci", "drivers") })
        {
            Directory.CreateDirectory(d);
        }
    }

    public string Root { get; }
    public string Sys { get; }
    public string Proc { get; }
    public string Dev { get; }

    public static string DeviceFolderRelative(string bdf) => Path.Combine("devices", "pci0000:00", bdf);
    public string DeviceFolder(string bdf) => Path.Combine(Sys, DeviceFolderRelative(bdf));

    /// <summary>A PCI function with the usual attributes; values are printed the way the kernel prints them.</summary>
    public FakeSysfs Device(string bdf, int vendor = 0x1b36, int device = 0x0010, int subVendor = 0x1af4,
        int subDevice = 0x1100, int classCode = 0x010802, int revision = 0x02, string? driver = null,
        int? group = null, int numaNode = -1, string? driverOverride = null, string? vfioDev = null)
    {
        var dir = DeviceFolder(bdf);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vendor"), $"0x{vendor:x4}\n");
        File.WriteAllText(Path.Combine(dir, "device"), $"0x{device:x4}\n");
        File.WriteAllText(Path.Combine(dir, "subsystem_vendor"), $"0x{subVendor:x4}\n");
        File.WriteAllText(Path.Combine(dir, "subsystem_device"), $"0x{subDevice:x4}\n");
        File.WriteAllText(Path.Combine(dir, "class"), $"0x{classCode:x6}\n");
        File.WriteAllText(Path.Combine(dir, "revision"), $"0x{revision:x2}\n");
        File.WriteAllText(Path.Combine(dir, "numa_node"), string.Create(CultureInfo.InvariantCulture, $"{numaNode}\n"));
        File.WriteAllText(Path.Combine(dir, "driver_override"), (driverOverride ?? "(null)") + "\n");
        Directory.CreateSymbolicLink(Path.Combine(Sys, "bus", "pci", "devices", bdf), Path.Combine("..", "..", "..", DeviceFolderRelative(bdf)));
        if (driver is not null) { SetDriver(bdf, driver); }
        if (group is { } g) { SetGroup(bdf, g); }
        if (vfioDev is not null) { Directory.CreateDirectory(Path.Combine(dir, "vfio-dev", vfioDev)); }
        return this;
    }

    /// <summary>A registered PCI driver: its folder with the bind and unbind attributes.</summary>
    public FakeSysfs Driver(string name)
    {
        var dir = Path.Combine(Sys, "bus", "pci", "drivers", name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "bind"), "");
        File.WriteAllText(Path.Combine(dir, "unbind"), "");
        return this;
    }

    public FakeSysfs SetDriver(string bdf, string? driver)
    {
        var link = Path.Combine(DeviceFolder(bdf), "driver");
        if (new FileInfo(link).LinkTarget is not null) { File.Delete(link); }
        if (driver is not null)
        {
            Driver(driver);
            Directory.CreateSymbolicLink(link, Path.Combine("..", "..", "..", "bus", "pci", "drivers", driver));
        }
        return this;
    }

    public FakeSysfs Group(int id, bool noIommu = false)
    {
        var dir = GroupFolder(id);
        Directory.CreateDirectory(Path.Combine(dir, "devices"));
        if (noIommu) { File.WriteAllText(Path.Combine(dir, "name"), "vfio-noiommu\n"); }
        return this;
    }

    public string GroupFolder(int id) => Path.Combine(Sys, "kernel", "iommu_groups", id.ToString(CultureInfo.InvariantCulture));

    public FakeSysfs SetGroup(string bdf, int id, bool noIommu = false)
    {
        Group(id, noIommu);
        Directory.CreateSymbolicLink(Path.Combine(DeviceFolder(bdf), "iommu_group"),
            Path.Combine("..", "..", "..", "kernel", "iommu_groups", id.ToString(CultureInfo.InvariantCulture)));
        Directory.CreateSymbolicLink(Path.Combine(GroupFolder(id), "devices", bdf),
            Path.Combine("..", "..", "..", "..", DeviceFolderRelative(bdf)));
        return this;
    }

    /// <summary>The vfio module: absent (no call), loaded without the parameter (null), or with 'Y'/'N'.</summary>
    public FakeSysfs VfioModule(string? noIommuParameter)
    {
        var dir = Path.Combine(Sys, "module", "vfio", "parameters");
        Directory.CreateDirectory(dir);
        if (noIommuParameter is not null) { File.WriteAllText(Path.Combine(dir, "enable_unsafe_noiommu_mode"), noIommuParameter + "\n"); }
        return this;
    }

    public string ReadNoIommuParameter() =>
        File.ReadAllText(Path.Combine(Sys, "module", "vfio", "parameters", "enable_unsafe_noiommu_mode")).Trim();

    /// <summary>A device node under dev (a plain file stands in for the character device).</summary>
    public FakeSysfs DevNode(string relative)
    {
        var path = Path.Combine(Dev, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "");
        return this;
    }

    public FakeSysfs HugePagePool(ulong kib, long total, long free = 0, long reserved = 0, long surplus = 0)
    {
        var dir = Path.Combine(Sys, "kernel", "mm", "hugepages", $"hugepages-{kib}kB");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "nr_hugepages"), $"{total}\n");
        File.WriteAllText(Path.Combine(dir, "free_hugepages"), $"{free}\n");
        File.WriteAllText(Path.Combine(dir, "resv_hugepages"), $"{reserved}\n");
        File.WriteAllText(Path.Combine(dir, "surplus_hugepages"), $"{surplus}\n");
        return this;
    }

    public FakeSysfs ProcFile(string relative, string text)
    {
        var path = Path.Combine(Proc, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return this;
    }

    /// <summary>
    /// An NVMe namespace of the device's controller as the kernel lays it out without multipath:
    /// <c>BDF/nvme/nvme0/NAME</c> with its <c>dev</c> numbers, partitions as subfolders with a <c>partition</c>
    /// attribute, <c>sys/block/NAME</c> and <c>sys/dev/block/MAJ:MIN</c> linking to them.
    /// </summary>
    public FakeSysfs BlockDevice(string bdf, string name, string numbers, params (string Name, string Numbers)[] partitions)
    {
        var relative = Path.Combine(DeviceFolderRelative(bdf), "nvme", "nvme0", name);
        BlockFolder(relative, name, numbers);
        Directory.CreateDirectory(Path.Combine(Sys, "block"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, "block", name), Path.Combine("..", relative));
        foreach (var (part, partNumbers) in partitions)
        {
            BlockFolder(Path.Combine(relative, part), part, partNumbers);
            File.WriteAllText(Path.Combine(Sys, relative, part, "partition"), "1\n");
        }
        return this;
    }

    private void BlockFolder(string relative, string name, string numbers)
    {
        var folder = Path.Combine(Sys, relative);
        Directory.CreateDirectory(Path.Combine(folder, "holders"));
        File.WriteAllText(Path.Combine(folder, "dev"), numbers + "\n");
        Directory.CreateDirectory(Path.Combine(Sys, "dev", "block"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, "dev", "block", numbers), Path.Combine("..", "..", relative));
    }

    /// <summary>
    /// An NVMe namespace under native multipath (CONFIG_NVME_MULTIPATH with a multi-controller subsystem): the disk
    /// <c>NAME</c> lives under <c>devices/virtual/nvme-subsystem/nvme-subsys0</c> and links the controller's hidden
    /// path device <c>nvme0c0n1</c> in its <c>multipath/</c> folder.
    /// </summary>
    public FakeSysfs MultipathNamespace(string bdf, string name, string numbers)
    {
        var relative = Path.Combine("devices", "virtual", "nvme-subsystem", "nvme-subsys0", name);
        BlockFolder(relative, name, numbers);
        Directory.CreateDirectory(Path.Combine(Sys, "block"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, "block", name), Path.Combine("..", relative));
        var path = Path.Combine(DeviceFolder(bdf), "nvme", "nvme0", "nvme0c0n1");
        Directory.CreateDirectory(path);
        Directory.CreateDirectory(Path.Combine(Sys, relative, "multipath"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, relative, "multipath", "nvme0c0n1"), Path.GetRelativePath(Path.Combine(Sys, relative, "multipath"), path));
        return this;
    }

    /// <summary>A virtual block device (dm-N, mdN) stacked on <paramref name="slaveOf"/> (a folder under sys).</summary>
    public FakeSysfs VirtualBlockDevice(string name, string numbers, string slaveOf)
    {
        var relative = Path.Combine("devices", "virtual", "block", name);
        BlockFolder(relative, name, numbers);
        Directory.CreateDirectory(Path.Combine(Sys, "block"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, "block", name), Path.Combine("..", relative));
        var slave = Path.Combine(Sys, slaveOf);
        Directory.CreateDirectory(Path.Combine(Sys, relative, "slaves"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, relative, "slaves", Path.GetFileName(slave)), Path.GetRelativePath(Path.Combine(Sys, relative, "slaves"), slave));
        Directory.CreateDirectory(Path.Combine(slave, "holders", name));
        return this;
    }

    /// <summary>The sysfs folder (relative to sys) of a namespace or partition made by <see cref="BlockDevice"/>.</summary>
    public static string BlockRelative(string bdf, params string[] names) =>
        Path.Combine([DeviceFolderRelative(bdf), "nvme", "nvme0", .. names]);

    /// <summary>
    /// A network interface of the device (<c>BDF/net/NAME</c>, or under <paramref name="between"/>, as virtio-net's
    /// <c>BDF/virtio2/net/NAME</c>) with operstate and IFF flags, and its <c>sys/class/net/NAME</c> link.
    /// </summary>
    public FakeSysfs NetInterface(string bdf, string name, bool up, string? between = null)
    {
        var relative = Path.Combine(DeviceFolderRelative(bdf), between ?? "", "net", name);
        var folder = Path.Combine(Sys, relative);
        Directory.CreateDirectory(folder);
        Directory.CreateDirectory(Path.Combine(Sys, "class", "net"));
        Directory.CreateSymbolicLink(Path.Combine(Sys, "class", "net", name), Path.Combine("..", "..", relative));
        File.WriteAllText(Path.Combine(folder, "operstate"), (up ? "up" : "down") + "\n");
        File.WriteAllText(Path.Combine(folder, "flags"), (up ? "0x1003" : "0x1002") + "\n");
        return this;
    }

    /// <summary>An open file of process <paramref name="pid"/>: <c>proc/PID/fd/N</c> linking to <paramref name="target"/>.</summary>
    public FakeSysfs OpenFile(int pid, string comm, int fd, string target)
    {
        var folder = Path.Combine(Proc, pid.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(Path.Combine(folder, "fd"));
        File.WriteAllText(Path.Combine(folder, "comm"), comm + "\n");
        File.CreateSymbolicLink(Path.Combine(folder, "fd", fd.ToString(CultureInfo.InvariantCulture)), target);
        return this;
    }

    /// <summary>An IOMMU unit as the IOMMU drivers register it: <c>sys/class/iommu/NAME</c>.</summary>
    public FakeSysfs IommuUnit(string name)
    {
        Directory.CreateDirectory(Path.Combine(Sys, "class", "iommu", name));
        return this;
    }

    /// <summary>A loaded module without parameters: <c>sys/module/NAME</c>.</summary>
    public FakeSysfs Module(string name)
    {
        Directory.CreateDirectory(Path.Combine(Sys, "module", name));
        return this;
    }

    /// <summary>A NUMA node's hugepage pool: <c>sys/devices/system/node/nodeN/hugepages/hugepages-KIBkB</c>.</summary>
    public FakeSysfs NodeHugePages(int node, ulong kib, long total, long free)
    {
        var dir = Path.Combine(Sys, "devices", "system", "node", $"node{node}", "hugepages", $"hugepages-{kib}kB");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "nr_hugepages"), $"{total}\n");
        File.WriteAllText(Path.Combine(dir, "free_hugepages"), $"{free}\n");
        return this;
    }

    public string? DriverOf(string bdf) =>
        new FileInfo(Path.Combine(DeviceFolder(bdf), "driver")).LinkTarget is { } t ? Path.GetFileName(t) : null;

    public string OverrideOf(string bdf) => File.ReadAllText(Path.Combine(DeviceFolder(bdf), "driver_override")).Trim();

    public PciHost Host(ISysfsWriter? writer = null) => new(Sys, Proc, Dev, writer: writer);

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}
