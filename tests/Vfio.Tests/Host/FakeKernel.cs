using System.Globalization;
using Vfio.Host;

namespace Vfio.Tests.Host;

/// <summary>
/// Stands in for the kernel behind sysfs writes: records every write (path relative to the sysfs root, value) in order
/// and reacts to the ones that change state, as drivers/base and drivers/pci do:
/// <list type="bullet">
/// <item><c>…/unbind</c> removes the device's <c>driver</c> link;</item>
/// <item><c>driver_override</c> stores the value, a lone newline clears it;</item>
/// <item><c>drivers/X/bind</c> fails with ENODEV when driver_override names another driver; for vfio-pci, probes as
/// vfio_pci_core_register_device does: a device without an IOMMU group gets a made-up No-IOMMU group when the
/// parameter is Y, and the probe fails with EINVAL otherwise; <see cref="RejectProbe"/> fails any probe;</item>
/// <item><c>nr_hugepages</c> grows the pool only up to <see cref="HugePageLimit"/>;</item>
/// <item>anything else is stored as written.</item>
/// </list>
/// </summary>
public sealed class FakeKernel(FakeSysfs fs) : ISysfsWriter
{
    public List<(string Path, string Value)> Writes { get; } = [];

    public bool RejectProbe { get; set; }

    public long HugePageLimit { get; set; } = long.MaxValue;

    public void Write(string path, string value)
    {
        var relative = Path.GetRelativePath(fs.Sys, path);
        Assert.False(relative.StartsWith("..", StringComparison.Ordinal), $"write outside the fake sysfs: {path}");
        Writes.Add((relative, value));
        var name = Path.GetFileName(path);
        if (!File.Exists(path)) { throw new FileNotFoundException("no such attribute", path); }

        switch (name)
        {
            case "unbind":
                fs.SetDriver(value.Trim(), null);
                break;
            case "driver_override":
                File.WriteAllText(path, (value.Trim().Length == 0 ? "(null)" : value.Trim()) + "\n");
                break;
            case "bind":
                Bind(driver: Path.GetFileName(Path.GetDirectoryName(path)!), bdf: value.Trim());
                break;
            case "nr_hugepages":
                long asked = long.Parse(value, CultureInfo.InvariantCulture);
                File.WriteAllText(path, $"{Math.Min(asked, HugePageLimit)}\n");
                break;
            default:
                File.WriteAllText(path, value + "\n");
                break;
        }
    }

    private void Bind(string driver, string bdf)
    {
        const int ENODEV = 19, EINVAL = 22, EBUSY = 16;
        if (fs.DriverOf(bdf) is not null) { throw new IOException("Device or resource busy", EBUSY); }
        var over = fs.OverrideOf(bdf);
        if (over != "(null)" && over != driver) { throw new IOException("No such device", ENODEV); }
        if (RejectProbe) { throw new IOException("Invalid argument", EINVAL); }
        if (driver == PciHost.VfioPciDriver && new FileInfo(Path.Combine(fs.DeviceFolder(bdf), "iommu_group")).LinkTarget is null)
        {
            var param = Path.Combine(fs.Sys, "module", "vfio", "parameters", "enable_unsafe_noiommu_mode");
            if (!File.Exists(param) || File.ReadAllText(param).Trim() != "Y") { throw new IOException("Invalid argument", EINVAL); }
            int id = Directory.Exists(Path.Combine(fs.Sys, "kernel", "iommu_groups"))
                ? Directory.GetDirectories(Path.Combine(fs.Sys, "kernel", "iommu_groups")).Length
                : 0;
            fs.SetGroup(bdf, id, noIommu: true).DevNode($"vfio/noiommu-{id}");
        }
        fs.SetDriver(bdf, driver);
    }
}

/// <summary>A writer that fails every write the way .NET reports it: for tests of the error mapping.</summary>
public sealed class FailingWriter(Func<string, Exception> failure) : ISysfsWriter
{
    public void Write(string path, string value) => throw failure(path);
}
