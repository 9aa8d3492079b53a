using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// Issue 21: <c>vfio doctor --json</c> in every guest configuration, each line held against what that guest is known
/// to have (lab/lab.sh and lab/README.md: which guests have a vIOMMU, No-IOMMU mode on or off, a 6.12 kernel with
/// iommufd and the VFIO cdev), so a check that reports the wrong thing on a real kernel fails here, not in a user's
/// terminal.
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
[Trait("lab", Lab.NoIommuOff)]
public sealed class DoctorTests
{
    [Fact]
    public void Doctor_reports_what_this_guest_has()
    {
        var (code, stdout, stderr) = Lab.RunSplit("dotnet", [VfioCli.Dll, "doctor", "--json"]);
        VfioCli.AssertNoStackTrace(stdout + stderr);
        var report = JsonDocument.Parse(stdout).RootElement;
        var checks = report.GetProperty("checks").EnumerateArray().ToList();
        Lab.Report($"doctor ({Lab.Name}): exit {code}, " +
                   string.Join(", ", checks.Select(c => $"{c.GetProperty("id").GetString()}={c.GetProperty("status").GetString()}")));
        var status = checks.ToDictionary(c => c.GetProperty("id").GetString()!, c => c.GetProperty("status").GetString()!);
        // Every line that is not ok says how to fix it.
        Assert.All(checks.Where(c => c.GetProperty("status").GetString() != "ok"),
            c => Assert.False(string.IsNullOrWhiteSpace(c.GetProperty("fix").GetString()), $"{c.GetProperty("id").GetString()} has no fix"));

        bool viommu = Lab.Config == Lab.Type1;   // q35 + intel-iommu: type1, 612-type1, 612-iommufd, 612-compat-type1
        Assert.Equal(viommu ? "ok" : "warning", status["iommu"]);
        Assert.Equal(Lab.Config switch
        {
            Lab.Type1 => "ok",           // not needed with an IOMMU
            Lab.NoIommu => "warning",    // on, and unsafe
            _ => "failed",               // noiommu-off: neither an IOMMU nor No-IOMMU mode
        }, status["noiommu"]);
        Assert.Equal("ok", status["modules"]);
        Assert.Equal("ok", status["capabilities"]);   // root
        Assert.Equal("ok", status["memlock"]);        // root: CAP_IPC_LOCK
        if (Lab.Config == Lab.NoIommu) { Assert.Equal("ok", status["hugepages"]); }   // the lab reserves 256 x 2 MiB

        // The 6.1 guests predate iommufd (6.2) and the VFIO cdev (6.6); of the 6.12 guests, 612-iommufd opens devices
        // through both. The rest report what the guest's /dev shows.
        bool k61 = Lab.Name is Lab.NoIommu or Lab.Type1 or Lab.NoIommuOff;
        if (k61)
        {
            Assert.Equal("warning", status["iommufd"]);
            Assert.Equal("warning", status["vfio-cdev"]);
        }
        else
        {
            if (Lab.Name == Lab.K612Iommufd)
            {
                Assert.Equal("ok", status["iommufd"]);
                Assert.Equal("ok", status["vfio-cdev"]);
            }
            Assert.Equal(File.Exists("/dev/iommu") ? "ok" : "warning", status["iommufd"]);
            Assert.Equal(Directory.Exists("/dev/vfio/devices") ? "ok" : "warning", status["vfio-cdev"]);
        }

        bool ready = Lab.Config != Lab.NoIommuOff;
        Assert.Equal(ready, report.GetProperty("ready").GetBoolean());
        Assert.Equal(ready ? 0 : 1, code);
    }
}
