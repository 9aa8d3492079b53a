using Vfio.Cli.Tools.Net;
using Vfio.Devices;
using Vfio.Igb;
using Vfio.Igb.Tests;
using Vfio.Net;
using Vfio.Tests.Host;
using Vfio.VirtioNet;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.Cli.Tests;

/// <summary>
/// The port abstraction (src/Vfio.Net) as the tools use it: the forwarder and the generator on a port that is no
/// driver at all (<see cref="FakeNetPort"/>) and on virtio-net over its emulated model, the driver registry's ID
/// matching, RSS as a value, and <c>vfio net fwd|stats</c> with a driver the command does not ship.
/// </summary>
// The net classes run one after the other: both keep cores busy forwarding, and some of NetTests end by a time limit.
[Collection("net")]
public sealed class NetPortTests : IDisposable
{
    // An ID nobody assigns (virtio's vendor, a device ID above the modern range's net entry) for the test's own driver.
    private const ushort FakeDeviceId = 0x10ff;
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Two ports of either kind, wired to each other and receiving into one pool.</summary>
    private sealed class Pair : IDisposable
    {
        private readonly List<IDisposable> _owned = [];

        public Pair(string kind, int queues)
        {
            if (kind == FakeNetPort.Driver)
            {
                Pool = new PacketPool(new EmulatedDma(), 2048, name: "fake ports");
                (A, B) = FakeNetPort.CreatePair(Pool, queues);
                _owned.AddRange([A, B, Pool]);
            }
            else if (kind == IgbDriver.Name)
            {
                // Two fake 82576s on one cable and one DMA space, opened by the registry as the CLI opens them.
                var (a, b) = IgbCable();
                var registry = new NetDriverRegistry { IgbDriver.Registration };
                A = registry.Open(a, new NetPortOptions { QueuePairs = queues, QueueSize = 64 });
                B = registry.Open(b, new NetPortOptions { QueuePairs = queues, QueueSize = 64, Pool = A.Pool });
                Pool = A.Pool;
                _owned.AddRange([B, A, a, b]);
            }
            else
            {
                var (a, b) = EmulatedVirtioNet.CreatePair(maxPairs: queues);
                var registry = new NetDriverRegistry { VirtioNetDriver.Registration };
                A = registry.Open(a, new NetPortOptions { QueuePairs = queues });
                B = registry.Open(b, new NetPortOptions { QueuePairs = queues, Pool = A.Pool });
                Pool = A.Pool;
                _owned.AddRange([B, A, a, b]);
            }
        }

        public INetPort A { get; }
        public INetPort B { get; }
        public PacketPool Pool { get; }

        public void Dispose()
        {
            foreach (var d in _owned) { d.Dispose(); }
        }
    }

    /// <summary>Two fake 82576 ports wired to each other, sharing one DMA space.</summary>
    private static (FakeIgb A, FakeIgb B) IgbCable()
    {
        var dma = new EmulatedDma();
        var a = new FakeIgb([0x52, 0x54, 0x00, 0x00, 0x0c, 0x01], memory: dma, address: "0000:00:0c.0");
        var b = new FakeIgb([0x52, 0x54, 0x00, 0x00, 0x0e, 0x01], memory: dma, address: "0000:00:0e.0");
        a.Peer = b;
        b.Peer = a;
        return (a, b);
    }

    [Theory]
    [InlineData(IgbDriver.Name, 1)]
    [InlineData(IgbDriver.Name, 2)]
    [InlineData(FakeNetPort.Driver, 1)]
    [InlineData(FakeNetPort.Driver, 2)]
    [InlineData(VirtioNetDriver.Name, 1)]
    [InlineData(VirtioNetDriver.Name, 2)]
    public void The_forwarder_runs_unchanged_on_any_port(string kind, int queues)
    {
        using var pair = new Pair(kind, queues);
        Assert.Equal(kind, pair.A.DriverName);
        Assert.Equal(queues, pair.A.QueuePairCount);

        var r = IoForwarder.Run(pair.A, pair.B, TimeSpan.FromMilliseconds(200), burst: 16, queues: queues, cancellationToken: Ct);

        Assert.True(r.AToB > 0 && r.BToA > 0, $"{r}");
        Assert.Equal(0, r.Dropped);
        var a = pair.A.GetStats();
        var b = pair.B.GetStats();
        // What A took for transmission B received, or still holds on the wire / in its ring; nothing is made up.
        Assert.True(a.Tx.Packets >= b.Rx.Packets && b.Tx.Packets >= a.Rx.Packets, $"{a} {b}");
        Assert.Equal(r.AToB, b.Tx.Packets - queues * 16);   // B sent what it forwarded plus its tx-first bursts
        Assert.Equal(queues, a.Queues.Count);
        Assert.Equal(a.Rx.Packets, a.Queues.Sum(q => q.Rx.Packets));
        Assert.Equal(a.Tx.Bytes, a.Queues.Sum(q => q.Tx.Bytes));
        Assert.All(a.Queues, q => Assert.Equal(64 * q.Tx.Packets, q.Tx.Bytes));   // every frame is a 64-byte tx-first frame
        if (kind == FakeNetPort.Driver)
        {
            // The fake keeps its wires apart, so every queue pair carried its own circulating burst.
            Assert.All(a.Queues, q => Assert.True(q.Rx.Packets > 0 && q.Tx.Packets > 0, $"{q}"));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Igb_ports_forward_through_the_registry_and_every_buffer_comes_back_once(int queues)
    {
        var (devA, devB) = IgbCable();
        // The application's pool, so it outlives both ports and can be counted after they close.
        using var pool = new PacketPool(devA.Memory, IgbDriver.PoolSizeFor(queues, 64), IgbDevice.ReceiveBufferSize + PacketPool.Headroom, "igb pair");
        var a = NetDrivers.Default.Open(devA, new NetPortOptions { QueuePairs = queues, QueueSize = 64, Pool = pool });
        var b = NetDrivers.Default.Open(devB, new NetPortOptions { QueuePairs = queues, QueueSize = 64, Pool = pool });
        Assert.Equal((IgbDriver.Name, IgbDriver.Name), (a.DriverName, b.DriverName));
        Assert.Equal(new NetLinkState(true, 1000, true), a.Link);
        Assert.Equal("525400000C01", a.MacAddress!.ToString());
        Assert.Equal(queues > 1, a.Rss.IsSupported);
        // Opened promiscuous, as testpmd opens its ports: forwarded frames keep the other port's MAC.
        Assert.Equal(IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous, devA[IgbReg.Rctl] & (IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous));

        // With two queues, UDP frames of 8 flows, which RSS spreads over both receive queues of each port.
        var r = IoForwarder.Run(a, b, TimeSpan.FromMilliseconds(200), burst: 16, queues: queues, cancellationToken: Ct, flows: queues > 1 ? 8 : 0);

        Assert.True(r.AToB > 0 && r.BToA > 0, $"{r}");
        var sa = a.GetStats();
        var sb = b.GetStats();
        Assert.Equal(queues, sa.Queues.Count);
        // The cable loses nothing it was given while the receiving ring had room; what B received A sent.
        Assert.True(sa.Tx.Packets >= sb.Rx.Packets && sb.Tx.Packets >= sa.Rx.Packets, $"{sa} {sb}");
        Assert.Equal(r.AToB, sb.Tx.Packets - queues * 16);
        Assert.Equal(sa.Rx.Packets, sa.Queues.Sum(q => q.Rx.Packets));
        Assert.All(sa.Queues.Concat(sb.Queues), q => Assert.True(q.Rx.Packets > 0, $"{q}"));
        b.Dispose();
        a.Dispose();
        // Every buffer came back exactly once (a second return would have thrown PacketPoolDoubleFreeException).
        Assert.Equal(pool.Capacity, pool.FreeCount);
    }

    [Fact]
    public void Igb_rss_through_the_port_spreads_flows_and_reports_hash_and_checksum_flags()
    {
        var (devA, devB) = IgbCable();
        devA.Peer = null;   // frames are delivered by the test
        using var port = NetDrivers.Default.Open(devA, new NetPortOptions { QueuePairs = 2, QueueSize = 64 });
        var rss = port.Rss;
        Assert.Equal(new NetRssCapability(true, 40, 128, "toeplitz"), rss);
        var table = new ushort[128];
        // Every bucket to queue 1 but the even ones: a table the default round-robin one is not.
        for (int i = 0; i < table.Length; i++) { table[i] = (ushort)(i % 4 == 0 ? 0 : 1); }
        Assert.Equal(NetRssResult.BadQueue, port.ConfigureRss(IgbRssConfiguration.VerificationKey, [.. table.Select(_ => (ushort)2)]));
        Assert.Equal(NetRssResult.BadKeySize, port.ConfigureRss(new byte[16], table));
        Assert.Equal(NetRssResult.Applied, port.ConfigureRss(IgbRssConfiguration.VerificationKey, table));

        var expected = new int[2];
        for (ushort flow = 0; flow < 64; flow++)
        {
            var frame = Frames.Udp(devA.Mac, "169.254.0.1", "169.254.0.2", (ushort)(1000 + flow), 4791);
            uint hash = ToeplitzHash.ComputeFlow(IgbRssConfiguration.VerificationKey, System.Net.IPAddress.Parse("169.254.0.1"), System.Net.IPAddress.Parse("169.254.0.2"), (ushort)(1000 + flow), 4791);
            expected[table[hash & 127]]++;
            // The IPCS/L4I status bits the device sets when it checked both checksums and found them right.
            Assert.True(devA.Deliver(frame, extraStatus: (1UL << 6) | (1UL << 5)));
        }
        Assert.True(expected[0] > 0 && expected[1] > 0, "the flows chosen must hit both queues");
        var got = new PacketBuffer[64];
        for (int q = 0; q < 2; q++)
        {
            int n = port.RxBurst(q, got);
            Assert.Equal(expected[q], n);
            foreach (var p in got[..n])
            {
                Assert.Equal(PacketFlags.IpChecksumGood | PacketFlags.L4ChecksumGood | PacketFlags.RssHash, p.Flags);
                Assert.Equal(q, table[p.RssHash & 127]);
                p.Free();
            }
        }
        var s = port.GetStats();
        Assert.Equal(expected[0], s.Queues[0].Rx.Packets);
        Assert.Equal(expected[1], s.Queues[1].Rx.Packets);
        devA.Dispose();
        devB.Dispose();
    }

    [Fact]
    public void One_forwarder_loop_runs_between_ports_of_different_drivers()
    {
        // A ring through two drivers: virtio-net A -> hub -> virtio-net B -> fake F2 -> wire -> fake F1 -> A, and back.
        // Two forwarders, (A, F1) and (B, F2), take turns on this thread, so one pool serves all four ports.
        var (devA, devB) = EmulatedVirtioNet.CreatePair();
        var pool = new PacketPool(devA.EmulatedDma!, 2048, name: "mixed ring");
        var registry = new NetDriverRegistry { VirtioNetDriver.Registration };
        var a = registry.Open(devA, new NetPortOptions { Pool = pool });
        var b = registry.Open(devB, new NetPortOptions { Pool = pool });
        var (f1, f2) = FakeNetPort.CreatePair(pool);
        long virtioToFake = 0, fakeToVirtio = 0;
        for (int turn = 0; turn < 40; turn++)
        {
            var left = IoForwarder.Run(a, f1, TimeSpan.FromMilliseconds(5), burst: 16, txFirst: turn == 0, cancellationToken: Ct);
            var right = IoForwarder.Run(b, f2, TimeSpan.FromMilliseconds(5), burst: 16, txFirst: false, cancellationToken: Ct);
            virtioToFake += left.AToB + right.AToB;
            fakeToVirtio += left.BToA + right.BToA;
            Assert.Equal(0, left.Dropped + right.Dropped);
        }

        Assert.True(virtioToFake > 32 && fakeToVirtio > 32, $"virtio->fake {virtioToFake}, fake->virtio {fakeToVirtio}");
        Assert.True(f1.GetStats().Rx.Packets > 0 && f2.GetStats().Rx.Packets > 0);
        foreach (var p in f1.Waiting(0).Concat(f2.Waiting(0)))
        {
            Assert.True(TestFrames.TryRead(p.Data, out _), "a frame changed on the way");
        }
        f1.Dispose();
        f2.Dispose();
        b.Dispose();
        a.Dispose();
        // Every buffer came back exactly once (a second return would have thrown PacketPoolDoubleFreeException).
        Assert.Equal(pool.Capacity, pool.FreeCount);
        pool.Dispose();
        devA.Dispose();
        devB.Dispose();
    }

    [Fact]
    public void What_the_other_port_refuses_is_counted_and_freed_once()
    {
        var pool = new PacketPool(new EmulatedDma(), 256);
        var (a, b) = FakeNetPort.CreatePair(pool, wireCapacity: 8);
        // 16 per tx-first burst, of which the wire takes 8; the loop then moves 8 at a time each way.
        var r = IoForwarder.Run(a, b, TimeSpan.FromMilliseconds(100), burst: 16, cancellationToken: Ct);

        Assert.True(r.Forwarded > 0, $"{r}");
        Assert.Equal(16, pool.InUseCount);   // the two wires' 8 each; the refused tx-first frames went back
        foreach (var p in a.Waiting(0).Concat(b.Waiting(0)))
        {
            Assert.True(TestFrames.TryRead(p.Data, out _), "a forwarded frame changed");
        }
        a.Dispose();
        b.Dispose();
        Assert.Equal(pool.Capacity, pool.FreeCount);
        pool.Dispose();
    }

    [Fact]
    public void The_generator_sends_on_the_queue_it_is_given()
    {
        using var pool = new PacketPool(new EmulatedDma(), 512);
        var (a, b) = FakeNetPort.CreatePair(pool, queues: 2, wireCapacity: 1000);
        var r = PacketGenerator.Send(a, 100, 128, burst: 8, queue: 1, cancellationToken: Ct);

        Assert.Equal(100, r.Sent);
        Assert.Empty(b.Waiting(0));
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (ulong)i),
            b.Waiting(1).Select(p => TestFrames.TryRead(p.Data, out ulong s) ? s : ulong.MaxValue));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketGenerator.Send(a, 1, 64, queue: 2, cancellationToken: Ct));
        b.Dispose();
        a.Dispose();
    }

    [Fact]
    public void The_net_meter_reads_the_ports_counters_through_the_Vfio_Net_meter_while_they_are_tracked()
    {
        using var pool = new PacketPool(new EmulatedDma(), 512);
        var (a, b) = FakeNetPort.CreatePair(pool, queues: 2, wireCapacity: 1000);
        using var meter = new NetMeter();
        using (NetTelemetry.Track(a))
        using (NetTelemetry.Track(b))
        using (NetTelemetry.Track(a))    // a second registration counts the port once
        {
            PacketGenerator.Send(a, 40, 128, burst: 8, queue: 1, cancellationToken: Ct);
            PacketGenerator.Send(a, 2, 64, burst: 8, queue: 0, cancellationToken: Ct);
            var r = meter.Read();
            Assert.Equal(42, r.Transmitted(a));
            Assert.Equal(a.GetStats().Tx.Packets, r.Transmitted(a));
            Assert.Equal(b.GetStats().Rx.Packets, r.Received(b));
            Assert.Equal(0, r.Transmitted(b));
        }
        Assert.Equal(0, meter.Read().Transmitted(a));
        b.Dispose();
        a.Dispose();
    }

    [Fact]
    public void The_registry_picks_the_driver_by_vendor_and_device_id()
    {
        var fake = new NetDriver("fake", [new PciId(0x1af4, FakeDeviceId)], (_, _) => throw new InvalidOperationException("not opened here"));
        var registry = new NetDriverRegistry { VirtioNetDriver.Registration, fake };

        Assert.Same(VirtioNetDriver.Registration, registry.Find(new PciId(0x1af4, 0x1041)));
        Assert.Same(VirtioNetDriver.Registration, registry.Find(new PciId(0x1af4, 0x1000)));
        Assert.Same(fake, registry.Find(new PciId(0x1af4, FakeDeviceId)));
        Assert.Null(registry.Find(new PciId(0x8086, 0x10c9)));
        // The command's own table: the 82576 PF is igb's; its virtual function and the SerDes/fibre parts nobody's.
        Assert.Same(IgbDriver.Registration, NetDrivers.Default.Find(new PciId(0x8086, 0x10c9)));
        Assert.Same(IgbDriver.Registration, NetDrivers.Default.Find(new PciId(0x8086, 0x1526)));
        Assert.Null(NetDrivers.Default.Find(new PciId(0x8086, 0x10ca)));
        Assert.Null(NetDrivers.Default.Find(new PciId(0x8086, 0x10e7)));
        Assert.Equal("1af4:1041", new PciId(0x1af4, 0x1041).ToString());
        // Two drivers claiming one ID would make the choice depend on registration order: refused.
        var clash = new NetDriver("other", [new PciId(0x1af4, 0x1041)], fake.Open);
        Assert.Throws<ArgumentException>(() => registry.Add(clash));
        Assert.Equal(2, registry.Drivers.Count);
    }

    [Fact]
    public void An_unknown_id_is_a_named_exception_and_a_transitional_virtio_net_gets_the_drivers_reason()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        using (a)
        using (b)
        {
            a.OverrideConfig16(2, 0x1234);
            var e = Assert.Throws<NoNetDriverException>(() => NetDrivers.Default.Open(a));
            Assert.Equal(new PciId(0x1af4, 0x1234), e.Id);
            Assert.Equal(a.Address, e.Device);
            Assert.Contains("no NIC driver for PCI ID 1af4:1234 (drivers: virtio-net (1af4:1041, 1af4:1000), igb (8086:10c9, 8086:10e8, 8086:1526, 8086:150a))", e.Message, StringComparison.Ordinal);

            b.OverrideConfig16(2, 0x1000);
            var v = Assert.Throws<VirtioNetException>(() => NetDrivers.Default.Open(b));
            Assert.Contains("disable-legacy=on", v.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Rss_not_supported_is_a_value_and_a_supporting_port_checks_key_and_table()
    {
        using var pair = new Pair(VirtioNetDriver.Name, 1);
        Assert.False(pair.A.Rss.IsSupported);
        Assert.Equal(NetRssResult.NotSupported, pair.A.ConfigureRss(new byte[40], new ushort[128]));

        using var pool = new PacketPool(new EmulatedDma(), 8);
        using var fake = new FakeNetPort(PciAddress.Parse("0000:00:0c.0"), pool, queues: 2);
        Assert.Equal(NetRssResult.BadKeySize, fake.ConfigureRss(new byte[16], new ushort[128]));
        Assert.Equal(NetRssResult.BadTableSize, fake.ConfigureRss(new byte[40], new ushort[64]));
        var table = new ushort[128];
        table[5] = 2;
        Assert.Equal(NetRssResult.BadQueue, fake.ConfigureRss(new byte[40], table));
        Assert.Empty(fake.RssTable.ToArray());
        table[5] = 1;
        Assert.Equal(NetRssResult.Applied, fake.ConfigureRss(new byte[40], table));
        Assert.Equal(1, fake.RssTable[5]);
    }

    [Fact]
    public void Virtio_net_counts_per_queue_pair_and_reports_its_link_through_the_port()
    {
        using var pair = new Pair(VirtioNetDriver.Name, 2);
        var frames = new PacketBuffer[10];
        Assert.Equal(10, pair.Pool.Allocate(frames));
        foreach (var f in frames) { f.Length = 60; }
        Assert.Equal(10, pair.A.TxBurst(1, frames));
        Assert.True(pair.A.Link.IsUp);
        Assert.Null(pair.A.Link.SpeedMbps);
        var s = pair.A.GetStats();
        Assert.Equal(new NetCounters(10, 600, 0, 0), s.Queues[1].Tx);
        Assert.Equal(default, s.Queues[0].Tx);
        Assert.Equal(s.Queues[1].Tx, s.Tx);
    }

    // ------------------------------------------------------------------------------------------------ the command

    /// <summary>A registry with virtio-net and the fake driver, whose second port wires itself to the first.</summary>
    private static NetDriverRegistry WithFakeDriver(List<FakeNetPort> opened)
    {
        var fake = new NetDriver(FakeNetPort.Driver, [new PciId(0x1af4, FakeDeviceId)], (device, options) =>
        {
            var pool = options.Pool ?? new PacketPool(new EmulatedDma(), 1024, name: "fake");
            var port = new FakeNetPort(device.Address, pool, options.QueuePairs, last: (byte)(opened.Count + 1));
            if (opened.Count == 1) { port.Peer = opened[0]; opened[0].Peer = port; }
            opened.Add(port);
            return port;
        });
        return new NetDriverRegistry { VirtioNetDriver.Registration, fake };
    }

    [Fact]
    public void Fwd_forwards_between_ports_of_a_driver_the_command_learnt_by_one_registration()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        a.OverrideConfig16(2, FakeDeviceId);
        b.OverrideConfig16(2, FakeDeviceId);
        var opened = new List<FakeNetPort>();
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b, NetDrivers = WithFakeDriver(opened) };
        var r = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.2", "--queues", "3", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        var d = Json.Parse(r.Out);
        Assert.Equal(3, d.GetProperty("queuePairs").GetInt32());
        Assert.All(opened, p => Assert.All(p.GetStats().Queues, q => Assert.True(q.Rx.Packets > 0, $"{q}")));
        Assert.Equal("fake", d.GetProperty("driverA").GetString());
        Assert.Equal("fake", d.GetProperty("driverB").GetString());
        Assert.True(d.GetProperty("aToB").GetInt64() > 0 && d.GetProperty("bToA").GetInt64() > 0, r.Out);
        Assert.All(opened, p => Assert.True(p.IsDisposed));
        Assert.Equal(opened[0].Pool.Capacity, opened[0].Pool.FreeCount);
    }

    [Fact]
    public void Stats_and_fwd_open_an_82576_by_its_id_with_the_shipped_drivers()
    {
        var (a, b) = IgbCable();
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b };
        var stats = cli.Run("net", "stats", a.Address.ToString(), "-t", "0.05", "--json").AssertNoStackTrace();
        Assert.True(stats.ExitCode == ExitCodes.Ok, $"exit {stats.ExitCode}: {stats.Out}{stats.Err}");
        var d = Json.Parse(stats.Out);
        Assert.Equal("igb", d.GetProperty("driver").GetString());
        Assert.Equal("52:54:00:00:0c:01", d.GetProperty("mac").GetString());
        Assert.True(d.GetProperty("linkUp").GetBoolean());
        Assert.Equal(1000, d.GetProperty("speedMbps").GetInt32());
        Assert.False(d.GetProperty("rss").GetProperty("supported").GetBoolean());

        var fwd = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.2", "--queues", "2", "--flows", "16", "--json").AssertNoStackTrace();
        Assert.True(fwd.ExitCode == ExitCodes.Ok, $"exit {fwd.ExitCode}: {fwd.Out}{fwd.Err}");
        var f = Json.Parse(fwd.Out);
        Assert.Equal(("igb", "igb"), (f.GetProperty("driverA").GetString(), f.GetProperty("driverB").GetString()));
        Assert.Equal(2, f.GetProperty("queuePairs").GetInt32());
        Assert.True(f.GetProperty("aToB").GetInt64() > 0 && f.GetProperty("bToA").GetInt64() > 0, fwd.Out);
    }

    [Fact]
    public void Fwd_fails_when_one_direction_forwarded_nothing()
    {
        var (a, b) = IgbCable();
        b.Peer = null;   // a one-way cable: what B sends never reaches A
        var cli = new CliRunner(_fs) { OpenDevice = (address, _) => address == a.Address ? a : b };
        var fwd = cli.Run("net", "fwd", a.Address.ToString(), b.Address.ToString(), "-t", "0.2", "--json").AssertNoStackTrace();
        Assert.True(fwd.ExitCode == ExitCodes.DeviceOrHost, $"exit {fwd.ExitCode}: {fwd.Out}{fwd.Err}");
        var f = Json.Parse(fwd.Out);
        // A receives nothing, so nothing goes from A's receive queue out of B; what A sends, B forwards back.
        Assert.Equal(0, f.GetProperty("aToB").GetInt64());
        Assert.True(f.GetProperty("bToA").GetInt64() > 0, fwd.Out);
        string line = Assert.Single(fwd.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"vfio: nothing was forwarded from {a.Address} to {b.Address}", line, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_device_is_one_line_and_exit_2()
    {
        var (a, _) = EmulatedVirtioNet.CreatePair();
        a.OverrideConfig16(2, 0x1234);
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
        foreach (var args in new[] { new[] { "net", "stats", a.Address.ToString() }, ["net", "pktgen", a.Address.ToString(), "-n", "1"] })
        {
            var r = cli.Run(args).AssertNoStackTrace();
            Assert.True(r.ExitCode == ExitCodes.DeviceOrHost, $"exit {r.ExitCode}: {r.Out}{r.Err}");
            string line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith($"vfio: {a.Address}: no NIC driver for PCI ID 1af4:1234", line, StringComparison.Ordinal);
        }
        var json = cli.Run("net", "fwd", a.Address.ToString(), "0000:00:08.0", "--json").AssertNoStackTrace();
        var e = Json.Parse(json.Out).GetProperty("error");
        Assert.Equal(ExitCodes.DeviceOrHost, e.GetProperty("exitCode").GetInt32());
        Assert.Equal("NoNetDriver", e.GetProperty("kind").GetString());
        Assert.Equal(a.Address.ToString(), e.GetProperty("device").GetString());
    }

    [Fact]
    public void Stats_json_counts_what_arrived_on_the_port()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair();
        using var peer = VirtioNetDevice.Open(b);
        // The real driver, and once port A is up (its receive buffers posted) the peer sends it 20 frames.
        var sent = default(PacketGeneratorResult);
        var virtio = VirtioNetDriver.Registration;
        var registry = new NetDriverRegistry
        {
            virtio with
            {
                Open = (device, options) =>
                {
                    var port = virtio.Open(device, options);
                    sent = PacketGenerator.Send(peer, 20, 100, maxDuration: TimeSpan.FromSeconds(5), cancellationToken: Ct);
                    return port;
                },
            },
        };
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a, NetDrivers = registry };
        var r = cli.Run("net", "stats", a.Address.ToString(), "--seconds", "0.2", "--json").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.Equal(20, sent.Sent);
        var d = Json.Parse(r.Out);
        Assert.Equal("virtio-net", d.GetProperty("driver").GetString());
        Assert.Equal("52:54:00:00:00:01", d.GetProperty("mac").GetString());
        Assert.True(d.GetProperty("linkUp").GetBoolean());
        Assert.Equal(1, d.GetProperty("queuePairs").GetInt32());
        Assert.False(d.GetProperty("rss").GetProperty("supported").GetBoolean());
        Assert.Equal(sent.Sent, d.GetProperty("rx").GetProperty("packets").GetInt64());
        Assert.Equal(sent.Sent * 100, d.GetProperty("rx").GetProperty("bytes").GetInt64());
        var q = Assert.Single(d.GetProperty("queues").EnumerateArray());
        Assert.Equal(sent.Sent, q.GetProperty("rx").GetProperty("packets").GetInt64());
    }

    [Fact]
    public void Stats_prints_the_port_and_a_counter_table()
    {
        var (a, _) = EmulatedVirtioNet.CreatePair();
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
        var r = cli.Run("net", "stats", a.Address.ToString(), "-t", "0.05").AssertNoStackTrace();

        Assert.True(r.ExitCode == ExitCodes.Ok, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.Contains($"{a.Address} (", r.Out, StringComparison.Ordinal);
        Assert.Contains("virtio-net, MAC 52:54:00:00:00:01, link up, 1 queue pair(s), RSS not supported", r.Out, StringComparison.Ordinal);
        Assert.Contains("RX packets", r.Out, StringComparison.Ordinal);
        Assert.Contains("total", r.Out, StringComparison.Ordinal);
    }

    [Fact]
    public void Stats_configures_rss_and_refuses_a_table_or_key_the_port_does_not_take_with_one_line_and_exit_2()
    {
        var (a, _) = EmulatedVirtioNet.CreatePair(maxPairs: 2);
        a.OfferedFeatures |= Vfio.Spec.Virtio.VirtioFeatures.NetRss;
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => a };
        var ok = cli.Run("net", "stats", a.Address.ToString(), "--queues", "2", "--rss-table", "128", "-t", "0.05", "--json").AssertNoStackTrace();
        Assert.True(ok.ExitCode == ExitCodes.Ok, $"exit {ok.ExitCode}: {ok.Out}{ok.Err}");
        var rss = Json.Parse(ok.Out).GetProperty("rss");
        Assert.True(rss.GetProperty("supported").GetBoolean());
        Assert.Equal(128, rss.GetProperty("tableSize").GetInt32());
        foreach (var (args, said) in new[]
        {
            (new[] { "--rss-table", "64" }, "--rss-table 64, but the RSS table of"),
            (["--rss-table", "128", "--rss-key", "00112233"], "--rss-key is 4 bytes, but"),
        })
        {
            var r = cli.Run(["net", "stats", a.Address.ToString(), "--queues", "2", "-t", "0.05", .. args]).AssertNoStackTrace();
            Assert.True(r.ExitCode == ExitCodes.Usage, $"exit {r.ExitCode}: {r.Out}{r.Err}");
            Assert.Contains(said, r.Err, StringComparison.Ordinal);
        }
        var (plain, _) = EmulatedVirtioNet.CreatePair();
        var none = new CliRunner(_fs) { OpenDevice = (_, _) => plain }.Run("net", "stats", plain.Address.ToString(), "--rss-table", "128", "-t", "0.05").AssertNoStackTrace();
        Assert.True(none.ExitCode == ExitCodes.Usage, $"exit {none.ExitCode}: {none.Out}{none.Err}");
        Assert.Contains("offers no RSS", none.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0000:00:04.0 --queues 0")]
    [InlineData("0000:00:04.0 --queues 65")]
    [InlineData("0000:00:04.0 --seconds 0")]
    [InlineData("0000:00:04.0 --burst 0")]
    [InlineData("0000:00:04.0 --rss-table 0")]
    [InlineData("0000:00:04.0 --rss-table 128 --rss-key 0g")]
    [InlineData("00:zz.0")]
    public void Stats_bad_arguments_are_usage_errors(string args)
    {
        int opens = 0;
        var cli = new CliRunner(_fs) { OpenDevice = (_, _) => { opens++; throw new InvalidOperationException("must not open"); } };
        var r = cli.Run(["net", "stats", .. args.Split(' ', StringSplitOptions.RemoveEmptyEntries)]).AssertNoStackTrace();
        Assert.True(r.ExitCode == ExitCodes.Usage, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.Equal(0, opens);
    }
}
