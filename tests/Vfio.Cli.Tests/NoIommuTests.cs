using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class NoIommuTests : IDisposable
{
    private readonly FakeSysfs _fs = new();
    private readonly FakeKernel _kernel;

    public NoIommuTests() => _kernel = new FakeKernel(_fs);

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli => new(_fs) { Writer = _kernel };

    [Fact]
    public void Status_json_reports_module_parameter_nodes_and_groups()
    {
        _fs.VfioModule("Y").Driver("vfio-pci").DevNode("vfio/vfio").DevNode("vfio/noiommu-2")
            .Group(2, noIommu: true).Device("0000:00:04.0", driver: "vfio-pci", group: 2);

        var r = Cli.Run("noiommu", "status", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var s = Json.Parse(r.Out);
        Assert.True(s.GetProperty("vfioModuleLoaded").GetBoolean());
        Assert.True(s.GetProperty("parameterPresent").GetBoolean());
        Assert.True(s.GetProperty("enabled").GetBoolean());
        Assert.True(s.GetProperty("supported").GetBoolean());
        Assert.True(s.GetProperty("vfioContainerDevice").GetBoolean());
        Assert.False(s.GetProperty("iommufdDevice").GetBoolean());
        Assert.True(s.GetProperty("vfioPciLoaded").GetBoolean());
        Assert.Equal([2], s.GetProperty("noIommuGroups").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Contains("ON", s.GetProperty("summary").GetString(), StringComparison.Ordinal);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, s.GetProperty("changed").ValueKind);
    }

    [Fact]
    public void Status_without_the_parameter_names_the_missing_kernel_option()
    {
        _fs.VfioModule(noIommuParameter: null);

        var r = Cli.Run("noiommu");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Matches(@"enable_unsafe_noiommu_mode\s+absent \(kernel built without CONFIG_VFIO_NOIOMMU\)", r.Out);
        Assert.Matches(@"No-IOMMU groups\s+none", r.Out);
    }

    [Fact]
    public void Status_without_vfio_says_to_load_it()
    {
        var r = Cli.Run("noiommu", "status");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Matches(@"vfio module loaded\s+no", r.Out);
        Assert.Contains("modprobe vfio enable_unsafe_noiommu_mode=1", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Enable_without_unsafe_is_refused_with_exit_code_4_and_says_what_it_risks()
    {
        _fs.VfioModule("N");

        var r = Cli.Run("noiommu", "enable").AssertNoStackTrace();

        Assert.Equal(ExitCodes.NoIommuRefused, r.ExitCode);
        Assert.StartsWith("vfio: refusing to enable VFIO No-IOMMU mode without --unsafe.", r.Err, StringComparison.Ordinal);
        Assert.Contains("DMA isolation", r.Err, StringComparison.Ordinal);
        Assert.Contains("any host memory", r.Err, StringComparison.Ordinal);
        Assert.Contains("taints", r.Err, StringComparison.Ordinal);
        Assert.Contains("'vfio noiommu enable --unsafe'", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
        Assert.Equal("N", _fs.ReadNoIommuParameter());
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Enable_refusal_with_json_has_its_own_kind()
    {
        _fs.VfioModule("N");

        var r = Cli.Run("noiommu", "enable", "--json");

        var error = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal(4, error.GetProperty("exitCode").GetInt32());
        Assert.Equal("NoIommuUnsafeNotAcknowledged", error.GetProperty("kind").GetString());
    }

    [Fact]
    public void Enable_with_unsafe_writes_Y_and_reports_the_change()
    {
        _fs.VfioModule("N").Driver("vfio-pci");

        var r = Cli.Run("noiommu", "enable", "--unsafe", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal([("module/vfio/parameters/enable_unsafe_noiommu_mode", "Y")], _kernel.Writes);
        var s = Json.Parse(r.Out);
        Assert.True(s.GetProperty("enabled").GetBoolean());
        Assert.True(s.GetProperty("changed").GetBoolean());
        Assert.Contains("vfio: warning: VFIO No-IOMMU mode enabled", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Enable_when_already_on_changes_nothing()
    {
        _fs.VfioModule("Y");

        var r = Cli.Run("noiommu", "enable", "--unsafe");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Empty(_kernel.Writes);
        Assert.StartsWith("No-IOMMU mode was already on.", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Enable_without_the_vfio_module_says_to_modprobe_it()
    {
        var r = Cli.Run("noiommu", "enable", "--unsafe").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("modprobe vfio enable_unsafe_noiommu_mode=1", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }
}
