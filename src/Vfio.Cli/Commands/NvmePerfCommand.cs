using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Cli.Tools.Nvme;
using Vfio.Dma;
using Vfio.Nvme;
using Session = Vfio.Cli.Commands.NvmeCommands.Session;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio nvme perf DEVICE</c>: spdk_nvme_perf's workloads (<c>-w</c>, <c>-M</c>, <c>-o</c>, <c>-q</c>, <c>-c</c>,
/// <c>-t</c>) on one or more I/O queues, one thread each, with a ramp, optional data verification, and the figures a
/// userspace driver is judged by: IOPS, latency percentiles, doorbell writes, managed allocation and CPU per I/O.
/// The command validates and reports; <see cref="PerfRunner"/> and an <see cref="IPerfEngine"/> do the I/O.
/// </summary>
internal static class NvmePerfCommand
{
    /// <summary>Most reads <c>--alloc-check</c> takes (a million synchronous reads is minutes on a slow device).</summary>
    internal const int MaxAllocCheckReads = 1_000_000;

    /// <summary>Most queue pairs (threads) accepted on the command line; the controller may grant fewer.</summary>
    internal const int MaxQueues = 256;

    /// <summary>Longest timed window and ramp, in seconds.</summary>
    internal const double MaxSeconds = 3600;

    /// <summary>The span <c>--verify</c> defaults to, so that the write pass before the run stays short.</summary>
    internal const ulong DefaultVerifySpanBytes = 64UL << 20;

    /// <summary>The values <c>--api</c> takes.</summary>
    private static readonly string[] Apis = [RawBatchEngine.Api, AsyncBlockDeviceEngine.Api];

    public static Command Create(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, Option<uint> nsid, NvmeTarget target)
    {
        var workload = new Option<string>("--workload", "-w")
        {
            Description = "Access pattern: randread, randwrite, read, write (sequential: each queue walks its own region) or randrw",
            DefaultValueFactory = _ => "randread",
            HelpName = "PATTERN",
        };
        workload.AcceptOnlyFromAmong(PerfWorkloads.Names);
        var readPercent = new Option<int?>("--read-percent", "-M")
        {
            Description = "randrw only: the percentage of I/Os that are reads, 0-100 (default 50)",
            HelpName = "PERCENT",
        };
        readPercent.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int? p) && p is < 0 or > 100) { r.AddError("--read-percent must be 0..100"); }
        });
        var ioSize = SizeOption("--io-size", "Bytes per I/O: a multiple of the block size, at most the controller's transfer limit (MDTS); 4096, 4k, 128k",
            "4096", "-o");
        ioSize.Validators.Add(r =>
        {
            // NVMe LBA data sizes are 2^9 bytes and up (LBADS, NVMe 1.4 Figure 249): no namespace takes less.
            if (Arguments.TryGet(r, out ulong? bytes) && bytes is { } b && b % 512 != 0) { r.AddError("--io-size must be a multiple of 512 bytes"); }
        });
        var depth = new Option<int>("--queue-depth", "-q") { Description = "I/Os in flight per queue", DefaultValueFactory = _ => 32, HelpName = "N" };
        depth.Validators.Add(r => { if (Arguments.TryGet(r, out int qd) && qd is < 1 or > 65535) { r.AddError("--queue-depth must be 1..65535"); } });
        var queues = new Option<int>("--queues", "-c")
        {
            Description = "I/O queue pairs, one thread each (at most what the controller grants)",
            DefaultValueFactory = _ => 1,
            HelpName = "N",
        };
        queues.Validators.Add(r => { if (Arguments.TryGet(r, out int c) && c is < 1 or > MaxQueues) { r.AddError($"--queues must be 1..{MaxQueues}"); } });
        var seconds = new Option<double>("--seconds", "-t") { Description = "Length of the timed run", DefaultValueFactory = _ => 5, HelpName = "SECONDS" };
        seconds.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out double s) && !(s > 0 && s <= MaxSeconds)) { r.AddError($"--seconds must be more than 0 and at most {MaxSeconds:0}"); }
        });
        var ramp = new Option<double>("--ramp")
        {
            Description = "Run the workload this long before the timed run starts; its I/Os are not counted",
            HelpName = "SECONDS",
        };
        ramp.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out double s) && !(s >= 0 && s <= MaxSeconds)) { r.AddError($"--ramp must be 0..{MaxSeconds:0} seconds"); }
        });
        var api = new Option<string>("--api")
        {
            Description = "How the I/O is issued: raw (NvmeIoQueue's batch calls: submit, one doorbell, reap) or async (the block-device API)",
            DefaultValueFactory = _ => RawBatchEngine.Api,
            HelpName = "API",
        };
        api.AcceptOnlyFromAmong(Apis);
        var verify = new Option<bool>("--verify")
        {
            Description = "Writes carry a pattern tagged with each block's LBA and every read is checked against it; with a read workload " +
                "the span is written once before the run. Overwrites the span",
        };
        var span = SizeOption("--size", "Bytes of the namespace, from LBA 0, the workload touches (default: all of it; with --verify at most 64 MiB)",
            null);
        var allocCheck = new Option<int>("--alloc-check")
        {
            Description = "After the timed run, also measure the managed bytes allocated per synchronous polled read over N reads (0: off)",
            HelpName = "N",
        };
        allocCheck.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out int n) && n is < 0 or > MaxAllocCheckReads) { r.AddError($"--alloc-check must be 0..{MaxAllocCheckReads}"); }
        });
        var command = new Command("perf",
            "Random or sequential reads, writes or a mix at a fixed queue depth on one or more queues: IOPS, MB/s, latency percentiles, " +
            "doorbells, allocation and CPU per I/O (spdk_nvme_perf's measurements)")
        {
            workload, readPercent, ioSize, depth, queues, seconds, ramp, api, verify, span, allocCheck,
        };
        var device = target.Device(command);
        command.Validators.Add(r =>
        {
            if (r.GetResult(readPercent) is not null && r.GetValue(workload) != PerfWorkload.RandRw.Name())
            {
                r.AddError("--read-percent is for -w randrw only");
            }
        });
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            string apiName = parse.GetValue(api)!;
            var engineFactory = EngineFor(apiName);
            var options = new PerfOptions(
                PerfWorkloads.Parse(parse.GetValue(workload)!),
                parse.GetValue(readPercent) ?? 50,
                parse.GetValue(ioSize)!.Value,
                parse.GetValue(depth),
                parse.GetValue(queues),
                TimeSpan.FromSeconds(parse.GetValue(seconds)),
                TimeSpan.FromSeconds(parse.GetValue(ramp)),
                parse.GetValue(verify),
                parse.GetValue(span));
            using var session = Session.Open(ctx, target.Get(parse, device), parse.GetValue(allowNoIommu), options.Queues);
            var plan = Plan(session, session.Namespace(parse.GetValue(nsid)), options);
            var result = RunWithProgress(ctx, engineFactory(session, plan), plan);
            // The allocation check runs outside the timed window, and only after a clean run: it reads synchronously
            // and a failing controller would turn the perf report into a read error.
            int allocReads = parse.GetValue(allocCheck);
            double? syncAllocated = allocReads > 0 && result.Errors == 0 && result.Mismatches == 0
                ? Math.Round(AllocatedBytesPerSyncRead(session, plan, allocReads), 3)
                : null;
            var doc = Document(session, apiName, plan, result, syncAllocated is null ? null : allocReads, syncAllocated);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NvmePerfJson); }
            else { Show(ctx, plan, doc); }
            return ExitCode(ctx, doc);
        });
        return command;
    }

    /// <summary>A byte count option: plain bytes or with a K, M or G suffix (<see cref="Arguments.ParseSize"/>).</summary>
    private static Option<ulong?> SizeOption(string name, string description, string? defaultText, params string[] aliases)
    {
        var option = Arguments.SizeOption(name, description, "BYTES", text => Arguments.ParseSize(text),
            text => $"{name}: '{text}' is not a size in bytes (4096, 4k, 128K, 64M, 1G)", aliases);
        if (defaultText is not null) { option.DefaultValueFactory = _ => Arguments.ParseSize(defaultText); }
        return option;
    }

    /// <summary>
    /// The engine behind <c>--api</c>, chosen before the device is opened so that an unavailable one costs nothing.
    /// A new API is one file implementing <see cref="IPerfEngine"/> and one line here.
    /// </summary>
    private static Func<Session, PerfPlan, IPerfEngine> EngineFor(string api) => api switch
    {
        RawBatchEngine.Api => (session, plan) => new RawBatchEngine(session.Controller, session.Device.Dma, plan),
        AsyncBlockDeviceEngine.Api => (session, plan) => new AsyncBlockDeviceEngine(session.Controller, plan),
        _ => throw new CliException($"--api {api} is not one of raw, async", ExitCodes.Usage, "Usage"),
    };

    /// <summary>What the command line asked for, before the device says what it allows.</summary>
    private sealed record PerfOptions(PerfWorkload Workload, int MixedReadPercent, ulong IoBytes, int QueueDepth, int Queues,
        TimeSpan Duration, TimeSpan Ramp, bool Verify, ulong? SpanBytes);

    /// <summary>Checks the options against the controller and the namespace; every refusal is a usage error naming the limit.</summary>
    private static PerfPlan Plan(Session session, NvmeNamespace ns, PerfOptions o)
    {
        var c = session.Controller;
        if (o.Queues > c.GrantedIoQueues)
        {
            throw Usage($"the controller granted {c.GrantedIoQueues} I/O queue{(c.GrantedIoQueues == 1 ? "" : "s")}; use -c {c.GrantedIoQueues} or less");
        }
        int maxDepth = c.Capabilities.MaxQueueEntries - 1;
        if (o.QueueDepth > maxDepth)
        {
            throw Usage($"the controller's queues hold at most {maxDepth} commands (CAP.MQES); use -q {maxDepth} or less");
        }
        if (o.IoBytes % (ulong)ns.BlockSize != 0)
        {
            throw Usage($"-o {o.IoBytes} is not a multiple of namespace {ns.Id}'s {ns.BlockSize}-byte blocks");
        }
        if (o.IoBytes > (ulong)c.MaxTransferBytes)
        {
            throw Usage($"-o {o.IoBytes} is more than the controller moves in one command (MDTS: {Arguments.FormatBytes((ulong)c.MaxTransferBytes)})");
        }
        ulong spanBytes = o.SpanBytes ?? (o.Verify ? Math.Min(ns.SizeBytes, DefaultVerifySpanBytes) : ns.SizeBytes);
        if (spanBytes > ns.SizeBytes)
        {
            throw Usage($"--size {spanBytes} is more than namespace {ns.Id} holds ({ns.SizeBytes} bytes)");
        }
        ulong regionUnits = spanBytes / o.IoBytes / (ulong)o.Queues;
        if (regionUnits == 0)
        {
            throw Usage($"--size {spanBytes} holds fewer than one {o.IoBytes}-byte I/O per queue ({o.Queues} queues)");
        }
        return new PerfPlan(ns, o.Workload, o.Workload.ReadPercent(o.MixedReadPercent), (int)o.IoBytes, o.QueueDepth, o.Queues, regionUnits,
            o.Ramp, o.Duration, o.Verify);
    }

    private static CliException Usage(string message) => new(message, ExitCodes.Usage, "Usage");

    private static PerfResult RunWithProgress(CliContext ctx, IPerfEngine engine, PerfPlan plan)
    {
        string title = Title(plan);
        if (ctx.Json)
        {
            // No progress: the allocation measured in the window is the workers' alone.
            return PerfRunner.Run(engine, plan);
        }
        if (ctx.Environment.IsTerminal && ctx.InteractiveConsole is { } live)
        {
            PerfResult? result = null;
            double total = plan.Duration.TotalSeconds;
            live.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(p =>
                {
                    var task = p.AddTask(title, maxValue: total);
                    result = PerfRunner.Run(engine, plan, progress =>
                    {
                        task.Value = Math.Min(progress.Elapsed.TotalSeconds, total);
                        task.Description = string.Create(CultureInfo.InvariantCulture, $"{title}: {Rate(progress):N0} IOPS");
                    }, TimeSpan.FromMilliseconds(200));
                    task.Value = total;
                });
            return result!;
        }
        // A pipe or a file: one line a second, so a log shows the run is alive.
        ctx.Say(title);
        return PerfRunner.Run(engine, plan, progress =>
        {
            if (progress.Elapsed >= progress.Duration) { return; }
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"  {progress.Elapsed.TotalSeconds,5:F1} s  {progress.Ios,10:N0} I/Os  {Rate(progress),10:N0} IOPS"));
            ctx.Output.Flush();
        }, TimeSpan.FromSeconds(1));
    }

    private static double Rate(PerfProgress p) => p.Elapsed > TimeSpan.Zero ? p.Ios / p.Elapsed.TotalSeconds : 0;

    private static string Title(PerfPlan plan)
    {
        var s = string.Create(CultureInfo.InvariantCulture,
            $"{plan.Workload.Name()}{(plan.Workload == PerfWorkload.RandRw ? $" {plan.ReadPercent}% reads" : "")} " +
            $"{Arguments.FormatBytes((ulong)plan.IoBytes)}, queue depth {plan.QueueDepth}, {plan.Queues} queue{(plan.Queues == 1 ? "" : "s")}, " +
            $"{plan.Duration.TotalSeconds:0.###} s");
        if (plan.Ramp > TimeSpan.Zero) { s += string.Create(CultureInfo.InvariantCulture, $" after a {plan.Ramp.TotalSeconds:0.###} s ramp"); }
        if (plan.Verify) { s += ", verified"; }
        return s;
    }

    /// <summary>Managed bytes the calling thread allocates per synchronous polled read of the plan's size, over <paramref name="count"/> reads.</summary>
    private static double AllocatedBytesPerSyncRead(Session session, PerfPlan plan, int count)
    {
        using var queue = session.Controller.CreateIoQueue();
        using var buffer = session.Device.Dma.Allocate((ulong)plan.IoBytes, new DmaAllocationOptions { Contiguous = false, Name = "vfio nvme perf --alloc-check" });
        int blocks = plan.BlocksPerIo;
        ulong units = Math.Min(plan.TotalUnits, 1024);
        for (int i = 0; i < 100; i++) { queue.Read(plan.Namespace, (ulong)i % units * (ulong)blocks, blocks, buffer); }   // warm up (JIT, tiering)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < count; i++) { queue.Read(plan.Namespace, (ulong)i % units * (ulong)blocks, blocks, buffer); }
        long after = GC.GetAllocatedBytesForCurrentThread();
        return (after - before) / (double)count;
    }

    private static NvmePerfJson Document(Session session, string api, PerfPlan plan, PerfResult r, int? allocCheckReads, double? allocCheckBytesPerRead)
    {
        long ios = r.Ios;
        double? PerIo(double? total, int digits) => ios > 0 && total is { } t ? Math.Round(t / ios, digits) : null;
        return new NvmePerfJson(
            Address: session.Name,
            Mode: InfoCommand.ModeName(session.Device.Backend),
            DmaIsolated: session.Device.IsDmaIsolated,
            Nsid: plan.Namespace.Id,
            Api: api,
            Workload: plan.Workload.Name(),
            ReadPercent: plan.ReadPercent,
            IoBytes: plan.IoBytes,
            QueueDepth: plan.QueueDepth,
            Queues: plan.Queues,
            Seconds: Math.Round(r.Elapsed.TotalSeconds, 3),
            RampSeconds: Math.Round(plan.Ramp.TotalSeconds, 3),
            Verify: plan.Verify,
            SpanBytes: plan.SpanBytes,
            Ios: ios,
            Reads: r.Reads,
            Writes: r.Writes,
            Errors: r.Errors,
            Mismatches: r.Mismatches,
            Iops: Math.Round(r.Iops, 1),
            MbPerSecond: Math.Round(r.Iops * plan.IoBytes / 1e6, 2),
            P50Us: Micro(r.PercentileMicroseconds(50)),
            P90Us: Micro(r.PercentileMicroseconds(90)),
            P99Us: Micro(r.PercentileMicroseconds(99)),
            P999Us: Micro(r.PercentileMicroseconds(99.9)),
            P9999Us: Micro(r.PercentileMicroseconds(99.99)),
            MaxUs: Micro(r.MaxMicroseconds),
            AllocatedBytesPerIo: PerIo(r.AllocatedBytes, 3),
            QueueThreadAllocatedBytesPerIo: PerIo(r.ThreadAllocatedBytes, 3),
            CpuSecondsPerMillionIos: PerIo(r.CpuTime.TotalSeconds * 1e6, 3),
            SubmissionDoorbellsPerIo: PerIo(r.SubmissionDoorbells, 4),
            CompletionDoorbellsPerIo: PerIo(r.CompletionDoorbells, 4),
            QueueIos: [.. r.QueueIos],
            FirstError: r.FirstError,
            FirstMismatch: r.FirstMismatch?.ToString(),
            AllocCheckReads: allocCheckReads,
            AllocCheckBytesPerRead: allocCheckBytesPerRead);
    }

    private static double? Micro(double us) => double.IsFinite(us) ? Math.Round(us, 3) : null;

    private static void Show(CliContext ctx, PerfPlan plan, NvmePerfJson d)
    {
        ctx.Say($"{d.Address} ({d.Mode}) nsid {d.Nsid}, --api {d.Api}: {Title(plan)}, span {Arguments.FormatBytes(d.SpanBytes)}");
        var table = Tables.Create(null, "IOPS", "MB/s", "p50 us", "p99 us", "p99.9 us", "p99.99 us", "max us", "reads", "writes", "errors", "mismatches");
        table.AddRow(
            Cell(d.Iops.ToString("N0", CultureInfo.InvariantCulture)),
            Cell(d.MbPerSecond.ToString("F1", CultureInfo.InvariantCulture)),
            Cell(Format(d.P50Us, "F1")), Cell(Format(d.P99Us, "F1")), Cell(Format(d.P999Us, "F1")), Cell(Format(d.P9999Us, "F1")), Cell(Format(d.MaxUs, "F1")),
            Cell(d.Reads.ToString("N0", CultureInfo.InvariantCulture)),
            Cell(d.Writes.ToString("N0", CultureInfo.InvariantCulture)),
            Cell(d.Errors.ToString(CultureInfo.InvariantCulture)),
            Cell(d.Mismatches.ToString(CultureInfo.InvariantCulture)));
        ctx.Console.Write(table);
        ctx.Say($"per I/O: {Format(d.SubmissionDoorbellsPerIo, "F3")} SQ and {Format(d.CompletionDoorbellsPerIo, "F3")} CQ doorbell writes, " +
            $"{Format(d.AllocatedBytesPerIo, "F3")} managed bytes allocated by the process ({Format(d.QueueThreadAllocatedBytesPerIo, "F3")} " +
            "by the queue threads); " +
            $"{Format(d.CpuSecondsPerMillionIos, "F2")} CPU seconds per million I/Os");
        if (d.Queues > 1)
        {
            ctx.Say("I/Os per queue: " + string.Join(", ", d.QueueIos.Select(n => n.ToString("N0", CultureInfo.InvariantCulture))));
        }
        if (d.FirstMismatch is not null) { ctx.Say($"first mismatch: {d.FirstMismatch}"); }
        if (d.AllocCheckBytesPerRead is { } allocated)
        {
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"managed allocation: {allocated:F3} bytes per synchronous polled read, over {d.AllocCheckReads:N0} reads"));
        }
    }

    private static Text Cell(string text) => new(text);

    private static string Format(double? value, string format) => value is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static int ExitCode(CliContext ctx, NvmePerfJson d)
    {
        string? why =
            d.Errors > 0 ? string.Create(CultureInfo.InvariantCulture, $"{d.Errors} of {d.Ios + d.Errors} I/Os failed; the first: {d.FirstError}")
            : d.Mismatches > 0 ? string.Create(CultureInfo.InvariantCulture, $"{d.Mismatches} blocks read back other than written; the first: {d.FirstMismatch}")
            : d.Ios == 0 ? "no I/O completed in the timed run"
            : null;
        if (why is null) { return ExitCodes.Ok; }
        ctx.Error.WriteLine($"vfio: {why}");
        return ExitCodes.DeviceOrHost;
    }
}
