using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class PciHostDeviceTests : IDisposable
{
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    private static PciAddress A(string s) => PciAddress.Parse(s);

    [Fact]
    public void Enumerate_reads_every_field()
    {
        _fs.Device("0000:00:04.0", vendor: 0x1b36, device: 0x0010, subVendor: 0x1af4, subDevice: 0x1100,
                classCode: 0x010802, revision: 0x02, driver: "nvme", group: 3, numaNode: 1, vfioDev: null)
            .Device("0000:00:05.0", vendor: 0x1234, device: 0x11e8, classCode: 0x00ff00, revision: 0x10,
                driver: "vfio-pci", group: 0, driverOverride: "vfio-pci", vfioDev: "vfio0");

        var devices = _fs.Host().EnumerateDevices();

        Assert.Equal(2, devices.Count);
        var nvme = devices[0];
        Assert.Equal(A("0000:00:04.0"), nvme.Address);
        Assert.Equal(0x1b36, nvme.VendorId);
        Assert.Equal(0x0010, nvme.DeviceId);
        Assert.Equal(0x1af4, nvme.SubsystemVendorId);
        Assert.Equal(0x1100, nvme.SubsystemDeviceId);
        Assert.Equal(0x010802u, nvme.ClassCode);
        Assert.Equal((0x01, 0x08, 0x02), (nvme.BaseClass, nvme.SubClass, nvme.ProgrammingInterface));
        Assert.Equal(0x02, nvme.Revision);
        Assert.Equal("nvme", nvme.Driver);
        Assert.Null(nvme.DriverOverride);   // the kernel prints "(null)"
        Assert.Equal(3, nvme.IommuGroup);
        Assert.False(nvme.IsNoIommu);
        Assert.Equal(1, nvme.NumaNode);
        Assert.Null(nvme.VfioDeviceName);
        Assert.False(nvme.IsBoundToVfio);

        var edu = devices[1];
        Assert.Equal(0x1234, edu.VendorId);
        Assert.Equal(0x11e8, edu.DeviceId);
        Assert.Equal(0x10, edu.Revision);
        Assert.Equal("vfio-pci", edu.Driver);
        Assert.Equal("vfio-pci", edu.DriverOverride);
        Assert.Equal(0, edu.IommuGroup);
        Assert.Null(edu.NumaNode);          // numa_node -1
        Assert.Equal("vfio0", edu.VfioDeviceName);
        Assert.True(edu.IsBoundToVfio);
    }

    [Fact]
    public void Enumerate_sorts_by_address_and_skips_entries_that_are_not_addresses()
    {
        _fs.Device("0000:01:00.0").Device("0000:00:1f.3").Device("0000:00:02.0");
        Directory.CreateDirectory(Path.Combine(_fs.Sys, "bus", "pci", "devices", "not-a-device"));

        var addresses = _fs.Host().EnumerateDevices().Select(d => d.Address.ToString()).ToArray();

        Assert.Equal(["0000:00:02.0", "0000:00:1f.3", "0000:01:00.0"], addresses);
    }

    [Fact]
    public void Enumerate_without_a_pci_bus_is_empty()
    {
        Directory.Delete(Path.Combine(_fs.Sys, "bus"), recursive: true);
        Assert.Empty(_fs.Host().EnumerateDevices());
    }

    [Fact]
    public void Device_without_driver_or_group_has_nulls()
    {
        _fs.Device("0000:00:04.0");
        var d = _fs.Host().GetDevice(A("0000:00:04.0"));
        Assert.Null(d.Driver);
        Assert.Null(d.IommuGroup);
        Assert.False(d.IsNoIommu);
    }

    [Fact]
    public void GetDevice_of_a_missing_device_throws_DeviceNotFound_naming_it()
    {
        _fs.Device("0000:00:04.0");
        var host = _fs.Host();
        var e = Assert.Throws<DeviceNotFoundException>(() => host.GetDevice(A("0000:00:09.0")));
        Assert.Equal(A("0000:00:09.0"), e.Device);
        Assert.Contains("0000:00:09.0", e.Message, StringComparison.Ordinal);
        Assert.Null(host.TryGetDevice(A("0000:00:09.0")));
    }

    [Fact]
    public void NoIommu_group_is_recognised_by_its_name()
    {
        _fs.Device("0000:00:04.0", driver: "vfio-pci").SetGroup("0000:00:04.0", 0, noIommu: true);
        Assert.True(_fs.Host().GetDevice(A("0000:00:04.0")).IsNoIommu);
    }

    [Fact]
    public void NoIommu_group_is_recognised_by_its_dev_node()
    {
        _fs.Device("0000:00:04.0", driver: "vfio-pci", group: 2).DevNode("vfio/noiommu-2");
        Assert.True(_fs.Host().GetDevice(A("0000:00:04.0")).IsNoIommu);
    }

    [Fact]
    public void Ordinary_group_is_not_NoIommu()
    {
        _fs.Device("0000:00:04.0", driver: "vfio-pci", group: 2).DevNode("vfio/2");
        Assert.False(_fs.Host().GetDevice(A("0000:00:04.0")).IsNoIommu);
    }

    [Fact]
    public void Real_sysfs_can_be_listed_read_only()
    {
        Assert.SkipUnless(Directory.Exists("/sys/bus/pci/devices"), "this machine has no /sys/bus/pci");
        var devices = new PciHost().EnumerateDevices();
        Assert.All(devices, d => Assert.NotEqual(0xFFFF, d.VendorId));
    }
}
