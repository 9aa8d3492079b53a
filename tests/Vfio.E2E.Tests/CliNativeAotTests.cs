using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// The NativeAOT-published <c>vfio</c> (artifacts/aot/vfio, made by <c>./run test aot</c>, which <c>./run test</c> runs
/// before the guests) against real kernel VFIO: the native binary opens a No-IOMMU device through the same ioctls as
/// the managed one, so trimming or AOT mistakes in the interop show here.
/// Run: ./run test aot, then lab/lab.sh run noiommu -- dotnet tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=noiommu -class Vfio.E2E.Tests.CliNativeAotTests
/// </summary>
[Trait("lab", Lab.NoIommu)]
public sealed class CliNativeAotTests
{
    private static string Binary
    {
        get
        {
            string dir = AppContext.BaseDirectory.TrimEnd('/');
            string binary = Path.GetFullPath(Path.Combine(dir, "..", "..", "..", "..", "..", "artifacts", "aot", "vfio"));
            return File.Exists(binary) ? binary : throw new FileNotFoundException("publish the native vfio first ('./run test aot' does)", binary);
        }
    }

    [Fact]
    public void NativeVfioListsAndOpensTheEduDeviceInNoIommuMode()
    {
        var edu = Lab.BoundEdu().ToString();
        using (var list = new Child(Binary, "list", "--json"))
        {
            var (code, stdout, stderr) = list.WaitForExit(TimeSpan.FromSeconds(60));
            Assert.True(code == 0, $"vfio list exited {code}: {stdout}{stderr}");
            var entry = JsonDocument.Parse(stdout).RootElement.GetProperty("devices").EnumerateArray()
                .Single(d => d.GetProperty("address").GetString() == edu);
            Assert.Equal("vfio-pci", entry.GetProperty("driver").GetString());
            Assert.True(entry.GetProperty("noIommu").GetBoolean());
        }
        using (var info = new Child(Binary, "info", edu, "--unsafe-noiommu", "--json"))
        {
            var (code, stdout, stderr) = info.WaitForExit(TimeSpan.FromSeconds(60));
            Assert.True(code == 0, $"vfio info exited {code}: {stdout}{stderr}");
            var d = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal("noiommu", d.GetProperty("mode").GetString());
            var bar0 = d.GetProperty("regions").EnumerateArray().Single(r => r.GetProperty("index").GetInt32() == 0);
            Assert.Equal(1UL << 20, bar0.GetProperty("size").GetUInt64());
        }
        using (var refused = new Child(Binary, "info", edu))
        {
            var (code, stdout, stderr) = refused.WaitForExit(TimeSpan.FromSeconds(60));
            Assert.Equal(4, code);
            Assert.Contains("No-IOMMU", stdout + stderr, StringComparison.Ordinal);
            VfioCli.AssertNoStackTrace(stdout + stderr);
        }
    }
}
