using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// The <c>vfio</c> command against the real kernel: every subcommand, its <c>--json</c> document parsed, and the
/// exit codes and messages of the expected errors.
/// </summary>
internal static class VfioCli
{
    /// <summary>The CLI built beside this suite in the same configuration.</summary>
    public static string Dll
    {
        get
        {
            string dir = AppContext.BaseDirectory.TrimEnd('/');
            string configuration = new DirectoryInfo(dir).Parent!.Name;
            string dll = Path.GetFullPath(Path.Combine(dir, "..", "..", "..", "..", "..", "src", "Vfio.Cli", "bin", configuration, "net10.0", "vfio.dll"));
            return File.Exists(dll) ? dll : throw new FileNotFoundException("build src/Vfio.Cli first ('./run test' does)", dll);
        }
    }

    public static (int ExitCode, string Output) Run(params string[] args) => Lab.Run("dotnet", [Dll, .. args]);

    public static JsonElement Json(params string[] args)
    {
        // Logs (the No-IOMMU warning, for one) go to stderr; the document alone is on stdout.
        var (code, stdout, stderr) = Lab.RunSplit("dotnet", [Dll, .. args, "--json"]);
        Assert.True(code == 0, $"vfio {string.Join(' ', args)} --json exited {code}: {stdout}{stderr}");
        return JsonDocument.Parse(stdout).RootElement;
    }

    public static void AssertNoStackTrace(string output) =>
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
}

[Trait("lab", Lab.NoIommu)]
public sealed class CliNoIommuTests
{
    [Fact]
    public void ListShowsTheLabDevicesWithGroupsAndDrivers()
    {
        var edu = Lab.BoundEdu().ToString();
        var devices = VfioCli.Json("list").GetProperty("devices").EnumerateArray().ToList();
        var eduEntry = devices.Single(d => d.GetProperty("address").GetString() == edu);
        Assert.Equal("1234", eduEntry.GetProperty("vendorId").GetString());
        Assert.Equal("11e8", eduEntry.GetProperty("deviceId").GetString());
        Assert.Equal("vfio-pci", eduEntry.GetProperty("driver").GetString());
        Assert.True(eduEntry.GetProperty("noIommu").GetBoolean());
        var nvme = devices.Single(d => d.GetProperty("address").GetString() == Lab.Nvme);
        Assert.Equal("010802", nvme.GetProperty("classCode").GetString());

        var (code, table) = VfioCli.Run("list");
        Assert.Equal(0, code);
        Assert.Contains(edu, table);
        Assert.Contains("vfio-pci", table);
    }

    [Fact]
    public void BindAndUnbindMoveADeviceAndSayWhatChanged()
    {
        Lab.UnboundEdu2();
        try
        {
            var bind = VfioCli.Json("bind", Lab.Edu2).GetProperty("devices")[0];
            Assert.Equal("bound", bind.GetProperty("action").GetString());
            Assert.Equal("vfio-pci", bind.GetProperty("driver").GetString());
            Assert.True(bind.GetProperty("noIommu").GetBoolean());
            Assert.StartsWith("/dev/vfio/noiommu-", bind.GetProperty("groupDevicePath").GetString(), StringComparison.Ordinal);
            Assert.True(File.Exists(bind.GetProperty("groupDevicePath").GetString()));
            Assert.Equal("unchanged", VfioCli.Json("bind", Lab.Edu2).GetProperty("devices")[0].GetProperty("action").GetString());

            var unbind = VfioCli.Json("unbind", Lab.Edu2).GetProperty("devices")[0];
            Assert.Equal("unbound", unbind.GetProperty("action").GetString());
            Assert.Null(Lab.Driver(Lab.Edu2));
        }
        finally
        {
            Lab.UnboundEdu2();   // later tests rely on the second edu device staying unbound
        }
    }

    [Fact]
    public void NoIommuStatusReportsTheKernelState()
    {
        var status = VfioCli.Json("noiommu", "status");
        Assert.True(status.GetProperty("vfioModuleLoaded").GetBoolean());
        Assert.True(status.GetProperty("enabled").GetBoolean());
        Assert.True(status.GetProperty("vfioContainerDevice").GetBoolean());
    }

    [Fact]
    public void EnableWithoutUnsafeIsRefusedWithTheRisksSpelledOut()
    {
        var (code, output) = VfioCli.Run("noiommu", "enable");
        Assert.Equal(4, code);
        Assert.Contains("--unsafe", output);
        Assert.Contains("taint", output);
        VfioCli.AssertNoStackTrace(output);
    }

    [Fact]
    public void HugepagesStatusShowsTheReservedPool()
    {
        var pools = VfioCli.Json("hugepages", "status").GetProperty("pools").EnumerateArray().ToList();
        var twoMb = pools.Single(p => p.GetProperty("pageSize").GetUInt64() == 2UL << 20);
        Assert.True(twoMb.GetProperty("total").GetInt64() >= 64);
        Assert.Contains("/dev/hugepages", twoMb.GetProperty("mounts").EnumerateArray().Select(m => m.GetString()));
    }

    [Fact]
    public void InfoOpensTheDeviceOnlyWithTheExplicitFlag()
    {
        var edu = Lab.BoundEdu().ToString();
        var (code, output) = VfioCli.Run("info", edu);
        Assert.Equal(4, code);
        Assert.Contains("No-IOMMU", output);
        VfioCli.AssertNoStackTrace(output);

        var info = VfioCli.Json("info", edu, "--unsafe-noiommu");
        Assert.Equal("noiommu", info.GetProperty("mode").GetString());
        Assert.Equal(Lab.ExpectedContainer, info.GetProperty("container").GetString());
        Assert.False(info.GetProperty("dmaIsolated").GetBoolean());
        var bar0 = info.GetProperty("regions").EnumerateArray().Single(r => r.GetProperty("index").GetInt32() == 0);
        Assert.Equal(1UL << 20, bar0.GetProperty("size").GetUInt64());
        Assert.Contains(info.GetProperty("irqs").EnumerateArray(), i => i.GetProperty("name").GetString() == "MSI" && i.GetProperty("count").GetInt32() == 1);
        Assert.Contains(info.GetProperty("capabilities").EnumerateArray(), c => c.GetProperty("id").GetString() == "05");
    }

    [Fact]
    public void ErrorsHaveTheirExitCodesAndNoStackTraces()
    {
        var (unknown, unknownOut) = VfioCli.Run("info", "0000:00:1f.7", "--unsafe-noiommu");
        Assert.Equal(2, unknown);
        Assert.Contains("no such PCI device", unknownOut);
        VfioCli.AssertNoStackTrace(unknownOut);

        var (malformed, malformedOut) = VfioCli.Run("info", "00:zz.0");
        Assert.Equal(1, malformed);
        Assert.Contains("not a PCI address", malformedOut);

        var edu = Lab.BoundEdu().ToString();
        var (denied, deniedOut) = Lab.Run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp",
            "dotnet", VfioCli.Dll, "info", edu, "--unsafe-noiommu");
        Assert.Equal(3, denied);
        Assert.Contains("CAP_SYS_RAWIO", deniedOut);
        VfioCli.AssertNoStackTrace(deniedOut);
    }
}

[Trait("lab", Lab.Type1)]
public sealed class CliType1Tests
{
    [Fact]
    public void InfoOpensInType1WithoutAnyFlag()
    {
        var info = VfioCli.Json("info", Lab.BoundEdu().ToString());
        Assert.Equal(Lab.ExpectedModeName, info.GetProperty("mode").GetString());
        // A cdev-opened device has no container.
        Assert.Equal(Lab.ExpectedMode == Vfio.Kernel.VfioMode.Iommufd ? null : Lab.ExpectedContainer,
            info.TryGetProperty("container", out var container) ? container.GetString() : null);
        Assert.True(info.GetProperty("dmaIsolated").GetBoolean());
    }

    [Fact]
    public void NoIommuStatusSaysItIsOff()
    {
        var status = VfioCli.Json("noiommu", "status");
        Assert.False(status.GetProperty("enabled").GetBoolean());
        Assert.Empty(status.GetProperty("noIommuGroups").EnumerateArray());
    }
}

[Trait("lab", Lab.NoIommuOff)]
public sealed class CliNoIommuOffTests
{
    [Fact]
    public void BindSaysNoIommuModeIsOffAndHowToOptIn()
    {
        Lab.UnboundEdu2();
        var (code, output) = VfioCli.Run("bind", Lab.Edu2);
        Assert.Equal(4, code);
        Assert.Contains("enable_unsafe_noiommu_mode", output);
        VfioCli.AssertNoStackTrace(output);
        Assert.Null(Lab.Driver(Lab.Edu2));
    }
}
