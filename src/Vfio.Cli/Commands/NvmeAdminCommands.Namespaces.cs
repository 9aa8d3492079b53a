using System.CommandLine;
using System.Globalization;
using Vfio.Cli.Output;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Commands;

// Format NVM and namespace management: format, create-ns, delete-ns, attach-ns, detach-ns. The destructive ones (format,
// delete-ns) want --force, where nvme-cli would ask on the terminal.
internal static partial class NvmeAdminCommands
{
    internal static void AddNamespaceManagement(Command nvme, Env env)
    {
        nvme.Subcommands.Add(CreateFormat(env));
        nvme.Subcommands.Add(CreateCreateNs(env));
        nvme.Subcommands.Add(CreateDeleteNs(env));
        nvme.Subcommands.Add(CreateAttachment(env, attach: true));
        nvme.Subcommands.Add(CreateAttachment(env, attach: false));
    }

    private static Option<bool> ForceOption(string what) => new("--force") { Description = $"Really {what} (the data on it is lost)" };

    private static void RequireForce(ParseResult parse, Option<bool> force, string what)
    {
        if (!parse.GetValue(force))
        {
            throw new CliException($"this would {what}, and its data would be lost: add --force to go ahead", ExitCodes.Usage, "Usage");
        }
    }

    private static Command CreateFormat(Env env)
    {
        var lbaf = NumberOption("--lbaf", "-l", "LBA format index to format to (id-ns lists them; 0-63)", 63, required: true);
        var ses = NumberOption("--ses", "-s", "Secure erase: 0 none, 1 user data erase, 2 cryptographic erase", 2, required: false, defaultValue: 0);
        var force = ForceOption("format the namespace");
        var command = new Command("format", "Format NVM --nsid N (FFFFFFFFh: every namespace) to another LBA format (block size), " +
            "optionally with a secure erase; needs --force") { lbaf, ses, force };
        var device = env.Target.Device(command);
        command.SetAction(parse =>
        {
            uint nsid = env.RequiredNsid(parse, "format");
            RequireForce(parse, force, string.Create(CultureInfo.InvariantCulture, $"format namespace {nsid:x}"));
            return env.Run(parse, device, (ctx, s) =>
            {
                s.CheckNamespaceId(nsid, allowAll: true);
                int index = (int)parse.GetValue(lbaf);
                var erase = (SecureErase)(byte)parse.GetValue(ses);
                s.Controller.Format(nsid, index, erase);
                var after = nsid == uint.MaxValue ? null : s.Controller.IdentifyNamespace(nsid);
                if (ctx.Json)
                {
                    ctx.Say(new FieldJson().Add("address", s.Name).Add("nsid", nsid).Add("lbaf", index).Add("ses", (int)erase)
                        .Add("block_size", after?.BlockSize).Add("blocks", after?.SizeInBlocks).ToJson());
                    return ExitCodes.Ok;
                }
                ctx.Say(string.Create(CultureInfo.InvariantCulture, $"Success formatting namespace:{nsid:x}") +
                    (after is null ? "" : string.Create(CultureInfo.InvariantCulture, $" ({after.SizeInBlocks} blocks of {after.BlockSize} B)")));
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command CreateCreateNs(Env env)
    {
        var nsze = NumberOption("--nsze", "-s", "Size in logical blocks (NSZE)", ulong.MaxValue, required: true);
        var ncap = NumberOption("--ncap", "-c", "Capacity in logical blocks (NCAP; default: the size)", ulong.MaxValue, required: false, defaultValue: 0);
        var flbas = NumberOption("--flbas", "-f", "LBA format index for the new namespace (0-15, as FLBAS bits 3:0)", 15, required: false, defaultValue: 0);
        var nmic = NumberOption("--nmic", "-m", "1: the namespace may be attached to more than one controller (NMIC bit 0)", 1, required: false, defaultValue: 0);
        var command = new Command("create-ns", "Namespace Management, create: a new namespace of --nsze blocks in an LBA format; it is not " +
            "attached to any controller until attach-ns") { nsze, ncap, flbas, nmic };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            ulong size = parse.GetValue(nsze), cap = parse.GetValue(ncap);
            uint id = s.Controller.CreateNamespace(new NamespaceCreateOptions(size, cap == 0 ? size : cap, (int)parse.GetValue(flbas), parse.GetValue(nmic) == 1));
            if (ctx.Json)
            {
                ctx.Say(new FieldJson().Add("address", s.Name).Add("nsid", id).Add("nsze", size).Add("ncap", cap == 0 ? size : cap)
                    .Add("unvmcap", s.Controller.Identity.UnallocatedNvmCapacity).ToJson());
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"create-ns: Success, created nsid:{id}"));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateDeleteNs(Env env)
    {
        var force = ForceOption("delete the namespace");
        var command = new Command("delete-ns", "Namespace Management, delete --nsid N (FFFFFFFFh: every namespace); needs --force") { force };
        var device = env.Target.Device(command);
        command.SetAction(parse =>
        {
            uint nsid = env.RequiredNsid(parse, "delete-ns");
            RequireForce(parse, force, string.Create(CultureInfo.InvariantCulture, $"delete namespace {nsid:x}"));
            return env.Run(parse, device, (ctx, s) =>
            {
                s.CheckNamespaceId(nsid, allowAll: true);
                s.Controller.DeleteNamespace(nsid, allowAll: nsid == uint.MaxValue);
                if (ctx.Json) { ctx.Say(new FieldJson().Add("address", s.Name).Add("nsid", nsid).Add("deleted", true).ToJson()); }
                else { ctx.Say(string.Create(CultureInfo.InvariantCulture, $"delete-ns: Success, deleted nsid:{nsid:x}")); }
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command CreateAttachment(Env env, bool attach)
    {
        string name = attach ? "attach-ns" : "detach-ns";
        var controllers = new Option<string?>("--controllers", "-c")
        {
            Description = "Controller IDs, comma separated (default: this controller's CNTLID)",
            HelpName = "ID,...",
        };
        controllers.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out string? text) && text is not null && ParseControllers(text) is null)
            {
                r.AddError($"--controllers takes controller IDs 0-65534, comma separated; got '{text}'");
            }
        });
        var command = new Command(name, attach
            ? "Namespace Attachment: attach --nsid N to controllers, so that they see it (active namespace list, I/O)"
            : "Namespace Attachment: detach --nsid N from controllers") { controllers };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            uint nsid = env.RequiredNsid(parse, name);
            s.CheckNamespaceId(nsid);
            ushort[] ids = parse.GetValue(controllers) is { } text ? ParseControllers(text)! : [s.Controller.Identity.ControllerId];
            if (attach) { s.Controller.AttachNamespace(nsid, ids); } else { s.Controller.DetachNamespace(nsid, ids); }
            if (ctx.Json)
            {
                ctx.Say(new FieldJson().Add("address", s.Name).Add("nsid", nsid).Add("controllers", ids.Select(i => (int)i).ToList())
                    .Add(attach ? "attached" : "detached", true).ToJson());
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"{name}: Success, nsid:{nsid}"));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static ushort[]? ParseControllers(string text)
    {
        var ids = new List<ushort>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!Arguments.TryParseNumber(part, out var v) || v > 0xFFFE) { return null; }
            ids.Add((ushort)v);
        }
        return ids.Count == 0 ? null : [.. ids];
    }
}
