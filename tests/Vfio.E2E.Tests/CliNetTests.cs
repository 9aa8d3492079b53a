namespace Vfio.E2E.Tests;

/// <summary>
/// <c>vfio net fwd|stats</c> against the lab's two virtio-net ports (one QEMU hub) in No-IOMMU mode.
/// Run: lab/lab.sh run noiommu -- dotnet tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=noiommu -class Vfio.E2E.Tests.CliNetTests
/// </summary>
[Trait("lab", "noiommu")]
[Trait("cost", Lab.CliOverDrivers)]
public sealed class CliNetTests
{
    [Fact]
    public void FwdForwardsPacketsBetweenTheTwoPortsAndReportsThemAsJson()
    {
        // The ports start on the kernel's virtio_net driver; bind moves them (and says "unchanged" when already moved).
        VfioCli.Json("bind", Lab.Net0, Lab.Net1);

        var d = VfioCli.Json("net", "fwd", Lab.Net0, Lab.Net1, "-t", "2", "--unsafe-noiommu");

        Assert.Equal(PciAddress.Parse(Lab.Net0).ToString(), d.GetProperty("portA").GetString());
        Assert.Equal(PciAddress.Parse(Lab.Net1).ToString(), d.GetProperty("portB").GetString());
        Assert.InRange(d.GetProperty("seconds").GetDouble(), 1.5, 30);
        long packets = d.GetProperty("packets").GetInt64();
        Assert.True(packets > 0, $"no packet forwarded: {d}");
        Assert.Equal(packets, d.GetProperty("aToB").GetInt64() + d.GetProperty("bToA").GetInt64());
        Assert.True(d.GetProperty("mpps").GetDouble() > 0, $"mpps is 0: {d}");
        // Both ports were matched to the virtio-net driver by their PCI ID (1af4:1041).
        Assert.Equal("virtio-net", d.GetProperty("driverA").GetString());
        Assert.Equal("virtio-net", d.GetProperty("driverB").GetString());
    }

    [Fact]
    public void StatsShowsThePortAsItsDriverReportsIt()
    {
        VfioCli.Json("bind", Lab.Net0, Lab.Net1);

        var d = VfioCli.Json("net", "stats", Lab.Net0, "-t", "1", "--unsafe-noiommu");

        Assert.Equal(PciAddress.Parse(Lab.Net0).ToString(), d.GetProperty("port").GetString());
        Assert.Equal("virtio-net", d.GetProperty("driver").GetString());
        Assert.True(d.GetProperty("linkUp").GetBoolean(), $"link down: {d}");
        Assert.Matches("^([0-9a-f]{2}:){5}[0-9a-f]{2}$", d.GetProperty("mac").GetString());
        Assert.Equal(1, d.GetProperty("queuePairs").GetInt32());
        Assert.False(d.GetProperty("rss").GetProperty("supported").GetBoolean());
        var rx = d.GetProperty("rx");
        Assert.Equal(rx.GetProperty("packets").GetInt64(), Assert.Single(d.GetProperty("queues").EnumerateArray()).GetProperty("rx").GetProperty("packets").GetInt64());
    }
}
