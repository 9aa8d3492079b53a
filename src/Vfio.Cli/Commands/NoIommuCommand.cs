using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio noiommu status | enable --unsafe</c>: VFIO's No-IOMMU mode.</summary>
internal static class NoIommuCommand
{
    /// <summary>What <c>enable</c> without <c>--unsafe</c> says: what the mode risks and how to go on.</summary>
    internal const string RefusalMessage =
        "refusing to enable VFIO No-IOMMU mode without --unsafe. No-IOMMU mode gives up DMA isolation: a device bound to " +
        "vfio-pci without an IOMMU can read and write any host memory, kernel included, so a driver bug (a wrong " +
        "address in a descriptor) or a faulty device corrupts the host silently. The kernel taints itself when such a " +
        "device is used. It is meant for machines that have no IOMMU at all (cloud VMs without a vIOMMU, embedded " +
        "boards). To accept that: 'vfio noiommu enable --unsafe'";

    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var status = new Command("status", "Show whether the kernel offers No-IOMMU mode, whether it is on, and the VFIO device nodes");
        status.SetAction(parse => Status(context(parse)));

        var unsafeOption = new Option<bool>("--unsafe")
        {
            Description = "Accept that devices without an IOMMU get DMA to all host memory and that the kernel is tainted",
        };
        var enable = new Command("enable", "Turn No-IOMMU mode on (writes Y to /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)")
        {
            unsafeOption,
        };
        enable.SetAction(parse => Enable(context(parse), parse.GetValue(unsafeOption)));

        var command = new Command("noiommu", "VFIO No-IOMMU mode: status, enable --unsafe (no subcommand: status)")
        {
            status, enable,
        };
        command.SetAction(parse => Status(context(parse)));
        return command;
    }

    private static int Status(CliContext ctx)
    {
        var state = ctx.Host.GetNoIommuState();
        var groups = NoIommuGroups(ctx.Host);
        if (ctx.Json)
        {
            ctx.WriteJson(ToJson(state, groups, changed: null), CliJson.Output.NoIommuJson);
            return ExitCodes.Ok;
        }
        Show(ctx, state, groups);
        return ExitCodes.Ok;
    }

    private static int Enable(CliContext ctx, bool acknowledged)
    {
        if (!acknowledged)
        {
            throw new CliException(RefusalMessage, ExitCodes.NoIommuRefused, "NoIommuUnsafeNotAcknowledged");
        }
        bool wasOn = ctx.Host.GetNoIommuState().IsEnabled;
        ctx.Host.EnableNoIommuMode(acknowledgeUnsafe: true);
        var state = ctx.Host.GetNoIommuState();
        var groups = NoIommuGroups(ctx.Host);
        if (ctx.Json)
        {
            ctx.WriteJson(ToJson(state, groups, changed: !wasOn), CliJson.Output.NoIommuJson);
        }
        else
        {
            ctx.Say(wasOn ? "No-IOMMU mode was already on." : "No-IOMMU mode is now ON.");
            ctx.Say("Devices bound to vfio-pci from now on without an IOMMU get a No-IOMMU group (/dev/vfio/noiommu-N) " +
                    "and DMA to all host memory. A device that was already bound keeps its state: rebind it " +
                    "('vfio unbind BDF' then 'vfio bind BDF').");
            if (!state.VfioPciDriverLoaded) { ctx.Say("The vfio-pci driver is not loaded: 'modprobe vfio-pci'."); }
        }
        if (!wasOn)
        {
            ctx.Warn("VFIO No-IOMMU mode enabled: devices in No-IOMMU groups are not DMA-isolated; using one taints the kernel.");
        }
        return ExitCodes.Ok;
    }

    /// <summary>The No-IOMMU groups that exist now: the groups of the devices VFIO made them for.</summary>
    private static List<int> NoIommuGroups(PciHost host) =>
        [.. host.EnumerateDevices().Where(d => d.IsNoIommu && d.IommuGroup is not null).Select(d => d.IommuGroup!.Value).Distinct().Order()];

    private static NoIommuJson ToJson(NoIommuState s, IReadOnlyList<int> groups, bool? changed) => new(
        VfioModuleLoaded: s.VfioModuleLoaded,
        ParameterPresent: s.ParameterPresent,
        Enabled: s.Enabled,
        Supported: s.IsSupported,
        VfioContainerDevice: s.ContainerDeviceExists,
        IommufdDevice: s.IommufdDeviceExists,
        VfioPciLoaded: s.VfioPciDriverLoaded,
        NoIommuGroups: groups,
        Summary: s.Summary,
        Changed: changed);

    private static void Show(CliContext ctx, NoIommuState s, IReadOnlyList<int> groups)
    {
        static string YesNo(bool b) => b ? "yes" : "no";
        var grid = new Grid();
        grid.AddColumn(new GridColumn { NoWrap = true, Padding = new Padding(0, 0, 4, 0) });
        grid.AddColumn();
        void Row(string key, string value) => grid.AddRow(new Text(key), new Text(value));
        Row("vfio module loaded", YesNo(s.VfioModuleLoaded));
        Row("enable_unsafe_noiommu_mode", !s.VfioModuleLoaded ? "-"
            : !s.ParameterPresent ? "absent (kernel built without CONFIG_VFIO_NOIOMMU)"
            : s.Enabled == true ? "Y" : "N");
        Row("No-IOMMU mode", s.IsEnabled ? "ON (unsafe: no DMA isolation)" : "off");
        Row("vfio-pci driver loaded", YesNo(s.VfioPciDriverLoaded));
        Row("/dev/vfio/vfio", s.ContainerDeviceExists ? "present" : "absent");
        Row("/dev/iommu", s.IommufdDeviceExists ? "present" : "absent");
        Row("No-IOMMU groups", groups.Count == 0 ? "none" : string.Join(", ", groups.Select(g => g.ToString(CultureInfo.InvariantCulture))));
        ctx.Console.Write(grid);
        ctx.Say(s.Summary);
    }
}
