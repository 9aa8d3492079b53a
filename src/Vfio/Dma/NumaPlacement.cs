using System.Globalization;

namespace Vfio.Dma;

/// <summary>
/// Where DMA memory for a device should live: on the device's NUMA node, so the device's reads and writes do not
/// cross the interconnect. The decision is a pure function of what sysfs says (tested without a kernel); applying it
/// is one mbind(2) with MPOL_PREFERRED on a fresh mapping before its pages are faulted in, so a node without free
/// pages falls back to the others instead of failing (Documentation/admin-guide/mm/numa_memory_policy.rst).
/// </summary>
internal static class NumaPlacement
{
    /// <summary>
    /// The node to prefer for a device whose sysfs <c>numa_node</c> is <paramref name="deviceNode"/> on a host whose
    /// <c>/sys/devices/system/node/online</c> reads <paramref name="onlineNodes"/>; null (no policy, the kernel's
    /// default) when the host has one node, the device has none (-1), or the list is missing or unreadable.
    /// </summary>
    public static int? Choose(long? deviceNode, string? onlineNodes)
    {
        if (deviceNode is not { } node || node < 0 || node > 63) { return null; }
        var online = ParseNodeList(onlineNodes);
        return online is { Count: > 1 } && online.Contains((int)node) ? (int)node : null;
    }

    /// <summary>Parses a kernel node list ("0", "0-3", "0,2-3"); null when it is not one.</summary>
    public static IReadOnlySet<int>? ParseNodeList(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) { return null; }
        var nodes = new HashSet<int>();
        foreach (var part in text.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var range = part.Split('-');
            if (range.Length is < 1 or > 2
                || !int.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out int first)
                || !int.TryParse(range[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int last)
                || last < first || last > 1023)
            {
                return null;
            }
            for (int n = first; n <= last; n++) { nodes.Add(n); }
        }
        return nodes;
    }

    /// <summary>What sysfs under <paramref name="sysfsRoot"/> says for the device at <paramref name="address"/>.</summary>
    public static int? ForDevice(string sysfsRoot, PciAddress address)
    {
        string? Read(string path)
        {
            try { return File.ReadAllText(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        }
        var node = Read(Path.Combine(sysfsRoot, "bus", "pci", "devices", address.ToString(), "numa_node"));
        long? parsed = long.TryParse(node?.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n) ? n : null;
        return Choose(parsed, Read(Path.Combine(sysfsRoot, "devices", "system", "node", "online")));
    }

    /// <summary>
    /// Asks the kernel to take the pages of the fresh mapping at <paramref name="address"/> from <paramref name="node"/>
    /// when it can (MPOL_PREFERRED). Best effort: false when the kernel refused (no NUMA support, a seccomp filter),
    /// and the pages then come from wherever the default policy puts them.
    /// </summary>
    public static bool Prefer(nint address, ulong length, int node)
    {
        ulong mask = 1UL << node;
        return Interop.Libc.mbind(address, (nuint)length, Interop.Libc.MPOL_PREFERRED, ref mask, 64, 0) == 0;
    }
}
