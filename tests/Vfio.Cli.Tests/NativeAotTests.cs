using System.Diagnostics;
using System.Text.Json;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

/// <summary>
/// The NativeAOT-published <c>vfio</c> (one native executable, no runtime), run as a user would: what the in-process
/// tests cannot see are trimming and AOT failures (reflection the trimmer removed, JSON without source generation,
/// a missing native library), which show up only in the published binary.
/// The dotnet tool package (PackAsTool) is checked here too, installed from the package into a tool path.
/// Run: <c>./run test aot</c> publishes it to artifacts/aot/vfio, installs the tool from the package in artifacts/packages
/// (<c>./run pack</c>'s folder) to artifacts/tool, and
/// runs this class with VFIO_CLI_AOT and VFIO_CLI_TOOL set; the plain unit run leaves the class out
/// (<c>-trait- aot=native</c>).
/// </summary>
[Trait("aot", "native")]
public sealed class NativeAotTests : IDisposable
{
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    private static string Binary =>
        Environment.GetEnvironmentVariable("VFIO_CLI_AOT") is { Length: > 0 } path
            ? (File.Exists(path) ? path : throw new FileNotFoundException("VFIO_CLI_AOT names no file", path))
            : throw new InvalidOperationException("VFIO_CLI_AOT is not set: run these tests through './run test aot', which publishes the binary");

    private static string Tool =>
        Environment.GetEnvironmentVariable("VFIO_CLI_TOOL") is { Length: > 0 } path
            ? (File.Exists(path) ? path : throw new FileNotFoundException("VFIO_CLI_TOOL names no file", path))
            : throw new InvalidOperationException("VFIO_CLI_TOOL is not set: run these tests through './run test aot', which installs the tool from artifacts/packages");

    private static (int ExitCode, string StdOut, string StdErr) Run(params string[] args) => RunFile(Binary, args);

    private static (int ExitCode, string StdOut, string StdErr) RunFile(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stdout = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        if (!p.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"vfio {string.Join(' ', args)} did not exit within 60 s");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private string[] Roots => ["--sysfs-root", _fs.Sys, "--proc-root", _fs.Proc, "--dev-root", _fs.Dev];

    [Fact]
    public void Is_a_native_executable_not_a_managed_assembly()
    {
        var head = new byte[4];
        using (var f = File.OpenRead(Binary)) { f.ReadExactly(head); }
        Assert.Equal("\u007fELF"u8.ToArray(), head);
        Assert.False(File.Exists(Path.ChangeExtension(Binary, ".dll")), "a managed vfio.dll sits beside the native binary");
    }

    [Fact]
    public void The_dotnet_tool_package_installs_and_runs()
    {
        var (code, stdout, stderr) = RunFile(Tool, ["list", "--json", .. Roots]);
        Assert.True(code == ExitCodes.Ok, $"exit {code}: {stdout}{stderr}");
        Assert.Empty(JsonDocument.Parse(stdout).RootElement.GetProperty("devices").EnumerateArray());
    }

    [Fact]
    public void Version_prints_the_assembly_version()
    {
        var (code, stdout, stderr) = Run("--version");
        Assert.True(code == ExitCodes.Ok, $"exit {code}: {stdout}{stderr}");
        Assert.Matches(@"^\d+\.\d+\.\d+", stdout.Trim());
    }

    [Fact]
    public void List_json_against_a_fake_sysfs_reads_devices_groups_and_drivers()
    {
        _fs.Driver("vfio-pci")
            .Group(7, noIommu: true)
            .Device("0000:00:04.0", vendor: 0x1234, device: 0x11e8, classCode: 0x00ff00, driver: "vfio-pci", group: 7);
        var (code, stdout, stderr) = Run(["list", "--json", .. Roots]);

        Assert.True(code == ExitCodes.Ok, $"exit {code}: {stdout}{stderr}");
        var device = JsonDocument.Parse(stdout).RootElement.GetProperty("devices").EnumerateArray().Single();
        Assert.Equal("0000:00:04.0", device.GetProperty("address").GetString());
        Assert.Equal("1234", device.GetProperty("vendorId").GetString());
        Assert.Equal("11e8", device.GetProperty("deviceId").GetString());
        Assert.Equal("vfio-pci", device.GetProperty("driver").GetString());
        Assert.True(device.GetProperty("noIommu").GetBoolean());
    }

    [Fact]
    public void List_table_renders_through_spectre()
    {
        _fs.Device("0000:00:06.0", vendor: 0x1b36, device: 0x0010, classCode: 0x010802, driver: "nvme");
        var (code, stdout, stderr) = Run(["list", .. Roots]);
        Assert.True(code == ExitCodes.Ok, $"exit {code}: {stdout}{stderr}");
        Assert.Contains("0000:00:06.0", stdout, StringComparison.Ordinal);
        Assert.Contains("nvme", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_device_is_a_json_error_with_exit_code_2_and_no_stack_trace()
    {
        var (code, stdout, stderr) = Run(["info", "0000:00:1f.7", "--json", .. Roots]);

        Assert.Equal(ExitCodes.DeviceOrHost, code);
        var error = JsonDocument.Parse(stdout).RootElement.GetProperty("error");
        Assert.Equal(ExitCodes.DeviceOrHost, error.GetProperty("exitCode").GetInt32());
        Assert.Equal("DeviceNotFound", error.GetProperty("kind").GetString());
        Assert.Contains("0000:00:1f.7", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("vfio: ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_arguments_exit_1()
    {
        var (code, _, stderr) = Run("info", "not-a-bdf");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("not-a-bdf", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void NoIommu_enable_without_unsafe_is_refused_with_exit_code_4()
    {
        _fs.VfioModule("N");
        var (code, stdout, stderr) = Run(["noiommu", "enable", "--json", .. Roots]);
        Assert.True(code == ExitCodes.NoIommuRefused, $"exit {code}: {stdout}{stderr}");
        Assert.Equal("NoIommuUnsafeNotAcknowledged", JsonDocument.Parse(stdout).RootElement.GetProperty("error").GetProperty("kind").GetString());
        Assert.Equal("N", _fs.ReadNoIommuParameter());
    }
}
