using System.CommandLine;
using System.Globalization;
using Vfio.Cli.Output;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Commands;

/// <summary>
/// The <c>vfio nvme</c> management commands that nvme-cli users know by name: identify, logs, features, format and
/// namespace management. Each opens the controller like the other nvme commands (a PCI address, a socket path, or
/// <c>--socket</c>), sends the admin commands through the driver (src/Vfio.Nvme), and prints a table or, with
/// <c>--json</c>, a document with nvme-cli's field names where nvme-cli has one (checked against nvme-cli 2.3's own
/// output in tests/Vfio.Cli.Tests/NvmeCli). A bad argument the controller would refuse (an NSID past NN, a log the
/// controller lacks, an LBA format the namespace does not have) is one line on stderr and exit code 2; the
/// controller is left usable.
/// </summary>
internal static partial class NvmeAdminCommands
{
    /// <summary>Adds the management commands to <c>vfio nvme</c>.</summary>
    public static void AddTo(Command nvme, Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, Option<uint> nsid, NvmeTarget target)
    {
        var env = new Env(context, allowNoIommu, nsid, target);
        AddIdentifyAndLogs(nvme, env);
        AddNamespaceManagement(nvme, env);
        AddFirmware(nvme, env);
        nvme.Subcommands.Add(CreateGetFeature(env));
        nvme.Subcommands.Add(CreateSetFeature(env));
    }

    /// <summary>What every management command shares: the context, the No-IOMMU consent, --nsid and the target.</summary>
    internal sealed record Env(Func<ParseResult, CliContext> Context, Option<bool> AllowNoIommu, Option<uint> Nsid, NvmeTarget Target)
    {
        /// <summary>Opens the controller the command line names and runs <paramref name="body"/> on it.</summary>
        public int Run(ParseResult parse, Argument<DeviceTarget> device, Func<CliContext, NvmeCommands.Session, int> body)
        {
            var ctx = Context(parse);
            using var session = NvmeCommands.Session.Open(ctx, Target.Get(parse, device), parse.GetValue(AllowNoIommu));
            try
            {
                return body(ctx, session);
            }
            catch (ArgumentException e)
            {
                // The driver checked an argument against what the controller reported (NN, the LBA formats, ONCS)
                // before sending anything: the device is fine, the request was not.
                throw new CliException($"{session.Name}: {WithoutParameterSuffix(e)}", ExitCodes.DeviceOrHost, "InvalidArgument", session.Device.Address);
            }
        }

        /// <summary>--nsid, which this command needs given explicitly (it changes or removes that namespace).</summary>
        public uint RequiredNsid(ParseResult parse, string command) => parse.GetResult(Nsid) is { Implicit: false }
            ? parse.GetValue(Nsid)
            : throw new CliException($"{command} needs the namespace: --nsid N", ExitCodes.Usage, "Usage");

        /// <summary>--nsid when it was given, else <paramref name="fallback"/>.</summary>
        public uint NsidOr(ParseResult parse, uint fallback) => parse.GetResult(Nsid) is { Implicit: false } ? parse.GetValue(Nsid) : fallback;
    }

    private static string WithoutParameterSuffix(ArgumentException e)
    {
        string m = e.Message;
        int at = e.ParamName is null ? -1 : m.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return at > 0 ? m[..at] : m;
    }

    // ------------------------------------------------------------------------------------------------ numbers

    /// <summary>An option holding a number (decimal or 0x hex) of at most <paramref name="max"/>.</summary>
    internal static Option<ulong> NumberOption(string name, string alias, string description, ulong max, bool required, ulong? defaultValue = null)
    {
        var option = new Option<ulong>(name, alias.Length == 0 ? [] : [alias])
        {
            Description = description,
            Required = required,
            HelpName = "N",
            CustomParser = r =>
            {
                string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
                if (Arguments.TryParseNumber(text, out var v) && v <= max) { return v; }
                r.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} takes a number from 0 to {max} (0x{max:x}), decimal or 0x hex; got '{text}'"));
                return 0;
            },
        };
        if (defaultValue is { } d) { option.DefaultValueFactory = _ => d; }
        return option;
    }

    internal static string Hex32(uint v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x8}");

    // ------------------------------------------------------------------------------------------------ features

    private static readonly string[] SelectNames = ["current", "default", "saved", "supported"];

    private static Option<ulong> FeatureIdOption() =>
        NumberOption("--feature-id", "-f", "Feature identifier (FID), e.g. 6 or 0x06 for Volatile Write Cache", 0xFF, required: true);

    private static Command CreateGetFeature(Env env)
    {
        var fid = FeatureIdOption();
        var sel = new Option<string>("--sel", "-s")
        {
            Description = "Which value: 0 current, 1 default, 2 saved, 3 supported capabilities (or the name)",
            DefaultValueFactory = _ => "current",
            HelpName = "SEL",
        };
        sel.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out string? s) && s is not null && ParseSelect(s) is null) { r.AddError($"--sel is 0-3 or current, default, saved, supported; got '{s}'"); }
        });
        var cdw11 = NumberOption("--cdw11", "-c", "Dword 11 of Get Features (Temperature Threshold: TMPSEL in bits 19:16, THSEL in 21:20; " +
            "Interrupt Vector Configuration: the vector)", uint.MaxValue, required: false, defaultValue: 0);
        var command = new Command("get-feature", "Read a feature (Get Features): its current, default or saved value, or what can be done with it, " +
            "decoded field by field as nvme-cli -H does") { fid, sel, cdw11 };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var id = (FeatureId)(byte)parse.GetValue(fid);
            var select = ParseSelect(parse.GetValue(sel)!)!.Value;
            uint nsid = env.NsidOr(parse, 0);
            uint c11 = (uint)parse.GetValue(cdw11);
            uint value;
            IReadOnlyList<FeatureField> fields;
            if (select == FeatureSelect.Supported)
            {
                var caps = s.Controller.GetFeatureCapabilities(id, nsid);
                value = (uint)caps;
                fields = NvmeFeatures.Describe(caps);
            }
            else if (id == FeatureId.TemperatureThreshold)
            {
                // DW0 carries only TMPTH on some controllers (QEMU): the sensor and type are the ones asked for.
                int sensor = (int)((c11 >> 16) & 0xF);
                var type = (TemperatureThresholdType)((c11 >> 20) & 3);
                var t = s.Controller.GetTemperatureThreshold(sensor, type, select);
                value = s.Controller.GetFeature(id, select, nsid, c11);
                fields = t.Describe();
            }
            else
            {
                value = s.Controller.GetFeature(id, select, nsid, c11);
                fields = NvmeFeatures.Describe(id, value);
            }
            string name = NvmeFeatures.Name(id) ?? "Unknown";
            if (ctx.Json)
            {
                var doc = new FieldJson()
                    .Add("address", s.Name)
                    .Add("feature_id", (int)id)
                    .Add("name", name)
                    .Add("sel", SelectNames[(int)select])
                    .Add("nsid", nsid)
                    .Add("value", value)
                    .Add("fields", fields.Select(f => new FieldJson().Add("name", f.Name).Add("value", f.Value)).ToList());
                ctx.Say(doc.ToJson());
                return ExitCodes.Ok;
            }
            string which = select switch
            {
                FeatureSelect.Current => "Current value",
                FeatureSelect.Default => "Default value",
                FeatureSelect.Saved => "Saved value",
                _ => "Supported capabilities value",
            };
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"get-feature:0x{(int)id:x2} ({name}), {which}:{Hex32(value)}"));
            foreach (var f in fields) { ctx.Say($"\t{f.Name}: {f.Value}"); }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static FeatureSelect? ParseSelect(string text) => text.Trim().ToLowerInvariant() switch
    {
        "0" or "current" => FeatureSelect.Current,
        "1" or "default" => FeatureSelect.Default,
        "2" or "saved" => FeatureSelect.Saved,
        "3" or "supported" => FeatureSelect.Supported,
        _ => null,
    };

    private static Command CreateSetFeature(Env env)
    {
        var fid = FeatureIdOption();
        var value = NumberOption("--value", "", "Dword 11 of Set Features: the new value (decimal or 0x hex)", uint.MaxValue, required: true);
        var cdw12 = NumberOption("--cdw12", "", "Dword 12 of Set Features, for features that use it", uint.MaxValue, required: false, defaultValue: 0);
        var save = new Option<bool>("--save") { Description = "Also save the value (SV), so that it survives a controller reset" };
        var command = new Command("set-feature", "Change a feature (Set Features), optionally saving it; the driver refuses values it " +
            "knows to be reserved or out of range, and Number of Queues, which it sets itself") { fid, value, cdw12, save };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            var id = (FeatureId)(byte)parse.GetValue(fid);
            uint v = (uint)parse.GetValue(value), c12 = (uint)parse.GetValue(cdw12);
            uint nsid = env.NsidOr(parse, 0);
            bool sv = parse.GetValue(save);
            uint dw0 = s.Controller.SetFeature(id, v, sv, nsid, c12);
            string name = NvmeFeatures.Name(id) ?? "Unknown";
            if (ctx.Json)
            {
                ctx.Say(new FieldJson()
                    .Add("address", s.Name).Add("feature_id", (int)id).Add("name", name).Add("nsid", nsid)
                    .Add("value", v).Add("cdw12", c12).Add("save", sv).Add("result", dw0).ToJson());
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture,
                $"set-feature:0x{(int)id:x2} ({name}), value:{Hex32(v)}, cdw12:{c12:x8}, save:{(sv ? 1 : 0)}"));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
