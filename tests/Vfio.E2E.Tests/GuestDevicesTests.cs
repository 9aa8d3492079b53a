namespace Vfio.E2E.Tests;

/// <summary>The devices and resources every lab guest promises, whatever its configuration.</summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
[Trait("lab", Lab.NoIommuOff)]
public class GuestDevicesTests
{
    [Fact]
    public void Edu_devices_are_where_the_lab_says()
    {
        foreach (var bdf in new[] { Lab.Edu, Lab.Edu2 })
        {
            Assert.Equal(0x1234u, Lab.ReadHex(bdf, "vendor"));
            Assert.Equal(0x11e8u, Lab.ReadHex(bdf, "device"));
        }
    }

    [Fact]
    public void Second_edu_device_is_unbound()
    {
        Assert.Null(Lab.Driver(Lab.Edu2));
    }

    [Fact]
    public void Nvme_controller_is_present_with_the_nvme_class()
    {
        Assert.Equal(0x1b36u, Lab.ReadHex(Lab.Nvme, "vendor"));
        Assert.Equal(0x010802u, Lab.ReadHex(Lab.Nvme, "class"));
    }

    [Fact]
    public void Two_modern_virtio_net_devices_are_present()
    {
        foreach (var bdf in new[] { Lab.Net0, Lab.Net1 })
        {
            Assert.Equal(0x1af4u, Lab.ReadHex(bdf, "vendor"));
            Assert.Equal(0x1041u, Lab.ReadHex(bdf, "device")); // 0x1041: modern-only virtio-net
        }
    }

    [Fact]
    public void Vfio_pci_driver_is_loaded()
    {
        Assert.True(Directory.Exists("/sys/bus/pci/drivers/vfio-pci"));
    }

    [Fact]
    public void Hugepages_are_reserved_and_mounted()
    {
        var total = File.ReadLines("/proc/meminfo").Single(l => l.StartsWith("HugePages_Total:", StringComparison.Ordinal));
        Assert.True(int.Parse(total.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture) >= 256, total);
        Assert.Contains(File.ReadLines("/proc/mounts"), l => l.Split(' ') is [_, "/dev/hugepages", "hugetlbfs", ..]);
    }

    [Fact]
    public void Output_directory_is_writable()
    {
        var path = Path.Combine(Lab.OutDir, $"probe-{Lab.Name}.txt");
        File.WriteAllText(path, Lab.Config);
        Assert.Equal(Lab.Config, File.ReadAllText(path));
        File.Delete(path);
    }
}
