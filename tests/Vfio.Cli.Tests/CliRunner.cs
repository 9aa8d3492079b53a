using Vfio.Devices;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

/// <summary>What one run of the command produced.</summary>
public sealed record CliResult(int ExitCode, string Out, string Err, byte[]? Binary = null)
{
    /// <summary>Fails when standard error or output shows a stack trace: expected errors print one line, no trace.</summary>
    public CliResult AssertNoStackTrace()
    {
        foreach (var text in new[] { Out, Err })
        {
            Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception:", text, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled", text, StringComparison.Ordinal);
        }
        return this;
    }
}

/// <summary>Runs the vfio command in-process against a fake sysfs tree, capturing what it writes.</summary>
public sealed class CliRunner(FakeSysfs fs)
{
    public ISysfsWriter? Writer { get; init; }
    public string? PciIds { get; init; }
    public Func<PciAddress, VfioOpenOptions, IPciDevice>? OpenDevice { get; init; }
    public Vfio.Net.NetDriverRegistry? NetDrivers { get; init; }
    public string PersistRoot { get; init; } = Path.Combine(fs.Root, "persist");
    public MemoryLockLimit? MemoryLockLimit { get; init; }

    public CliResult Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        using var binary = new MemoryStream();
        // The roots go first, so that tests may end their arguments with "--".
        string[] all = ["--sysfs-root", fs.Sys, "--proc-root", fs.Proc, "--dev-root", fs.Dev, .. args];
        int code = CliApp.Run(all, output, error, new CliEnvironment
        {
            SysfsWriter = Writer,
            PciIdsPaths = PciIds is null ? [] : [PciIds],
            OpenDevice = OpenDevice,
            NetDrivers = NetDrivers,
            OpenBinaryOutput = () => binary,
            PersistRoot = PersistRoot,
            MemoryLockLimit = MemoryLockLimit is { } limit ? () => limit : null,
        });
        return new CliResult(code, output.ToString(), error.ToString(), binary.ToArray());
    }
}
