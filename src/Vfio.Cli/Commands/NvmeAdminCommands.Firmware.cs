using System.CommandLine;
using System.Globalization;
using Vfio.Cli.Output;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Commands;

// Firmware: fw-download and fw-commit, nvme-cli's names. Many controllers (QEMU 7.2's among them) answer both with
// Invalid Command Opcode; then that is the one line the command prints.
internal static partial class NvmeAdminCommands
{
    internal static void AddFirmware(Command nvme, Env env)
    {
        nvme.Subcommands.Add(CreateFwDownload(env));
        nvme.Subcommands.Add(CreateFwCommit(env));
    }

    private static Command CreateFwDownload(Env env)
    {
        var fw = new Option<string>("--fw", "-f") { Description = "The firmware image file", Required = true, HelpName = "FILE" };
        var offset = NumberOption("--offset", "-O", "Where in the controller's image buffer this file goes, in bytes (a multiple of 4 and of FWUG)",
            uint.MaxValue, required: false, defaultValue: 0);
        var command = new Command("fw-download", "Firmware Image Download: send an image (in pieces of FWUG, the update granularity) to the " +
            "controller; fw-commit then puts it in a slot") { fw, offset };
        var device = env.Target.Device(command);
        command.SetAction(parse =>
        {
            string path = parse.GetValue(fw)!;
            byte[] image;
            try { image = File.ReadAllBytes(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"cannot read the firmware image {path}: {e.Message}", ExitCodes.DeviceOrHost, "FirmwareFile");
            }
            if (image.Length == 0 || image.Length % 4 != 0)
            {
                throw new CliException(string.Create(CultureInfo.InvariantCulture,
                    $"{path} is {image.Length} bytes; a firmware image is a non-zero multiple of 4 bytes (NUMD counts dwords)"), ExitCodes.Usage, "Usage");
            }
            return env.Run(parse, device, (ctx, s) =>
            {
                long at = (long)parse.GetValue(offset);
                s.Controller.DownloadFirmware(image, at);
                if (ctx.Json)
                {
                    ctx.Say(new FieldJson().Add("address", s.Name).Add("file", Path.GetFullPath(path)).Add("bytes", image.Length).Add("offset", at).ToJson());
                    return ExitCodes.Ok;
                }
                ctx.Say(string.Create(CultureInfo.InvariantCulture, $"Firmware download success: {image.Length} bytes at offset {at}"));
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command CreateFwCommit(Env env)
    {
        var slot = NumberOption("--slot", "-s", "Firmware slot, 0 (the controller chooses) to 7", 7, required: false, defaultValue: 0);
        var action = NumberOption("--action", "-a", "Commit action: 0 replace, 1 replace and activate at reset, 2 activate the slot at reset, " +
            "3 replace and activate now, 6 replace boot partition, 7 activate boot partition", 7, required: true);
        var bpid = NumberOption("--bpid", "-b", "Boot partition, 0 or 1 (actions 6 and 7)", 1, required: false, defaultValue: 0);
        var command = new Command("fw-commit", "Firmware Commit: put the downloaded image in a slot and/or activate a slot") { slot, action, bpid };
        var device = env.Target.Device(command);
        command.SetAction(parse => env.Run(parse, device, (ctx, s) =>
        {
            int sl = (int)parse.GetValue(slot), ca = (int)parse.GetValue(action), bp = (int)parse.GetValue(bpid);
            var result = s.Controller.CommitFirmware(sl, (FirmwareCommitAction)ca, bp);
            if (ctx.Json)
            {
                ctx.Say(new FieldJson().Add("address", s.Name).Add("slot", sl).Add("action", ca).Add("bpid", bp).Add("result", result.ToString()).ToJson());
                return ExitCodes.Ok;
            }
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"Success committing firmware action:{ca} slot:{sl}: {result}"));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
