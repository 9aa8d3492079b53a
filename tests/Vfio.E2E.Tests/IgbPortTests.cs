using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Vfio.Host;
using Vfio.Igb;
using Vfio.Kernel;
using Vfio.Net;

namespace Vfio.E2E.Tests;

/// <summary>
/// The 82576 ports of the igb lab (lab/lab.sh's igb configuration: two QEMU 10 igb ports on one hub) through
/// the port abstraction: <c>vfio net stats|pktgen|fwd</c> choosing igb by PCI ID, and frame counts cross-checked with
/// DPDK 22.11's testpmd and its e1000 PMD (the host's packages dpdk-dev and librte-net-e1000-23, seen over 9p): our
/// pktgen against testpmd's rxonly counters, and testpmd's transmissions against our receiver, with the receive
/// checksum flags compared with a recomputation. Trait lab=igb; a missing port or testpmd fails, never skips.
/// Run alone: lab/lab.sh run igb --timeout 900 -- dotnet
/// tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=igb -class Vfio.E2E.Tests.IgbPortTests
/// </summary>
[Trait("lab", "igb")]
[Collection("igb ports")]
public sealed partial class IgbPortTests
{
    private const string Testpmd = "/usr/bin/dpdk-testpmd";
    private const string Pmds = "/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0";

    private static void BindBoth() => VfioCli.Json("bind", Lab.Igb0, Lab.Igb1);

    [Fact]
    public void StatsPktgenAndFwdPickIgbByItsPciId()
    {
        BindBoth();
        var s = VfioCli.Json("net", "stats", Lab.Igb0, "-t", "1", "--queues", "2", "--unsafe-noiommu");
        Assert.Equal("igb", s.GetProperty("driver").GetString());
        Assert.Equal("52:54:00:00:01:01", s.GetProperty("mac").GetString());
        Assert.True(s.GetProperty("linkUp").GetBoolean(), $"link down: {s}");
        Assert.Equal(1000, s.GetProperty("speedMbps").GetInt32());
        Assert.Equal(2, s.GetProperty("queuePairs").GetInt32());
        var rss = s.GetProperty("rss");
        Assert.True(rss.GetProperty("supported").GetBoolean());
        Assert.Equal(128, rss.GetProperty("tableSize").GetInt32());
        Assert.Equal(2, s.GetProperty("queues").GetArrayLength());

        var g = VfioCli.Json("net", "pktgen", Lab.Igb0, "-n", "2000", "-s", "128", "--unsafe-noiommu");
        Assert.Equal("igb", g.GetProperty("driver").GetString());
        Assert.Equal(2000, g.GetProperty("sent").GetInt64());
        Assert.True(g.GetProperty("complete").GetBoolean(), $"{g}");

        var f = VfioCli.Json("net", "fwd", Lab.Igb0, Lab.Igb1, "-t", "3", "--unsafe-noiommu");
        Assert.Equal(("igb", "igb"), (f.GetProperty("driverA").GetString(), f.GetProperty("driverB").GetString()));
        Assert.True(f.GetProperty("aToB").GetInt64() > 0 && f.GetProperty("bToA").GetInt64() > 0, $"{f}");
        Assert.Equal(0, f.GetProperty("dropped").GetInt64());

        var f2 = VfioCli.Json("net", "fwd", Lab.Igb0, Lab.Igb1, "-t", "3", "--queues", "2", "--flows", "16", "--unsafe-noiommu");
        Assert.Equal(2, f2.GetProperty("queuePairs").GetInt32());
        Assert.True(f2.GetProperty("aToB").GetInt64() > 0 && f2.GetProperty("bToA").GetInt64() > 0, $"{f2}");
    }

    [Fact]
    public void TheForwarderWithTwoQueuesAndSeveralFlowsFillsBothQueuesOfBothPorts()
    {
        BindBoth();
        // As `vfio net fwd --queues 2 --flows 16` opens them: port B in port A's DMA space, receiving into A's pool.
        var options = new VfioOpenOptions { AllowNoIommu = true };
        using var devA = VfioDevice.Open(PciAddress.Parse(Lab.Igb0), options);
        using var devB = VfioDevice.Open(PciAddress.Parse(Lab.Igb1), options.SharingDmaWith(devA));
        using var a = IgbDriver.Open(devA, new NetPortOptions { QueuePairs = 2 });
        using var b = IgbDriver.Open(devB, new NetPortOptions { QueuePairs = 2, Pool = a.Pool });
        INetPort pa = a, pb = b;

        var r = Vfio.Cli.Tools.Net.IoForwarder.Run(pa, pb, TimeSpan.FromSeconds(2), queues: 2, cancellationToken: TestContext.Current.CancellationToken, flows: 16);

        Assert.True(r.AToB > 0 && r.BToA > 0, $"{r}");
        var sa = pa.GetStats();
        var sb = pb.GetStats();
        // RSS (UDP/IPv4 hash over addresses and ports) put flows on both receive queues of both ports.
        Assert.All(sa.Queues.Concat(sb.Queues), q => Assert.True(q.Rx.Packets > 0, $"queue {q.Queue}: {q}"));
        Lab.Report($"igb fwd 2 queues, 16 flows: A rx per queue {sa.Queues[0].Rx.Packets}/{sa.Queues[1].Rx.Packets}, B {sb.Queues[0].Rx.Packets}/{sb.Queues[1].Rx.Packets}");
    }

    [Fact]
    public void TestpmdRxonlyCountsExactlyTheFramesOurPktgenSent()
    {
        BindBoth();
        // 500 frames: fewer than testpmd's receive ring holds (--rxd=512), so none can find the ring full however
        // late testpmd polls on a busy host; with 5000 at line rate, 2492 and 3367 arrived on loaded runs (2026-12-07),
        // the rest most likely dropped for want of descriptors, as an Ethernet port does (testpmd showed RX-missed, MPC, 0).
        const int Count = 500;
        using var testpmd = TestpmdRun.Start(Lab.Igb1, "--forward-mode=rxonly");
        // --linger: closing pktgen resets port 0, and QEMU drops frames its hub still queues for the peer.
        var g = VfioCli.Json("net", "pktgen", Lab.Igb0, "-n", Count.ToString(System.Globalization.CultureInfo.InvariantCulture), "-s", "100",
            "--linger", "1000", "--unsafe-noiommu");
        Assert.True(g.GetProperty("complete").GetBoolean(), $"{g}");
        Assert.Equal(Count, g.GetProperty("sent").GetInt64());
        Thread.Sleep(1000);
        var (rx, tx, log) = testpmd.Stop();
        Assert.True(rx == Count, $"testpmd's port counted {rx} frames received of the {Count} we sent (tx {tx}):\n{Tail(log)}");
    }

    [Fact]
    public void OurReceiverCountsAndChecksTheFramesTestpmdSent()
    {
        BindBoth();
        // Our port first (its receive ring posted), so none of testpmd's frames meets an empty ring.
        var device = VfioDevice.Open(PciAddress.Parse(Lab.Igb1), new VfioOpenOptions { AllowNoIommu = true });
        using var _ = device;
        using var port = IgbDriver.Open(device, new NetPortOptions());
        INetPort p = port;
        // testpmd sends one tx-first burst of txonly frames (UDP/IPv4, 198.18.0.1 -> 198.18.0.2) and then only
        // receives: a known number, however fast either side runs.
        const int Burst = 256;
        using var testpmd = TestpmdRun.Start(Lab.Igb0, "--forward-mode=rxonly", "--tx-first", $"--burst={Burst}", "--txpkts=90");
        var buffers = new PacketBuffer[64];
        long received = 0, ipChecked = 0, l4Checked = 0;
        var clock = Stopwatch.StartNew();
        var lastArrival = Stopwatch.StartNew();
        while (lastArrival.Elapsed < TimeSpan.FromSeconds(received >= Burst ? 2 : 60))
        {
            int n = p.RxBurst(0, buffers);
            if (n > 0) { lastArrival.Restart(); }
            for (int i = 0; i < n; i++)
            {
                var frame = buffers[i].Data;
                var flags = buffers[i].Flags;
                Assert.Equal(90, frame.Length);
                Assert.Equal(0x0800, BinaryPrimitives.ReadUInt16BigEndian(frame[12..]));
                Assert.Equal(17, frame[23]);   // UDP
                // The device's verdicts against ours (RFC 1071 sums over the frame as it arrived).
                bool ipGood = IgbTests.Frames.Fold(IgbTests.Frames.Sum(frame.Slice(14, 20))) == 0;
                if ((flags & (PacketFlags.IpChecksumGood | PacketFlags.IpChecksumBad)) != 0)
                {
                    ipChecked++;
                    Assert.Equal(ipGood, (flags & PacketFlags.IpChecksumGood) != 0);
                }
                if ((flags & (PacketFlags.L4ChecksumGood | PacketFlags.L4ChecksumBad)) != 0)
                {
                    l4Checked++;
                    Assert.Equal(UdpChecksumGood(frame), (flags & PacketFlags.L4ChecksumGood) != 0);
                }
                Assert.True(ipGood, "testpmd's txonly frames carry a valid IPv4 header checksum");
            }
            PacketPool.Free(buffers.AsSpan(0, n));
            received += n;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(180), $"{received} frames in 180 s");
        }
        var (_, tx, log) = testpmd.Stop();
        Assert.True(tx == Burst, $"testpmd reported {tx} frames sent, not its tx-first burst of {Burst}:\n{Tail(log)}");
        Assert.Equal(tx, received);
        Assert.Equal(received, p.GetStats().Rx.Packets);
        // RXCSUM.IPOFLD is on: every IPv4 frame had its header checksum checked.
        Assert.Equal(received, ipChecked);
        Lab.Report($"igb cross-check: testpmd sent {tx}, we received {received}; IP checksum checked on {ipChecked}, L4 on {l4Checked}");
    }

    [Fact]
    public void AResetMidTrafficReturnsWhatTheRingsHeldAndTrafficResumes()
    {
        BindBoth();
        using var devA = VfioDevice.Open(PciAddress.Parse(Lab.Igb0), new VfioOpenOptions { AllowNoIommu = true });
        using var devB = VfioDevice.Open(PciAddress.Parse(Lab.Igb1), new VfioOpenOptions { AllowNoIommu = true });
        using var a = IgbDriver.Open(devA, new NetPortOptions { QueueSize = 256 });
        using var b = IgbDriver.Open(devB, new NetPortOptions { QueueSize = 256 });
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        // More frames than B's receive ring holds, none taken: B's ring fills, A's transmit ring holds the rest.
        Send(a, 0, 600, dst, src);
        Thread.Sleep(200);
        Assert.True(b.ReceiveBuffersPosted() > 0);
        // Mid-traffic: B's ring full of received frames, A with frames it may not have sent yet.
        b.Reset();
        a.Reset();
        // The rings' buffers went back to their pools: what is in use now is only what the new rings posted.
        Assert.Equal(a.ReceiveBuffersPosted() + a.TransmitInFlight(), a.Pool.InUseCount);
        Assert.Equal(b.ReceiveBuffersPosted(), b.Pool.InUseCount);

        // Traffic resumes: every new frame arrives once and intact (frames queued before the reset may come first).
        const int New = 200;
        var seen = new bool[New];
        int got = 0;
        var rx = new PacketBuffer[32];
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (got < New)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{got} of {New} frames after the reset");
            if (sent < New) { sent += Send(a, 1000 + sent, New - sent, dst, src); }
            int n = b.Receive(rx);
            for (int i = 0; i < n; i++)
            {
                Assert.True(Vfio.Cli.Tools.Net.TestFrames.TryRead(rx[i].Data, out ulong seq), "a frame was damaged");
                if (seq >= 1000)
                {
                    Assert.False(seen[seq - 1000], $"frame {seq} twice");
                    seen[seq - 1000] = true;
                    got++;
                }
            }
            PacketPool.Free(rx.AsSpan(0, n));
        }
        Assert.True(SpinWait.SpinUntil(() => a.TransmitInFlight() == 0, TimeSpan.FromSeconds(10)));
        Assert.Equal(a.ReceiveBuffersPosted(), a.Pool.InUseCount);
        Assert.Equal(b.ReceiveBuffersPosted(), b.Pool.InUseCount);
    }

    /// <summary>Sends up to <paramref name="count"/> test frames numbered from <paramref name="first"/>; returns how many the ring took.</summary>
    private static long Send(IgbDevice port, long first, long count, byte[] dst, byte[] src)
    {
        var tx = new PacketBuffer[32];
        long sent = 0;
        while (sent < count)
        {
            int n = port.Pool.Allocate(tx.AsSpan(0, (int)Math.Min(tx.Length, count - sent)));
            for (int i = 0; i < n; i++)
            {
                Vfio.Cli.Tools.Net.TestFrames.Write(tx[i].Room, 128, (ulong)(first + sent + i), dst, src);
                tx[i].Length = 128;
            }
            int taken = port.Transmit(tx.AsSpan(0, n));
            PacketPool.Free(tx.AsSpan(taken, n - taken));
            sent += taken;
            if (taken == 0) { break; }
        }
        return sent;
    }

    private static string Tail(string log) => log.Length > 3000 ? log[^3000..] : log;

    /// <summary>RFC 768: a UDP checksum of 0 means none was computed; otherwise the sum with the pseudo header folds to 0.</summary>
    private static bool UdpChecksumGood(ReadOnlySpan<byte> frame)
    {
        var ip = frame.Slice(14, 20);
        int udpLength = BinaryPrimitives.ReadUInt16BigEndian(frame[38..]);
        if (BinaryPrimitives.ReadUInt16BigEndian(frame[40..]) == 0) { return true; }
        var udp = frame.Slice(34, udpLength);
        return IgbTests.Frames.Fold(IgbTests.Frames.Sum(udp) + IgbTests.Frames.Sum(ip[12..20]) + 17u + (uint)udpLength) == 0;
    }

    /// <summary>
    /// dpdk-testpmd on one port, non-interactive with a statistics report every second (without one it would wait
    /// for a key on stdin and exit at once on /dev/null). Ready once the first report is out; SIGINT stops it, and
    /// its "Forward statistics" block at exit has the port's RX and TX packet counts.
    /// </summary>
    private sealed partial class TestpmdRun : IDisposable
    {
        private readonly Process _process;
        private readonly System.Text.StringBuilder _log = new();
        private TestpmdRun(Process process) => _process = process;

        public static TestpmdRun Start(string port, params string[] args)
        {
            Assert.True(File.Exists(Testpmd), $"{Testpmd} is missing: install dpdk-dev and librte-net-e1000-23 on the host (lab/lab.sh bench net igb does)");
            var psi = new ProcessStartInfo(Testpmd)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            foreach (var a in (string[])["-l", "0-1", "-n", "1", "--iova-mode=pa", "--in-memory", "-a", port,
                "-d", Pmd("librte_net_e1000"), "-d", Pmd("librte_mempool_ring"), "--", "--nb-cores=1", "--rxd=512", "--txd=512",
                "--total-num-mbufs=4096", "--stats-period=1", .. args])
            {
                psi.ArgumentList.Add(a);
            }
            var run = new TestpmdRun(Process.Start(psi)!);
            run._process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (run._log) { run._log.AppendLine(e.Data); } } };
            run._process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (run._log) { run._log.AppendLine(e.Data); } } };
            run._process.BeginOutputReadLine();
            run._process.BeginErrorReadLine();
            var clock = Stopwatch.StartNew();
            try
            {
                while (!run.Log.Contains("Port statistics", StringComparison.Ordinal))
                {
                    if (run._process.HasExited) { Assert.Fail($"testpmd exited ({run._process.ExitCode}) before forwarding:\n{Tail(run.Log)}"); }
                    Assert.True(clock.Elapsed < TimeSpan.FromSeconds(180), $"testpmd did not start in 180 s:\n{Tail(run.Log)}");
                    Thread.Sleep(200);
                }
            }
            catch
            {
                // A testpmd left running would hold the port's group (EBUSY) for every later test.
                run.Dispose();
                throw;
            }
            return run;
        }

        private static string Pmd(string name) =>
            File.Exists($"{Pmds}/{name}.so") ? $"{Pmds}/{name}.so" : $"{Pmds}/{name}.so.23";

        private string Log
        {
            get { lock (_log) { return _log.ToString(); } }
        }

        /// <summary>SIGINT, wait for the exit, and the port's packet counts from the last forward statistics.</summary>
        public (long Rx, long Tx, string Log) Stop()
        {
            Lab.Run("kill", "-INT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(_process.WaitForExit(60_000), "testpmd did not exit 60 s after SIGINT");
            _process.WaitForExit();
            string log = Regex.Replace(Log, @"\x1b\[[0-9;]*[A-Za-z]", "");
            int at = log.LastIndexOf("Forward statistics for port", StringComparison.Ordinal);
            Assert.True(at >= 0, $"no forward statistics in testpmd's output:\n{Tail(log)}");
            var block = log[at..];
            long rx = long.Parse(RxPackets().Match(block).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            long tx = long.Parse(TxPackets().Match(block).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            return (rx, tx, log);
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                Lab.Run("kill", "-INT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (!_process.WaitForExit(30_000)) { _process.Kill(); _process.WaitForExit(); }
            }
            _process.Dispose();
        }

        [GeneratedRegex(@"RX-packets:\s*(\d+)")]
        private static partial Regex RxPackets();

        [GeneratedRegex(@"TX-packets:\s*(\d+)")]
        private static partial Regex TxPackets();
    }
}
