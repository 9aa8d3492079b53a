using System.CommandLine;
using System.Globalization;
using System.Text.RegularExpressions;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli.Commands;

/// <summary>
/// <c>vfio nvme list</c>: every NVMe controller on the host (PCI class 01:08:02), whoever drives it, like <c>nvme list</c>.
/// A controller the kernel's nvme driver has is described from sysfs (<c>/sys/bus/pci/devices/BDF/nvme/nvmeX</c>: model,
/// serial, firmware_rev, and its namespaces' nsid, size and logical block size), without touching the device. A controller
/// bound to vfio-pci is brought up with this project's driver and identified (a No-IOMMU group only with
/// <c>--unsafe-noiommu</c>; a device another process holds is reported as busy). A free controller is named from pci.ids.
/// <c>--socket PATH</c> adds the vfio-user controller there.
/// </summary>
internal static partial class NvmeListCommand
{
    private const uint NvmeClassCode = 0x010802;

    public static Command Create(Func<ParseResult, CliContext> context, Option<bool> allowNoIommu, NvmeTarget target)
    {
        var command = new Command("list",
            "List NVMe controllers and namespaces, as `nvme list` does, with each controller's driver: the kernel's nvme, " +
            "vfio-pci (identified with this project's driver), or none");
        command.SetAction(parse =>
        {
            var ctx = context(parse);
            var controllers = new List<Controller>();
            foreach (var d in ctx.Host.EnumerateDevices().Where(d => d.ClassCode == NvmeClassCode))
            {
                controllers.Add(Describe(ctx, d, parse.GetValue(allowNoIommu)));
            }
            if (parse.GetValue(target.Socket) is { } socket) { controllers.Add(Identify(ctx, DeviceTarget.Socket(socket), "vfio-user", false)); }
            if (ctx.Json) { ctx.Say(ToJson(controllers).ToJson()); }
            else { Show(ctx, controllers); }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>One namespace as <c>nvme list</c> shows it.</summary>
    internal sealed record Namespace(uint Nsid, string DevicePath, ulong Blocks, int BlockSize, ulong? UsedBlocks);

    /// <summary>One controller: where it is, who drives it, and what it said (null fields: not known).</summary>
    internal sealed record Controller(string Address, string? Driver, string? Name, string? Model, string? Serial, string? Firmware,
        IReadOnlyList<Namespace> Namespaces, string? Note);

    private static Controller Describe(CliContext ctx, PciDeviceInfo d, bool allowNoIommu)
    {
        string address = d.Address.ToString();
        switch (d.Driver)
        {
            case "nvme":
                return FromSysfs(ctx, address);
            case PciHost.VfioPciDriver:
                if (d.IsNoIommu && !allowNoIommu)
                {
                    return new Controller(address, d.Driver, null, null, null, null, [],
                        "in a No-IOMMU group: not identified (--unsafe-noiommu lets this command bring it up)");
                }
                return Identify(ctx, DeviceTarget.Pci(d.Address), d.Driver, allowNoIommu);
            default:
                string? name = ctx.PciIds.DeviceName(d.VendorId, d.DeviceId) ?? ctx.PciIds.VendorName(d.VendorId);
                return new Controller(address, d.Driver, null, name, null, null, [],
                    d.Driver is null ? "no driver bound (`vfio bind` gives it to vfio-pci)" : $"bound to {d.Driver}");
        }
    }

    private static Controller Identify(CliContext ctx, DeviceTarget target, string driver, bool allowNoIommu)
    {
        try
        {
            using var session = NvmeCommands.Session.Open(ctx, target, allowNoIommu);
            var id = session.Controller.Identity;
            var namespaces = session.Controller.Namespaces
                .Select(ns => new Namespace(ns.Id, $"{target}", ns.BlockCount, ns.BlockSize, ns.Identify.Utilization))
                .ToList();
            return new Controller(target.ToString(), driver, null, id.ModelNumber, id.SerialNumber, id.FirmwareRevision, namespaces, null);
        }
        catch (Exception e) when (e is IOException or CliException)
        {
            // A listing goes on past one controller it cannot open (held by another process, not answering).
            return new Controller(target.ToString(), driver, null, null, null, null, [], $"not identified: {e.Message}");
        }
    }

    [GeneratedRegex(@"^nvme(\d+)(?:c\d+)?n(\d+)$", RegexOptions.CultureInvariant)]
    private static partial Regex NamespaceDirectory();

    /// <summary>What the kernel's nvme driver put in sysfs for the controller at <paramref name="address"/>.</summary>
    private static Controller FromSysfs(CliContext ctx, string address)
    {
        string root = Path.Combine(ctx.SysfsRoot, "bus", "pci", "devices", address, "nvme");
        var dir = Directory.Exists(root) ? Directory.GetDirectories(root).Order(StringComparer.Ordinal).FirstOrDefault() : null;
        if (dir is null)
        {
            return new Controller(address, "nvme", null, null, null, null, [], "bound to nvme, but no controller in sysfs yet");
        }
        var namespaces = new List<Namespace>();
        foreach (var nsDir in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
        {
            // nvmeXnY, or with native multipath nvmeXcYnZ: the path device; its block device is /dev/nvmeXnZ.
            var m = NamespaceDirectory().Match(Path.GetFileName(nsDir));
            if (!m.Success) { continue; }
            uint nsid = ReadNumber(Path.Combine(nsDir, "nsid")) is { } n ? (uint)n : uint.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            int blockSize = (int)(ReadNumber(Path.Combine(nsDir, "queue", "logical_block_size")) ?? 512);
            ulong sectors = ReadNumber(Path.Combine(nsDir, "size")) ?? 0;   // in 512-byte sectors, whatever the block size
            ulong blocks = sectors * 512 / (ulong)blockSize;
            namespaces.Add(new Namespace(nsid, $"/dev/nvme{m.Groups[1].Value}n{m.Groups[2].Value}", blocks, blockSize,
                ReadNumber(Path.Combine(nsDir, "nuse"))));
        }
        return new Controller(address, "nvme", Path.GetFileName(dir), ReadText(Path.Combine(dir, "model")), ReadText(Path.Combine(dir, "serial")),
            ReadText(Path.Combine(dir, "firmware_rev")), [.. namespaces.DistinctBy(n => n.DevicePath)], null);
    }

    private static string? ReadText(string path)
    {
        try { return File.ReadAllText(path).Trim(); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static ulong? ReadNumber(string path) =>
        ReadText(path) is { } text && ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;

    /// <summary>
    /// <c>Devices</c>: one entry per namespace with <c>nvme list -o json</c>'s fields (NameSpace, DevicePath, Firmware,
    /// ModelNumber, SerialNumber, UsedBytes, MaximumLBA, PhysicalSize, SectorSize) plus Address and Driver; DevicePath is
    /// the block device under the kernel, the BDF or socket otherwise. UsedBytes is null when unknown (a kernel without the
    /// nuse sysfs attribute). <c>Controllers</c>: every controller, with or without namespaces, and why one was not identified.
    /// </summary>
    internal static FieldJson ToJson(IReadOnlyList<Controller> controllers)
    {
        var devices = new List<FieldJson>();
        foreach (var c in controllers)
        {
            foreach (var ns in c.Namespaces)
            {
                devices.Add(new FieldJson()
                    .Add("NameSpace", ns.Nsid)
                    .Add("DevicePath", ns.DevicePath)
                    .Add("Firmware", c.Firmware)
                    .Add("ModelNumber", c.Model)
                    .Add("SerialNumber", c.Serial)
                    .Add("UsedBytes", ns.UsedBlocks is { } used ? used * (ulong)ns.BlockSize : null)
                    .Add("MaximumLBA", ns.Blocks)
                    .Add("PhysicalSize", ns.Blocks * (ulong)ns.BlockSize)
                    .Add("SectorSize", ns.BlockSize)
                    .Add("Address", c.Address)
                    .Add("Driver", c.Driver));
            }
        }
        var list = controllers.Select(c => new FieldJson()
            .Add("Address", c.Address)
            .Add("Driver", c.Driver)
            .Add("Controller", c.Name)
            .Add("ModelNumber", c.Model)
            .Add("SerialNumber", c.Serial)
            .Add("Firmware", c.Firmware)
            .Add("Namespaces", c.Namespaces.Count)
            .Add("CapacityBytes", c.Namespaces.Aggregate(0UL, (sum, ns) => sum + ns.Blocks * (ulong)ns.BlockSize))
            .Add("Note", c.Note)).ToList();
        return new FieldJson().Add("Devices", devices).Add("Controllers", list);
    }

    private static void Show(CliContext ctx, IReadOnlyList<Controller> controllers)
    {
        if (controllers.Count == 0)
        {
            ctx.Say("No NVMe controllers found.");
            return;
        }
        var table = Tables.Create(null, "Address", "Driver", "Device", "Model", "Serial", "Firmware", "NSID", "Usage", "Format");
        foreach (var c in controllers)
        {
            if (c.Namespaces.Count == 0)
            {
                table.AddRow(new Text(c.Address), new Text(c.Driver ?? "-"), new Text(c.Name ?? "-"), new Text(c.Model ?? "-"),
                    new Text(c.Serial ?? "-"), new Text(c.Firmware ?? "-"), new Text("-"), new Text(c.Note ?? "no namespaces"), new Text("-"));
                continue;
            }
            foreach (var ns in c.Namespaces)
            {
                ulong size = ns.Blocks * (ulong)ns.BlockSize;
                // nvme list prints usage in powers of 1000 ("1.07 GB / 1.07 GB").
                string usage = ns.UsedBlocks is { } used ? $"{Si(used * (ulong)ns.BlockSize)} / {Si(size)}" : Si(size);
                table.AddRow(new Text(c.Address), new Text(c.Driver ?? "-"), new Text(ns.DevicePath), new Text(c.Model ?? "-"),
                    new Text(c.Serial ?? "-"), new Text(c.Firmware ?? "-"), new Text(ns.Nsid.ToString(CultureInfo.InvariantCulture)),
                    new Text(usage), new Text($"{ns.BlockSize} B + 0 B"));
            }
        }
        ctx.Console.Write(table);
    }

    private static string Si(ulong bytes)
    {
        string[] units = ["B", "kB", "MB", "GB", "TB", "PB"];
        double v = bytes;
        int u = 0;
        while (v >= 1000 && u < units.Length - 1) { v /= 1000; u++; }
        return u == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes} B") : string.Create(CultureInfo.InvariantCulture, $"{v:F2} {units[u]}");
    }
}
