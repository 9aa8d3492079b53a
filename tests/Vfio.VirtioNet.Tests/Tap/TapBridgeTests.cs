using Vfio.Tap;
using Vfio.Net;
using System.Net;
using System.Net.NetworkInformation;
using System.Text.RegularExpressions;
using PacketDotNet;
using Vfio.Tests.Linux;
using Vfio.VirtioNet.Tests.Capture;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.VirtioNet.Tests.Tap;

/// <summary>
/// <see cref="TapBridge"/> between an emulated virtio-net port (A, driven by the driver) and a real TAP interface in a
/// network namespace of the test's own. Port B, on the same emulated hub, stands for a machine on the wire: what it
/// sends reaches the kernel's IP stack through A and the TAP, and the kernel's answers come back to it.
/// </summary>
public sealed partial class TapBridgeTests : IDisposable
{
    private static readonly PhysicalAddress PeerMac = PhysicalAddress.Parse("52-54-00-00-00-0b");
    private readonly NetNamespace _ns = new();
    private readonly EmulatedVirtioNet _devA, _devB;
    private readonly VirtioNetDevice _a, _b;
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("vfio-tap-");

    public TapBridgeTests()
    {
        (_devA, _devB) = EmulatedVirtioNet.CreatePair(queueSize: 64);
        _a = VirtioNetDevice.Open(_devA);
        _b = VirtioNetDevice.Open(_devB, new VirtioNetOptions { Pool = _a.Pool });
        // No duplicate address detection: the kernel's link-local address is usable at once (RFC 4862 §5.4).
        _ns.Sysctl("net/ipv6/conf/default/accept_dad", "0");
    }

    public void Dispose()
    {
        _b.Dispose();
        _a.Dispose();
        _devB.Dispose();
        _devA.Dispose();
        _ns.Dispose();
        _dir.Delete(recursive: true);
    }

    [Fact]
    public void The_tap_gets_the_ports_mac_and_mtu()
    {
        var port = PacketPort.Of(_a, mtu: 1400);
        _ns.Run(() =>
        {
            using var tap = TapInterface.Create("vfio0", port.MacAddress, port.Mtu);
            Assert.Equal(_a.MacAddress, tap.MacAddress);
            Assert.Equal(1400, tap.Mtu);
        });
    }

    [Fact]
    public void An_mtu_larger_than_the_buffers_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketPort.Of(_a, mtu: _a.Pool.DataRoom));
    }

    [Fact]
    public void The_kernel_answers_a_frame_from_the_wire_through_the_bridge_and_the_capture_sees_both()
    {
        var port = PacketPort.Of(_a);
        using var tap = _ns.Run(() => TapInterface.Create("vfio0", port.MacAddress, port.Mtu));
        // The peer's neighbour entry, so the kernel answers without asking who fe80::b is first.
        var (neighExit, neighOut) = _ns.Exec("ip", "-6", "neigh", "add", "fe80::b", "lladdr", string.Join(':', PeerMac.GetAddressBytes().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture))),
            "dev", "vfio0", "nud", "permanent");
        Assert.True(neighExit == 0, neighOut);
        var kernelAddress = LinkLocal(_ns.Exec("ip", "-6", "-o", "addr", "show", "dev", "vfio0").Output);
        string pcap = Path.Combine(_dir.FullName, "bridge.pcap");
        var capture = PacketCapture.ToFile(pcap);
        using var bridge = new TapBridge(port, tap, new TapBridgeOptions { Capture = capture, Burst = 8 });
        long rx0 = _ns.Counters("vfio0").RxPackets;

        // UDP to a port nobody listens on: the kernel answers with ICMPv6 port unreachable (RFC 4443 §3.1, code 4).
        byte[] request = Udp(IPAddress.Parse("fe80::b"), kernelAddress, PeerMac, _a.MacAddress!);
        Send(_b, request);
        IcmpV6Packet? answer = null;
        var received = new PacketBuffer[8];
        for (int round = 0; round < 200_000 && answer is null; round++)
        {
            bridge.Poll();
            int n = _b.Receive(received);
            foreach (var buffer in received.AsSpan(0, n))
            {
                var packet = Packet.ParsePacket(LinkLayers.Ethernet, buffer.Data.ToArray());
                if (packet.Extract<IcmpV6Packet>() is { Type: IcmpV6Type.DestinationUnreachable } icmp
                    && packet.Extract<IPv6Packet>().DestinationAddress.Equals(IPAddress.Parse("fe80::b")))
                {
                    answer = icmp;
                }
                buffer.Free();
            }
            if (n == 0 && round % 64 == 63) { Thread.Sleep(1); }
        }
        Assert.NotNull(answer);
        Assert.Equal(4, answer.Code);
        Assert.True(_ns.Counters("vfio0").RxPackets - rx0 >= 1, "the kernel counted no frame received on the TAP");
        var stats = bridge.Stats;
        Assert.True(stats.ToKernel >= 1 && stats.FromKernel >= 1, stats.ToString());
        Assert.Equal(0, stats.ToKernelDropped + stats.FromKernelDropped);

        // The capture holds the request (port to kernel) and the answer (kernel to port), in that order.
        bridge.Capture = null;
        capture.Complete();
        var frames = PcapTests.ReadRecords(File.ReadAllBytes(pcap));
        int requestAt = frames.FindIndex(f => f.AsSpan().SequenceEqual(request));
        int answerAt = frames.FindIndex(f => Packet.ParsePacket(LinkLayers.Ethernet, f).Extract<IcmpV6Packet>() is { Type: IcmpV6Type.DestinationUnreachable });
        Assert.True(requestAt >= 0 && answerAt > requestAt, $"request at {requestAt}, answer at {answerAt} of {frames.Count}");
        var (exit, output) = PcapTests.Tcpdump(pcap, filter: "icmp6 and ip6[40] == 1");
        Assert.True(exit == 0, output);
        Assert.Contains("unreachable", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Frames_the_tap_does_not_take_are_counted_as_dropped()
    {
        var port = PacketPort.Of(_a);
        using var tap = _ns.Run(() => TapInterface.Create("vfio0", port.MacAddress, port.Mtu, up: false));
        using var bridge = new TapBridge(port, tap);
        Send(_b, Udp(IPAddress.Parse("fe80::b"), IPAddress.Parse("fe80::1"), PeerMac, _a.MacAddress!));
        for (int i = 0; i < 10_000 && bridge.Stats.ToKernelDropped == 0; i++) { bridge.Poll(); }
        Assert.Equal(1, bridge.Stats.ToKernelDropped);
        Assert.Equal(0, bridge.Stats.ToKernel);
    }

    [Fact]
    public async Task Run_stops_when_cancelled_and_returns_the_spare_buffers()
    {
        var port = PacketPort.Of(_a);
        using var tap = _ns.Run(() => TapInterface.Create("vfio0", port.MacAddress, port.Mtu));
        int freeBefore = _a.Pool.FreeCount;
        using var cts = new CancellationTokenSource();
        var bridge = new TapBridge(port, tap);
        var run = Task.Factory.StartNew(() => bridge.Run(cts.Token), TaskCreationOptions.LongRunning);
        while (bridge.Stats.Rounds < 1000) { await Task.Yield(); }
        await cts.CancelAsync();
        var stats = await run;
        Assert.True(stats.Rounds >= 1000);
        // Every buffer the bridge took for TAP reads is back; what is missing is in A's transmit ring (the kernel's
        // own frames on their way to B), which TransmitInFlight frees as far as the device has sent them.
        int inFlight = _a.TransmitInFlight();
        Assert.Equal(freeBefore, _a.Pool.FreeCount + inFlight);
    }

    private static IPAddress LinkLocal(string ipAddrOutput)
    {
        var m = LinkLocalRegex().Match(ipAddrOutput);
        Assert.True(m.Success, $"no link-local address in: {ipAddrOutput}");
        return IPAddress.Parse(m.Groups[1].Value);
    }

    [GeneratedRegex(@"inet6 (fe80::[0-9a-f:]+)/64")]
    private static partial Regex LinkLocalRegex();

    private static byte[] Udp(IPAddress from, IPAddress to, PhysicalAddress fromMac, PhysicalAddress toMac)
    {
        var udp = new UdpPacket(5000, 9) { PayloadData = new byte[10] };
        var ip = new IPv6Packet(from, to) { HopLimit = 255, PayloadPacket = udp };
        var eth = new EthernetPacket(fromMac, toMac, EthernetType.IPv6) { PayloadPacket = ip };
        udp.UpdateUdpChecksum();
        eth.UpdateCalculatedValues();
        return eth.Bytes;
    }

    private static void Send(VirtioNetDevice port, byte[] frame)
    {
        Assert.True(port.Pool.TryAllocate(out var buffer));
        frame.CopyTo(buffer.Room);
        buffer.Length = frame.Length;
        Assert.Equal(1, port.Transmit([buffer]));
    }
}
