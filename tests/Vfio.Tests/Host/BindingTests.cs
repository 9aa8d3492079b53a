using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class BindingTests : IDisposable
{
    private const string Bdf = "0000:00:04.0";
    private static readonly PciAddress Address = PciAddress.Parse(Bdf);
    private readonly FakeSysfs _fs = new();
    private readonly FakeKernel _kernel;

    public BindingTests()
    {
        _kernel = new FakeKernel(_fs);
        _fs.Driver("vfio-pci").Driver("nvme");
    }

    public void Dispose() => _fs.Dispose();

    private PciHost Host => _fs.Host(_kernel);

    [Fact]
    public void Bind_takes_the_device_from_its_driver_then_sets_the_override_then_binds()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);

        Host.BindToVfio(Address);

        Assert.Equal(
        [
            ($"bus/pci/devices/{Bdf}/driver/unbind", Bdf),
            ($"bus/pci/devices/{Bdf}/driver_override", "vfio-pci"),
            ("bus/pci/drivers/vfio-pci/bind", Bdf),
        ], _kernel.Writes);
        Assert.Equal("vfio-pci", _fs.DriverOf(Bdf));
        Assert.Equal("vfio-pci", Host.GetDevice(Address).DriverOverride);
    }

    [Fact]
    public void Bind_logs_each_change_it_makes()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        var log = new ListLogger();

        new PciHost(_fs.Sys, _fs.Proc, _fs.Dev, log, _kernel).BindToVfio(Address);

        var info = log.Entries.Where(e => e.Level == Microsoft.Extensions.Logging.LogLevel.Information).Select(e => e.Message);
        Assert.Equal([$"{Bdf}: binding to vfio-pci", $"{Bdf}: unbinding from nvme", $"{Bdf}: bound to vfio-pci"], info);
        Assert.Contains(log.Entries, e => e.Message.Contains("driver_override", StringComparison.Ordinal));
    }

    [Fact]
    public void Bind_of_an_unbound_device_skips_the_unbind()
    {
        _fs.Device(Bdf, group: 3);

        Host.BindToVfio(Address);

        Assert.Equal(["driver_override", "bind"], _kernel.Writes.Select(w => Path.GetFileName(w.Path)));
        Assert.True(Host.GetDevice(Address).IsBoundToVfio);
    }

    [Fact]
    public void Bind_is_idempotent()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        Host.BindToVfio(Address);
        int after = _kernel.Writes.Count;

        Host.BindToVfio(Address);

        Assert.Equal(after, _kernel.Writes.Count);
        Assert.Equal("vfio-pci", _fs.DriverOf(Bdf));
    }

    [Fact]
    public void Bind_of_a_missing_device_is_DeviceNotFound_and_writes_nothing()
    {
        var e = Assert.Throws<DeviceNotFoundException>(() => Host.BindToVfio(Address));
        Assert.Equal(Address, e.Device);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Bind_without_vfio_pci_loaded_leaves_the_device_on_its_driver()
    {
        Directory.Delete(Path.Combine(_fs.Sys, "bus", "pci", "drivers", "vfio-pci"), recursive: true);
        _fs.Device(Bdf, driver: "nvme", group: 3);

        var e = Assert.Throws<VfioUnavailableException>(() => Host.BindToVfio(Address));

        Assert.Contains("modprobe vfio-pci", e.Message, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
        Assert.Equal("nvme", _fs.DriverOf(Bdf));
    }

    [Fact]
    public void Bind_of_a_device_without_IOMMU_group_needs_NoIommu_mode_and_fails_before_any_write()
    {
        _fs.Device(Bdf, driver: "nvme").VfioModule("N");

        Assert.Throws<NoIommuModeDisabledException>(() => Host.BindToVfio(Address));

        Assert.Empty(_kernel.Writes);
        Assert.Equal("nvme", _fs.DriverOf(Bdf));
    }

    [Fact]
    public void Bind_of_a_device_without_IOMMU_group_on_a_kernel_without_NoIommu_support_says_so()
    {
        _fs.Device(Bdf, driver: "nvme").VfioModule(noIommuParameter: null);

        var e = Assert.Throws<VfioUnavailableException>(() => Host.BindToVfio(Address));

        Assert.Contains("CONFIG_VFIO_NOIOMMU", e.Message, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Probe_failing_for_lack_of_a_group_after_the_checks_is_NoIommuModeDisabled()
    {
        // No-IOMMU mode is switched off between the check and the bind (by another process): vfio-pci's probe fails
        // and the report explains it rather than showing a bare EINVAL.
        _fs.Device(Bdf, driver: "nvme").VfioModule("Y");
        var writer = new Intercepting(_kernel, (path, _) =>
        {
            if (path.EndsWith("driver_override", StringComparison.Ordinal))
            {
                File.WriteAllText(Path.Combine(_fs.Sys, "module", "vfio", "parameters", "enable_unsafe_noiommu_mode"), "N\n");
            }
        });

        var e = Assert.Throws<NoIommuModeDisabledException>(() => _fs.Host(writer).BindToVfio(Address));

        Assert.Contains("did not bind", e.Message, StringComparison.Ordinal);
        Assert.Contains("\"nvme\"", e.Message, StringComparison.Ordinal);
        Assert.Equal("bind", Path.GetFileName(_kernel.Writes[^1].Path));
    }

    private sealed class Intercepting(ISysfsWriter inner, Action<string, string> before) : ISysfsWriter
    {
        public void Write(string path, string value)
        {
            before(path, value);
            inner.Write(path, value);
        }
    }

    [Fact]
    public void Bind_in_NoIommu_mode_gives_the_device_a_NoIommu_group()
    {
        _fs.Device(Bdf, driver: "nvme").VfioModule("Y");

        Host.BindToVfio(Address);

        var d = Host.GetDevice(Address);
        Assert.True(d.IsBoundToVfio);
        Assert.True(d.IsNoIommu);
        var g = Host.GetIommuGroup(Address);
        Assert.EndsWith($"vfio/noiommu-{g.Id}", g.DevicePath, StringComparison.Ordinal);
        Assert.True(g.IsViable);
    }

    [Fact]
    public void Failed_probe_reports_the_errno_and_how_to_give_the_device_back()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        _kernel.RejectProbe = true;

        var e = Assert.Throws<VfioException>(() => Host.BindToVfio(Address));

        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
        Assert.Equal(Address, e.Device);
        Assert.Contains("dmesg", e.Message, StringComparison.Ordinal);
        Assert.Contains("BindToDriver(0000:00:04.0, \"nvme\")", e.Message, StringComparison.Ordinal);
        Assert.Null(_fs.DriverOf(Bdf));
    }

    [Fact]
    public void Permission_denied_becomes_VfioPermissionException_with_the_path()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        var writer = new FailingWriter(p => new UnauthorizedAccessException($"Access to the path '{p}' is denied."));

        var e = Assert.Throws<VfioPermissionException>(() => _fs.Host(writer).BindToVfio(Address));

        Assert.Contains($"{Bdf}/driver/unbind", e.Message, StringComparison.Ordinal);
        Assert.Contains("root", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Kernel_errno_from_a_write_is_kept()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        var writer = new FailingWriter(_ => new IOException("Device or resource busy", Errno.EBUSY));

        var e = Assert.Throws<VfioException>(() => _fs.Host(writer).BindToVfio(Address));

        Assert.Equal(Errno.EBUSY, e.ErrorNumber);
        Assert.Contains("EBUSY", e.Message, StringComparison.Ordinal);
        Assert.Contains("driver/unbind", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unbind_clears_the_override_by_default()
    {
        _fs.Device(Bdf, driver: "vfio-pci", group: 3, driverOverride: "vfio-pci");

        Host.Unbind(Address);

        Assert.Equal(
        [
            ($"bus/pci/devices/{Bdf}/driver/unbind", Bdf),
            ($"bus/pci/devices/{Bdf}/driver_override", "\n"),
        ], _kernel.Writes);
        var d = Host.GetDevice(Address);
        Assert.Null(d.Driver);
        Assert.Null(d.DriverOverride);
    }

    [Fact]
    public void Unbind_can_keep_the_override()
    {
        _fs.Device(Bdf, driver: "vfio-pci", group: 3, driverOverride: "vfio-pci");

        Host.Unbind(Address, clearOverride: false);

        Assert.Single(_kernel.Writes);
        Assert.Equal("vfio-pci", Host.GetDevice(Address).DriverOverride);
    }

    [Fact]
    public void Unbind_of_an_unbound_device_without_override_writes_nothing()
    {
        _fs.Device(Bdf, group: 3);
        Host.Unbind(Address);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void BindToDriver_gives_the_device_back_to_a_kernel_driver()
    {
        _fs.Device(Bdf, driver: "nvme", group: 3);
        Host.BindToVfio(Address);
        _kernel.Writes.Clear();

        Host.BindToDriver(Address, "nvme");

        Assert.Equal(
        [
            ($"bus/pci/devices/{Bdf}/driver/unbind", Bdf),
            ($"bus/pci/devices/{Bdf}/driver_override", "\n"),
            ("bus/pci/drivers/nvme/bind", Bdf),
        ], _kernel.Writes);
        Assert.Equal("nvme", _fs.DriverOf(Bdf));
        Assert.Null(Host.GetDevice(Address).DriverOverride);
    }

    [Fact]
    public void BindToDriver_of_an_unloaded_driver_writes_nothing()
    {
        _fs.Device(Bdf, driver: "vfio-pci", group: 3);
        var e = Assert.Throws<VfioUnavailableException>(() => Host.BindToDriver(Address, "e1000e"));
        Assert.Contains("modprobe e1000e", e.Message, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("../nvme")]
    [InlineData("..")]
    public void BindToDriver_rejects_names_that_are_not_driver_names(string driver)
    {
        _fs.Device(Bdf, driver: "vfio-pci", group: 3);
        Assert.ThrowsAny<ArgumentException>(() => Host.BindToDriver(Address, driver));
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Default_writer_writes_the_value_to_an_existing_file_and_never_creates_one()
    {
        var path = Path.Combine(_fs.Root, "attribute");
        File.WriteAllText(path, "old-value\n");

        SysfsWriter.Instance.Write(path, "Y");

        Assert.StartsWith("Y", File.ReadAllText(path), StringComparison.Ordinal);
        Assert.ThrowsAny<IOException>(() => SysfsWriter.Instance.Write(Path.Combine(_fs.Root, "absent"), "Y"));
        Assert.False(File.Exists(Path.Combine(_fs.Root, "absent")));
    }
}
