using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Host;

/// <summary>
/// One hugepage pool (<c>/sys/kernel/mm/hugepages/hugepages-NkB</c>, Documentation/admin-guide/mm/hugetlbpage.rst).
/// </summary>
/// <param name="PageSize">Bytes per page (2 MiB, 1 GiB on x86_64).</param>
/// <param name="Total">Pages in the pool (<c>nr_hugepages</c>).</param>
/// <param name="Free">Pages not yet faulted in by anyone (<c>free_hugepages</c>).</param>
/// <param name="Reserved">Free pages promised to existing mappings but not faulted in yet (<c>resv_hugepages</c>).</param>
/// <param name="Surplus">Pages beyond <c>nr_hugepages</c> taken through overcommit (<c>surplus_hugepages</c>).</param>
public sealed record HugePageInfo(ulong PageSize, long Total, long Free, long Reserved, long Surplus)
{
    /// <summary>Pages a new mapping can still get: free and not reserved.</summary>
    public long Available => Math.Max(0, Free - Reserved);
}

/// <summary>A mounted hugetlbfs (from /proc/mounts) and the page size its files use.</summary>
/// <param name="MountPoint">Where it is mounted.</param>
/// <param name="PageSize">Its <c>pagesize=</c> option, or the default hugepage size when the option is absent.</param>
public sealed record HugetlbfsMount(string MountPoint, ulong PageSize);

/// <summary>The outcome of <see cref="HugePages.Reserve(ulong, int)"/>: the kernel may give fewer pages than asked.</summary>
/// <param name="PageSize">Bytes per page.</param>
/// <param name="Requested">Pool size asked for.</param>
/// <param name="Granted">Pool size the kernel reports afterwards.</param>
public sealed record HugePageReservation(ulong PageSize, int Requested, long Granted)
{
    /// <summary>The NUMA node whose pool was set (<see cref="HugePages.Reserve(ulong, int, int)"/>), or null for the system-wide pool.</summary>
    public int? Node { get; init; }

    /// <summary>The pool has at least the size asked for.</summary>
    public bool IsComplete => Granted >= Requested;
}

/// <summary>The host's hugepage pools and hugetlbfs mounts, where DMA buffers of 2 MiB or 1 GiB come from.</summary>
public sealed class HugePages
{
    private readonly string _sysfsRoot;
    private readonly string _procfsRoot;
    private readonly AttributeWriter _writer;

    /// <summary>Creates a view over the given roots.</summary>
    /// <param name="sysfsRoot">Where sysfs is mounted.</param>
    /// <param name="procfsRoot">Where procfs is mounted.</param>
    /// <param name="logger">Receives what is changed; nothing is logged when null.</param>
    /// <param name="writer">Performs attribute writes; <see cref="SysfsWriter.Instance"/> when null.</param>
    public HugePages(string sysfsRoot = "/sys", string procfsRoot = "/proc",
        Microsoft.Extensions.Logging.ILogger? logger = null, ISysfsWriter? writer = null)
        : this(sysfsRoot, procfsRoot, new AttributeWriter(writer ?? SysfsWriter.Instance, logger ?? NullLogger.Instance)) { }

    internal HugePages(string sysfsRoot, string procfsRoot, AttributeWriter writer)
    {
        _sysfsRoot = sysfsRoot;
        _procfsRoot = procfsRoot;
        _writer = writer;
    }

    private string PoolsDir => Path.Combine(_sysfsRoot, "kernel", "mm", "hugepages");

    private string PoolDir(ulong pageSize) =>
        Path.Combine(PoolsDir, string.Create(CultureInfo.InvariantCulture, $"hugepages-{pageSize / 1024}kB"));

    /// <summary>Every hugepage pool the kernel offers, smallest page size first; empty without hugetlb support.</summary>
    public IReadOnlyList<HugePageInfo> GetPools()
    {
        if (!Directory.Exists(PoolsDir)) { return []; }
        var pools = new List<HugePageInfo>();
        foreach (var dir in Directory.EnumerateDirectories(PoolsDir, "hugepages-*kB"))
        {
            if (TryParsePoolName(Path.GetFileName(dir), out var size) && ReadPool(dir, size) is { } pool)
            {
                pools.Add(pool);
            }
        }
        pools.Sort((a, b) => a.PageSize.CompareTo(b.PageSize));
        return pools;
    }

    /// <summary>The pool of <paramref name="pageSize"/>-byte pages, or null when the kernel has none.</summary>
    public HugePageInfo? GetPool(ulong pageSize) => ReadPool(PoolDir(pageSize), pageSize);

    internal static bool TryParsePoolName(string name, out ulong pageSize)
    {
        pageSize = 0;
        var s = name.AsSpan();
        if (!s.StartsWith("hugepages-", StringComparison.Ordinal) || !s.EndsWith("kB", StringComparison.Ordinal)) { return false; }
        if (!ulong.TryParse(s["hugepages-".Length..^2], NumberStyles.None, CultureInfo.InvariantCulture, out var kib)) { return false; }
        pageSize = kib * 1024;
        return true;
    }

    private static HugePageInfo? ReadPool(string dir, ulong pageSize)
    {
        if (!Directory.Exists(dir)) { return null; }
        long Read(string name) => SysfsFile.ReadDecimal(Path.Combine(dir, name)) ?? 0;
        return new HugePageInfo(pageSize, Read("nr_hugepages"), Read("free_hugepages"), Read("resv_hugepages"),
            Read("surplus_hugepages"));
    }

    /// <summary>
    /// Mounted hugetlbfs file systems from <c>PROCFS/mounts</c>. A mount without a <c>pagesize=</c> option uses the
    /// default hugepage size (<c>Hugepagesize</c> in /proc/meminfo).
    /// </summary>
    public IReadOnlyList<HugetlbfsMount> GetMounts()
    {
        var text = SysfsFile.ReadText(Path.Combine(_procfsRoot, "mounts"));
        return text is null ? [] : ParseMounts(text, DefaultPageSize());
    }

    /// <summary>The default hugepage size (<c>Hugepagesize</c> in /proc/meminfo), or null when hugetlb is absent.</summary>
    public ulong? DefaultPageSize()
    {
        var text = SysfsFile.ReadText(Path.Combine(_procfsRoot, "meminfo"));
        if (text is null) { return null; }
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            // "Hugepagesize:       2048 kB"
            if (!line.StartsWith("Hugepagesize:", StringComparison.Ordinal)) { continue; }
            var value = line["Hugepagesize:".Length..].Trim();
            if (value.EndsWith("kB", StringComparison.Ordinal)) { value = value[..^2].TrimEnd(); }
            return ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var kib) ? kib * 1024 : null;
        }
        return null;
    }

    internal static IReadOnlyList<HugetlbfsMount> ParseMounts(string mountsText, ulong? defaultPageSize)
    {
        var result = new List<HugetlbfsMount>();
        foreach (var line in mountsText.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // fstab format (proc(5)): device mountpoint fstype options dump pass; spaces in fields are escaped as \040.
            var fields = line.Split(' ');
            if (fields.Length < 4 || fields[2] != "hugetlbfs") { continue; }
            ulong? size = defaultPageSize;
            foreach (var option in fields[3].Split(','))
            {
                if (option.StartsWith("pagesize=", StringComparison.Ordinal) &&
                    ParseSize(option["pagesize=".Length..]) is { } s)
                {
                    size = s;
                }
            }
            if (size is { } pageSize) { result.Add(new HugetlbfsMount(Unescape(fields[1]), pageSize)); }
        }
        return result;
    }

    /// <summary>Parses the kernel's memparse format as /proc/mounts shows it: "2M", "1024M", "1G", "2048k", "2097152".</summary>
    internal static ulong? ParseSize(string text)
    {
        if (text.Length == 0) { return null; }
        ulong multiplier = char.ToUpperInvariant(text[^1]) switch
        {
            'K' => 1UL << 10,
            'M' => 1UL << 20,
            'G' => 1UL << 30,
            'T' => 1UL << 40,
            _ => 1,
        };
        var digits = multiplier == 1 ? text : text[..^1];
        return ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n * multiplier : null;
    }

    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal)) { return field; }
        var sb = new StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                sb.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }
        return sb.ToString();

        static bool IsOctal(char c) => c is >= '0' and <= '7';
    }

    /// <summary>
    /// Sets the pool of <paramref name="pageSize"/>-byte pages to <paramref name="count"/> pages by writing
    /// <c>nr_hugepages</c>, and reports what the kernel made of it: it gives fewer pages when memory is short or too
    /// fragmented (1 GiB pages often need to be reserved at boot), and never more. Shrinking the pool frees only pages
    /// nobody uses. Needs root.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    /// <exception cref="VfioUnavailableException">The kernel has no pool of that page size.</exception>
    /// <exception cref="VfioException">The write failed (e.g. <see cref="VfioPermissionException"/> when not root).</exception>
    public HugePageReservation Reserve(ulong pageSize, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var dir = PoolDir(pageSize);
        if (!Directory.Exists(dir))
        {
            var sizes = string.Join(", ", GetPools().Select(p => $"{p.PageSize / 1024} KiB"));
            throw new VfioUnavailableException($"this kernel has no pool of {pageSize}-byte hugepages",
                sizes.Length == 0
                    ? "the kernel has no hugetlb support (CONFIG_HUGETLBFS)"
                    : $"page sizes this kernel offers: {sizes}");
        }

        return WritePool(dir, pageSize, count);
    }

    /// <summary>
    /// Sets NUMA node <paramref name="node"/>'s pool of <paramref name="pageSize"/>-byte pages to <paramref name="count"/>
    /// pages (<c>/sys/devices/system/node/nodeN/hugepages/hugepages-NkB/nr_hugepages</c>, hugetlbpage.rst "Interaction
    /// of Task Memory Policy with Huge Page Allocation/Freeing"), so DMA memory for a device can come from the node the
    /// device is attached to. As <see cref="Reserve(ulong, int)"/>, the kernel may grant fewer. Needs root.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> or <paramref name="node"/> is negative.</exception>
    /// <exception cref="VfioUnavailableException">The host has no such node, or the node no pool of that page size.</exception>
    /// <exception cref="VfioException">The write failed (e.g. <see cref="VfioPermissionException"/> when not root).</exception>
    public HugePageReservation Reserve(ulong pageSize, int count, int node)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(node);
        var nodesDir = Path.Combine(_sysfsRoot, "devices", "system", "node");
        var nodeDir = Path.Combine(nodesDir, string.Create(CultureInfo.InvariantCulture, $"node{node}"));
        if (!Directory.Exists(nodeDir))
        {
            var nodes = Directory.Exists(nodesDir)
                ? Directory.GetDirectories(nodesDir, "node*").Select(Path.GetFileName).Where(n => n!.Length > 4 && n[4..].All(char.IsAsciiDigit)).Order(StringComparer.Ordinal).ToList()
                : [];
            throw new VfioUnavailableException($"this host has no NUMA node {node}",
                nodes.Count == 0 ? "the kernel shows no NUMA nodes (/sys/devices/system/node)" : $"its nodes: {string.Join(", ", nodes)}");
        }
        var dir = Path.Combine(nodeDir, "hugepages", string.Create(CultureInfo.InvariantCulture, $"hugepages-{pageSize / 1024}kB"));
        if (!Directory.Exists(dir))
        {
            throw new VfioUnavailableException($"NUMA node {node} has no pool of {pageSize}-byte hugepages",
                "the page sizes of the system-wide pools are the ones each node offers: 'vfio hugepages status'");
        }
        return WritePool(dir, pageSize, count) with { Node = node };
    }

    private HugePageReservation WritePool(string dir, ulong pageSize, int count)
    {
        HostLog.ReservingHugePages(_writer.Logger, count, pageSize);
        _writer.Write(Path.Combine(dir, "nr_hugepages"), count.ToString(CultureInfo.InvariantCulture));
        long granted = SysfsFile.ReadDecimal(Path.Combine(dir, "nr_hugepages")) ?? 0;
        if (granted < count) { HostLog.HugePagesShort(_writer.Logger, count, pageSize, granted); }
        return new HugePageReservation(pageSize, count, granted);
    }
}
