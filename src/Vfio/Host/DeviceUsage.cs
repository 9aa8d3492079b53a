using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Vfio.Host;

/// <summary>
/// Finds what the host still does with a PCI device that a kernel driver holds, from sysfs and procfs alone: its
/// block devices (mounted, swap, dm/md holders, open files, the root filesystem) and its network interfaces (up with
/// addresses or routes, the default route). Every path is under the given roots, so a fake tree can stand in.
/// </summary>
/// <remarks>
/// The device's block devices are those whose sysfs object lies below the PCI function's own folder (an NVMe
/// namespace under <c>BDF/nvme/nvme0/nvme0n1</c>, a SATA disk under <c>BDF/ata1/.../block/sda</c>), found by
/// resolving every <c>/sys/block/*</c> link; partitions are the subfolders that have a <c>partition</c> attribute
/// (Documentation/ABI/testing/sysfs-block). What a scan cannot read (a process that exits, another user's fd table)
/// is skipped: the check errs towards letting the caller decide, and says so in the log.
/// </remarks>
internal sealed class DeviceUsage(string sysfsRoot, string procfsRoot, string devRoot, ILogger logger)
{
    /// <summary>At most this many fd links are read over all processes, so a busy host cannot stall a bind.</summary>
    internal const int MaxFdLinks = 1 << 20;

    /// <summary>IFF_UP in the interface's <c>flags</c> attribute (include/uapi/linux/if.h).</summary>
    private const ulong IffUp = 0x1;

    /// <summary>IPv6 link-local scope as /proc/net/if_inet6 prints it (IPV6_ADDR_LINKLOCAL in include/net/ipv6.h).</summary>
    private const int Ipv6ScopeLink = 0x20;

    /// <summary>A block device of the device: its name, its sysfs folder and "major:minor".</summary>
    private sealed record BlockNode(string Name, string Folder, string? Numbers);

    /// <summary>Every use found, the most serious kind first (<see cref="DeviceUseKind"/> order).</summary>
    public IReadOnlyList<DeviceUse> Find(string deviceFolder)
    {
        var uses = new List<DeviceUse>();
        if (RealPath(deviceFolder) is not { } device) { return uses; }

        var blocks = BlockNodes(device);
        var mounts = ReadMounts();
        if (blocks.Count > 0)
        {
            FindBoot(device, mounts, uses);
            FindMounts(blocks, mounts, uses);
            FindSwap(blocks, uses);
            FindHolders(blocks, uses);
        }
        // The controller's own character node (/dev/nvme0) is what nvme-cli and smartd hold open.
        var openable = blocks.Select(b => b.Name).Concat(ChildNames(Path.Combine(device, "nvme"))).ToList();
        if (openable.Count > 0) { FindOpenFiles(openable, uses); }
        FindInterfaces(device, uses);

        uses.Sort((a, b) => a.Kind.CompareTo(b.Kind));
        return uses;
    }

    // ---------------------------------------------------------------- block devices

    private List<BlockNode> BlockNodes(string device)
    {
        var nodes = new List<BlockNode>();
        foreach (var disk in ChildEntries(Path.Combine(sysfsRoot, "block")))
        {
            if (RealPath(disk) is not { } real || !LiesOn(real, device, depth: 0)) { continue; }
            nodes.Add(Node(Path.GetFileName(disk), real));
            foreach (var sub in ChildEntries(real))
            {
                if (File.Exists(Path.Combine(sub, "partition"))) { nodes.Add(Node(Path.GetFileName(sub), sub)); }
            }
        }
        return nodes;
    }

    private static BlockNode Node(string name, string folder) => new(name, folder, SysfsFile.ReadText(Path.Combine(folder, "dev")));

    private string DevNode(string name) => Path.Combine(devRoot, name);

    private void FindMounts(List<BlockNode> blocks, List<Mount> mounts, List<DeviceUse> uses)
    {
        foreach (var block in blocks)
        {
            // btrfs and some others report an anonymous 0:N in mountinfo, so the source device counts as well.
            // A hidden multipath path (nvmeXcYnZ) has no dev file, so no numbers: it must not match the anonymous 0:N mounts.
            foreach (var mount in mounts.Where(m => (block.Numbers is not null && m.Numbers == block.Numbers) || m.Source == DevNode(block.Name)))
            {
                uses.Add(new DeviceUse(DeviceUseKind.Mounted, block.Name, mount.MountPoint));
            }
        }
    }

    private void FindSwap(List<BlockNode> blocks, List<DeviceUse> uses)
    {
        // proc(5): /proc/swaps is a header line, then "Filename Type Size Used Priority" with octal escapes.
        foreach (var fields in ProcTable("swaps", headerLines: 1))
        {
            var file = Unescape(fields[0]);
            foreach (var block in blocks.Where(b => DevNode(b.Name) == file))
            {
                uses.Add(new DeviceUse(DeviceUseKind.Swap, block.Name, file));
            }
        }
    }

    private static void FindHolders(List<BlockNode> blocks, List<DeviceUse> uses)
    {
        foreach (var block in blocks)
        {
            foreach (var holder in ChildNames(Path.Combine(block.Folder, "holders")))
            {
                uses.Add(new DeviceUse(DeviceUseKind.Holder, block.Name, holder));
            }
        }
    }

    private void FindBoot(string device, List<Mount> mounts, List<DeviceUse> uses)
    {
        // The last mount of "/" in mountinfo is the one in effect (later mounts stack on earlier ones).
        if (mounts.LastOrDefault(m => m.MountPoint == "/") is not { } root) { return; }
        string? folder = root.Numbers is { } n ? RealPath(Path.Combine(sysfsRoot, "dev", "block", n)) : null;
        if (folder is null && root.Source.StartsWith(devRoot, StringComparison.Ordinal))
        {
            folder = RealPath(Path.Combine(sysfsRoot, "class", "block", Path.GetFileName(root.Source)));
        }
        if (folder is not null && LiesOn(folder, device, depth: 0))
        {
            uses.Add(new DeviceUse(DeviceUseKind.BootDevice, Path.GetFileName(folder), $"/ from {root.Source}"));
        }
    }

    /// <summary>
    /// Whether a block device is on the PCI device: its sysfs object lies below the device's, or one of the devices it
    /// is stacked on does (at most 8 deep). A dm or md device lists those in <c>slaves/</c>; an NVMe multipath head
    /// (<c>/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1</c>, CONFIG_NVME_MULTIPATH) links each path's
    /// hidden disk, which sits under its controller, in <c>multipath/</c> (drivers/nvme/host/multipath.c).
    /// </summary>
    private static bool LiesOn(string blockFolder, string device, int depth)
    {
        if (IsBelow(blockFolder, device)) { return true; }
        if (depth >= 8) { return false; }
        return ChildEntries(Path.Combine(blockFolder, "slaves")).Concat(ChildEntries(Path.Combine(blockFolder, "multipath")))
            .Any(s => RealPath(s) is { } r && LiesOn(r, device, depth + 1));
    }

    // ---------------------------------------------------------------- open files

    private void FindOpenFiles(List<string> names, List<DeviceUse> uses)
    {
        var wanted = names.ToDictionary(DevNode, n => n, StringComparer.Ordinal);
        int seen = 0;
        foreach (var process in ChildEntries(procfsRoot))
        {
            var pid = Path.GetFileName(process);
            if (pid.Length == 0 || !pid.All(char.IsAsciiDigit)) { continue; }
            var found = new HashSet<string>(StringComparer.Ordinal);
            foreach (var fd in ChildEntries(Path.Combine(process, "fd")))
            {
                if (++seen > MaxFdLinks)
                {
                    HostLog.OpenFileScanStopped(logger, MaxFdLinks);
                    return;
                }
                string? target;
                try { target = new FileInfo(fd).LinkTarget; }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                if (target is not null && wanted.TryGetValue(target, out var name) && found.Add(name))
                {
                    var comm = SysfsFile.ReadText(Path.Combine(process, "comm"));
                    uses.Add(new DeviceUse(DeviceUseKind.OpenFile, name, comm is null ? $"pid {pid}" : $"pid {pid} ({comm})"));
                }
            }
        }
    }

    // ---------------------------------------------------------------- network interfaces

    private void FindInterfaces(string device, List<DeviceUse> uses)
    {
        // An interface sits under BDF/net for most NIC drivers, deeper for others (virtio-net: BDF/virtio2/net/eth0),
        // so every /sys/class/net link is resolved, as for block devices.
        var interfaces = new List<(string Name, string Folder)>();
        foreach (var link in ChildEntries(Path.Combine(sysfsRoot, "class", "net")))
        {
            if (RealPath(link) is { } folder && IsBelow(folder, device)) { interfaces.Add((Path.GetFileName(link), folder)); }
        }
        if (interfaces.Count == 0) { return; }
        var routes = ReadIpv4Routes();
        var v6 = ReadIpv6Addresses();
        var v6Default = ReadIpv6DefaultRoutes();
        foreach (var (name, folder) in interfaces)
        {
            bool up = SysfsFile.ReadText(Path.Combine(folder, "operstate")) == "up" ||
                      (SysfsFile.ReadHex(Path.Combine(folder, "flags")) is { } flags && (flags & IffUp) != 0);
            if (!up) { continue; }

            var defaults = routes.Where(r => r.Interface == name && r.IsDefault).Select(r => $"via {r.Gateway}")
                .Concat(v6Default.Where(r => r.Interface == name).Select(r => $"via {r.Address}")).ToList();
            if (defaults.Count > 0)
            {
                uses.Add(new DeviceUse(DeviceUseKind.DefaultRoute, name, string.Join(", ", defaults)));
                continue;
            }
            var addresses = routes.Where(r => r.Interface == name).Select(r => $"route {r.Destination}")
                .Concat(v6.Where(a => a.Interface == name).Select(a => a.Address)).ToList();
            if (addresses.Count > 0)
            {
                uses.Add(new DeviceUse(DeviceUseKind.InterfaceUp, name, string.Join(", ", addresses)));
            }
        }
    }

    private sealed record Ipv4Route(string Interface, string Destination, string Gateway, bool IsDefault);

    private sealed record InterfaceAddress(string Interface, string Address);

    private List<Ipv4Route> ReadIpv4Routes()
    {
        // /proc/net/route (net/ipv4/fib_trie.c fib_route_seq_show): a header, then "Iface Destination Gateway Flags
        // RefCnt Use Metric Mask MTU Window IRTT", addresses as %08X of the network-order word. The kernel adds a
        // prefix route for each address, so an interface with an IPv4 address shows up here.
        var result = new List<Ipv4Route>();
        foreach (var f in ProcTable(Path.Combine("net", "route"), headerLines: 1))
        {
            if (f.Length < 8 || Ipv4(f[1]) is not { } dest || Ipv4(f[2]) is not { } gateway || Ipv4(f[7]) is not { } mask) { continue; }
            int prefix = System.Numerics.BitOperations.PopCount(BinaryPrimitives.ReadUInt32BigEndian(mask.GetAddressBytes()));
            result.Add(new Ipv4Route(f[0], $"{dest}/{prefix}", gateway.ToString(), dest.Equals(IPAddress.Any) && prefix == 0));
        }
        return result;
    }

    private static IPAddress? Ipv4(string hex) =>
        uint.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var word)
            // The kernel prints the __be32 as a host-order integer; on little-endian hosts the bytes read reversed.
            ? new IPAddress(BitConverter.IsLittleEndian ? word : BinaryPrimitives.ReverseEndianness(word))
            : null;

    private List<InterfaceAddress> ReadIpv6Addresses()
    {
        // /proc/net/if_inet6 (net/ipv6/addrconf.c if6_seq_show): "address ifindex prefixlen scope flags name".
        // Link-local addresses come with every interface that is up and carry no host traffic, so they do not count.
        var result = new List<InterfaceAddress>();
        foreach (var f in ProcTable(Path.Combine("net", "if_inet6"), headerLines: 0))
        {
            if (f.Length < 6 || Ipv6(f[0]) is not { } address ||
                !int.TryParse(f[2], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var prefix) ||
                !int.TryParse(f[3], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var scope) ||
                scope == Ipv6ScopeLink)
            {
                continue;
            }
            result.Add(new InterfaceAddress(f[5], string.Create(CultureInfo.InvariantCulture, $"{address}/{prefix}")));
        }
        return result;
    }

    private List<InterfaceAddress> ReadIpv6DefaultRoutes()
    {
        // /proc/net/ipv6_route (net/ipv6/route.c ipv6_route_native_seq_show): "dest plen src splen nexthop metric
        // refcnt use flags name", addresses as 32 hex digits; the default route is ::/0.
        var result = new List<InterfaceAddress>();
        foreach (var f in ProcTable(Path.Combine("net", "ipv6_route"), headerLines: 0))
        {
            if (f.Length < 10 || f[9] == "lo" || f[1] != "00" || Ipv6(f[0]) is not { } dest || !dest.Equals(IPAddress.IPv6Any) ||
                Ipv6(f[4]) is not { } nextHop)
            {
                continue;
            }
            result.Add(new InterfaceAddress(f[9], nextHop.ToString()));
        }
        return result;
    }

    /// <summary>The rows of a whitespace-separated procfs table, split into fields; none when the file is absent.</summary>
    private IEnumerable<string[]> ProcTable(string relative, int headerLines) =>
        (SysfsFile.ReadText(Path.Combine(procfsRoot, relative)) ?? "").Split('\n').Skip(headerLines)
            .Select(line => line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length > 0);

    private static IPAddress? Ipv6(string hex)
    {
        if (hex.Length != 32) { return null; }
        try { return new IPAddress(Convert.FromHexString(hex)); }
        catch (FormatException) { return null; }
    }

    // ---------------------------------------------------------------- mounts and paths

    private sealed record Mount(string? Numbers, string MountPoint, string Source);

    private List<Mount> ReadMounts()
    {
        // proc(5) /proc/PID/mountinfo: "id parent major:minor root mount-point options [optional...] - type source
        // super-options", with space, tab, newline and backslash escaped as octal.
        var result = new List<Mount>();
        var text = SysfsFile.ReadText(Path.Combine(procfsRoot, "self", "mountinfo"));
        if (text is null) { return result; }
        foreach (var line in text.Split('\n'))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int dash = Array.IndexOf(f, "-");
            if (f.Length < 5 || dash < 0 || dash + 2 >= f.Length) { continue; }
            result.Add(new Mount(f[2].StartsWith("0:", StringComparison.Ordinal) ? null : f[2], Unescape(f[4]), Unescape(f[dash + 2])));
        }
        return result;
    }

    private static string Unescape(string text)
    {
        if (!text.Contains('\\', StringComparison.Ordinal)) { return text; }
        var builder = new System.Text.StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 3 < text.Length && IsOctal(text[i + 1]) && IsOctal(text[i + 2]) && IsOctal(text[i + 3]))
            {
                builder.Append((char)(((text[i + 1] - '0') << 6) | ((text[i + 2] - '0') << 3) | (text[i + 3] - '0')));
                i += 3;
            }
            else { builder.Append(text[i]); }
        }
        return builder.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';

    private static bool IsBelow(string path, string folder) =>
        path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>The folder a path ends at once every symlink on its last component is followed; null when absent.</summary>
    private static string? RealPath(string path)
    {
        try
        {
            var info = new DirectoryInfo(path);
            var final = info.LinkTarget is null ? info : info.ResolveLinkTarget(returnFinalTarget: true);
            return final is { Exists: true } ? Path.TrimEndingDirectorySeparator(final.FullName) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static List<string> ChildEntries(string folder)
    {
        try { return Directory.Exists(folder) ? [.. Directory.EnumerateFileSystemEntries(folder)] : []; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    private static List<string> ChildNames(string folder) => [.. ChildEntries(folder).Select(Path.GetFileName).OfType<string>()];
}
