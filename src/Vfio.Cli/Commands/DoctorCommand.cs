using System.CommandLine;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio doctor</c>: every readiness check of <see cref="HostReport"/> in one table, with the fix beside each line
/// that is not ok. Exit code 0 when nothing failed (warnings allowed), <see cref="ExitCodes.NotReady"/> otherwise.
/// </summary>
internal static class DoctorCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var command = new Command("doctor",
            "Check everything this host needs for VFIO drivers (IOMMU or No-IOMMU mode, modules, /dev/vfio, hugepages per " +
            "NUMA node, memlock limit, capabilities, devices and groups, iommufd, cdev) and print the fix for each failing line; " +
            "exit 1 when a check fails");
        command.SetAction(parse => Execute(context(parse)));
        return command;
    }

    private static int Execute(CliContext ctx)
    {
        var host = ctx.Host;
        var memoryLock = ctx.Environment.MemoryLockLimit?.Invoke() ?? PciHost.GetMemoryLockLimit();
        var report = HostReport.Collect(host, memoryLock, host.GetCapabilities());
        if (ctx.Json)
        {
            ctx.WriteJson(new DoctorJson(report.IsReady,
                [.. report.Checks.Select(c => new DoctorCheckJson(c.Id, c.Title, StatusName(c.Status), c.Detail, c.Fix))]),
                CliJson.Output.DoctorJson);
        }
        else
        {
            // The fixes are long sentences: below the table, one line each, they stay whole in a pipe and readable on a terminal.
            var table = Tables.Create(null, "Check", "Status", "Found");
            foreach (var check in report.Checks)
            {
                var status = check.Status switch
                {
                    CheckStatus.Ok => new Text("ok", new Style(Color.Green)),
                    CheckStatus.Warning => new Text("warning", new Style(Color.Yellow)),
                    _ => new Text("FAILED", new Style(Color.Red, decoration: Decoration.Bold)),
                };
                table.AddRow(new Text(check.Title), status, new Text(check.Detail));
            }
            ctx.Console.Write(table);
            foreach (var check in report.Checks.Where(c => c.Fix is not null))
            {
                ctx.Say($"{(check.Status == CheckStatus.Failed ? "FIX" : "fix")} {check.Title}: {check.Fix}");
            }
            int failed = report.Checks.Count(c => c.Status == CheckStatus.Failed);
            int warnings = report.Checks.Count(c => c.Status == CheckStatus.Warning);
            ctx.Say(failed == 0
                ? $"Ready: no check failed ({warnings} warning(s))."
                : $"Not ready: {failed} check(s) failed, {warnings} warning(s); apply the fixes above.");
        }
        return report.IsReady ? ExitCodes.Ok : ExitCodes.NotReady;
    }

    private static string StatusName(CheckStatus status) => status switch
    {
        CheckStatus.Ok => "ok",
        CheckStatus.Warning => "warning",
        _ => "failed",
    };
}
