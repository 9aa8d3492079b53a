using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio list</c>: the host's PCI functions with their drivers and IOMMU groups.</summary>
internal static class ListCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var vfioOnly = new Option<bool>("--vfio") { Description = "Only devices bound to vfio-pci" };
        var noIommuOnly = new Option<bool>("--noiommu") { Description = "Only devices in No-IOMMU groups" };
        var driver = new Option<string?>("--driver") { Description = "Only devices bound to this driver", HelpName = "NAME" };
        var command = new Command("list", "List PCI devices: address, vendor:device and names, class, driver, IOMMU group, No-IOMMU")
        {
            vfioOnly, noIommuOnly, driver,
        };
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            IEnumerable<PciDeviceInfo> devices = ctx.Host.EnumerateDevices();
            if (parse.GetValue(vfioOnly)) { devices = devices.Where(d => d.IsBoundToVfio); }
            if (parse.GetValue(noIommuOnly)) { devices = devices.Where(d => d.IsNoIommu); }
            if (parse.GetValue(driver) is { } name) { devices = devices.Where(d => d.Driver == name); }
            return Execute(ctx, [.. devices]);
        });
        return command;
    }

    private static int Execute(CliContext ctx, IReadOnlyList<PciDeviceInfo> devices)
    {
        var rows = devices.Select(d => ToJson(d, ctx.PciIds)).ToList();
        if (ctx.Json)
        {
            ctx.WriteJson(new DeviceListJson(rows), CliJson.Output.DeviceListJson);
            return ExitCodes.Ok;
        }
        if (rows.Count == 0)
        {
            ctx.Say("No PCI devices found.");
            return ExitCodes.Ok;
        }

        // The name column only when pci.ids gave at least one name: without the file it would be empty.
        bool names = rows.Any(d => d.VendorName is not null);
        var table = Tables.Create(null,
            new[] { "BDF", "Vendor:Device", "Name", "Class", "Driver", "Group", "No-IOMMU" }.Where(h => names || h != "Name"));
        foreach (var d in rows)
        {
            var cells = new List<Spectre.Console.Rendering.IRenderable> { new Text(d.Address), new Text($"{d.VendorId}:{d.DeviceId}") };
            if (names) { cells.Add(new Text(string.Join(' ', new[] { d.VendorName, d.DeviceName }.Where(n => n is not null)))); }
            cells.Add(new Text($"{d.ClassName} [{d.ClassCode[..4]}]"));
            cells.Add(new Text(d.Driver ?? "-"));
            cells.Add(new Text(d.IommuGroup?.ToString(CultureInfo.InvariantCulture) ?? "-"));
            cells.Add(d.NoIommu ? new Markup("[yellow]yes[/]") : new Text(d.IommuGroup is null ? "-" : "no"));
            table.AddRow(cells);
        }
        ctx.Console.Write(table);
        if (rows.Any(d => d.NoIommu))
        {
            ctx.Say("No-IOMMU groups give no DMA isolation: a device in one can write any host memory.");
        }
        return ExitCodes.Ok;
    }

    internal static DeviceJson ToJson(PciDeviceInfo d, PciIds ids) => new(
        Address: d.Address.ToString(),
        VendorId: Arguments.Hex(d.VendorId, 4),
        DeviceId: Arguments.Hex(d.DeviceId, 4),
        VendorName: ids.VendorName(d.VendorId),
        DeviceName: ids.DeviceName(d.VendorId, d.DeviceId),
        SubsystemVendorId: Arguments.Hex(d.SubsystemVendorId, 4),
        SubsystemDeviceId: Arguments.Hex(d.SubsystemDeviceId, 4),
        ClassCode: Arguments.Hex(d.ClassCode, 6),
        ClassName: PciNames.ClassName(d.ClassCode),
        Revision: Arguments.Hex(d.Revision, 2),
        Driver: d.Driver,
        DriverOverride: d.DriverOverride,
        IommuGroup: d.IommuGroup,
        NoIommu: d.IsNoIommu,
        NumaNode: d.NumaNode,
        VfioDevice: d.VfioDeviceName);
}
