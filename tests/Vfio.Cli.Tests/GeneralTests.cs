using System.Reflection;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class GeneralTests : IDisposable
{
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli => new(_fs);

    [Fact]
    public void Help_lists_the_commands_and_the_exit_codes()
    {
        var r = Cli.Run("--help");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        foreach (var command in new[] { "list", "bind", "unbind", "noiommu", "hugepages", "info" })
        {
            Assert.Contains($"  {command}", r.Out, StringComparison.Ordinal);
        }
        Assert.Contains("Exit codes:", r.Out, StringComparison.Ordinal);
        Assert.Contains("4   No-IOMMU mode refused", r.Out, StringComparison.Ordinal);
        Assert.Contains("Usage:\n  vfio [command] [options]", r.Out.Replace("\r", "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public void Subcommand_help_has_no_epilogue_and_succeeds_without_the_required_argument()
    {
        var r = Cli.Run("bind", "--help");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("vfio bind <BDF>...", r.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("Exit codes:", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_prints_the_informational_version_minver_gave_the_command()
    {
        var r = Cli.Run("--version").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var expected = typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(expected + "\n", r.Out.Replace("\r", "", StringComparison.Ordinal));
        // MinVer's SemVer 2.0 form: X.Y.Z, a prerelease (alpha.0.N between tags) and the commit after '+'.
        Assert.Matches(@"^\d+\.\d+\.\d+(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?(\+[0-9a-f]{7,40})?$", expected);
        // MinVer sets the file version from the same tag (X.Y.Z.0): the SDK's default 1.0.0 would leave both unrelated.
        var file = typeof(CliApp).Assembly.GetCustomAttribute<AssemblyFileVersionAttribute>()!.Version;
        Assert.Equal(expected.Split('-', '+')[0] + ".0", file);
        Assert.Equal("", r.Err);
    }

    [Fact]
    public void No_command_is_a_usage_error()
    {
        var r = Cli.Run().AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.StartsWith("vfio: ", r.Err, StringComparison.Ordinal);
        Assert.Contains("Run 'vfio --help'", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_command_is_a_usage_error()
    {
        var r = Cli.Run("frobnicate").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("frobnicate", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bind")]
    [InlineData("unbind")]
    [InlineData("info")]
    public void Malformed_BDF_is_a_usage_error_that_says_what_is_wrong(string command)
    {
        var r = Cli.Run(command, "0000:00:zz.0").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("'0000:00:zz.0' is not a PCI address", r.Err, StringComparison.Ordinal);
        Assert.Contains("device must be hex 00-1f", r.Err, StringComparison.Ordinal);
        Assert.Contains($"Run 'vfio {command} --help' for usage.", r.Err, StringComparison.Ordinal);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Malformed_BDF_with_json_also_prints_an_error_document()
    {
        var r = Cli.Run("bind", "nonsense", "--json");

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        var error = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal(1, error.GetProperty("exitCode").GetInt32());
        Assert.Equal("Usage", error.GetProperty("kind").GetString());
        Assert.Contains("'nonsense' is not a PCI address", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bind")]
    [InlineData("unbind")]
    public void Unknown_BDF_is_a_device_error_naming_the_device(string command)
    {
        var r = Cli.Run(command, "0000:00:1f.7").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Equal("vfio: 0000:00:1f.7: no such PCI device. list devices with 'vfio list' or lspci -D\n",
            r.Err.Replace("\r", "", StringComparison.Ordinal));
    }

    [Fact]
    public void Unknown_BDF_with_json_prints_the_error_document_on_stdout()
    {
        var r = Cli.Run("bind", "00:1f.7", "--json");

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        var error = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal(2, error.GetProperty("exitCode").GetInt32());
        Assert.Equal("DeviceNotFound", error.GetProperty("kind").GetString());
        Assert.Equal("0000:00:1f.7", error.GetProperty("device").GetString());
        Assert.Contains("no such PCI device", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Verbose_shows_the_stack_trace_of_an_expected_error()
    {
        var r = Cli.Run("bind", "00:1f.7", "--verbose");

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("DeviceNotFoundException", r.Err, StringComparison.Ordinal);
        Assert.Contains("   at ", r.Err, StringComparison.Ordinal);
    }
}
