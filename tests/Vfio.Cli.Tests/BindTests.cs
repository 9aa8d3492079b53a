using Vfio.Host;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class BindTests : IDisposable
{
    private const string Nvme = "0000:00:04.0", Nic = "0000:00:04.1", Bridge = "0000:00:1c.0";
    private readonly FakeSysfs _fs = new();
    private readonly FakeKernel _kernel;

    public BindTests()
    {
        _kernel = new FakeKernel(_fs);
        _fs.Driver("vfio-pci").Driver("nvme").Driver("e1000e").Driver("pcieport");
    }

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli => new(_fs) { Writer = _kernel };

    [Fact]
    public void Bind_moves_the_device_to_vfio_pci_through_the_writer()
    {
        _fs.Device(Nvme, driver: "nvme", group: 3);

        var r = Cli.Run("bind", Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal(
        [
            ($"bus/pci/devices/{Nvme}/driver/unbind", Nvme),
            ($"bus/pci/devices/{Nvme}/driver_override", "vfio-pci"),
            ("bus/pci/drivers/vfio-pci/bind", Nvme),
        ], _kernel.Writes);
        Assert.Equal("vfio-pci", _fs.DriverOf(Nvme));
        Assert.Equal($"{Nvme}: bound to vfio-pci (was nvme); group 3, {Path.Combine(_fs.Dev, "vfio", "3")}", r.Out.Trim());
        Assert.Equal("", r.Err);
    }

    [Fact]
    public void Bind_json_reports_each_device_in_argument_order()
    {
        _fs.Device(Nvme, driver: "nvme", group: 3).Device(Nic, driver: "vfio-pci", group: 4);

        var r = Cli.Run("bind", Nvme, Nic, "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var devices = Json.Parse(r.Out).GetProperty("devices");
        Assert.Equal([Nvme, Nic], devices.Strings("address"));
        Assert.Equal(["bound", "unchanged"], devices.Strings("action"));
        Assert.Equal(["nvme", "vfio-pci"], devices.Strings("previousDriver"));
        Assert.Equal(["vfio-pci", "vfio-pci"], devices.Strings("driver"));
        Assert.Equal(3, devices[0].GetProperty("iommuGroup").GetInt32());
        Assert.False(devices[0].GetProperty("noIommu").GetBoolean());
        Assert.Equal(Path.Combine(_fs.Dev, "vfio", "3"), devices[0].GetProperty("groupDevicePath").GetString());
    }

    [Fact]
    public void Bind_refuses_a_group_that_is_not_viable_and_names_the_other_device_and_its_driver()
    {
        _fs.Device(Nvme, driver: "nvme", group: 7).Device(Nic, driver: "e1000e", group: 7).Device(Bridge, driver: "pcieport", group: 7);

        var r = Cli.Run("bind", Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.StartsWith($"vfio: {Nvme}: refusing to bind: IOMMU group 7 is not viable, it also holds {Nic} (bound to e1000e).",
            r.Err, StringComparison.Ordinal);
        Assert.Contains($"The group holds: {Nvme} (nvme), {Nic} (e1000e), {Bridge} (pcieport)", r.Err, StringComparison.Ordinal);
        Assert.Contains($"'vfio bind {Nvme} {Nic}'", r.Err, StringComparison.Ordinal);
        Assert.Contains("Nothing was changed", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
        Assert.Equal("nvme", _fs.DriverOf(Nvme));
    }

    [Fact]
    public void Group_not_viable_with_json_has_the_kind_and_device()
    {
        _fs.Device(Nvme, driver: "nvme", group: 7).Device(Nic, driver: "e1000e", group: 7);

        var r = Cli.Run("bind", Nvme, "--json");

        var error = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal("GroupNotViable", error.GetProperty("kind").GetString());
        Assert.Equal(Nvme, error.GetProperty("device").GetString());
        Assert.Contains(Nic, error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Binding_every_blocking_device_together_is_allowed()
    {
        _fs.Device(Nvme, driver: "nvme", group: 7).Device(Nic, driver: "e1000e", group: 7).Device(Bridge, driver: "pcieport", group: 7);

        var r = Cli.Run("bind", Nvme, Nic).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal("vfio-pci", _fs.DriverOf(Nvme));
        Assert.Equal("vfio-pci", _fs.DriverOf(Nic));
        Assert.Equal("pcieport", _fs.DriverOf(Bridge));
    }

    [Fact]
    public void Bind_without_a_group_while_no_iommu_mode_is_off_is_refused_with_exit_code_4()
    {
        _fs.VfioModule("N").Device(Nvme, driver: "nvme");

        var r = Cli.Run("bind", Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.NoIommuRefused, r.ExitCode);
        Assert.Contains("vfio noiommu enable --unsafe", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Bind_in_no_iommu_mode_gets_a_no_iommu_group_and_warns()
    {
        _fs.VfioModule("Y").Device(Nvme, driver: "nvme");

        var r = Cli.Run("bind", Nvme, "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var device = Json.Parse(r.Out).GetProperty("devices")[0];
        Assert.True(device.GetProperty("noIommu").GetBoolean());
        Assert.Equal(Path.Combine(_fs.Dev, "vfio", "noiommu-0"), device.GetProperty("groupDevicePath").GetString());
        Assert.Contains("vfio: warning: 0000:00:04.0 is in No-IOMMU group 0", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_without_permission_exits_3()
    {
        _fs.Device(Nvme, driver: "nvme", group: 3);
        var cli = new CliRunner(_fs) { Writer = new FailingWriter(path => new UnauthorizedAccessException($"Access to the path '{path}' is denied.")) };

        var r = cli.Run("bind", Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Permission, r.ExitCode);
        Assert.Contains("run as root", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Verbose_logs_each_sysfs_write()
    {
        _fs.Device(Nvme, driver: "nvme", group: 3);

        var r = Cli.Run("bind", Nvme, "-v");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("driver_override", r.Err, StringComparison.Ordinal);
        Assert.Contains($"vfio: info: {Nvme}: bound to vfio-pci", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Unbind_leaves_the_device_without_a_driver_and_clears_the_override()
    {
        _fs.Device(Nvme, driver: "vfio-pci", group: 3, driverOverride: "vfio-pci");

        var r = Cli.Run("unbind", Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal(
        [
            ($"bus/pci/devices/{Nvme}/driver/unbind", Nvme),
            ($"bus/pci/devices/{Nvme}/driver_override", "\n"),
        ], _kernel.Writes);
        Assert.Null(_fs.DriverOf(Nvme));
        Assert.StartsWith($"{Nvme}: unbound from vfio-pci", r.Out, StringComparison.Ordinal);
        Assert.Contains("--driver NAME", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Unbind_with_driver_hands_the_device_back()
    {
        _fs.Device(Nvme, driver: "vfio-pci", group: 3, driverOverride: "vfio-pci");

        var r = Cli.Run("unbind", Nvme, "--driver", "nvme", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal("nvme", _fs.DriverOf(Nvme));
        Assert.Equal(("bus/pci/drivers/nvme/bind", Nvme), _kernel.Writes[^1]);
        var device = Json.Parse(r.Out).GetProperty("devices")[0];
        Assert.Equal("bound", device.GetProperty("action").GetString());
        Assert.Equal("vfio-pci", device.GetProperty("previousDriver").GetString());
        Assert.Equal("nvme", device.GetProperty("driver").GetString());
    }

    [Fact]
    public void Unbind_to_a_driver_that_is_not_loaded_says_to_load_it()
    {
        _fs.Device(Nvme, driver: "vfio-pci", group: 3);

        var r = Cli.Run("unbind", Nvme, "--driver", "ixgbe").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("modprobe ixgbe", r.Err, StringComparison.Ordinal);
        Assert.Equal("vfio-pci", _fs.DriverOf(Nvme));
    }

    [Fact]
    public void Unbind_rejects_a_driver_name_that_is_a_path()
    {
        _fs.Device(Nvme, driver: "vfio-pci", group: 3);

        var r = Cli.Run("unbind", Nvme, "--driver", "../nvme").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("'../nvme' is not a driver name", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    private void MountedNamespace() =>
        _fs.Device(Nvme, driver: "nvme", group: 3).BlockDevice(Nvme, "nvme0n1", "259:0", ("nvme0n1p1", "259:1"))
            .ProcFile("self/mountinfo", "29 1 259:1 / /data rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n");

    [Fact]
    public void Bind_refuses_a_mounted_namespace_in_one_line_with_exit_2_and_changes_nothing()
    {
        MountedNamespace();
        _fs.Device(Nic, driver: "e1000e", group: 4);

        var r = Cli.Run("bind", Nic, Nvme).AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"vfio: {Nvme}: refusing to take the device from nvme: nvme0n1p1 is mounted on /data.", line, StringComparison.Ordinal);
        Assert.Contains($"'vfio bind --force {Nvme}'", line, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
        Assert.Equal("e1000e", _fs.DriverOf(Nic));
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Device_in_use_with_json_has_the_kind_and_device()
    {
        MountedNamespace();

        var r = Cli.Run("bind", Nvme, "--json");

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        var error = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal("DeviceInUse", error.GetProperty("kind").GetString());
        Assert.Equal(Nvme, error.GetProperty("device").GetString());
    }

    [Fact]
    public void Bind_force_takes_the_device_warns_and_lists_what_it_overrode()
    {
        MountedNamespace();

        var r = Cli.Run("bind", Nvme, "--force", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal("vfio-pci", _fs.DriverOf(Nvme));
        Assert.Contains($"vfio: warning: {Nvme}: --force: taking it from nvme although nvme0n1p1 is mounted on /data", r.Err, StringComparison.Ordinal);
        var device = Json.Parse(r.Out).GetProperty("devices")[0];
        Assert.Equal(["nvme0n1p1 is mounted on /data"], device.GetProperty("forced").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public void Bind_persist_writes_the_udev_rule_and_unbind_persist_removes_it()
    {
        _fs.Device(Nvme, driver: "nvme", group: 3);
        var rule = new BindPersistence(Path.Combine(_fs.Root, "persist")).RulePath(PciAddress.Parse(Nvme));

        var bind = Cli.Run("bind", Nvme, "--persist").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, bind.ExitCode);
        Assert.Contains($"{Nvme}: persisted in {rule}", bind.Out, StringComparison.Ordinal);
        Assert.Contains($"KERNEL==\"{Nvme}\", ATTR{{driver_override}}=\"vfio-pci\"", File.ReadAllText(rule), StringComparison.Ordinal);

        var unbind = Cli.Run("unbind", Nvme, "--driver", "nvme", "--persist", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, unbind.ExitCode);
        Assert.False(File.Exists(rule));
        Assert.Equal(rule, Json.Parse(unbind.Out).GetProperty("devices")[0].GetProperty("persistRule").GetString());
        Assert.Equal("nvme", _fs.DriverOf(Nvme));
    }

    [Fact]
    public void Unbind_persist_without_a_rule_says_so()
    {
        _fs.Device(Nvme, driver: "vfio-pci", group: 3);

        var r = Cli.Run("unbind", Nvme, "--persist").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains($"{Nvme}: no persisted binding to remove", r.Out, StringComparison.Ordinal);
    }
}
