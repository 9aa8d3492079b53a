using System.Globalization;

namespace Vfio.Host;

/// <summary>
/// Reads sysfs and procfs attributes. Attributes are short text ending in a newline; an attribute that is
/// missing (the device went away, the kernel lacks the feature) reads as null, never as an exception, and
/// each caller decides what absence means.
/// </summary>
internal static class SysfsFile
{
    public static string? ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path).TrimEnd('\n', ' ', '\0');
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Parses "0x8086" (vendor, device, class, revision attributes are printed with %#x / 0x%04x).</summary>
    public static ulong? ReadHex(string path) => ParseHex(ReadText(path));

    public static ulong? ParseHex(string? text)
    {
        if (text is null) { return null; }
        var s = text.AsSpan().Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) { s = s[2..]; }
        return ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    public static long? ReadDecimal(string path) =>
        long.TryParse(ReadText(path), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null;

    /// <summary>
    /// The last path component of a symlink's target (<c>driver -&gt; ../../../bus/pci/drivers/nvme</c> gives
    /// "nvme"), or null when there is no link. The target is not resolved: sysfs names the object in it.
    /// </summary>
    public static string? LinkName(string path)
    {
        var target = new FileInfo(path).LinkTarget;
        return target is null ? null : Path.GetFileName(target.TrimEnd('/'));
    }
}
