using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Commands;

// Identify and log pages: id-ctrl, id-ns, ns-descs, list-ns, smart-log, error-log, fw-log, effects-log, get-log.
internal static partial class NvmeAdminCommands
{
    internal static void AddIdentifyAndLogs(Command nvme, Env env)
    {
        nvme.Subcommands.Add(CreateIdCtrl(env));
        nvme.Subcommands.Add(CreateIdNs(env));
        nvme.Subcommands.Add(CreateNvmIdCtrl(env));
        nvme.Subcommands.Add(CreateIdIocs(env));
        nvme.Subcommands.Add(CreateNsDescs(env));
        nvme.Subcommands.Add(CreateListNs(env));
        nvme.Subcommands.Add(CreateSmartLog(env));
        nvme.Subcommands.Add(CreateErrorLog(env));
        nvme.Subcommands.Add(CreateFwLog(env));
        nvme.Subcommands.Add(CreateEffectsLog(env));
        nvme.Subcommands.Add(CreateGetLog(env));
    }

    /// <summary>Fields one per line, as nvme-cli's normal output prints them: the name padded, a colon, the value.</summary>
    private static void ShowFields(CliContext ctx, string title, FieldJson doc)
    {
        ctx.Say(title);
        int width = doc.Fields.Where(f => f.Value is not FieldJson and not System.Collections.IList).Select(f => f.Key.Length).DefaultIfEmpty(0).Max();
        foreach (var (name, value) in doc.Fields)
        {
            switch (value)
            {
                case System.Collections.IList list:
                    for (int i = 0; i < list.Count; i++)
                    {
                        if (list[i] is FieldJson item)
                        {
                            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"{name}[{i}]: ") +
                                string.Join(' ', item.Fields.Select(f => $"{f.Key}:{Text(f.Key, f.Value)}")));
                        }
                        else { ctx.Say(string.Create(CultureInfo.InvariantCulture, $"{name}[{i}]: {list[i]}")); }
                    }
                    break;
                case FieldJson nested:
                    ShowFields(ctx, $"{name}:", nested);
                    break;
                default:
                    ctx.Say($"{name.PadRight(width)} : {Text(name, value)}");
                    break;
            }
        }
    }

    private static string Text(string name, object? value) => value switch
    {
        null => "-",
        // nvme-cli prints temperatures as Celsius with the Kelvin value after it.
        ushort or int or uint when name is "temperature" or "wctemp" or "cctemp" || name.StartsWith("temperature_sensor_", StringComparison.Ordinal) =>
            string.Create(CultureInfo.InvariantCulture, $"{Convert.ToInt32(value, CultureInfo.InvariantCulture) - 273}°C ({value} Kelvin)"),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static void Emit(CliContext ctx, string title, FieldJson doc)
    {
        if (ctx.Json) { ctx.Say(doc.ToJson()); }
        else { ShowFields(ctx, title, doc); }
    }

    // ------------------------------------------------------------------------------------------------ identify

    private static Command CreateIdCtrl(Env env)
    {
        var command = new Command("id-ctrl", "Identify Controller, every field nvme-cli's id-ctrl shows (--json: nvme id-ctrl -o json's document)");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var id = IdentifyController.Parse(s.Controller.Identify(IdentifyCns.Controller, 0));
            Emit(ctx, $"NVME Identify Controller ({s.Name}):", NvmeCliJson.Object(id.NvmeCliFields()));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateNvmIdCtrl(Env env)
    {
        var command = new Command("nvm-id-ctrl", "The NVM command set's Identify Controller (CNS 06h, CSI 00h): Verify, Write Zeroes, " +
            "Write Uncorrectable and Dataset Management limits, on controllers that report I/O command sets");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var nvm = s.Controller.IdentifyNvmCommandSet()
                ?? throw new CliException($"{s.Name}: the controller reports no I/O command sets (CAP.CSS bit 6 is clear): it has no NVM command set " +
                    "Identify Controller structure; id-ctrl has its limits", ExitCodes.DeviceOrHost, "NotSupported", s.Device.Address);
            Emit(ctx, $"NVMe Identify Controller NVM ({s.Name}):", NvmeCliJson.Object(nvm.NvmeCliFields()));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateIdIocs(Env env)
    {
        var command = new Command("id-iocs", "The I/O command set combinations the controller supports (Identify CNS 1Ch)");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var combos = s.Controller.GetIoCommandSetCombinations();
            static string Name(int csi) => csi switch { 0 => "nvm", 1 => "key-value", 2 => "zoned", _ => string.Create(CultureInfo.InvariantCulture, $"csi-{csi}") };
            var list = combos.Select(c => new FieldJson().Add("index", c.Index).Add("vector", c.Vector)
                .Add("command_sets", Enumerable.Range(0, 64).Where(b => (c.Vector >> b & 1) != 0).Select(Name).ToList())).ToList();
            if (ctx.Json) { ctx.Say(new FieldJson().Add("iocs", list).ToJson()); return ExitCodes.Ok; }
            ctx.Say($"NVMe Identify I/O Command Set ({s.Name}):");
            foreach (var c in combos)
            {
                ctx.Say(string.Create(CultureInfo.InvariantCulture, $"I/O Command Set Combination[{c.Index}]:{c.Vector:x} (") +
                    string.Join(", ", Enumerable.Range(0, 64).Where(b => (c.Vector >> b & 1) != 0).Select(Name)) + ")");
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateIdNs(Env env)
    {
        var allocated = new Option<bool>("--allocated") { Description = "Identify an allocated namespace even when it is not attached (CNS 11h)" };
        var command = new Command("id-ns", "Identify Namespace --nsid N (default 1), every field nvme-cli's id-ns shows, LBA formats included") { allocated };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            uint nsid = env.NsidOr(parse, 1);
            s.CheckNamespaceId(nsid, allowAll: true);
            var ns = parse.GetValue(allocated) ? s.Controller.IdentifyAllocatedNamespace(nsid) : s.Controller.IdentifyNamespace(nsid);
            var doc = NvmeCliJson.IdentifyNamespace(ns.NvmeCliFields(), ns.Features);
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            ShowFields(ctx, string.Create(CultureInfo.InvariantCulture, $"NVME Identify Namespace {nsid} ({s.Name}):"), new FieldJson().AddRange(
                doc.Fields.Where(f => f.Key != "lbafs").Select(f => (f.Key, f.Value))));
            for (int i = 0; i < ns.LbaFormats.Count; i++)
            {
                var f = ns.LbaFormats[i];
                ctx.Say(string.Create(CultureInfo.InvariantCulture,
                    $"lbaf {i,2} : ms:{f.MetadataSize,-3} lbads:{f.DataShift,-2} rp:{f.RelativePerformance}{(i == ns.FormatIndex ? " (in use)" : "")}"));
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateNsDescs(Env env)
    {
        var command = new Command("ns-descs", "Namespace Identification Descriptors of --nsid N (CNS 03h): EUI64, NGUID, UUID, command set");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            uint nsid = env.NsidOr(parse, 1);
            s.CheckNamespaceId(nsid);
            var list = new List<FieldJson>();
            int loc = 0;
            foreach (var d in s.Controller.GetNamespaceIdentifiers(nsid))
            {
                string type = d.Type switch
                {
                    NamespaceIdentifierType.Eui64 => "eui64",
                    NamespaceIdentifierType.Nguid => "nguid",
                    NamespaceIdentifierType.Uuid => "uuid",
                    NamespaceIdentifierType.CommandSetIdentifier => "csi",
                    _ => "unknown",
                };
                string value = d.Type switch
                {
                    NamespaceIdentifierType.Uuid => new Guid(d.Value.Span, bigEndian: true).ToString(),
                    NamespaceIdentifierType.CommandSetIdentifier => d.Value.Span[0].ToString(CultureInfo.InvariantCulture),
                    _ => d.Hex,
                };
                list.Add(new FieldJson().Add("loc", loc).Add("nidt", (int)d.Type).Add("nidl", d.Value.Length).Add("type", type).Add(type, value));
                loc += 4 + d.Value.Length;
            }
            var doc = new FieldJson().Add("ns-descs", list);
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"NVME Namespace Identification Descriptors NS {nsid} ({s.Name}):"));
            foreach (var d in list) { ctx.Say($"{d.Fields[3].Value,-6}: {d.Fields[4].Value}"); }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateListNs(Env env)
    {
        var all = new Option<bool>("--all", "-a") { Description = "Allocated namespaces, attached or not (CNS 10h), instead of the active ones" };
        var command = new Command("list-ns", "The active namespace IDs (CNS 02h), or with --all every allocated one (CNS 10h)") { all };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var ids = parse.GetValue(all) ? s.Controller.GetAllocatedNamespaceIds() : s.Controller.GetActiveNamespaceIds();
            var doc = new FieldJson().Add("nsid_list", ids.Select(id => new FieldJson().Add("nsid", id)).ToList());
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            for (int i = 0; i < ids.Count; i++) { ctx.Say(string.Create(CultureInfo.InvariantCulture, $"[{i,4}]:0x{ids[i]:x}")); }
            if (ids.Count == 0) { ctx.Say("No namespaces."); }
            return ExitCodes.Ok;
        }));
        return command;
    }

    // ------------------------------------------------------------------------------------------------ logs

    private static Option<bool> RaeOption() => new("--rae") { Description = "Retain the asynchronous event (RAE): read without clearing it" };

    private static Command CreateSmartLog(Env env)
    {
        var rae = RaeOption();
        var command = new Command("smart-log", "SMART / Health Information (log 02h): critical warnings, temperature, spare, wear, data units, " +
            "commands, power-on hours, errors (--nsid for one namespace, if the controller keeps them per namespace)") { rae };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            uint nsid = env.NsidOr(parse, uint.MaxValue);
            s.CheckNamespaceId(nsid, allowAll: true);
            var log = s.Controller.GetSmartLog(nsid, parse.GetValue(rae));
            Emit(ctx, string.Create(CultureInfo.InvariantCulture, $"Smart Log for NVME device:{s.Name} namespace-id:{nsid:x}"), NvmeCliJson.Object(log.NvmeCliFields()));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateErrorLog(Env env)
    {
        var rae = RaeOption();
        var entries = new Option<int?>("--log-entries", "-e") { Description = "Entries to show (default: all the controller keeps, ELPE + 1)", HelpName = "N" };
        entries.Validators.Add(r => { if (Arguments.TryGet(r, out int? n) && n is < 1 or > 256) { r.AddError("--log-entries is 1 to 256"); } });
        var command = new Command("error-log", "Error Information (log 01h): the controller's most recent errors, newest first") { rae, entries };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            // Every slot the controller keeps (ELPE + 1), empty ones included, as nvme-cli prints them; the library's
            // GetErrorLog leaves the empty ones out.
            int kept = s.Controller.Identity.ErrorLogPageEntries + 1;
            int n = Math.Min(parse.GetValue(entries) ?? kept, kept);
            n = Math.Min(n, s.Controller.MaxAdminTransferBytes / ErrorLogEntry.Size);
            var raw = s.Controller.GetLogPage((byte)LogPageId.ErrorInformation, 0, 0, n * ErrorLogEntry.Size, parse.GetValue(rae));
            var log = Enumerable.Range(0, n).Select(i => ErrorLogEntry.Parse(raw.AsSpan(i * ErrorLogEntry.Size, ErrorLogEntry.Size))).ToList();
            var doc = new FieldJson().Add("errors", log.Select(e => NvmeCliJson.ErrorEntry(e.NvmeCliFields())).ToList());
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"Error Log Entries for device:{s.Name} entries:{n}"));
            int i = 0;
            foreach (var e in (List<FieldJson>)doc.Fields[0].Value!)
            {
                ctx.Say(string.Create(CultureInfo.InvariantCulture, $" Entry[{i++,2}]"));
                foreach (var (name, value) in e.Fields) { ctx.Say($"{name,-20}: {Text(name, value)}"); }
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateFwLog(Env env)
    {
        var command = new Command("fw-log", "Firmware Slot Information (log 03h): the active slot and each slot's firmware revision");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            // From the raw page: nvme-cli 2.3 prints each non-empty slot as its 64-bit value and its characters.
            var raw = s.Controller.GetLogPage((byte)LogPageId.FirmwareSlot, 0, 0, FirmwareSlotLog.Size);
            var log = FirmwareSlotLog.Parse(raw);
            var inner = new FieldJson().Add("Active Firmware Slot (afi)", log.ActiveFirmwareInfo);
            for (int slot = 1; slot <= 7; slot++)
            {
                var bytes = raw.AsSpan(8 * slot, 8);
                if (System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes) != 0)
                {
                    inner.Add(string.Create(CultureInfo.InvariantCulture, $"Firmware Rev Slot {slot}"), NvmeCliJson.FirmwareRevision(bytes));
                }
            }
            // nvme-cli keys the document by the device's name; here that is the BDF or socket.
            var doc = new FieldJson().Add(s.Name, inner);
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            ctx.Say($"Firmware Log for device:{s.Name}");
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"afi  : 0x{log.ActiveFirmwareInfo:x}"));
            for (int slot = 1; slot <= 7; slot++)
            {
                var bytes = raw.AsSpan(8 * slot, 8);
                ulong v = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
                if (v != 0) { ctx.Say(string.Create(CultureInfo.InvariantCulture, $"frs{slot} : 0x{v:x16} ({log.SlotRevisions[slot - 1]})")); }
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateEffectsLog(Env env)
    {
        var command = new Command("effects-log", "Commands Supported and Effects (log 05h): each supported admin and I/O opcode and what it may change");
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var log = s.Controller.GetCommandEffectsLog();
            static List<FieldJson> Set(IReadOnlyList<CommandEffects> set) => [.. set
                .Select((e, opcode) => (e, opcode))
                .Where(x => (x.e & CommandEffects.Supported) != 0)
                .Select(x => new FieldJson().Add("opcode", x.opcode).Add("effects", (uint)x.e)
                    .Add("csupp", 1).Add("lbcc", Bit(x.e, CommandEffects.LogicalBlockContentChange)).Add("ncc", Bit(x.e, CommandEffects.NamespaceCapabilityChange))
                    .Add("nic", Bit(x.e, CommandEffects.NamespaceInventoryChange)).Add("ccc", Bit(x.e, CommandEffects.ControllerCapabilityChange))
                    .Add("cse", ((uint)x.e >> 16) & 7))];
            var admin = Set(log.Admin);
            var io = Set(log.Io);
            var doc = new FieldJson().Add("admin_cmd_set", admin).Add("io_cmd_set", io);
            if (ctx.Json) { ctx.Say(doc.ToJson()); return ExitCodes.Ok; }
            var table = Tables.Create($"Commands Supported and Effects ({s.Name})", "Set", "Opcode", "Effects", "LBCC", "NCC", "NIC", "CCC", "CSE");
            foreach (var (name, rows) in new[] { ("admin", admin), ("I/O", io) })
            {
                foreach (var r in rows)
                {
                    table.AddRow(new Text(name), new Text(string.Create(CultureInfo.InvariantCulture, $"0x{(int)r.Fields[0].Value!:x2}")),
                        new Text(Hex32((uint)r.Fields[1].Value!)), new Text($"{r.Fields[3].Value}"), new Text($"{r.Fields[4].Value}"),
                        new Text($"{r.Fields[5].Value}"), new Text($"{r.Fields[6].Value}"), new Text($"{r.Fields[7].Value}"));
                }
            }
            ctx.Console.Write(table);
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static int Bit(CommandEffects e, CommandEffects bit) => (e & bit) != 0 ? 1 : 0;

    private static Command CreateGetLog(Env env)
    {
        var lid = NumberOption("--log-id", "-i", "Log page identifier (LID), e.g. 2 or 0x02", 0xFF, required: true);
        var length = NumberOption("--log-len", "-l", "Bytes to read (a multiple of 4)", (ulong)Vfio.Nvme.NvmeController.MaxLogPageBytes, required: true);
        var offset = NumberOption("--lpo", "-O", "Log page offset in bytes (needs LPA bit 2 in Identify Controller)", ulong.MaxValue, required: false, defaultValue: 0);
        var rae = RaeOption();
        var binary = new Option<bool>("--raw-binary", "-b") { Description = "Write the bytes themselves to standard output" };
        var outFile = new Option<string?>("--out", "-o") { Description = "Write the bytes to this file", HelpName = "FILE" };
        var command = new Command("get-log", "Read any log page by its identifier, with an offset and length: a hex dump, the bytes (-b), " +
            "a file (--out) or, with --json, a hex string") { lid, length, offset, rae, binary, outFile };
        command.Validators.Add(r =>
        {
            if (r.GetResult(binary) is not null && r.GetResult(outFile) is not null) { r.AddError("--raw-binary and --out cannot be used together"); }
        });
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            byte id = (byte)parse.GetValue(lid);
            ulong len = parse.GetValue(length), off = parse.GetValue(offset);
            if (len == 0 || len % 4 != 0)
            {
                throw new CliException("--log-len must be a positive multiple of 4 (Get Log Page counts dwords)", ExitCodes.Usage, "Usage");
            }
            uint nsid = env.NsidOr(parse, uint.MaxValue);
            s.CheckNamespaceId(nsid, allowAll: true);
            var data = s.Controller.GetLogPage(id, nsid, off, (int)len, parse.GetValue(rae));
            if (parse.GetValue(binary))
            {
                var stdout = ctx.Environment.OpenBinaryOutput?.Invoke()
                    ?? throw new CliException("--raw-binary needs a byte stream for standard output, and this host of the command gives none",
                        ExitCodes.Usage, "Usage");
                ctx.Output.Flush();
                stdout.Write(data);
                stdout.Flush();
                return ExitCodes.Ok;
            }
            string? path = parse.GetValue(outFile);
            if (path is not null) { File.WriteAllBytes(path, data); }
            if (ctx.Json)
            {
                ctx.Say(new FieldJson().Add("address", s.Name).Add("log_id", (int)id).Add("nsid", nsid).Add("offset", off)
                    .Add("length", data.Length).Add("out", path is null ? null : Path.GetFullPath(path))
                    .Add("hex", Convert.ToHexStringLower(data)).ToJson());
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"Device:{s.Name} log-id:{id} namespace-id:0x{nsid:x} offset:{off} length:{data.Length}"));
            if (path is not null) { ctx.Say($"saved to {Path.GetFullPath(path)}"); }
            else { NvmeCommands.HexDump(ctx.Output, data); }
            return ExitCodes.Ok;
        }));
        return command;
    }
}
