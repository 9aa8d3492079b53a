using Vfio.Host;
using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class DoctorTests : IDisposable
{
    private const string Bdf = "0000:00:04.0";
    private static readonly MemoryLockLimit Unlimited = new(ulong.MaxValue, ulong.MaxValue);
    private readonly FakeSysfs _fs = new();

    public DoctorTests()
    {
        // A host with an IOMMU, ready for VFIO, the process running as root.
        _fs.IommuUnit("dmar0").VfioModule("N").Driver("vfio-pci").Device(Bdf, driver: "vfio-pci", group: 3)
            .DevNode("vfio/vfio").DevNode("vfio/3").DevNode("iommu").DevNode("vfio/devices/vfio0")
            .NodeHugePages(0, 2048, total: 64, free: 64)
            .ProcFile("self/status", "Name:\tvfio\nCapEff:\t000001ffffffffff\n");
    }

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli(MemoryLockLimit? memlock = null) => new(_fs) { MemoryLockLimit = memlock ?? Unlimited };

    /// <summary>An 8 MiB limit, and every capability but CAP_IPC_LOCK (bit 14), which would lift it.</summary>
    private CliRunner LowMemlock()
    {
        _fs.ProcFile("self/status", "Name:\tvfio\nCapEff:\t000001ffffffbfff\n");
        return Cli(new MemoryLockLimit(8UL << 20, 8UL << 20));
    }

    [Fact]
    public void A_ready_host_prints_a_table_of_ok_lines_and_exits_0()
    {
        var r = Cli().Run("doctor").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^Check\s+Status\s+Found$", lines[0].Trim());
        Assert.DoesNotContain(lines, l => l.StartsWith("fix", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(10, lines.Count(l => l.Contains("  ok  ", StringComparison.Ordinal)));
        Assert.Contains(lines, l => l.StartsWith("hugepages", StringComparison.Ordinal) && l.Contains("node0: 64 x 2 MiB (64 free)", StringComparison.Ordinal));
        Assert.Equal("Ready: no check failed (0 warning(s)).", lines[^1].Trim());
        Assert.Equal("", r.Err);
    }

    [Fact]
    public void A_failing_check_prints_its_fix_and_exits_1()
    {
        var r = LowMemlock().Run("doctor").AssertNoStackTrace();

        Assert.Equal(ExitCodes.NotReady, r.ExitCode);
        var lines = r.Out.Split('\n');
        Assert.Matches(@"^locked-memory limit\s+FAILED\s+RLIMIT_MEMLOCK 8 MiB", Assert.Single(lines, l => l.StartsWith("locked-memory limit", StringComparison.Ordinal)));
        Assert.StartsWith("FIX locked-memory limit: 'ulimit -l unlimited'", Assert.Single(lines, l => l.StartsWith("FIX", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.StartsWith("fix capabilities: run as root", Assert.Single(lines, l => l.StartsWith("fix", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Contains("Not ready: 1 check(s) failed", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_has_every_check_with_status_and_fix()
    {
        var r = LowMemlock().Run("doctor", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.NotReady, r.ExitCode);
        var doc = Json.Parse(r.Out);
        Assert.False(doc.GetProperty("ready").GetBoolean());
        var checks = doc.GetProperty("checks");
        Assert.Equal(["iommu", "noiommu", "modules", "dev-vfio", "hugepages", "memlock", "capabilities", "devices", "iommufd", "vfio-cdev"],
            checks.Strings("id"));
        Assert.Equal(["ok", "ok", "ok", "ok", "ok", "failed", "warning", "ok", "ok", "ok"], checks.Strings("status"));
        Assert.Equal(System.Text.Json.JsonValueKind.Null, checks[0].GetProperty("fix").ValueKind);
        Assert.Contains("CAP_IPC_LOCK", checks[5].GetProperty("fix").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_host_without_vfio_fails_several_checks_at_once()
    {
        using var bare = new FakeSysfs();
        bare.ProcFile("self/status", "CapEff:\t0000000000000000\n");

        var r = new CliRunner(bare) { MemoryLockLimit = Unlimited }.Run("doctor", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.NotReady, r.ExitCode);
        var checks = Json.Parse(r.Out).GetProperty("checks");
        Assert.Equal(["noiommu", "modules", "dev-vfio", "hugepages", "capabilities"],
            checks.EnumerateArray().Where(c => c.GetProperty("status").GetString() == "failed").Select(c => c.GetProperty("id").GetString()));
    }
}
