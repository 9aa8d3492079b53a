using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio nvme identify|read|write|perf DEVICE</c>: the NVMe driver (src/Vfio.Nvme) on a controller bound to vfio-pci,
/// or behind a vfio-user socket. Each command opens the device through VFIO (a No-IOMMU group only with
/// <c>--unsafe-noiommu</c>) or the socket, brings the controller up with its I/O queues (one; <c>perf -c</c>: more),
/// does its work, and shuts the controller down again. <c>perf</c> is <see cref="NvmePerfCommand"/>.
/// </summary>
internal static class NvmeCommands
{
    /// <summary>Largest transfer <c>read</c> and <c>write</c> move in one invocation.</summary>
    internal const long MaxTransferBytes = 64L << 20;

    private const uint NvmeClassCode = 0x010802;

    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var allowNoIommu = Arguments.AllowNoIommu(recursive: true);
        var nsid = new Option<uint>("--nsid")
        {
            Description = "Namespace to use",
            DefaultValueFactory = _ => 1,
            Recursive = true,
            HelpName = "N",
        };
        // NSID 0 is checked against the controller (Session.Namespace), with NN in the message, like any NSID it lacks.

        var nvme = new Command("nvme",
            "Drive an NVMe controller bound to vfio-pci with this project's userspace driver: identify it, read and write blocks, " +
            "measure performance")
        {
            allowNoIommu, nsid,
        };
        var target = new NvmeTarget();
        nvme.Options.Add(target.Socket);
        nvme.Subcommands.Add(NvmeListCommand.Create(context, allowNoIommu, target));
        nvme.Subcommands.Add(CreateIdentify(context, allowNoIommu, target));
        nvme.Subcommands.Add(CreateRead(context, allowNoIommu, nsid, target));
        nvme.Subcommands.Add(CreateWrite(context, allowNoIommu, nsid, target));
        nvme.Subcommands.Add(NvmePerfCommand.Create(context, allowNoIommu, nsid, target));
        NvmeAdminCommands.AddTo(nvme, context, allowNoIommu, nsid, target);
        return nvme;
    }

    // ------------------------------------------------------------------------------------------------ identify

    private static Command CreateIdentify(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, NvmeTarget target)
    {
        var command = new Command("identify", "Bring the controller up and show Identify Controller and its active namespaces");
        var bdf = target.Device(command);
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            using var session = Session.Open(ctx, target.Get(parse, bdf), parse.GetValue(allowNoIommu));
            var doc = Identify(session);
            if (ctx.Json) { ctx.WriteJson(doc, CliJson.Output.NvmeIdentifyJson); }
            else { ShowIdentify(ctx, doc); }
            return ExitCodes.Ok;
        });
        return command;
    }

    internal static NvmeIdentifyJson Identify(Session session)
    {
        var c = session.Controller;
        var id = c.Identity;
        return new NvmeIdentifyJson(
            Address: session.Name,
            Mode: InfoCommand.ModeName(session.Device.Backend),
            DmaIsolated: session.Device.IsDmaIsolated,
            VendorId: Arguments.Hex(id.VendorId, 4),
            Model: id.ModelNumber,
            Serial: id.SerialNumber,
            Firmware: id.FirmwareRevision,
            Version: c.Version.ToString(),
            ControllerId: id.ControllerId,
            MaxTransferBytes: c.MaxTransferBytes,
            MaxQueueEntries: c.Capabilities.MaxQueueEntries,
            VolatileWriteCache: id.VolatileWriteCache,
            OptionalCommands: OptionalCommandNames(id.OptionalCommands),
            SubsystemNqn: id.SubsystemNqn.Length == 0 ? null : id.SubsystemNqn,
            Namespaces: [.. c.Namespaces.Select(ns => new NvmeNamespaceJson(ns.Id, ns.BlockSize, ns.BlockCount, ns.SizeBytes,
                ns.Identify.Capacity, ns.Identify.Utilization))]);
    }

    private static void ShowIdentify(CliContext ctx, NvmeIdentifyJson d)
    {
        ctx.Say($"{d.Address}  {d.Model}");
        ctx.Say($"Serial:    {d.Serial}");
        ctx.Say($"Firmware:  {d.Firmware}");
        ctx.Say($"NVMe:      {d.Version}, controller ID {d.ControllerId}, PCI vendor {d.VendorId}");
        ctx.Say(d.DmaIsolated
            ? $"Mode:      {d.Mode} (DMA confined by the IOMMU to memory this process maps)"
            : $"Mode:      {d.Mode} (NO DMA isolation: the device can write any host memory)");
        ctx.Say(string.Create(CultureInfo.InvariantCulture,
            $"Limits:    {Arguments.FormatBytes((ulong)d.MaxTransferBytes)} per command, {d.MaxQueueEntries} entries per queue"));
        ctx.Say($"Write cache: {(d.VolatileWriteCache ? "volatile (flushed after writes)" : "none")}; optional commands: " +
            (d.OptionalCommands.Count == 0 ? "none" : string.Join(", ", d.OptionalCommands)));
        if (d.SubsystemNqn is not null) { ctx.Say($"NQN:       {d.SubsystemNqn}"); }
        var table = Tables.Create("Namespaces", "NSID", "Block size", "Blocks", "Size", "In use");
        foreach (var ns in d.Namespaces)
        {
            table.AddRow(
                new Text(ns.Nsid.ToString(CultureInfo.InvariantCulture)),
                new Text(ns.BlockSize.ToString(CultureInfo.InvariantCulture)),
                new Text(ns.Blocks.ToString(CultureInfo.InvariantCulture)),
                new Text(Arguments.FormatBytes(ns.SizeBytes)),
                new Text(string.Create(CultureInfo.InvariantCulture, $"{ns.UtilizationBlocks} blocks")));
        }
        if (d.Namespaces.Count == 0) { ctx.Say("No active namespaces."); }
        else { ctx.Console.Write(table); }
    }

    private static List<string> OptionalCommandNames(OptionalNvmCommands oncs)
    {
        var names = new List<string>();
        foreach (var flag in Enum.GetValues<OptionalNvmCommands>())
        {
            if (flag != OptionalNvmCommands.None && (oncs & flag) == flag) { names.Add(flag.ToString()); }
        }
        return names;
    }

    // ------------------------------------------------------------------------------------------------ read

    private static Option<ulong> LbaOption() => new("--lba")
    {
        Description = "First logical block",
        Required = true,
        HelpName = "N",
    };

    private static Option<int?> CountOption(string description)
    {
        var count = new Option<int?>("--count", "-n") { Description = description, HelpName = "N" };
        count.Validators.Add(r => { if (Arguments.TryGet(r, out int? n) && n is < 1) { r.AddError("--count must be 1 or more"); } });
        return count;
    }

    private static Command CreateRead(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, Option<uint> nsid, NvmeTarget target)
    {
        var lba = LbaOption();
        var count = CountOption("Blocks to read (default 1)");
        var outFile = new Option<string?>("--out", "-o") { Description = "Write the data to this file", HelpName = "FILE" };
        var hex = new Option<bool>("--hex") { Description = "Print the data as a hex dump (in JSON: a hex string)" };
        var command = new Command("read", "Read blocks and print a checksum, a hex dump (--hex), or save them (--out FILE)")
        {
            lba, count, outFile, hex,
        };
        var bdf = target.Device(command);
        command.Validators.Add(r =>
        {
            if (r.GetResult(outFile) is not null && r.GetResult(hex) is not null) { r.AddError("--out and --hex cannot be used together"); }
        });
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            using var session = Session.Open(ctx, target.Get(parse, bdf), parse.GetValue(allowNoIommu));
            var ns = session.Namespace(parse.GetValue(nsid));
            ulong first = parse.GetValue(lba);
            int blocks = parse.GetValue(count) ?? 1;
            int bytes = CheckTransferSize(ns, blocks);
            var data = new byte[bytes];
            var watch = Stopwatch.StartNew();
            using (var queue = session.Controller.CreateIoQueue())
            using (var buffer = session.Device.Dma.Allocate((ulong)bytes, new DmaAllocationOptions { Contiguous = false, Name = "vfio nvme read" }))
            {
                queue.Read(ns, first, blocks, buffer);
                buffer.Span[..bytes].CopyTo(data);
            }
            watch.Stop();
            string? path = parse.GetValue(outFile);
            if (path is not null) { File.WriteAllBytes(path, data); }
            bool dump = parse.GetValue(hex);
            var doc = new NvmeReadJson(session.Name, ns.Id, first, blocks, ns.BlockSize, bytes,
                Sha256(data), path is null ? null : Path.GetFullPath(path), dump ? Convert.ToHexStringLower(data) : null);
            if (ctx.Json)
            {
                ctx.WriteJson(doc, CliJson.Output.NvmeReadJson);
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"{doc.Address} nsid {ns.Id}: read {blocks} block{(blocks == 1 ? "" : "s")} of {ns.BlockSize} B from LBA {first} " +
                $"({Arguments.FormatBytes((ulong)bytes)}) in {watch.Elapsed.TotalMilliseconds:F1} ms"));
            ctx.Say($"sha256 {doc.Sha256}");
            if (path is not null) { ctx.Say($"saved to {doc.Out}"); }
            if (dump) { HexDump(ctx.Output, data); }
            else if (path is null) { ctx.Say("(--hex prints the data, --out FILE saves it)"); }
            return ExitCodes.Ok;
        });
        return command;
    }

    // ------------------------------------------------------------------------------------------------ write

    private static Command CreateWrite(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, Option<uint> nsid, NvmeTarget target)
    {
        var lba = LbaOption();
        var count = CountOption("Blocks to write (required with --pattern; with --in, the file's size rounded up to blocks)");
        var pattern = new Option<byte?>("--pattern", "-p")
        {
            Description = "Fill every byte with this value: 0-255, or hex as 0xA5",
            HelpName = "BYTE",
            CustomParser = r =>
            {
                var text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
                if (ParseByte(text) is { } b) { return b; }
                r.AddError($"'{text}' is not a byte value (0-255, or hex as 0xA5)");
                return null;
            },
        };
        var inFile = new Option<string?>("--in", "-i") { Description = "Write this file's contents (zero-padded to whole blocks)", HelpName = "FILE" };
        var verify = new Option<bool>("--verify") { Description = "Read the blocks back and compare" };
        var command = new Command("write", "Write blocks from a byte pattern or a file, flush, and optionally read them back to verify")
        {
            lba, count, pattern, inFile, verify,
        };
        var bdf = target.Device(command);
        command.Validators.Add(r =>
        {
            bool hasPattern = r.GetResult(pattern) is not null, hasIn = r.GetResult(inFile) is not null;
            if (hasPattern == hasIn) { r.AddError("give exactly one of --pattern BYTE and --in FILE"); }
            else if (hasPattern && r.GetResult(count) is null) { r.AddError("--count is required with --pattern"); }
        });
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            string? path = parse.GetValue(inFile);
            byte[]? contents = null;
            if (path is not null)
            {
                try { contents = File.ReadAllBytes(path); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new CliException($"cannot read {path}: {e.Message}", ExitCodes.Usage, "Usage");
                }
                if (contents.Length == 0) { throw new CliException($"{path} is empty: nothing to write", ExitCodes.Usage, "Usage"); }
            }

            using var session = Session.Open(ctx, target.Get(parse, bdf), parse.GetValue(allowNoIommu));
            var ns = session.Namespace(parse.GetValue(nsid));
            ulong first = parse.GetValue(lba);
            int blocks = parse.GetValue(count) ?? (int)Math.Min(int.MaxValue, (contents!.LongLength + ns.BlockSize - 1) / ns.BlockSize);
            int bytes = CheckTransferSize(ns, blocks);
            var data = new byte[bytes];
            string source;
            if (contents is not null)
            {
                if (contents.Length > bytes)
                {
                    throw new CliException(string.Create(CultureInfo.InvariantCulture,
                        $"{path} has {contents.Length} bytes, more than {blocks} blocks of {ns.BlockSize} B ({bytes} B); raise --count or leave it out"),
                        ExitCodes.Usage, "Usage");
                }
                contents.CopyTo(data, 0);
                source = $"file {Path.GetFullPath(path!)}";
            }
            else
            {
                byte value = parse.GetValue(pattern)!.Value;
                data.AsSpan().Fill(value);
                source = string.Create(CultureInfo.InvariantCulture, $"pattern 0x{value:x2}");
            }

            bool check = parse.GetValue(verify);
            var watch = Stopwatch.StartNew();
            using (var queue = session.Controller.CreateIoQueue())
            using (var buffer = session.Device.Dma.Allocate((ulong)bytes, new DmaAllocationOptions { Contiguous = false, Name = "vfio nvme write" }))
            {
                data.CopyTo(buffer.Span);
                queue.Write(ns, first, blocks, buffer);
                queue.Flush(ns);
                if (check)
                {
                    buffer.Span.Clear();
                    queue.Read(ns, first, blocks, buffer);
                    Verify(session, ns, first, data, buffer.Span[..bytes]);
                }
            }
            watch.Stop();
            var doc = new NvmeWriteJson(session.Name, ns.Id, first, blocks, ns.BlockSize, bytes, source,
                Sha256(data), Flushed: true, Verified: check ? true : null);
            if (ctx.Json)
            {
                ctx.WriteJson(doc, CliJson.Output.NvmeWriteJson);
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"{doc.Address} nsid {ns.Id}: wrote {blocks} block{(blocks == 1 ? "" : "s")} of {ns.BlockSize} B at LBA {first} " +
                $"({Arguments.FormatBytes((ulong)bytes)}, {source}) and flushed in {watch.Elapsed.TotalMilliseconds:F1} ms"));
            ctx.Say(check ? "verified: read back identical" : "not verified (--verify reads the blocks back)");
            ctx.Say($"sha256 {doc.Sha256}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static void Verify(Session session, NvmeNamespace ns, ulong lba, ReadOnlySpan<byte> written, ReadOnlySpan<byte> read)
    {
        int first = written.CommonPrefixLength(read);
        if (first == written.Length) { return; }
        int differ = 0;
        for (int i = first; i < written.Length; i++) { if (written[i] != read[i]) { differ++; } }
        throw new CliException(string.Create(CultureInfo.InvariantCulture,
            $"{session.Name}: verify failed: {differ} of {written.Length} bytes differ, the first at byte {first} (LBA {lba + (ulong)(first / ns.BlockSize)}): " +
            $"wrote 0x{written[first]:x2}, read 0x{read[first]:x2}"), ExitCodes.DeviceOrHost, "VerifyFailed", session.Device.Address);
    }

    internal static byte? ParseByte(string text) => Arguments.TryParseNumber(text, out var v) && v <= byte.MaxValue ? (byte)v : null;

    // ------------------------------------------------------------------------------------------------ shared

    private static int CheckTransferSize(NvmeNamespace ns, int blocks)
    {
        long bytes = (long)blocks * ns.BlockSize;
        if (bytes > MaxTransferBytes)
        {
            throw new CliException(string.Create(CultureInfo.InvariantCulture,
                $"{blocks} blocks of {ns.BlockSize} B is {bytes} bytes; one command moves at most {MaxTransferBytes >> 20} MiB"),
                ExitCodes.Usage, "Usage");
        }
        return (int)bytes;
    }

    private static string Sha256(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>
    /// Sixteen bytes a line: offset, hex, and printable ASCII, as <c>hexdump -C</c> prints them: a run of lines equal to
    /// the one before is shown as one <c>*</c>, and the last line is the length.
    /// </summary>
    internal static void HexDump(TextWriter output, ReadOnlySpan<byte> data)
    {
        var line = new StringBuilder(80);
        bool starred = false;
        for (int offset = 0; offset < data.Length; offset += 16)
        {
            var row = data.Slice(offset, Math.Min(16, data.Length - offset));
            if (offset > 0 && row.Length == 16 && row.SequenceEqual(data.Slice(offset - 16, 16)))
            {
                if (!starred) { output.WriteLine("*"); starred = true; }
                continue;
            }
            starred = false;
            line.Clear();
            line.Append(offset.ToString("x8", CultureInfo.InvariantCulture)).Append("  ");
            for (int i = 0; i < 16; i++)
            {
                line.Append(i < row.Length ? row[i].ToString("x2", CultureInfo.InvariantCulture) : "  ").Append(i == 7 ? "  " : " ");
            }
            line.Append(" |");
            foreach (byte b in row) { line.Append(b is >= 0x20 and < 0x7f ? (char)b : '.'); }
            line.Append('|');
            output.WriteLine(line.ToString());
        }
        output.WriteLine(data.Length.ToString("x8", CultureInfo.InvariantCulture));
    }

    /// <summary>An opened device with its controller brought up; disposes both, controller first.</summary>
    internal sealed class Session : IDisposable
    {
        private Session(DeviceTarget target, IPciDevice device, NvmeController controller)
        {
            Target = target;
            Device = device;
            Controller = controller;
        }

        /// <summary>The device as the command line named it.</summary>
        public DeviceTarget Target { get; }

        /// <summary>The BDF, or the vfio-user socket's path: what the JSON documents call <c>address</c>.</summary>
        public string Name => Target.ToString();

        public IPciDevice Device { get; }
        public NvmeController Controller { get; }

        /// <summary>
        /// Opens <paramref name="target"/> and brings its controller up, asking for <paramref name="maxIoQueues"/> I/O
        /// queue pairs (Set Features, Number of Queues: the controller may grant fewer, see
        /// <see cref="NvmeController.GrantedIoQueues"/>).
        /// </summary>
        public static Session Open(CliContext ctx, DeviceTarget target, bool allowNoIommu, int maxIoQueues = 1)
        {
            var device = ctx.OpenDevice(target, allowNoIommu);
            try
            {
                uint classCode = device.Config.ClassCode;
                if (classCode != NvmeClassCode)
                {
                    throw new CliException($"{target} is not an NVMe controller: its class is {Arguments.Hex(classCode, 6)} " +
                        $"({PciNames.ClassName(classCode)}), not 010802 (NVM Express)", ExitCodes.DeviceOrHost, "NotNvme", device.Address);
                }
                var controller = NvmeController.Open(device, new NvmeControllerOptions { MaxIoQueues = maxIoQueues, LoggerFactory = ctx.LoggerFactory });
                return new Session(target, device, controller);
            }
            catch
            {
                device.Dispose();
                throw;
            }
        }

        /// <summary>The active namespace <paramref name="nsid"/>, or a device error naming the active ones.</summary>
        public NvmeNamespace Namespace(uint nsid)
        {
            foreach (var ns in Controller.Namespaces)
            {
                if (ns.Id == nsid) { return ns; }
            }
            var active = Controller.Namespaces.Count == 0 ? "none" : string.Join(", ", Controller.Namespaces.Select(n => n.Id));
            uint nn = Controller.Identity.NamespaceCount;
            string range = nsid == 0 || nsid > nn
                ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"; namespace IDs here are 1 to {nn} (NN)")
                : "";
            throw new CliException($"{Name}: namespace {nsid} is not active (active: {active}){range}", ExitCodes.DeviceOrHost,
                "NamespaceNotFound", Device.Address);
        }

        /// <summary>
        /// A device error for an NSID outside 1..NN (NVMe 1.4 §6.1.2: 0 is never valid, FFFFFFFFh is "all" and only where
        /// a command says so).
        /// </summary>
        public void CheckNamespaceId(uint nsid, bool allowAll = false)
        {
            uint nn = Controller.Identity.NamespaceCount;
            if (allowAll && nsid == uint.MaxValue) { return; }
            if (nsid == 0 || nsid > nn)
            {
                throw new CliException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"{Name}: namespace {nsid} does not exist: this controller's namespace IDs are 1 to {nn} (NN)"),
                    ExitCodes.DeviceOrHost, "NamespaceNotFound", Device.Address);
            }
        }

        public void Dispose()
        {
            try { Controller.Dispose(); }
            finally { Device.Dispose(); }
        }
    }
}
