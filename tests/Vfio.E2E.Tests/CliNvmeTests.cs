using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// <c>vfio nvme</c> against QEMU's nvme (VFIO_LAB_NVME: 256 MiB raw file, serial VFIOLAB0001) through the real kernel.
/// The controller starts bound to the kernel's nvme driver; other suites (NvmeTests) bind it to vfio-pci and leave it
/// there, so each test brings it to vfio-pci with <c>vfio bind</c>, which says "bound" or "unchanged". LBAs here
/// (from 300000 on) are apart from those NvmeTests writes.
/// </summary>
internal static class CliNvme
{
    public const ulong BlocksIn256MiB = (256UL << 20) / 512;

    public static void Bind()
    {
        var action = VfioCli.Json("bind", Lab.Nvme).GetProperty("devices")[0].GetProperty("action").GetString();
        Assert.Contains(action, new[] { "bound", "unchanged" });
        Assert.Equal("vfio-pci", Lab.Driver(Lab.Nvme));
    }

    public static void AssertIdentity(JsonElement id, string mode, bool isolated)
    {
        Assert.Equal(Lab.Nvme, id.GetProperty("address").GetString());
        Assert.Equal(mode, id.GetProperty("mode").GetString());
        Assert.Equal(isolated, id.GetProperty("dmaIsolated").GetBoolean());
        Assert.Equal("QEMU NVMe Ctrl", id.GetProperty("model").GetString());
        Assert.Equal("VFIOLAB0001", id.GetProperty("serial").GetString());
        Assert.Equal("1b36", id.GetProperty("vendorId").GetString());
        var ns = id.GetProperty("namespaces").EnumerateArray().Single(n => n.GetProperty("nsid").GetUInt32() == 1);
        Assert.Equal(256UL << 20, ns.GetProperty("sizeBytes").GetUInt64());
    }

    /// <summary>write --verify of a pattern, then read --hex of the same blocks: the pattern comes back.</summary>
    public static void WriteVerifyReadBack(ulong lba, byte pattern, params string[] flags)
    {
        string lbaText = lba.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string patternText = $"0x{pattern:x2}";
        var w = VfioCli.Json(["nvme", "write", Lab.Nvme, "--lba", lbaText, "--count", "16", "--pattern", patternText, "--verify", .. flags]);
        Assert.True(w.GetProperty("verified").GetBoolean());
        Assert.True(w.GetProperty("flushed").GetBoolean());
        Assert.Equal(16 * 512, w.GetProperty("bytes").GetInt32());

        var r = VfioCli.Json(["nvme", "read", Lab.Nvme, "--lba", lbaText, "--count", "16", "--hex", .. flags]);
        Assert.Equal(w.GetProperty("sha256").GetString(), r.GetProperty("sha256").GetString());
        string hex = r.GetProperty("hex").GetString()!;
        Assert.Equal(2 * 16 * 512, hex.Length);
        Assert.Equal(string.Concat(Enumerable.Repeat($"{pattern:x2}", 16 * 512)), hex);
    }

    public static void PerfHasIops(string mode, params string[] flags)
    {
        var p = VfioCli.Json(["nvme", "perf", Lab.Nvme, "-q", "16", "-t", "2", .. flags]);
        Assert.Equal(mode, p.GetProperty("mode").GetString());
        Assert.Equal("randread", p.GetProperty("workload").GetString());
        Assert.Equal(16, p.GetProperty("queueDepth").GetInt32());
        Assert.True(p.GetProperty("iops").GetDouble() > 0, p.ToString());
        Assert.True(p.GetProperty("ios").GetInt64() > 0);
        Assert.Equal(0, p.GetProperty("errors").GetInt64());
        Assert.True(p.GetProperty("p99Us").GetDouble() >= p.GetProperty("p50Us").GetDouble());
    }
}

[Trait("lab", Lab.NoIommu)]
[Trait("cost", Lab.CliOverDrivers)]
public sealed class CliNvmeNoIommuTests
{
    [Fact]
    public void IdentifyShowsQemusModelAndSerialOnlyWithTheExplicitFlag()
    {
        CliNvme.Bind();
        var (code, output) = VfioCli.Run("nvme", "identify", Lab.Nvme);
        Assert.Equal(4, code);
        Assert.Contains("--unsafe-noiommu", output);
        VfioCli.AssertNoStackTrace(output);

        CliNvme.AssertIdentity(VfioCli.Json("nvme", "identify", Lab.Nvme, "--unsafe-noiommu"), "noiommu", isolated: false);
    }

    [Fact]
    public void WriteWithVerifyThenReadBackTheSamePattern()
    {
        CliNvme.Bind();
        CliNvme.WriteVerifyReadBack(300_000, 0xc3, "--unsafe-noiommu");
    }

    [Fact]
    public void PerfReportsIops()
    {
        CliNvme.Bind();
        CliNvme.PerfHasIops("noiommu", "--unsafe-noiommu");
    }

    [Fact]
    public void LbaOutOfRangeExits2WithTheNvmeStatusAndNoStackTrace()
    {
        CliNvme.Bind();
        var (code, stdout, stderr) = Lab.RunSplit("dotnet", VfioCli.Dll, "nvme", "read", Lab.Nvme, "--unsafe-noiommu",
            "--lba", CliNvme.BlocksIn256MiB.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json");
        Assert.Equal(2, code);
        Assert.Contains("LBA Out of Range", stderr);
        VfioCli.AssertNoStackTrace(stdout + stderr);
        var error = JsonDocument.Parse(stdout).RootElement.GetProperty("error");
        Assert.Equal(2, error.GetProperty("exitCode").GetInt32());
        Assert.Equal("NvmeCommand", error.GetProperty("kind").GetString());
        Assert.Contains("SC 0x80 (LBA Out of Range)", error.GetProperty("message").GetString());
    }

    [Fact]
    public void ADeviceThatIsNotNvmeOrDoesNotExistIsADeviceError()
    {
        var edu = Lab.BoundEdu().ToString();
        var (code, output) = VfioCli.Run("nvme", "identify", edu, "--unsafe-noiommu");
        Assert.Equal(2, code);
        Assert.Contains("is not an NVMe controller", output);
        VfioCli.AssertNoStackTrace(output);

        var (unknown, unknownOut) = VfioCli.Run("nvme", "identify", "0000:00:1f.7", "--unsafe-noiommu");
        Assert.Equal(2, unknown);
        Assert.Contains("no such PCI device", unknownOut);
        VfioCli.AssertNoStackTrace(unknownOut);
    }

    [Fact]
    public void WithoutCapabilitiesItExits3()
    {
        CliNvme.Bind();
        var (denied, deniedOut) = Lab.Run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp",
            "dotnet", VfioCli.Dll, "nvme", "identify", Lab.Nvme, "--unsafe-noiommu");
        Assert.Equal(3, denied);
        Assert.Contains("CAP_SYS_RAWIO", deniedOut);
        VfioCli.AssertNoStackTrace(deniedOut);
    }
}

[Trait("lab", Lab.Type1)]
[Trait("cost", Lab.CliOverDrivers)]
public sealed class CliNvmeType1Tests
{
    [Fact]
    public void IdentifyOpensInType1WithoutAnyFlag()
    {
        CliNvme.Bind();
        CliNvme.AssertIdentity(VfioCli.Json("nvme", "identify", Lab.Nvme), Lab.ExpectedModeName, isolated: true);
    }

    [Fact]
    public void WriteWithVerifyThenReadBackTheSamePattern()
    {
        CliNvme.Bind();
        CliNvme.WriteVerifyReadBack(310_000, 0x3c);
    }

    [Fact]
    public void PerfReportsIops()
    {
        CliNvme.Bind();
        CliNvme.PerfHasIops(Lab.ExpectedModeName);
    }
}

[Trait("lab", Lab.NoIommuOff)]
public sealed class CliNvmeNoIommuOffTests
{
    [Fact]
    public void IdentifySaysNoIommuModeIsOffEvenWithTheFlag()
    {
        var (code, output) = VfioCli.Run("nvme", "identify", Lab.Nvme, "--unsafe-noiommu");
        Assert.Equal(4, code);
        Assert.Contains("enable_unsafe_noiommu_mode", output);
        VfioCli.AssertNoStackTrace(output);
    }
}
