using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Vfio.Tap;
using Vfio.Tests.Linux;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.VirtioNet.Tests.Tap;

/// <summary>
/// The TAP exception path with offloads: two kernels' IP stacks (two network namespaces of the test's own), each on a
/// TAP bridged to one of two emulated virtio-net ports on one hub, talk TCP over IPv6 link-local addresses. With
/// <see cref="TapOffloads.Tso4"/>/<see cref="TapOffloads.Tso6"/> the sending kernel hands its bridge segments of up to
/// 64 KiB, which the bridge cuts into MTU-sized frames; the receiving kernel gets them marked DATA_VALID when the port
/// checked their checksum. The bytes are verified end to end by SHA-256.
/// </summary>
public sealed partial class TapOffloadTests : IDisposable
{
    private const int Port = 5201;
    private readonly NetNamespace _ns1 = new(), _ns2 = new();
    private readonly EmulatedVirtioNet _devA, _devB;
    private readonly VirtioNetDevice _a, _b;

    public TapOffloadTests()
    {
        (_devA, _devB) = EmulatedVirtioNet.CreatePair(queueSize: 256);
        _a = VirtioNetDevice.Open(_devA, new VirtioNetOptions { ChecksumOffload = true });
        _b = VirtioNetDevice.Open(_devB, new VirtioNetOptions { ChecksumOffload = true, Pool = _a.Pool });
        // No duplicate address detection: the link-local addresses are usable at once (RFC 4862 §5.4).
        _ns1.Sysctl("net/ipv6/conf/default/accept_dad", "0");
        _ns2.Sysctl("net/ipv6/conf/default/accept_dad", "0");
    }

    public void Dispose()
    {
        _b.Dispose();
        _a.Dispose();
        _devB.Dispose();
        _devA.Dispose();
        _ns2.Dispose();
        _ns1.Dispose();
    }

    private const TapOffloads All = TapOffloads.Checksum | TapOffloads.Tso4 | TapOffloads.Tso6 | TapOffloads.TsoEcn;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Tcp_between_two_kernels_crosses_the_bridges_intact_and_offloaded_segments_are_cut(bool offload)
    {
        var (a, b, elapsed) = await Transfer(PacketPort.Of(_a), PacketPort.Of(_b), offload ? All : null);
        TestContext.Current.SendDiagnosticMessage(
            $"offload={offload}: 8 MiB in {elapsed.TotalMilliseconds:F0} ms; A from kernel {a.FromKernel} frames, {a.FromKernelSegmented} segments cut, dropped {a.FromKernelDropped}; B to kernel {b.ToKernel} frames in {b.ToKernelCoalesced} coalesced packets and single frames");
        // The data frames: at least one per MSS of 1440 bytes (IPv6 with 1500-byte MTU, less the timestamp option).
        Assert.True(a.FromKernel >= (8 << 20) / 1440, $"{a.FromKernel} frames for 8 MiB");
        Assert.Equal(0, a.FromKernelWhole);
        Assert.Equal(0, b.ToKernelWhole);
        if (offload)
        {
            // The kernel's TCP used the TSO the TAP offered: far fewer reads than frames.
            Assert.True(a.FromKernelSegmented > 0, "no TSO segment came through the TAP");
            Assert.True(a.FromKernel - a.FromKernelSegmented > 2 * a.FromKernelSegmented,
                $"{a.FromKernelSegmented} segments cut into {a.FromKernel} frames: not a few frames each");
            // And the receiving bridge joined the frames of a burst back for its kernel (software GRO).
            Assert.True(b.ToKernelCoalesced > 0, $"B coalesced nothing of {b.ToKernel} frames");
            Assert.True(b.ToKernelDropped * 1000 < b.ToKernel, $"B dropped {b.ToKernelDropped} of {b.ToKernel} frames");
        }
        else
        {
            Assert.Equal(0, a.FromKernelSegmented);
            Assert.Equal(0, b.ToKernelCoalesced);
        }
    }

    /// <summary>
    /// Ports whose devices negotiated HOST_TSO4/6 and GUEST_TSO4/6 (the emulated ones offer them here; QEMU's do on a
    /// tap or vhost backend): the sending kernel's 64 KiB segments go to the port whole, the device passes them whole
    /// to the other port, and that bridge writes them to its kernel as one GSO packet each. Nothing is cut or joined
    /// in software on the way.
    /// </summary>
    [Fact]
    public async Task With_the_devices_segmentation_offload_the_kernels_segments_cross_whole()
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 256);
        using var disposeA = devA;
        using var disposeB = devB;
        foreach (var d in new[] { devA, devB })
        {
            d.OfferedFeatures |= Spec.Virtio.VirtioFeatures.NetHostTso4 | Spec.Virtio.VirtioFeatures.NetHostTso6
                | Spec.Virtio.VirtioFeatures.NetGuestTso4 | Spec.Virtio.VirtioFeatures.NetGuestTso6;
        }
        using var a = VirtioNetDevice.Open(devA, new VirtioNetOptions { SegmentationOffload = true });
        using var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { SegmentationOffload = true });
        var (sa, sb, elapsed) = await Transfer(PacketPort.Of(a), PacketPort.Of(b), All);
        TestContext.Current.SendDiagnosticMessage(
            $"device TSO: 8 MiB in {elapsed.TotalMilliseconds:F0} ms; A from kernel {sa.FromKernel} packets, {sa.FromKernelWhole} whole; device A cut {devA.Model.SegmentsCut}, passed {devA.Model.SegmentationFramesSent} whole; B to kernel {sb.ToKernel}, {sb.ToKernelWhole} whole");
        Assert.True(sa.FromKernelWhole > 0, "no TSO segment went to the port whole");
        Assert.Equal(0, sa.FromKernelSegmented);
        Assert.Equal(sa.FromKernelWhole, devA.Model.SegmentationFramesSent);
        Assert.Equal(0, devA.Model.SegmentsCut);
        Assert.True(sb.ToKernelWhole > 0, "no joined packet reached B's kernel");
        Assert.Equal(0, b.RxBadSegmentHeaders);
        Assert.Equal(0, b.Stats.RxDropped);
        Assert.Equal(0, a.TxSegmentedInSoftware);
    }

    private async Task<(TapBridgeStats A, TapBridgeStats B, TimeSpan Elapsed)> Transfer(PacketPort portA, PacketPort portB, TapOffloads? offloads)
    {
        bool offload = offloads is not null;
        using var tapA = _ns1.Run(() => TapInterface.Create("vfio0", portA.MacAddress, portA.Mtu, offloads: offloads));
        using var tapB = _ns2.Run(() => TapInterface.Create("vfio1", portB.MacAddress, portB.Mtu, offloads: offloads));
        Assert.Equal(offload, tapA.HasVirtioHeader);
        using var bridgeA = new TapBridge(portA, tapA);
        using var bridgeB = new TapBridge(portB, tapB);
        using var stop = new CancellationTokenSource();
        // One thread polls both bridges, as an application's own loop would.
        var pump = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (bridgeA.Poll() + bridgeB.Poll() == 0) { portA.Flush(); portB.Flush(); Thread.Yield(); }
            }
        }, TaskCreationOptions.LongRunning);

        var server = LinkLocal(_ns2.Exec("ip", "-6", "-o", "addr", "show", "dev", "vfio1").Output);
        int scope = Index(_ns1.Exec("ip", "-o", "link", "show", "vfio0").Output);
        // Sockets belong to the namespace of the thread that creates them; they are used from any thread afterwards.
        using var listener = _ns2.Run(() => new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp));
        listener.Bind(new IPEndPoint(IPAddress.IPv6Any, Port));
        listener.Listen(1);
        using var client = _ns1.Run(() => new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp));

        var data = new byte[8 << 20];
        new Random(20).NextBytes(data);
        var timeout = TestContext.Current.CancellationToken;
        var receive = Task.Run(async () =>
        {
            using var peer = await listener.AcceptAsync(timeout);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var chunk = new byte[64 << 10];
            long total = 0;
            int n;
            while ((n = await peer.ReceiveAsync(chunk, SocketFlags.None, timeout)) > 0)
            {
                hash.AppendData(chunk, 0, n);
                total += n;
            }
            return (total, hash.GetHashAndReset());
        }, timeout);
        await client.ConnectAsync(new IPEndPoint(new IPAddress(server.GetAddressBytes(), scope), Port), timeout);
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (int sent = 0; sent < data.Length;) { sent += await client.SendAsync(data.AsMemory(sent), SocketFlags.None, timeout); }
        client.Shutdown(SocketShutdown.Send);
        var (received, digest) = await receive.WaitAsync(TimeSpan.FromSeconds(60), timeout);
        var elapsed = started.Elapsed;
        await stop.CancelAsync();
        await pump;

        Assert.Equal(data.Length, received);
        Assert.Equal(SHA256.HashData(data), digest);
        var a = bridgeA.Stats;
        var b = bridgeB.Stats;
        Assert.Equal(0, a.FromKernelMalformed);
        Assert.Equal(0, b.FromKernelMalformed);
        return (a, b, elapsed);
    }

    [Fact]
    public void A_tap_with_offloads_refuses_the_plain_calls_and_the_other_way_round()
    {
        _ns1.Run(() =>
        {
            using var plain = TapInterface.Create("vfio2");
            Assert.False(plain.HasVirtioHeader);
            Assert.Throws<InvalidOperationException>(() => plain.Read(new byte[12], new byte[1514], new byte[1]));
            Assert.Throws<InvalidOperationException>(() => plain.Write(new byte[12], new byte[60]));
            using var offloaded = TapInterface.Create("vfio3", up: false, offloads: TapOffloads.Checksum);   // down: the kernel sends nothing on it
            Assert.True(offloaded.HasVirtioHeader);
            Assert.Equal(TapOffloads.Checksum, offloaded.Offloads);
            Assert.Throws<InvalidOperationException>(() => offloaded.Read(new byte[1514]));
            Assert.Throws<InvalidOperationException>(() => offloaded.Write(new byte[60]));
            Assert.Throws<ArgumentException>(() => offloaded.Read(new byte[10], new byte[1514], new byte[1]));
            Assert.Equal(0, offloaded.Read(new byte[12], new byte[1514], new byte[1]));   // nothing waiting
        });
        var e = Assert.Throws<ArgumentException>(() => TapInterface.Create("vfio4", offloads: TapOffloads.Tso4));
        Assert.Contains("needs TapOffloads.Checksum", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => TapInterface.Create("vfio4", offloads: (TapOffloads)0x100));
        Assert.Throws<ArgumentException>(() => TapInterface.Create("vfio4", offloads: TapOffloads.Checksum | TapOffloads.TsoEcn));
    }

    private static IPAddress LinkLocal(string ipAddrOutput)
    {
        var m = LinkLocalRegex().Match(ipAddrOutput);
        Assert.True(m.Success, $"no link-local address in: {ipAddrOutput}");
        return IPAddress.Parse(m.Groups[1].Value);
    }

    private static int Index(string ipLinkOutput)
    {
        var m = IndexRegex().Match(ipLinkOutput);
        Assert.True(m.Success, $"no interface index in: {ipLinkOutput}");
        return int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"inet6 (fe80::[0-9a-f:]+)/64")]
    private static partial Regex LinkLocalRegex();

    [GeneratedRegex(@"^(\d+): ")]
    private static partial Regex IndexRegex();
}
