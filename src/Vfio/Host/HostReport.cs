using System.Globalization;

namespace Vfio.Host;

/// <summary>How one readiness check came out.</summary>
public enum CheckStatus
{
    /// <summary>In place.</summary>
    Ok,

    /// <summary>Works, but is unsafe, slower or missing an optional feature; the fix says what to do.</summary>
    Warning,

    /// <summary>Drivers cannot work on this host until the fix is applied.</summary>
    Failed,
}

/// <summary>One line of a <see cref="HostReport"/>.</summary>
/// <param name="Id">A stable identifier scripts can match ("iommu", "noiommu", "modules", "dev-vfio", "hugepages",
/// "memlock", "capabilities", "devices", "iommufd", "vfio-cdev").</param>
/// <param name="Title">What is checked, for people.</param>
/// <param name="Status">The outcome.</param>
/// <param name="Detail">What was found.</param>
/// <param name="Fix">What to do about a warning or failure; null when the check is ok.</param>
public sealed record HostCheck(string Id, string Title, CheckStatus Status, string Detail, string? Fix);

/// <summary>
/// Everything a host needs for userspace drivers on VFIO, checked at once so that a host that is not ready says
/// what is missing in one go rather than one error at a time: an IOMMU or No-IOMMU mode, the modules, /dev/vfio,
/// hugepages per NUMA node, the memlock limit, the process's capabilities, the devices bound to vfio-pci and their
/// groups, iommufd and the VFIO device cdev.
/// </summary>
/// <remarks>
/// Each check is a function of what the host's roots (sysfs, procfs, /dev) hold and of the limit and capabilities
/// passed in, so a fake tree gives a repeatable report; <see cref="Collect(PciHost)"/> reads the calling process's own.
/// </remarks>
public sealed class HostReport
{
    /// <summary>A locked-memory limit below this (without CAP_IPC_LOCK) fails: an NVMe controller's admin and I/O
    /// queues plus one perf run's buffers already pin tens of MiB, and many distributions default to 8 MiB.</summary>
    public const ulong MinimumMemoryLock = 64UL << 20;

    private HostReport(IReadOnlyList<HostCheck> checks) => Checks = checks;

    /// <summary>The checks, in a fixed order.</summary>
    public IReadOnlyList<HostCheck> Checks { get; }

    /// <summary>No check failed (warnings allowed).</summary>
    public bool IsReady => Checks.All(c => c.Status != CheckStatus.Failed);

    /// <summary>Checks the host as the calling process sees it (its RLIMIT_MEMLOCK and effective capabilities).</summary>
    /// <exception cref="VfioException">procfs cannot be read.</exception>
    public static HostReport Collect(PciHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        return Collect(host, PciHost.GetMemoryLockLimit(), host.GetCapabilities());
    }

    /// <summary>Checks the host's trees with the given limit and capabilities standing for the process's.</summary>
    public static HostReport Collect(PciHost host, MemoryLockLimit memoryLock, ProcessCapabilities capabilities)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(capabilities);
        var tree = new Tree(host);
        bool iommu = tree.IommuUnits.Count > 0;
        return new HostReport(
        [
            CheckIommu(tree),
            CheckNoIommu(host.GetNoIommuState(), iommu),
            CheckModules(tree),
            CheckDevVfio(tree, capabilities),
            CheckHugePages(tree, host, iommu),
            CheckMemoryLock(memoryLock, capabilities),
            CheckCapabilities(capabilities, iommu),
            CheckDevices(host),
            CheckIommufd(tree),
            CheckCdev(tree),
        ]);
    }

    /// <summary>What the checks read, gathered once.</summary>
    private sealed class Tree(PciHost host)
    {
        public PciHost Host { get; } = host;
        public IReadOnlyList<string> IommuUnits { get; } = Names(Path.Combine(host.SysfsRoot, "class", "iommu"));
        public string CommandLine { get; } = SysfsFile.ReadText(Path.Combine(host.ProcfsRoot, "cmdline")) ?? "";
        public string? KernelRelease { get; } = SysfsFile.ReadText(Path.Combine(host.ProcfsRoot, "sys", "kernel", "osrelease"));
        public string Sys(params string[] parts) => Path.Combine([Host.SysfsRoot, .. parts]);
        public string Dev(params string[] parts) => Path.Combine([Host.DevRoot, .. parts]);
        public string Kernel => KernelRelease is null ? "" : $" (kernel {KernelRelease})";
    }

    private static List<string> Names(string folder) =>
        Directory.Exists(folder) ? [.. Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)] : [];

    private static HostCheck Ok(string id, string title, string detail) => new(id, title, CheckStatus.Ok, detail, null);

    private static HostCheck CheckIommu(Tree tree)
    {
        const string id = "iommu", title = "IOMMU";
        // The kernel options that switch an IOMMU driver on or off (Documentation/admin-guide/kernel-parameters.txt).
        var options = tree.CommandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(o => o.StartsWith("intel_iommu=", StringComparison.Ordinal) || o.StartsWith("amd_iommu=", StringComparison.Ordinal) ||
                        o.StartsWith("iommu=", StringComparison.Ordinal) || o.StartsWith("iommu.", StringComparison.Ordinal))
            .ToList();
        var cmdline = options.Count == 0 ? "no IOMMU options on the kernel command line" : $"kernel command line: {string.Join(' ', options)}";
        int groups = Names(tree.Sys("kernel", "iommu_groups")).Count;
        if (tree.IommuUnits.Count > 0)
        {
            return Ok(id, title, $"{tree.IommuUnits.Count} unit(s) ({string.Join(", ", tree.IommuUnits)}), {groups} group(s); {cmdline}");
        }
        return new HostCheck(id, title, CheckStatus.Warning, $"no IOMMU in /sys/class/iommu; {cmdline}",
            "enable VT-d (Intel) or AMD-Vi in the firmware and boot with intel_iommu=on (Intel; AMD turns it on by default), " +
            "iommu=pt keeps the host's own DMA fast; without one, devices can only be used in No-IOMMU mode (unsafe, next line)");
    }

    private static HostCheck CheckNoIommu(NoIommuState state, bool iommu)
    {
        const string id = "noiommu", title = "No-IOMMU mode";
        var parameter = state.ParameterPresent ? $"enable_unsafe_noiommu_mode={(state.IsEnabled ? "Y" : "N")}" : "no enable_unsafe_noiommu_mode parameter";
        if (iommu)
        {
            return Ok(id, title, $"not needed: an IOMMU isolates the devices ({(state.VfioModuleLoaded ? parameter : "vfio not loaded")})");
        }
        if (state.IsEnabled)
        {
            return new HostCheck(id, title, CheckStatus.Warning, "ON: devices bound to vfio-pci have DMA to all memory, the kernel is tainted",
                "an IOMMU is the safe way (line above); keep No-IOMMU mode for machines without one");
        }
        var fix = !state.VfioModuleLoaded
            ? "'modprobe vfio enable_unsafe_noiommu_mode=1' and 'modprobe vfio-pci' (unsafe: no DMA isolation, taints the kernel)"
            : !state.ParameterPresent
                ? "this kernel's vfio lacks CONFIG_VFIO_NOIOMMU (Debian's do): use a kernel or vfio modules built with it, or a host with an IOMMU"
                : "'vfio noiommu enable --unsafe' (or 'echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode'), then rebind the devices";
        return new HostCheck(id, title, CheckStatus.Failed,
            $"no IOMMU and No-IOMMU mode is {(state.VfioModuleLoaded ? $"unavailable or off ({parameter})" : "unknown: the vfio module is not loaded")}",
            fix);
    }

    private static HostCheck CheckModules(Tree tree)
    {
        const string id = "modules", title = "vfio modules";
        bool vfio = Directory.Exists(tree.Sys("module", "vfio"));
        bool vfioPci = Directory.Exists(tree.Sys("bus", "pci", "drivers", PciHost.VfioPciDriver));
        var present = new[] { "vfio_iommu_type1", "iommufd" }.Where(m => Directory.Exists(tree.Sys("module", m))).ToList();
        var also = present.Count == 0 ? "" : $"; also {string.Join(", ", present)}";
        if (vfio && vfioPci) { return Ok(id, title, $"vfio and vfio-pci loaded{also}"); }
        var missing = string.Join(" and ", new[] { vfio ? null : "vfio", vfioPci ? null : "vfio-pci" }.OfType<string>());
        return new HostCheck(id, title, CheckStatus.Failed, $"{missing} not loaded{also}",
            "'modprobe vfio-pci' (it loads vfio; add 'enable_unsafe_noiommu_mode=1' to vfio's options on a host without an IOMMU)");
    }

    private static HostCheck CheckDevVfio(Tree tree, ProcessCapabilities capabilities)
    {
        const string id = "dev-vfio", title = "/dev/vfio";
        var folder = tree.Dev("vfio");
        bool container = File.Exists(Path.Combine(folder, "vfio"));
        bool iommufd = File.Exists(tree.Dev("iommu"));
        if (!container && !iommufd)
        {
            return new HostCheck(id, title, CheckStatus.Failed, "neither /dev/vfio/vfio nor /dev/iommu exists",
                "'modprobe vfio-pci' creates /dev/vfio/vfio (and 'modprobe iommufd' /dev/iommu); in a container, pass /dev/vfio through");
        }
        var groups = Names(folder).Where(n => n != "vfio" && n != "devices").ToList();
        var detail = $"{(container ? "/dev/vfio/vfio" : "no /dev/vfio/vfio (iommufd only)")}, {groups.Count} group node(s)" +
                     (groups.Count == 0 ? "" : $": {string.Join(", ", groups)}");
        // Root (CAP_DAC_OVERRIDE) opens any node; anyone else needs the node's mode to let them in. Owner and group
        // cannot be compared with the caller here, so a node closed to others is reported for a caller without it.
        if (capabilities.HasCapability(LinuxCapability.DacOverride)) { return Ok(id, title, detail + "; the process may open every node (CAP_DAC_OVERRIDE)"); }
        var closed = groups.Where(g => !OthersMayReadWrite(Path.Combine(folder, g))).ToList();
        if (closed.Count == 0) { return Ok(id, title, detail); }
        return new HostCheck(id, title, CheckStatus.Warning, $"{detail}; not open to others: {string.Join(", ", closed)}",
            "run as root, or give your user the group nodes with a udev rule: SUBSYSTEM==\"vfio\", OWNER=\"USER\" (or GROUP=, MODE=\"0660\")");
    }

    private static bool OthersMayReadWrite(string path)
    {
        try
        {
            var mode = File.GetUnixFileMode(path);
            return mode.HasFlag(UnixFileMode.OtherRead) && mode.HasFlag(UnixFileMode.OtherWrite);
        }
        catch (IOException) { return false; }
    }

    private static HostCheck CheckHugePages(Tree tree, PciHost host, bool iommu)
    {
        const string id = "hugepages", title = "hugepages";
        // Per node: /sys/devices/system/node/nodeN/hugepages/hugepages-SIZEkB/{nr,free}_hugepages
        // (Documentation/admin-guide/mm/hugetlbpage.rst, "Interaction of Task Memory Policy with Huge Page Allocation").
        var lines = new List<string>();
        long total = 0, free = 0;
        foreach (var node in Names(tree.Sys("devices", "system", "node")).Where(n => n.StartsWith("node", StringComparison.Ordinal)))
        {
            var pools = new List<string>();
            foreach (var pool in Names(tree.Sys("devices", "system", "node", node, "hugepages")))
            {
                var dir = tree.Sys("devices", "system", "node", node, "hugepages", pool);
                long n = SysfsFile.ReadDecimal(Path.Combine(dir, "nr_hugepages")) ?? 0, f = SysfsFile.ReadDecimal(Path.Combine(dir, "free_hugepages")) ?? 0;
                total += n;
                free += f;
                if (n > 0) { pools.Add(string.Create(CultureInfo.InvariantCulture, $"{n} x {PoolSize(pool)} ({f} free)")); }
            }
            lines.Add($"{node}: {(pools.Count == 0 ? "none" : string.Join(", ", pools))}");
        }
        if (lines.Count == 0)
        {
            // A kernel without NUMA shows only the global pools.
            foreach (var pool in host.HugePages.GetPools())
            {
                total += pool.Total;
                free += pool.Free;
                if (pool.Total > 0) { lines.Add(string.Create(CultureInfo.InvariantCulture, $"{pool.Total} x {MemoryLockLimit.Format(pool.PageSize)} ({pool.Free} free)")); }
            }
        }
        var detail = lines.Count == 0 ? "none reserved" : string.Join("; ", lines);
        const string fix = "'vfio hugepages reserve 64' (64 x 2 MiB), or per node " +
                           "'echo 64 > /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages'; vm.nr_hugepages in sysctl.conf keeps it";
        if (total == 0)
        {
            // No-IOMMU DMA memory must not move, so it comes from hugepages; with an IOMMU any pinned memory will do.
            return iommu
                ? new HostCheck(id, title, CheckStatus.Warning, $"{detail} (with an IOMMU, DMA memory can be ordinary pinned pages)", fix)
                : new HostCheck(id, title, CheckStatus.Failed, $"{detail}: No-IOMMU DMA memory comes from hugepages", fix);
        }
        if (free == 0) { return new HostCheck(id, title, CheckStatus.Warning, $"{detail}: every page is in use", fix); }
        return Ok(id, title, detail);
    }

    private static string PoolSize(string pool) =>
        pool.StartsWith("hugepages-", StringComparison.Ordinal) && pool.EndsWith("kB", StringComparison.Ordinal) &&
        ulong.TryParse(pool.AsSpan(10, pool.Length - 12), NumberStyles.None, CultureInfo.InvariantCulture, out var kib)
            ? MemoryLockLimit.Format(kib << 10)
            : pool;

    private static HostCheck CheckMemoryLock(MemoryLockLimit limit, ProcessCapabilities capabilities)
    {
        const string id = "memlock", title = "locked-memory limit";
        var detail = $"RLIMIT_MEMLOCK {limit}";
        if (limit.IsUnlimited || limit.Soft >= MinimumMemoryLock) { return Ok(id, title, detail); }
        // vfio_iommu_type1 and mlock both skip the limit for CAP_IPC_LOCK (capable(CAP_IPC_LOCK) in vfio_pin_pages_remote, can_do_mlock).
        if (capabilities.HasCapability(LinuxCapability.IpcLock)) { return Ok(id, title, $"{detail}, but CAP_IPC_LOCK lifts it"); }
        return new HostCheck(id, title, CheckStatus.Failed, $"{detail}: below {MemoryLockLimit.Format(MinimumMemoryLock)}, pinning DMA memory will fail",
            "'ulimit -l unlimited' (as root), LimitMEMLOCK=infinity in a systemd unit, a memlock line in /etc/security/limits.conf, or grant CAP_IPC_LOCK");
    }

    private static HostCheck CheckCapabilities(ProcessCapabilities capabilities, bool iommu)
    {
        const string id = "capabilities", title = "capabilities";
        // No-IOMMU groups open only with CAP_SYS_RAWIO (drivers/vfio/group.c); physical addresses in pagemap need
        // CAP_SYS_ADMIN (Documentation/admin-guide/mm/pagemap.rst). With an IOMMU neither is needed.
        var wanted = new[] { LinuxCapability.SysRawIo, LinuxCapability.SysAdmin, LinuxCapability.IpcLock };
        var have = wanted.Where(capabilities.HasCapability).Select(c => c.KernelName()).ToList();
        var missing = wanted.Where(c => !capabilities.HasCapability(c)).ToList();
        var detail = have.Count == 0 ? "none of CAP_SYS_RAWIO, CAP_SYS_ADMIN, CAP_IPC_LOCK" : $"has {string.Join(", ", have)}";
        if (missing.Count == 0) { return Ok(id, title, detail); }
        var names = string.Join(",", missing.Select(c => c.KernelName().ToLowerInvariant()));
        var fix = $"run as root, or 'setcap {names}+ep' on the executable";
        var needed = iommu ? [] : missing.Where(c => c != LinuxCapability.IpcLock).ToList();
        if (needed.Count > 0)
        {
            return new HostCheck(id, title, CheckStatus.Failed,
                $"{detail}; No-IOMMU mode needs {string.Join(" and ", needed.Select(c => c.KernelName()))}", fix);
        }
        return missing.Contains(LinuxCapability.IpcLock)
            ? new HostCheck(id, title, CheckStatus.Warning, $"{detail}; without CAP_IPC_LOCK the locked-memory limit applies", fix)
            : Ok(id, title, $"{detail} (CAP_SYS_RAWIO and CAP_SYS_ADMIN only matter without an IOMMU)");
    }

    private static HostCheck CheckDevices(PciHost host)
    {
        const string id = "devices", title = "devices on vfio-pci";
        var bound = host.EnumerateDevices().Where(d => d.Driver == PciHost.VfioPciDriver).ToList();
        if (bound.Count == 0)
        {
            return new HostCheck(id, title, CheckStatus.Warning, "no device is bound to vfio-pci", "'vfio list' shows the devices; 'vfio bind BDF' binds one");
        }
        var parts = new List<string>();
        var blocked = new List<string>();
        foreach (var device in bound)
        {
            IommuGroupInfo group;
            try { group = host.GetIommuGroup(device.Address); }
            catch (VfioException e)
            {
                blocked.Add($"{device.Address}: {e.Message}");
                continue;
            }
            if (group.IsViable) { parts.Add($"{device.Address} (group {group.Name}, viable)"); }
            else
            {
                blocked.Add($"{device.Address} (group {group.Name} also holds {string.Join(", ", group.Devices.Where(m => !m.AllowsViability).Select(m => $"{m.Address} on {m.Driver}"))})");
            }
        }
        if (blocked.Count == 0) { return Ok(id, title, string.Join(", ", parts)); }
        return new HostCheck(id, title, CheckStatus.Failed, $"not viable: {string.Join("; ", blocked)}" + (parts.Count == 0 ? "" : $"; viable: {string.Join(", ", parts)}"),
            "VFIO hands out a group only whole: bind the other devices of the group too ('vfio bind BDF...') or unbind them");
    }

    private static HostCheck CheckIommufd(Tree tree)
    {
        const string id = "iommufd", title = "iommufd";
        return File.Exists(tree.Dev("iommu"))
            ? Ok(id, title, $"/dev/iommu present{tree.Kernel}")
            : new HostCheck(id, title, CheckStatus.Warning, $"no /dev/iommu{tree.Kernel}; the VFIO container is used",
                "optional: 'modprobe iommufd' (CONFIG_IOMMUFD, Linux 6.2 and later)");
    }

    private static HostCheck CheckCdev(Tree tree)
    {
        const string id = "vfio-cdev", title = "VFIO device cdev";
        var devices = Names(tree.Dev("vfio", "devices"));
        return Directory.Exists(tree.Dev("vfio", "devices"))
            ? Ok(id, title, $"/dev/vfio/devices present ({devices.Count} node(s){(devices.Count == 0 ? "" : $": {string.Join(", ", devices)}")}){tree.Kernel}")
            : new HostCheck(id, title, CheckStatus.Warning, $"no /dev/vfio/devices{tree.Kernel}; devices are opened through their group",
                "optional: a kernel with CONFIG_VFIO_DEVICE_CDEV (Linux 6.6 and later) for per-device nodes with iommufd");
    }
}
