using System.Globalization;

namespace Vfio.Cli.Output;

/// <summary>
/// Vendor and device names from a pci.ids file (the PCI ID Repository's format, as pciutils and hwdata install it).
/// Only vendors and their devices are read; the file is read on the first lookup, once.
/// </summary>
/// <remarks>
/// The format: a vendor line is four hex digits, two spaces and the name; its devices follow as lines indented by one
/// tab; lines indented by two tabs are subsystems (skipped); '#' starts a comment. The device-class list at the end of
/// the file ("C 01  Mass storage controller") ends the part this reader needs.
/// </remarks>
internal sealed class PciIds
{
    private readonly string? _path;
    private Dictionary<ushort, Vendor>? _vendors;

    internal sealed record Vendor(string Name, Dictionary<ushort, string> Devices);

    private PciIds(string? path) => _path = path;

    /// <summary>No database: every lookup answers null.</summary>
    public static PciIds None { get; } = new(null);

    /// <summary>The database in the first of <paramref name="paths"/> that exists, or <see cref="None"/>.</summary>
    public static PciIds Find(IEnumerable<string> paths) =>
        paths.FirstOrDefault(File.Exists) is { } path ? new PciIds(path) : None;

    /// <summary>The file names are read from, or null.</summary>
    public string? Path => _path;

    /// <summary>The vendor's name, or null when unknown.</summary>
    public string? VendorName(ushort vendor) => Vendors.TryGetValue(vendor, out var v) ? v.Name : null;

    /// <summary>The device's name, or null when unknown.</summary>
    public string? DeviceName(ushort vendor, ushort device) =>
        Vendors.TryGetValue(vendor, out var v) && v.Devices.TryGetValue(device, out var name) ? name : null;

    private Dictionary<ushort, Vendor> Vendors => _vendors ??= _path is null ? [] : Load(_path);

    private static Dictionary<ushort, Vendor> Load(string path)
    {
        try
        {
            return Parse(File.ReadLines(path));
        }
        catch (IOException)
        {
            // Names are a nicety: an unreadable file means no names, not a failed command.
            return [];
        }
        catch (UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>Parses the lines of a pci.ids file.</summary>
    internal static Dictionary<ushort, Vendor> Parse(IEnumerable<string> lines)
    {
        var vendors = new Dictionary<ushort, Vendor>();
        Vendor? current = null;
        foreach (var line in lines)
        {
            if (line.Length == 0 || line[0] == '#') { continue; }
            if (line.StartsWith("C ", StringComparison.Ordinal)) { break; }
            if (line[0] != '\t')
            {
                current = TryParseEntry(line, out var id, out var name) ? new Vendor(name, []) : null;
                if (current is not null) { vendors[id] = current; }
            }
            else if (current is not null && (line.Length < 2 || line[1] != '\t') &&
                     TryParseEntry(line.AsSpan(1), out var device, out var deviceName))
            {
                current.Devices[device] = deviceName;
            }
        }
        return vendors;
    }

    private static bool TryParseEntry(ReadOnlySpan<char> line, out ushort id, out string name)
    {
        name = "";
        id = 0;
        if (line.Length < 6 || !ushort.TryParse(line[..4], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id))
        {
            return false;
        }
        name = line[4..].Trim().ToString();
        return name.Length > 0;
    }
}
