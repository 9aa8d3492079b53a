using System.Globalization;
using System.Text.Json;

namespace Vfio.E2E.Tests;

/// <summary>
/// The kernel exception path on the igb ports (the TAP bridge over <c>INetPort</c>, with the driver chosen by PCI ID):
/// two kernels' IP stacks, in two network namespaces, each on a TAP that <c>vfio net tap --offload</c> bridges to one
/// of the two 82576 ports, which share a QEMU hub with no host side. IPv6 link-local only. Pings both ways, a 64 MiB TCP
/// copy checked by SHA-256 and iperf3 each way; the bridges cut the kernels' 64 KiB segments and join what they
/// receive. Trait lab=igb: the igb guest runs it in every e2e run.
/// </summary>
[Trait("lab", "igb")]
[Collection("igb ports")]
public sealed class IgbTapTests : IDisposable
{
    private const string NsA = "vfio-ia", NsB = "vfio-ib", TapA = "vfio0", TapB = "vfio1";
    private readonly TapLab _lab = new(NsA, NsB);

    public void Dispose() => _lab.Dispose();

    [Fact]
    public void Two_kernels_talk_tcp_over_the_two_igb_ports_through_two_tap_bridges()
    {
        VfioCli.Json("bind", Lab.Igb0, Lab.Igb1);
        var a = _lab.StartTap(Lab.Igb0, NsA, TapA, offload: true);
        var b = _lab.StartTap(Lab.Igb1, NsB, TapB, offload: true);
        TapLab.Must("ip", "-n", NsA, "addr", "add", "fe80::a/64", "dev", TapA, "nodad");
        TapLab.Must("ip", "-n", NsB, "addr", "add", "fe80::b/64", "dev", TapB, "nodad");

        TapLab.AssertPings(NsA, $"fe80::b%{TapA}", count: 20);
        TapLab.AssertPings(NsB, $"fe80::a%{TapB}", count: 20);
        var (forward, reverse) = _lab.CopyAndMeasure(from: NsA, to: NsB, toAddress: "fe80::b", toInterface: TapA);

        var (da, outA) = TapLab.StopJson(a);
        var (db, outB) = TapLab.StopJson(b);
        Assert.Equal(Lab.Igb0, da.GetProperty("port").GetString());
        Assert.Equal("52:54:00:00:01:01", da.GetProperty("mac").GetString());
        Assert.Equal("52:54:00:00:01:02", db.GetProperty("mac").GetString());
        // A's kernel sent the copy and the forward iperf3 as TSO segments, cut by A's bridge; B's bridge joined them
        // for its kernel; the reverse iperf3 the other way round.
        Assert.True(da.GetProperty("fromKernelSegmented").GetInt64() > 0, outA);
        Assert.True(db.GetProperty("toKernelCoalesced").GetInt64() > 0, outB);
        Assert.True(db.GetProperty("fromKernelSegmented").GetInt64() > 0, outB);
        Assert.True(da.GetProperty("toKernelCoalesced").GetInt64() > 0, outA);
        Assert.Equal(0, da.GetProperty("fromKernelMalformed").GetInt64());
        Assert.Equal(0, db.GetProperty("fromKernelMalformed").GetInt64());
        Lab.Report(string.Create(CultureInfo.InvariantCulture,
            $"igb-tap tcp-64MiB a_to_b={forward:F1}Mbit/s b_to_a={reverse:F1}Mbit/s (A: {da.GetProperty("fromKernel").GetInt64()} frames from {da.GetProperty("fromKernelSegmented").GetInt64()} segments; B: {db.GetProperty("toKernel").GetInt64()} frames in {db.GetProperty("toKernelCoalesced").GetInt64()} packets; {DateTime.UtcNow:yyyy-MM-dd})"));
        Assert.True(forward > 0 && reverse > 0);
    }
}
