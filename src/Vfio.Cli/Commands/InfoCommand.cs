using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Devices;
using Vfio.Kernel;

namespace Vfio.Cli.Commands;

/// <summary><c>vfio info BDF [--unsafe-noiommu]</c>: opens a device through VFIO and shows what the kernel reports.</summary>
internal static class InfoCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var bdf = Arguments.Bdf();
        var allowNoIommu = Arguments.AllowNoIommu();
        var command = new Command("info",
            "Open a device bound to vfio-pci and show its regions, interrupts and PCI capabilities, and the VFIO mode it opened in")
        {
            bdf, allowNoIommu,
        };
        command.SetAction(parse => Execute(context(parse), parse.GetValue(bdf), parse.GetValue(allowNoIommu)));
        return command;
    }

    private static int Execute(CliContext ctx, PciAddress address, bool allowNoIommu)
    {
        using var device = ctx.OpenDevice(address, allowNoIommu);
        var info = Describe(device) with { NumaNode = ctx.Host.TryGetDevice(address)?.NumaNode };
        if (ctx.Json)
        {
            ctx.WriteJson(info, CliJson.Output.DeviceInfoJson);
        }
        else
        {
            Show(ctx, info);
        }
        return ExitCodes.Ok;
    }

    internal static DeviceInfoJson Describe(IPciDevice device)
    {
        var regions = new List<RegionJson>();
        for (int i = 0; i < device.Info.RegionCount; i++)
        {
            try
            {
                var r = device.GetRegionInfo(i);
                regions.Add(new RegionJson(i, RegionName(i), r.Size, r.Offset, RegionFlagNames(r.Flags),
                    r.SparseAreas?.Select(a => new SparseAreaJson(a.Offset, a.Size)).ToList(), r.MsixMappable,
                    r.Type is { } t ? string.Create(CultureInfo.InvariantCulture, $"{t.Type:x}:{t.Subtype:x}") : null, null));
            }
            catch (VfioException e)
            {
                // vfio-pci answers EINVAL for regions the device lacks, e.g. VGA on a device that is not a VGA controller.
                regions.Add(new RegionJson(i, RegionName(i), 0, 0, [], null, false, null, e.Message));
            }
        }

        var irqs = new List<IrqJson>();
        for (int i = 0; i < device.Info.IrqCount; i++)
        {
            try
            {
                var q = device.GetIrqInfo((IrqIndex)i);
                irqs.Add(new IrqJson(i, IrqName(i), q.Count, IrqFlagNames(q.Flags), null));
            }
            catch (VfioException e)
            {
                irqs.Add(new IrqJson(i, IrqName(i), 0, [], e.Message));
            }
        }

        var config = device.Config;
        var caps = config.Capabilities
            .Select(c => new CapabilityJson(Arguments.Hex(c.Id, 2), PciNames.CapabilityName(c.Id), c.Offset, null)).ToList();
        var extended = config.ExtendedCapabilities
            .Select(c => new CapabilityJson(Arguments.Hex(c.Id, 4), PciNames.ExtendedCapabilityName(c.Id), c.Offset, c.Version)).ToList();

        return new DeviceInfoJson(
            Address: device.Address.ToString(),
            Mode: ModeName(device.Backend),
            DmaIsolated: device.IsDmaIsolated,
            VendorId: Arguments.Hex(config.VendorId, 4),
            DeviceId: Arguments.Hex(config.DeviceId, 4),
            ClassCode: Arguments.Hex(config.ClassCode, 6),
            Flags: DeviceFlagNames(device.Info.Flags),
            CanReset: device.Info.CanReset,
            Regions: regions,
            Irqs: irqs,
            Capabilities: caps,
            ExtendedCapabilities: extended,
            Container: device is VfioDevice { Ioas: null } kernel ? (kernel.Container.ServedByIommufd ? "iommufd" : "vfio") : null,
            ErrorReporting: device.ErrorReporting.ToString(),
            Aer: config.FindAer()?.Read() is { } aer ? DescribeAer(aer) : null);
    }

    private static AerJson DescribeAer(AerStatus s) => new(s.Offset, s.Version,
        AerNames.List(s.UncorrectableStatus), AerNames.List(s.UncorrectableMask), AerNames.List(s.UncorrectableSeverity),
        AerNames.List(s.CorrectableStatus), AerNames.List(s.CorrectableMask), s.Control.FirstErrorPointer,
        [.. s.HeaderLog.Select(d => Arguments.Hex(d, 8))]);

    private static string Names(IReadOnlyList<string> names) => names.Count == 0 ? "none" : string.Join(", ", names);

    private static void Show(CliContext ctx, DeviceInfoJson info)
    {
        var names = string.Join(' ', new[]
        {
            ctx.PciIds.VendorName(ushort.Parse(info.VendorId, NumberStyles.HexNumber, CultureInfo.InvariantCulture)),
            ctx.PciIds.DeviceName(ushort.Parse(info.VendorId, NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                ushort.Parse(info.DeviceId, NumberStyles.HexNumber, CultureInfo.InvariantCulture)),
        }.Where(n => n is not null));
        uint classCode = uint.Parse(info.ClassCode, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        ctx.Say($"{info.Address}  {info.VendorId}:{info.DeviceId}  {names}".TrimEnd());
        ctx.Say($"Class:  {PciNames.ClassName(classCode)} [{info.ClassCode}]");
        ctx.Say(info.DmaIsolated
            ? $"Mode:   {info.Mode} (DMA confined by the IOMMU to memory this process maps)"
            : $"Mode:   {info.Mode} (NO DMA isolation: the device can write any host memory)");
        if (info.Container == "iommufd")
        {
            ctx.Say("        (the VFIO container is iommufd's emulation: CONFIG_IOMMUFD_VFIO_CONTAINER)");
        }
        ctx.Say($"Flags:  {string.Join(", ", info.Flags)}; reset {(info.CanReset ? "supported" : "not supported")}");
        ctx.Say(info.NumaNode is { } node
            ? string.Create(CultureInfo.InvariantCulture, $"NUMA:   node {node} (DMA memory from there: 'vfio hugepages reserve --node {node} N')")
            : "NUMA:   no node (the kernel reports -1: one node, or the firmware does not say)");

        var regions = Tables.Create("Regions", "Index", "Name", "Size", "Offset", "Flags", "Mmap areas");
        int absent = 0;
        foreach (var r in info.Regions)
        {
            if (r.Error is null && r.Size == 0) { absent++; continue; }
            regions.AddRow(
                new Text(r.Index.ToString(CultureInfo.InvariantCulture)),
                new Text(r.Type is { } t ? $"{r.Name} (type {t})" : r.Name),
                new Text(r.Error is null ? Arguments.FormatBytes(r.Size) : "-"),
                new Text(r.Error is null ? string.Create(CultureInfo.InvariantCulture, $"0x{r.Offset:x}") : "-"),
                new Text(r.Error is null ? string.Join(",", r.Flags) + (r.MsixMappable ? ",msix-mappable" : "") : "unavailable"),
                new Text(MmapText(r)));
        }
        ctx.Console.Write(regions);
        if (absent > 0) { ctx.Say(string.Create(CultureInfo.InvariantCulture, $"({absent} regions absent: size 0)")); }

        var irqs = Tables.Create("Interrupts", "Index", "Name", "Count", "Flags");
        foreach (var q in info.Irqs)
        {
            irqs.AddRow(new Text(q.Index.ToString(CultureInfo.InvariantCulture)), new Text(q.Name),
                new Text(q.Error is null ? q.Count.ToString(CultureInfo.InvariantCulture) : "-"),
                new Text(q.Error is null ? string.Join(",", q.Flags) : "unavailable"));
        }
        ctx.Console.Write(irqs);

        var caps = Tables.Create("PCI capabilities", "Offset", "ID", "Capability");
        foreach (var c in info.Capabilities.Concat(info.ExtendedCapabilities))
        {
            var name = c.Version is { } v ? string.Create(CultureInfo.InvariantCulture, $"{c.Name} (v{v})") : c.Name;
            caps.AddRow(new Text(string.Create(CultureInfo.InvariantCulture, $"0x{c.Offset:x3}")), new Text(c.Id), new Text(name));
        }
        if (caps.Rows.Count == 0) { ctx.Say("No PCI capabilities."); }
        else { ctx.Console.Write(caps); }

        if (info.ErrorReporting is { } reporting) { ctx.Say($"Errors: error interrupt {reporting}"); }
        if (info.Aer is { } aer)
        {
            ctx.Say(string.Create(CultureInfo.InvariantCulture, $"AER:    capability 0x{aer.Offset:x3} (v{aer.Version}), first error pointer {aer.FirstErrorPointer}"));
            ctx.Say($"        uncorrectable logged [{Names(aer.UncorrectableStatus)}], masked [{Names(aer.UncorrectableMask)}], fatal [{Names(aer.UncorrectableFatal)}]");
            ctx.Say($"        correctable logged [{Names(aer.CorrectableStatus)}], masked [{Names(aer.CorrectableMask)}]");
            ctx.Say($"        header log {string.Join(' ', aer.HeaderLog)}");
        }
    }

    private static string MmapText(RegionJson r)
    {
        if (r.Error is not null || !r.Flags.Contains("mmap")) { return "-"; }
        if (r.SparseAreas is null) { return "whole region"; }
        return r.SparseAreas.Count == 0
            ? "none"
            : string.Join(", ", r.SparseAreas.Select(a => string.Create(CultureInfo.InvariantCulture, $"0x{a.Offset:x}+{Arguments.FormatBytes(a.Size)}")));
    }

    internal static string ModeName(DeviceBackend backend) => backend switch
    {
        DeviceBackend.KernelNoIommu => "noiommu",
        DeviceBackend.KernelType1 => "type1",
        DeviceBackend.KernelIommufd => "iommufd",
        DeviceBackend.VfioUser => "vfio-user",
        _ => "emulated",
    };

    private static string RegionName(int index) => index switch
    {
        >= PciRegion.Bar0 and < PciRegion.Rom => string.Create(CultureInfo.InvariantCulture, $"BAR{index}"),
        PciRegion.Rom => "ROM",
        PciRegion.Config => "config",
        PciRegion.Vga => "VGA",
        _ => "device-specific",
    };

    private static string IrqName(int index) => (IrqIndex)index switch
    {
        IrqIndex.Intx => "INTx",
        IrqIndex.Msi => "MSI",
        IrqIndex.Msix => "MSI-X",
        IrqIndex.Err => "ERR",
        IrqIndex.Req => "REQ",
        _ => "device-specific",
    };

    private static List<string> RegionFlagNames(RegionFlags f) => Names(
        (f.HasFlag(RegionFlags.Read), "read"), (f.HasFlag(RegionFlags.Write), "write"),
        (f.HasFlag(RegionFlags.Mmap), "mmap"), (f.HasFlag(RegionFlags.Caps), "caps"));

    private static List<string> IrqFlagNames(IrqFlags f) => Names(
        (f.HasFlag(IrqFlags.Eventfd), "eventfd"), (f.HasFlag(IrqFlags.Maskable), "maskable"),
        (f.HasFlag(IrqFlags.AutoMasked), "automasked"), (f.HasFlag(IrqFlags.NoResize), "noresize"));

    private static List<string> DeviceFlagNames(DeviceFlags f) => Names(
        (f.HasFlag(DeviceFlags.Pci), "pci"), (f.HasFlag(DeviceFlags.Reset), "reset"),
        (f.HasFlag(DeviceFlags.Caps), "caps"), (f.HasFlag(DeviceFlags.Cdx), "cdx"));

    private static List<string> Names(params (bool Set, string Name)[] flags) => [.. flags.Where(f => f.Set).Select(f => f.Name)];
}
