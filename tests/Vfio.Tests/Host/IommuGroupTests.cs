using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class IommuGroupTests : IDisposable
{
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    private static PciAddress A(string s) => PciAddress.Parse(s);

    [Fact]
    public void Group_lists_its_devices_with_drivers_and_is_viable_when_all_are_vfio_or_unbound()
    {
        _fs.Device("0000:00:04.0", driver: "vfio-pci", group: 7)
            .Device("0000:00:04.1", group: 7);

        var g = _fs.Host().GetIommuGroup(A("0000:00:04.0"));

        Assert.Equal(7, g.Id);
        Assert.False(g.IsNoIommu);
        Assert.Equal("7", g.Name);
        Assert.Equal(Path.Combine(_fs.Dev, "vfio", "7"), g.DevicePath);
        Assert.Equal([new IommuGroupMember(A("0000:00:04.0"), "vfio-pci"), new IommuGroupMember(A("0000:00:04.1"), null)], g.Devices);
        Assert.True(g.IsViable);
        Assert.Empty(g.BlockingDevices);
    }

    [Fact]
    public void Device_bound_to_a_host_driver_blocks_the_group()
    {
        _fs.Device("0000:03:00.0", driver: "vfio-pci", group: 12)
            .Device("0000:03:00.1", driver: "snd_hda_intel", group: 12);

        var g = _fs.Host().GetIommuGroup(A("0000:03:00.0"));

        Assert.False(g.IsViable);
        Assert.Equal([A("0000:03:00.1")], g.BlockingDevices);
    }

    [Theory]
    [InlineData("pcieport")]
    [InlineData("pci-stub")]
    public void Drivers_that_leave_DMA_to_the_owner_do_not_block(string driver)
    {
        _fs.Device("0000:00:1c.0", driver: driver, classCode: 0x060400, group: 4)
            .Device("0000:02:00.0", driver: "vfio-pci", group: 4);

        Assert.True(_fs.Host().GetIommuGroup(A("0000:02:00.0")).IsViable);
    }

    [Fact]
    public void NoIommu_group_opens_as_dev_vfio_noiommu_N()
    {
        _fs.Device("0000:00:04.0", driver: "vfio-pci").SetGroup("0000:00:04.0", 0, noIommu: true);

        var g = _fs.Host().GetIommuGroup(A("0000:00:04.0"));

        Assert.True(g.IsNoIommu);
        Assert.Equal("noiommu-0", g.Name);
        Assert.Equal(Path.Combine(_fs.Dev, "vfio", "noiommu-0"), g.DevicePath);
    }

    [Fact]
    public void Device_without_group_and_NoIommu_off_is_NoIommuModeDisabled()
    {
        _fs.Device("0000:00:04.0", driver: "nvme").VfioModule("N");
        var e = Assert.Throws<NoIommuModeDisabledException>(() => _fs.Host().GetIommuGroup(A("0000:00:04.0")));
        Assert.Contains("enable_unsafe_noiommu_mode", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_without_group_on_a_kernel_without_NoIommu_support_is_unavailable()
    {
        _fs.Device("0000:00:04.0", driver: "nvme").VfioModule(noIommuParameter: null);
        var e = Assert.Throws<VfioUnavailableException>(() => _fs.Host().GetIommuGroup(A("0000:00:04.0")));
        Assert.Contains("CONFIG_VFIO_NOIOMMU", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_without_group_and_NoIommu_on_needs_binding_first()
    {
        _fs.Device("0000:00:04.0", driver: "nvme").VfioModule("Y");
        var e = Assert.Throws<VfioException>(() => _fs.Host().GetIommuGroup(A("0000:00:04.0")));
        Assert.IsNotType<NoIommuModeDisabledException>(e);
        Assert.Contains("BindToVfio", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Group_of_a_missing_device_is_DeviceNotFound()
    {
        Assert.Throws<DeviceNotFoundException>(() => _fs.Host().GetIommuGroup(A("0000:00:04.0")));
    }
}
