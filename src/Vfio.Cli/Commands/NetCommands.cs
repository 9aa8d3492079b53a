using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Cli.Tools.Net;
using Vfio.Devices;
using Vfio.Kernel;
using Vfio.Net;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio net pktgen|fwd|stats</c>: NIC ports bound to vfio-pci, each opened by the driver its PCI ID selects
/// (<see cref="NetDrivers"/>) and driven through <see cref="INetPort"/> only. Thin front ends over
/// <see cref="PacketGenerator"/> and <see cref="IoForwarder"/>; two ports share one VFIO container (and one packet
/// pool), as testpmd's ports share one mempool.
/// </summary>
internal static class NetCommands
{
    /// <summary>Largest burst accepted.</summary>
    internal const int MaxBurst = 512;

    /// <summary>Longest forwarding run accepted, in seconds.</summary>
    internal const double MaxSeconds = 86_400;

    /// <summary>How long <c>fwd</c> forwards without <c>--seconds</c>.</summary>
    private const double DefaultFwdSeconds = 10;

    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var allowNoIommu = Arguments.AllowNoIommu(recursive: true);
        var net = new Command("net",
            "Drive NIC ports bound to vfio-pci with this project's userspace drivers (picked by PCI ID: "
            + string.Join(", ", NetDrivers.Default.Drivers) + "): send test frames, forward between two ports, count what arrives")
        {
            allowNoIommu,
        };
        net.Subcommands.Add(CreatePktgen(context, allowNoIommu));
        net.Subcommands.Add(CreateFwd(context, allowNoIommu));
        net.Subcommands.Add(CreateStats(context, allowNoIommu));
        NetTapCommands.AddTo(net, context, allowNoIommu);
        return net;
    }

    private static Option<int> BurstOption()
    {
        var burst = new Option<int>("--burst", "-b") { Description = "Packets per burst", DefaultValueFactory = _ => 32, HelpName = "N" };
        burst.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < 1 or > MaxBurst) { r.AddError($"--burst must be 1 to {MaxBurst}"); }
        });
        return burst;
    }

    private static Option<int> QueuesOption(string description)
    {
        var queues = new Option<int>("--queues", "-q") { Description = description, DefaultValueFactory = _ => 1, HelpName = "N" };
        queues.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < 1 or > MaxQueues) { r.AddError($"--queues must be 1 to {MaxQueues}"); }
        });
        return queues;
    }

    private static Option<double> SecondsOption(double defaultSeconds, string description)
    {
        var seconds = new Option<double>("--seconds", "-t") { Description = description, DefaultValueFactory = _ => defaultSeconds, HelpName = "SECONDS" };
        seconds.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out double v) && !(v > 0 && v <= MaxSeconds)) { r.AddError($"--seconds must be more than 0 and at most {MaxSeconds:0}"); }
        });
        return seconds;
    }

    // ------------------------------------------------------------------------------------------------ pktgen

    private static Command CreatePktgen(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        var port = Arguments.Bdf("PORT");
        var count = new Option<long>("--count", "-n") { Description = "Frames to send", DefaultValueFactory = _ => 10_000, HelpName = "N" };
        count.Validators.Add(r => { if (Arguments.TryGet(r, out long v) && v < 1) { r.AddError("--count must be 1 or more"); } });
        var size = new Option<int>("--size", "-s") { Description = "Frame size in bytes (without the FCS)", DefaultValueFactory = _ => 64, HelpName = "BYTES" };
        size.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < TestFrames.MinSize or > TestFrames.MaxSize)
            {
                r.AddError($"--size must be {TestFrames.MinSize} to {TestFrames.MaxSize}");
            }
        });
        var burst = BurstOption();
        var seconds = SecondsOption(30, "The most time to take: the run ends then even if not every frame was sent (a peer that does not drain stops the link)");
        var linger = new Option<int>("--linger")
        {
            Description = "Milliseconds the port stays up after the device reported the last frame sent, before closing resets it: "
                + "frames may still wait beyond the device (a switch, QEMU's hub queue while the peer's ring is full), and a reset of the sending port drops what QEMU holds",
            DefaultValueFactory = _ => 100,
            HelpName = "MS",
        };
        linger.Validators.Add(r => { if (Arguments.TryGet(r, out int v) && v is < 0 or > 60_000) { r.AddError("--linger must be 0 to 60000"); } });
        var command = new Command("pktgen", "Send numbered test frames (broadcast, EtherType 0x88B5) on one port") { port, count, size, burst, seconds, linger };
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            long n = parse.GetValue(count);
            int bytes = parse.GetValue(size), b = parse.GetValue(burst);
            using var device = Open(ctx, parse.GetValue(port), parse.GetValue(allowNoIommu), null);
            using var netDevice = OpenPort(ctx, device, null);
            if (bytes > netDevice.Pool.DataRoom)
            {
                throw new CliException(string.Create(CultureInfo.InvariantCulture,
                    $"--size {bytes} is larger than the port's packet buffers ({netDevice.Pool.DataRoom} bytes)"), ExitCodes.Usage, "Usage");
            }
            var limit = TimeSpan.FromSeconds(parse.GetValue(seconds));
            var result = PacketGenerator.Send(netDevice, n, bytes, b, maxDuration: limit);
            bool complete = result.Sent == n && result.InFlight == 0;
            // Not counted in the rate: the frames are out of the device's ring; this only keeps the port from being reset under them.
            Thread.Sleep(parse.GetValue(linger));
            var doc = new NetPktgenJson(
                Port: device.Address.ToString(),
                Mode: InfoCommand.ModeName(device.Backend),
                DmaIsolated: device.IsDmaIsolated,
                Mac: netDevice.MacAddress is { } mac ? FormatMac(mac.GetAddressBytes()) : null,
                Requested: n,
                Sent: result.Sent - result.InFlight,
                Complete: complete,
                FrameSize: bytes,
                Burst: b,
                Seconds: Math.Round(result.Elapsed.TotalSeconds, 3),
                Mpps: Math.Round(result.Mpps, 4),
                Driver: netDevice.DriverName);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NetPktgenJson); }
            else
            {
                ctx.Say(string.Create(CultureInfo.InvariantCulture,
                    $"{doc.Port} ({doc.Mode}): sent {doc.Sent:N0} of {doc.Requested:N0} frames of {doc.FrameSize} bytes in {doc.Seconds:F2} s, {doc.Mpps:F3} Mpps"));
            }
            if (!complete)
            {
                ctx.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"vfio: only {doc.Sent} of {n} frames were sent in {limit.TotalSeconds:0.###} s (is the link up, and does the other end take frames?)"));
                return ExitCodes.DeviceOrHost;
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    // ------------------------------------------------------------------------------------------------ fwd

    private static Command CreateFwd(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        var portA = Arguments.Bdf("PORT_A");
        var portB = Arguments.Bdf("PORT_B");
        var seconds = SecondsOption(DefaultFwdSeconds, "How long to forward");
        var burst = BurstOption();
        var warmup = new Option<double?>("--warmup")
        {
            Description = "Seconds at the start left out of the steady-state rate (default: 1, or a quarter of --seconds when shorter)",
            HelpName = "SECONDS",
        };
        var queues = QueuesOption("Queue pairs per port; queue q of one port feeds queue q of the other (capped at what both ports offer)");
        var flows = new Option<int>("--flows")
        {
            Description = "Make the tx-first frames UDP/IPv4 of N flows (source ports 1024..), which RSS spreads over the receive queues (testpmd --txonly-multi-flow); 0: EtherType 0x88B5 test frames",
            DefaultValueFactory = _ => 0,
            HelpName = "N",
        };
        flows.Validators.Add(r => { if (Arguments.TryGet(r, out int v) && v is < 0 or > 65535 - 1024) { r.AddError("--flows must be 0 to 64511"); } });
        var txFirst = new Option<int>("--tx-first")
        {
            Description = "Bursts each port sends on each queue before forwarding (testpmd's start tx_first N); ring size / burst keeps the rings full",
            DefaultValueFactory = _ => 1,
            HelpName = "N",
        };
        txFirst.Validators.Add(r => { if (Arguments.TryGet(r, out int v) && v is < 1 or > 1024) { r.AddError("--tx-first must be 1 to 1024"); } });
        var pool = new Option<int>("--pool")
        {
            Description = "Packet buffers in the ports' shared pool (testpmd --total-num-mbufs); 0: the driver's default, enough for its rings",
            DefaultValueFactory = _ => 0,
            HelpName = "N",
        };
        pool.Validators.Add(r => { if (Arguments.TryGet(r, out int v) && v is < 0 or > 1 << 20) { r.AddError("--pool must be 0 to 1048576"); } });
        var command = new Command("fwd",
            "io-forward between two ports, both ways, on one thread (testpmd --forward-mode=io --tx-first), and report packets and Mpps")
        {
            portA, portB, seconds, burst, warmup, queues, flows, txFirst, pool,
        };
        command.Validators.Add(r =>
        {
            if (Token(r.GetResult(portA)) is { } ta && Token(r.GetResult(portB)) is { } tb
                && PciAddress.TryParse(ta, out var a) && PciAddress.TryParse(tb, out var b) && a.Equals(b))
            {
                r.AddError("PORT_A and PORT_B must be two different ports");
            }
            // A bad --seconds is reported by its own validator; the warm-up is checked against a good one only.
            if (r.GetResult(warmup) is { } w && Arguments.TryGet(w, out double? given) && given is { } ws)
            {
                double length = DefaultFwdSeconds;
                if (r.GetResult(seconds) is { } sr && !Arguments.TryGet(sr, out length)) { return; }
                if (!(ws >= 0 && ws < length)) { r.AddError("--warmup must be 0 or more and less than --seconds"); }
            }
        });
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            bool noIommu = parse.GetValue(allowNoIommu);
            int b = parse.GetValue(burst);
            var duration = TimeSpan.FromSeconds(parse.GetValue(seconds));
            using var deviceA = Open(ctx, parse.GetValue(portA), noIommu, null);
            using var deviceB = Open(ctx, parse.GetValue(portB), noIommu, deviceA as VfioDevice);
            using var netA = OpenPort(ctx, deviceA, null, parse.GetValue(queues), parse.GetValue(pool));
            // Port B receives into port A's pool as well: what B receives is sent on A and freed there.
            using var netB = OpenPort(ctx, deviceB, netA.Pool, parse.GetValue(queues));
            int pairs = Math.Min(netA.QueuePairCount, netB.QueuePairCount);
            if (!ctx.Json)
            {
                ctx.Say(string.Create(CultureInfo.InvariantCulture,
                    $"fwd {deviceA.Address} ({netA.DriverName}) <-> {deviceB.Address} ({netB.DriverName}), {InfoCommand.ModeName(deviceA.Backend)}, {pairs} queue pair(s), burst {b}, {duration.TotalSeconds:0.#} s"));
                ctx.Output.Flush();
            }
            var warm = TimeSpan.FromSeconds(parse.GetValue(warmup) ?? Math.Min(1, duration.TotalSeconds / 4));
            // The packet counts printed are the "Vfio.Net" meter's: read once the tx-first bursts are out, and at the end.
            using var trackA = NetTelemetry.Track(netA);
            using var trackB = NetTelemetry.Track(netB);
            using var meter = new NetMeter();
            NetReading? before = null;
            long doorbellsBefore = 0;
            var r = IoForwarder.Run(netA, netB, duration, b, warmup: warm, queues: pairs, flows: parse.GetValue(flows), txFirstBursts: parse.GetValue(txFirst),
                loopStarting: () => { before = meter.Read(); doorbellsBefore = netA.GetStats().Doorbells + netB.GetStats().Doorbells; });
            var after = meter.Read();
            // The notifications the loop cost (tx-first's left out, as its packets are): what an emulated device traps on.
            long doorbells = netA.GetStats().Doorbells + netB.GetStats().Doorbells - doorbellsBefore;
            r = r with
            {
                AToB = after.Transmitted(netB) - before!.Transmitted(netB),
                BToA = after.Transmitted(netA) - before.Transmitted(netA),
            };
            var doc = new NetFwdJson(
                PortA: deviceA.Address.ToString(),
                PortB: deviceB.Address.ToString(),
                Mode: InfoCommand.ModeName(deviceA.Backend),
                DmaIsolated: deviceA.IsDmaIsolated && deviceB.IsDmaIsolated,
                Burst: b,
                Seconds: Math.Round(r.Elapsed.TotalSeconds, 3),
                Packets: r.Forwarded,
                AToB: r.AToB,
                BToA: r.BToA,
                Dropped: r.Dropped,
                Mpps: Math.Round(r.Mpps, 4),
                SteadyMpps: Math.Round(r.SteadyMpps, 4),
                Rounds: r.Rounds,
                WarmupSeconds: Math.Round(warm.TotalSeconds, 3),
                DriverA: netA.DriverName,
                DriverB: netB.DriverName,
                QueuePairs: pairs,
                TxFirstPackets: r.TxFirstPackets,
                PoolBuffers: netA.Pool.Capacity,
                Doorbells: doorbells,
                DoorbellsPerPacket: r.Forwarded > 0 ? Math.Round((double)doorbells / r.Forwarded, 4) : 0);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NetFwdJson); }
            else { ShowFwd(ctx, doc); }
            if (r.Forwarded == 0)
            {
                ctx.Error.WriteLine("vfio: no packet was forwarded (is the link between the two ports up?)");
                return ExitCodes.DeviceOrHost;
            }
            // A direction that forwarded nothing is a broken run, whatever the total says (issue 20: a benchmark
            // must not pass with one way stalled).
            if (r.AToB == 0 || r.BToA == 0)
            {
                var (from, to) = r.AToB == 0 ? (deviceA.Address, deviceB.Address) : (deviceB.Address, deviceA.Address);
                ctx.Error.WriteLine($"vfio: nothing was forwarded from {from} to {to} ({r.AToB + r.BToA} packets the other way): one direction of the link is down or stalled");
                return ExitCodes.DeviceOrHost;
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static void ShowFwd(CliContext ctx, NetFwdJson d)
    {
        double perSecond = d.Seconds > 0 ? 1 / d.Seconds / 1e6 : 0;
        var table = Tables.Create(null, "Direction", "Packets", "Mpps");
        table.AddRow(new Text($"{d.PortA} -> {d.PortB}"), new Text(d.AToB.ToString("N0", CultureInfo.InvariantCulture)),
            new Text((d.AToB * perSecond).ToString("F4", CultureInfo.InvariantCulture)));
        table.AddRow(new Text($"{d.PortB} -> {d.PortA}"), new Text(d.BToA.ToString("N0", CultureInfo.InvariantCulture)),
            new Text((d.BToA * perSecond).ToString("F4", CultureInfo.InvariantCulture)));
        table.AddRow(new Text("total"), new Text(d.Packets.ToString("N0", CultureInfo.InvariantCulture)),
            new Text(d.Mpps.ToString("F4", CultureInfo.InvariantCulture)));
        ctx.Console.Write(table);
        ctx.Say(string.Create(CultureInfo.InvariantCulture,
            $"{d.Seconds:F2} s, {d.SteadyMpps:F4} Mpps after warm-up, {d.Dropped:N0} dropped, {d.Rounds:N0} polling rounds, {d.TxFirstPackets:N0} in flight at the start, {d.DoorbellsPerPacket:F4} doorbells per packet"));
    }

    // ------------------------------------------------------------------------------------------------ stats

    private static Command CreateStats(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        var port = Arguments.Bdf("PORT");
        var seconds = SecondsOption(1, "How long to receive (and free) on every queue before the counters are read");
        var queues = QueuesOption("Queue pairs to open and poll (capped at what the port offers)");
        var burst = BurstOption();
        var rssTable = new Option<int?>("--rss-table")
        {
            Description = "Configure RSS first: a redirection table of N entries spreading hash values round-robin over the queues (N must be the port's table size)",
            HelpName = "N",
        };
        rssTable.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int? v) && v is < 1 or > 32768) { r.AddError("--rss-table must be 1 to 32768 entries"); }
        });
        var rssKey = new Option<string?>("--rss-key")
        {
            Description = "The RSS hash key in hex (with --rss-table; default: the 40-byte key of Microsoft's RSS verification suite)",
            HelpName = "HEX",
        };
        rssKey.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out string? hex) && hex is not null && !IsHex(hex)) { r.AddError("--rss-key must be an even number of hex digits"); }
        });
        var command = new Command("stats",
            "Open one port, receive on every queue for a while, and show its driver, MAC, link, RSS and counters (per queue where the driver counts them)")
        {
            port, seconds, queues, burst, rssTable, rssKey,
        };
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            using var device = Open(ctx, parse.GetValue(port), parse.GetValue(allowNoIommu), null);
            using var netPort = OpenPort(ctx, device, null, parse.GetValue(queues));
            if (parse.GetValue(rssTable) is { } entries) { ConfigureRss(netPort, entries, parse.GetValue(rssKey)); }
            var duration = TimeSpan.FromSeconds(parse.GetValue(seconds));
            PortCounter.Drain(netPort, duration, parse.GetValue(burst));
            var stats = netPort.GetStats();
            var link = netPort.Link;
            var rss = netPort.Rss;
            var doc = new NetStatsJson(
                Port: device.Address.ToString(),
                Mode: InfoCommand.ModeName(device.Backend),
                Driver: netPort.DriverName,
                Mac: netPort.MacAddress is { } mac ? FormatMac(mac.GetAddressBytes()) : null,
                LinkUp: link.IsUp,
                SpeedMbps: link.SpeedMbps,
                FullDuplex: link.FullDuplex,
                QueuePairs: netPort.QueuePairCount,
                Rss: new NetRssJson(rss.IsSupported, rss.KeySize, rss.TableSize, rss.Hash),
                Seconds: Math.Round(duration.TotalSeconds, 3),
                Rx: Counters(stats.Rx),
                Tx: Counters(stats.Tx),
                Queues: [.. stats.Queues.Select(q => new NetQueueJson(q.Queue, Counters(q.Rx), Counters(q.Tx)))]);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NetStatsJson); }
            else { ShowStats(ctx, doc); }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static NetCountersJson Counters(NetCounters c) => new(c.Packets, c.Bytes, c.Drops, c.Errors);

    /// <summary>The key <c>--rss-key</c> defaults to: Microsoft's RSS verification key, whose hashes are published.</summary>
    private static readonly byte[] DefaultRssKey = Convert.FromHexString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa");

    private static bool IsHex(string s) => s.Length % 2 == 0 && s.All(char.IsAsciiHexDigit);

    /// <summary>Sets the key and a round-robin table of <paramref name="entries"/>; a value the port does not take is a usage error (exit 2), one line.</summary>
    private static void ConfigureRss(INetPort port, int entries, string? keyHex)
    {
        var key = keyHex is null ? DefaultRssKey : Convert.FromHexString(keyHex);
        var table = new ushort[entries];
        for (int i = 0; i < table.Length; i++) { table[i] = (ushort)(i % port.QueuePairCount); }
        var rss = port.Rss;
        string? problem = port.ConfigureRss(key, table) switch
        {
            NetRssResult.Applied => null,
            NetRssResult.NotSupported => $"{port.Address} ({port.DriverName}) offers no RSS",
            NetRssResult.BadKeySize => string.Create(CultureInfo.InvariantCulture, $"--rss-key is {key.Length} bytes, but {port.Address} takes a {rss.KeySize}-byte key"),
            NetRssResult.BadTableSize => string.Create(CultureInfo.InvariantCulture, $"--rss-table {entries}, but the RSS table of {port.Address} has {rss.TableSize} entries"),
            var other => $"RSS configuration refused: {other}",
        };
        if (problem is not null) { throw new CliException(problem, ExitCodes.Usage, "Usage"); }
    }

    private static void ShowStats(CliContext ctx, NetStatsJson d)
    {
        string link = d.LinkUp ? "up" : "down";
        if (d.SpeedMbps is { } speed) { link += string.Create(CultureInfo.InvariantCulture, $", {speed} Mb/s"); }
        if (d.FullDuplex is { } full) { link += full ? ", full duplex" : ", half duplex"; }
        string rss = d.Rss.Supported
            ? string.Create(CultureInfo.InvariantCulture, $"{d.Rss.Hash}, {d.Rss.KeySize}-byte key, {d.Rss.TableSize}-entry table")
            : "not supported";
        ctx.Say($"{d.Port} ({d.Mode}): {d.Driver}, MAC {d.Mac ?? "none"}, link {link}, {d.QueuePairs} queue pair(s), RSS {rss}");
        var table = Tables.Create(null, "Queue", "RX packets", "RX bytes", "RX drops", "RX errors", "TX packets", "TX bytes", "TX drops", "TX errors");
        foreach (var q in d.Queues) { AddCounters(table, q.Queue.ToString(CultureInfo.InvariantCulture), q.Rx, q.Tx); }
        AddCounters(table, "total", d.Rx, d.Tx);
        ctx.Console.Write(table);
    }

    private static void AddCounters(Table table, string name, NetCountersJson rx, NetCountersJson tx)
    {
        static Text N(long v) => new(v.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow(new Text(name), N(rx.Packets), N(rx.Bytes), N(rx.Drops), N(rx.Errors), N(tx.Packets), N(tx.Bytes), N(tx.Drops), N(tx.Errors));
    }

    // ------------------------------------------------------------------------------------------------ shared

    /// <summary>Most queue pairs <c>--queues</c> accepts (virtio's max_virtqueue_pairs can be far larger; NICs have 8 to 128).</summary>
    internal const int MaxQueues = 64;

    /// <summary>
    /// Opens <paramref name="device"/> with the driver its PCI ID selects; an ID no driver takes is a
    /// <see cref="NoNetDriverException"/>, which the command reports in one line with exit 2.
    /// </summary>
    internal static INetPort OpenPort(CliContext ctx, IPciDevice device, PacketPool? pool, int queues = 1, int poolSize = 0, bool checksumOffload = false,
        bool segmentationOffload = false)
    {
        var registry = ctx.Environment.NetDrivers ?? NetDrivers.Default;
        return registry.Open(device, new NetPortOptions
        {
            LoggerFactory = ctx.LoggerFactory, Pool = pool, QueuePairs = queues, PoolSize = poolSize, ChecksumOffload = checksumOffload,
            SegmentationOffload = segmentationOffload,
        });
    }

    private static string? Token(System.CommandLine.Parsing.ArgumentResult? r) => r is { Tokens.Count: > 0 } ? r.Tokens[0].Value : null;

    private static string FormatMac(byte[] bytes) => string.Join(':', bytes.Select(x => x.ToString("x2", CultureInfo.InvariantCulture)));

    // Port B joins port A's container or IOAS, so buffers of A's pool reach both.
    private static IPciDevice Open(CliContext ctx, PciAddress address, bool allowNoIommu, VfioDevice? shareDmaWith) =>
        ctx.OpenDevice(address, allowNoIommu, shareDmaWith);
}
