using Vfio.Tap;
using Vfio.Net;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Vfio.Cli.Output;
using Vfio.Devices;
using Vfio.VirtioNet;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio net tap|capture</c>: the kernel exception path (a TAP interface bridged to a port driven by this project's
/// driver, <see cref="TapBridge"/>) and a pcap capture of what a port receives (<see cref="PacketCapture"/>), on any port
/// a registered driver takes (<see cref="Vfio.Cli.Tools.Net.NetDrivers"/>: virtio-net, igb), through <see cref="INetPort"/>. Everything
/// that can fail before the port is touched (the capture file, the TAP name) is done first, so that bad input leaves
/// the port as it was.
/// </summary>
internal static class NetTapCommands
{
    private const string DefaultTapName = "vfio0";

    /// <summary>Adds <c>tap</c> and <c>capture</c> to the <c>net</c> command.</summary>
    public static void AddTo(Command net, Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        net.Subcommands.Add(CreateTap(context, allowNoIommu));
        net.Subcommands.Add(CreateCapture(context, allowNoIommu));
    }

    private static Option<double?> Seconds(string description)
    {
        var seconds = new Option<double?>("--seconds", "-t") { Description = description, HelpName = "SECONDS" };
        seconds.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out double? v) && v is { } s && !(s > 0 && s <= NetCommands.MaxSeconds))
            {
                r.AddError($"--seconds must be more than 0 and at most {NetCommands.MaxSeconds:0}");
            }
        });
        return seconds;
    }

    private static Option<int> SnapLength()
    {
        var snap = new Option<int>("--snaplen", "-s")
        {
            Description = "Bytes of each frame kept in the file (frames are copied up to 2048 bytes)",
            DefaultValueFactory = _ => PcapWriter.MaxSnapLength,
            HelpName = "BYTES",
        };
        snap.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < 1 or > PcapWriter.MaxSnapLength) { r.AddError($"--snaplen must be 1 to {PcapWriter.MaxSnapLength}"); }
        });
        return snap;
    }

    private static Option<int> Burst()
    {
        var burst = new Option<int>("--burst", "-b") { Description = "Frames per burst", DefaultValueFactory = _ => 32, HelpName = "N" };
        burst.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < 1 or > NetCommands.MaxBurst) { r.AddError($"--burst must be 1 to {NetCommands.MaxBurst}"); }
        });
        return burst;
    }

    // ------------------------------------------------------------------------------------------------ tap

    /// <summary>The burst of <c>vfio net tap --offload</c> when --burst is not given.</summary>
    private const int OffloadBurst = 128;

    private static Command CreateTap(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        var port = Arguments.BdfOption("--port", "The port (bound to vfio-pci; virtio-net or igb) to give to the kernel");
        var name = new Option<string>("--name") { Description = "The TAP interface's name", DefaultValueFactory = _ => DefaultTapName, HelpName = "IFNAME" };
        name.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out string? v) && v is not null && TapInterface.NameProblem(v) is { } problem) { r.AddError($"--name: {problem}"); }
        });
        var mtu = new Option<int>("--mtu") { Description = "The interface's MTU", DefaultValueFactory = _ => PacketPort.DefaultMtu, HelpName = "BYTES" };
        mtu.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int v) && v is < 68 or > 9000) { r.AddError("--mtu must be 68 to 9000"); }
        });
        var seconds = Seconds("Stop after this long (default: run until Ctrl-C or SIGTERM)");
        var burst = Burst();
        var capture = new Option<string?>("--capture") { Description = "Also write every frame, both ways, to this pcap file", HelpName = "FILE.pcap" };
        var snap = SnapLength();
        var offload = new Option<bool>("--offload")
        {
            Description = "Let the kernel hand over TCP segments of up to 64 KiB and partial checksums (TAP offloads CSUM, TSO4, TSO6), " +
                          "cut into MTU-sized frames and finished here; received TCP segments of one flow are joined into one packet for the kernel (software GRO), " +
                          "with a burst of 128 frames unless --burst says otherwise; when the port's device does TCP segmentation itself " +
                          "(virtio-net HOST_TSO/GUEST_TSO), the segments cross it whole instead",
        };
        var command = new Command("tap",
            "Give a port to the kernel: create a TAP interface with the port's MAC address and MTU and move frames both ways between them (the exception path)")
        {
            port, name, mtu, seconds, burst, capture, snap, offload,
        };
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            string ifname = parse.GetValue(name) ?? DefaultTapName;
            bool offloads = parse.GetValue(offload);
            int m = parse.GetValue(mtu);
            // First what can fail without touching the port: the capture file, then the interface (down until it has
            // the port's address).
            using var pcap = parse.GetValue(capture) is { } path ? OpenCapture(path, parse.GetValue(snap), null) : null;
            using var tap = TapInterface.Create(ifname, up: false,
                offloads: offloads ? TapOffloads.Checksum | TapOffloads.Tso4 | TapOffloads.Tso6 | TapOffloads.TsoEcn : null);
            using var device = ctx.OpenDevice(parse.GetValue(port), parse.GetValue(allowNoIommu));
            // With --offload the port's own checksum and segmentation offloads are asked for too (used when the device offers them).
            using var netPort = NetCommands.OpenPort(ctx, device, pool: null, checksumOffload: offloads, segmentationOffload: offloads);
            if (m + TapInterface.EthernetHeaderSize > netPort.Pool.DataRoom)
            {
                throw new CliException(string.Create(CultureInfo.InvariantCulture,
                    $"--mtu {m} needs {m + TapInterface.EthernetHeaderSize}-byte frames; the port's packet buffers hold {netPort.Pool.DataRoom}"), ExitCodes.Usage, "Usage");
            }
            var packetPort = PacketPort.Of(netPort, mtu: m);
            if (packetPort.MacAddress is { } mac) { tap.SetMacAddress(mac); }
            tap.SetMtu(m);
            tap.SetUp(true);
            string? macText = packetPort.MacAddress is { } a ? FormatMac(a.GetAddressBytes()) : null;
            Ready(ctx, string.Create(CultureInfo.InvariantCulture,
                $"bridging {device.Address} <-> {tap.Name} (MAC {macText ?? "none"}, MTU {m}{(offloads ? ", TSO and checksum offload" : "")}){(pcap is null ? "" : ", capturing to " + parse.GetValue(capture))}; Ctrl-C stops"));
            // With --offload a larger burst by default: the segments of one received burst are what the bridge can join
            // into one packet for the kernel (lab, 2026-12-07: reverse TCP 416-421 Mbit/s at 32, 491 at 64, 592 at 128).
            int frames = parse.GetResult(burst) is { Implicit: false } ? parse.GetValue(burst) : offloads ? OffloadBurst : parse.GetValue(burst);
            using var bridge = new TapBridge(packetPort, tap, new TapBridgeOptions { Burst = frames, Capture = pcap, LoggerFactory = ctx.LoggerFactory });
            var started = Stopwatch.GetTimestamp();
            var stats = RunUntilStopped(parse.GetValue(seconds), token => bridge.Run(token));
            double elapsed = Math.Round(Stopwatch.GetElapsedTime(started).TotalSeconds, 3);
            bridge.Capture = null;
            var captured = pcap is null ? null : CaptureDocument(device.Address, parse.GetValue(capture)!, parse.GetValue(snap), pcap.Complete(), elapsed);
            var doc = new NetTapJson(device.Address.ToString(), tap.Name, macText, m, elapsed, stats.ToKernel, stats.ToKernelDropped,
                stats.FromKernel, stats.FromKernelDropped, captured, offloads, stats.FromKernelSegmented, stats.FromKernelMalformed, stats.ToKernelCoalesced,
                netPort.Offloads == NetOffloads.None ? "none" : netPort.Offloads.ToString(), stats.FromKernelWhole, stats.ToKernelWhole);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NetTapJson); }
            else
            {
                string cut = offloads
                    ? string.Create(CultureInfo.InvariantCulture, $"; {doc.FromKernelSegmented:N0} TCP segments cut, {doc.FromKernelMalformed:N0} frames refused, {doc.ToKernelCoalesced:N0} packets coalesced for the kernel; port offloads: {doc.PortOffloads}, {doc.FromKernelWhole:N0} segments sent whole, {doc.ToKernelWhole:N0} joined packets received")
                    : "";
                ctx.Say(string.Create(CultureInfo.InvariantCulture,
                    $"{doc.Seconds:F2} s: {doc.ToKernel:N0} frames to the kernel ({doc.ToKernelDropped:N0} dropped), {doc.FromKernel:N0} from it ({doc.FromKernelDropped:N0} dropped){cut}"));
                if (captured is not null) { SayCapture(ctx, captured); }
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    // ------------------------------------------------------------------------------------------------ capture

    private static Command CreateCapture(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu)
    {
        var port = Arguments.BdfOption("--port", "The port (bound to vfio-pci; virtio-net or igb) to capture on");
        var output = new Option<string>("--out", "-w") { Description = "The pcap file to write", HelpName = "FILE.pcap", Required = true };
        var count = new Option<long?>("--count", "-c") { Description = "Stop after this many frames", HelpName = "N" };
        count.Validators.Add(r => { if (Arguments.TryGet(r, out long? v) && v is < 1) { r.AddError("--count must be 1 or more"); } });
        var seconds = Seconds("Stop after this long (default: when --count frames are in, or at Ctrl-C or SIGTERM)");
        var snap = SnapLength();
        var nano = new Option<bool>("--nano") { Description = "Nanosecond timestamps (pcap magic 0xa1b23c4d) instead of microseconds" };
        var burst = Burst();
        var command = new Command("capture",
            "Write what a port receives to a pcap file (tcpdump -r reads it): the port is driven by this project's driver, nothing is sent")
        {
            port, output, count, seconds, snap, nano, burst,
        };
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            string path = parse.GetValue(output)!;
            long? n = parse.GetValue(count);
            int snapLength = parse.GetValue(snap);
            // The file first: a path that cannot be written fails before the port is opened.
            using var pcap = OpenCapture(path, snapLength, n, parse.GetValue(nano));
            using var device = ctx.OpenDevice(parse.GetValue(port), parse.GetValue(allowNoIommu));
            using var netPort = NetCommands.OpenPort(ctx, device, pool: null);
            Ready(ctx, $"capturing on {device.Address} to {path}{(n is { } c ? string.Create(CultureInfo.InvariantCulture, $", {c:N0} frames") : "")}; Ctrl-C stops");
            var started = Stopwatch.GetTimestamp();
            RunUntilStopped(parse.GetValue(seconds), token => { Capture(netPort, pcap, parse.GetValue(burst), token); return 0; });
            double elapsed = Math.Round(Stopwatch.GetElapsedTime(started).TotalSeconds, 3);
            var doc = CaptureDocument(device.Address, path, snapLength, pcap.Complete(), elapsed);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NetCaptureJson); }
            else { SayCapture(ctx, doc); }
            if (n is { } wanted && doc.Captured < wanted)
            {
                ctx.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"vfio: only {doc.Captured} of {wanted} frames arrived in {elapsed:0.###} s"));
                return ExitCodes.DeviceOrHost;
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>Receives bursts and copies them into the capture until it is full or <paramref name="token"/> is cancelled.</summary>
    private static void Capture(INetPort port, PacketCapture capture, int burst, CancellationToken token)
    {
        var buffers = new PacketBuffer[burst];
        int idle = 0;
        while (!token.IsCancellationRequested && !capture.IsFull)
        {
            int n = port.RxBurst(0, buffers);
            if (n == 0)
            {
                // An idle port is looked at every millisecond: the receive ring holds what arrives meanwhile.
                if (++idle >= 256) { Thread.Sleep(1); }
                continue;
            }
            idle = 0;
            capture.Add(buffers.AsSpan(0, n));
            PacketPool.Free(buffers.AsSpan(0, n));
        }
    }

    // ------------------------------------------------------------------------------------------------ shared

    /// <summary>
    /// Says the port is running, at once (a script waits for this line before sending): on standard output, or with
    /// --json on standard error, so that standard output holds the one document printed at the end.
    /// </summary>
    private static void Ready(CliContext ctx, string line)
    {
        var writer = ctx.Json ? ctx.Error : ctx.Output;
        writer.WriteLine(ctx.Json ? "vfio: " + line : line);
        writer.Flush();
    }

    /// <summary>Runs <paramref name="work"/> with a token cancelled by SIGINT, SIGTERM or after <paramref name="seconds"/>.</summary>
    private static T RunUntilStopped<T>(double? seconds, Func<CancellationToken, T> work)
    {
        using var stop = new CancellationTokenSource();
        if (seconds is { } s) { stop.CancelAfter(TimeSpan.FromSeconds(s)); }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        return work(stop.Token);
    }

    private static PacketCapture OpenCapture(string path, int snapLength, long? maxFrames, bool nanoseconds = false) =>
        PacketCapture.ToFile(path, new PacketCaptureOptions
        {
            SnapLength = snapLength,
            MaxFrames = maxFrames,
            Resolution = nanoseconds ? PcapTimestampResolution.Nanoseconds : PcapTimestampResolution.Microseconds,
        });

    private static NetCaptureJson CaptureDocument(PciAddress port, string path, int snapLength, PacketCaptureStats stats, double seconds) =>
        new(port.ToString(), path, snapLength, stats.Captured, stats.Dropped, stats.Written, seconds);

    private static void SayCapture(CliContext ctx, NetCaptureJson d) =>
        ctx.Say(string.Create(CultureInfo.InvariantCulture,
            $"{d.Written:N0} frames written to {d.File} in {d.Seconds:F2} s ({d.Dropped:N0} dropped: the file could not keep up)"));

    private static string FormatMac(byte[] bytes) => string.Join(':', bytes.Select(x => x.ToString("x2", CultureInfo.InvariantCulture)));
}
