using System.Collections.Frozen;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.Host;

/// <summary>
/// What the library learns from, and does to, the host's PCI devices through sysfs, procfs and /dev: listing
/// devices, IOMMU groups and the No-IOMMU switch, and moving a device between kernel drivers and vfio-pci.
/// Reads are plain file reads; every write goes through an <see cref="ISysfsWriter"/>.
/// </summary>
/// <remarks>
/// The roots are parameters so that tests (and tools inspecting a chroot) can point the host at another tree.
/// Nothing is cached: each call reads the tree as it is now, since drivers and groups change under the process.
/// Writing the driver attributes needs root; reading needs nothing.
/// </remarks>
public sealed class PciHost
{
    /// <summary>The name of the kernel's VFIO PCI driver.</summary>
    public const string VfioPciDriver = "vfio-pci";

    /// <summary>
    /// Drivers other than vfio-pci that VFIO accepts on the other devices of a group it hands out: they leave the
    /// device's DMA to its owner (<c>driver_managed_dma</c>). See <see cref="IommuGroupMember.AllowsViability"/>.
    /// </summary>
    internal static readonly FrozenSet<string> DriversAllowedInViableGroup =
        FrozenSet.Create(StringComparer.Ordinal, VfioPciDriver, "pci-stub", "pcieport");

    private const string NoIommuGroupName = "vfio-noiommu";

    private readonly AttributeWriter _writer;
    private readonly ILogger _logger;

    /// <summary>Creates a host view over the given roots.</summary>
    /// <param name="sysfsRoot">Where sysfs is mounted.</param>
    /// <param name="procfsRoot">Where procfs is mounted.</param>
    /// <param name="devRoot">Where device nodes live (for /dev/vfio and /dev/iommu).</param>
    /// <param name="logger">Receives what the host layer does; nothing is logged when null.</param>
    /// <param name="writer">Performs attribute writes; <see cref="SysfsWriter.Instance"/> when null.</param>
    public PciHost(string sysfsRoot = "/sys", string procfsRoot = "/proc", string devRoot = "/dev",
        ILogger? logger = null, ISysfsWriter? writer = null)
    {
        SysfsRoot = sysfsRoot;
        ProcfsRoot = procfsRoot;
        DevRoot = devRoot;
        _logger = logger ?? NullLogger.Instance;
        _writer = new AttributeWriter(writer ?? SysfsWriter.Instance, _logger);
        HugePages = new HugePages(sysfsRoot, procfsRoot, _writer);
    }

    /// <summary>Where sysfs is read from.</summary>
    public string SysfsRoot { get; }

    /// <summary>Where procfs is read from.</summary>
    public string ProcfsRoot { get; }

    /// <summary>Where device nodes are looked for.</summary>
    public string DevRoot { get; }

    /// <summary>The host's hugepage pools and hugetlbfs mounts.</summary>
    public HugePages HugePages { get; }

    private string PciDevicesDir => Path.Combine(SysfsRoot, "bus", "pci", "devices");
    private string PciDriversDir => Path.Combine(SysfsRoot, "bus", "pci", "drivers");
    private string IommuGroupsDir => Path.Combine(SysfsRoot, "kernel", "iommu_groups");
    private string VfioModuleDir => Path.Combine(SysfsRoot, "module", "vfio");
    private string NoIommuParameter => Path.Combine(VfioModuleDir, "parameters", "enable_unsafe_noiommu_mode");

    private string DeviceDir(PciAddress device) => Path.Combine(PciDevicesDir, device.ToString());
    private string DriverDir(string driver) => Path.Combine(PciDriversDir, driver);

    // ---------------------------------------------------------------- devices

    /// <summary>Every PCI function the kernel knows, in address order.</summary>
    public IReadOnlyList<PciDeviceInfo> EnumerateDevices()
    {
        if (!Directory.Exists(PciDevicesDir)) { return []; }
        var result = new List<PciDeviceInfo>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(PciDevicesDir))
        {
            var name = Path.GetFileName(entry);
            if (!PciAddress.TryParse(name, out var address))
            {
                HostLog.SkippingEntry(_logger, name, PciDevicesDir);
                continue;
            }
            // A device can be hot-removed between the listing and the reads.
            if (TryReadDevice(address) is { } info) { result.Add(info); }
            else { HostLog.DeviceVanished(_logger, address); }
        }
        result.Sort((a, b) => a.Address.CompareTo(b.Address));
        return result;
    }

    /// <summary>What sysfs says about one device.</summary>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    public PciDeviceInfo GetDevice(PciAddress device) => TryReadDevice(device) ?? throw new DeviceNotFoundException(device);

    /// <summary>What sysfs says about one device, or null when there is no such device.</summary>
    public PciDeviceInfo? TryGetDevice(PciAddress device) => TryReadDevice(device);

    private PciDeviceInfo? TryReadDevice(PciAddress address)
    {
        var dir = DeviceDir(address);
        if (!Directory.Exists(dir)) { return null; }
        int? group = ReadGroup(dir);
        long? numa = SysfsFile.ReadDecimal(Path.Combine(dir, "numa_node"));
        return new PciDeviceInfo(
            address,
            VendorId: (ushort)(SysfsFile.ReadHex(Path.Combine(dir, "vendor")) ?? 0),
            DeviceId: (ushort)(SysfsFile.ReadHex(Path.Combine(dir, "device")) ?? 0),
            SubsystemVendorId: (ushort)(SysfsFile.ReadHex(Path.Combine(dir, "subsystem_vendor")) ?? 0),
            SubsystemDeviceId: (ushort)(SysfsFile.ReadHex(Path.Combine(dir, "subsystem_device")) ?? 0),
            ClassCode: (uint)((SysfsFile.ReadHex(Path.Combine(dir, "class")) ?? 0) & 0xFF_FFFF),
            Revision: (byte)(SysfsFile.ReadHex(Path.Combine(dir, "revision")) ?? 0),
            Driver: SysfsFile.LinkName(Path.Combine(dir, "driver")),
            DriverOverride: ReadDriverOverride(dir),
            IommuGroup: group,
            IsNoIommu: group is { } g && IsNoIommuGroup(g),
            NumaNode: numa is >= 0 ? (int)numa : null,
            VfioDeviceName: ReadVfioDeviceName(dir));
    }

    private static string? ReadDriverOverride(string deviceDir)
    {
        // The kernel prints an unset override as "(null)" (driver_override_show uses "%s" on a NULL pointer).
        var text = SysfsFile.ReadText(Path.Combine(deviceDir, "driver_override"));
        return text is null or "" or "(null)" ? null : text;
    }

    private static int? ReadGroup(string deviceDir) =>
        int.TryParse(SysfsFile.LinkName(Path.Combine(deviceDir, "iommu_group")), NumberStyles.None,
            CultureInfo.InvariantCulture, out var id) ? id : null;

    private static string? ReadVfioDeviceName(string deviceDir)
    {
        // drivers/vfio/device_cdev.c registers the cdev as a child "vfio-dev/vfioN" of the PCI device (6.6+).
        var folder = Path.Combine(deviceDir, "vfio-dev");
        if (!Directory.Exists(folder)) { return null; }
        return Directory.EnumerateFileSystemEntries(folder, "vfio*")
            .Select(Path.GetFileName)
            .Order(StringComparer.Ordinal)
            .FirstOrDefault();
    }

    /// <summary>
    /// VFIO names the fake groups it makes in No-IOMMU mode "vfio-noiommu" (iommu_group_set_name in
    /// drivers/vfio/group.c) and exposes them as /dev/vfio/noiommu-N; either sign is enough.
    /// </summary>
    private bool IsNoIommuGroup(int group)
    {
        var name = SysfsFile.ReadText(Path.Combine(IommuGroupsDir, group.ToString(CultureInfo.InvariantCulture), "name"));
        return (name is not null && name.Contains(NoIommuGroupName, StringComparison.Ordinal)) ||
               File.Exists(Path.Combine(DevRoot, "vfio", $"noiommu-{group}"));
    }

    // ---------------------------------------------------------------- IOMMU groups

    /// <summary>The IOMMU group of <paramref name="device"/>, its members and whether VFIO will hand it out.</summary>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="NoIommuModeDisabledException">The device has no group and No-IOMMU mode is off.</exception>
    /// <exception cref="VfioException">The device has no group yet (No-IOMMU mode is on but it is not bound to vfio-pci).</exception>
    public IommuGroupInfo GetIommuGroup(PciAddress device)
    {
        var dir = DeviceDir(device);
        if (!Directory.Exists(dir)) { throw new DeviceNotFoundException(device); }
        if (ReadGroup(dir) is not { } id)
        {
            if (!GetNoIommuState().IsEnabled)
            {
                throw NoGroupError(device, "device has no IOMMU group (no IOMMU translates for it)");
            }
            throw new VfioException("device has no IOMMU group yet", device,
                "in No-IOMMU mode vfio-pci creates the group when it binds the device: bind it with " +
                $"PciHost.BindToVfio (CLI: 'vfio bind {device}')");
        }

        var groupDevices = Path.Combine(IommuGroupsDir, id.ToString(CultureInfo.InvariantCulture), "devices");
        var members = new List<IommuGroupMember>();
        if (Directory.Exists(groupDevices))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(groupDevices))
            {
                var name = Path.GetFileName(entry);
                // Groups hold PCI functions in practice; anything else cannot be named by a PciAddress and is left out.
                if (!PciAddress.TryParse(name, out var member))
                {
                    HostLog.SkippingEntry(_logger, name, groupDevices);
                    continue;
                }
                members.Add(new IommuGroupMember(member, SysfsFile.LinkName(Path.Combine(entry, "driver"))));
            }
        }
        members.Sort((a, b) => a.Address.CompareTo(b.Address));

        bool noIommu = IsNoIommuGroup(id);
        var nodeName = noIommu ? $"noiommu-{id}" : id.ToString(CultureInfo.InvariantCulture);
        return new IommuGroupInfo(id, noIommu, members, Path.Combine(DevRoot, "vfio", nodeName));
    }

    // ---------------------------------------------------------------- No-IOMMU mode

    /// <summary>Whether the kernel supports and has enabled VFIO's No-IOMMU mode, and what else is in place.</summary>
    public NoIommuState GetNoIommuState()
    {
        var value = SysfsFile.ReadText(NoIommuParameter);
        return new NoIommuState(
            VfioModuleLoaded: Directory.Exists(VfioModuleDir),
            ParameterPresent: value is not null,
            Enabled: value is null ? null : value is "Y" or "y" or "1",
            ContainerDeviceExists: File.Exists(Path.Combine(DevRoot, "vfio", "vfio")),
            IommufdDeviceExists: File.Exists(Path.Combine(DevRoot, "iommu")),
            VfioPciDriverLoaded: Directory.Exists(DriverDir(VfioPciDriver)));
    }

    /// <summary>
    /// Turns on VFIO's No-IOMMU mode by writing 'Y' to <c>/sys/module/vfio/parameters/enable_unsafe_noiommu_mode</c>.
    /// Devices already bound to vfio-pci keep their state; rebind a device for it to get a No-IOMMU group.
    /// Loading the vfio module is left to the administrator: the library does not load kernel modules.
    /// </summary>
    /// <param name="acknowledgeUnsafe">
    /// Must be true: the caller accepts that devices without an IOMMU get DMA access to all physical memory and that
    /// the kernel is tainted.
    /// </param>
    /// <exception cref="VfioException"><paramref name="acknowledgeUnsafe"/> is false, or the write did not take.</exception>
    /// <exception cref="VfioUnavailableException">The vfio module is not loaded, or the kernel lacks CONFIG_VFIO_NOIOMMU.</exception>
    public void EnableNoIommuMode(bool acknowledgeUnsafe)
    {
        if (!acknowledgeUnsafe)
        {
            throw new VfioException("refusing to enable VFIO No-IOMMU mode without an acknowledgement", null,
                "No-IOMMU mode gives every device bound to vfio-pci without an IOMMU DMA access to all physical memory " +
                "(no isolation: a faulty device or driver can corrupt the kernel) and taints the kernel. It is meant for " +
                "machines that have no IOMMU at all. To accept that, call EnableNoIommuMode(acknowledgeUnsafe: true) " +
                "(CLI: 'vfio noiommu enable --unsafe')");
        }

        var state = GetNoIommuState();
        if (!state.VfioModuleLoaded)
        {
            throw new VfioUnavailableException("the vfio module is not loaded, so No-IOMMU mode cannot be enabled",
                "load it with 'modprobe vfio enable_unsafe_noiommu_mode=1' and 'modprobe vfio-pci' " +
                "(the library does not load kernel modules)");
        }
        if (!state.ParameterPresent)
        {
            throw new VfioUnavailableException(
                "the vfio module has no enable_unsafe_noiommu_mode parameter: this kernel was built without CONFIG_VFIO_NOIOMMU",
                "No-IOMMU mode needs vfio built with CONFIG_VFIO_NOIOMMU=y (Debian's kernels lack it): use such a kernel or " +
                "rebuild the vfio modules with it. The library does not build or load kernel modules");
        }
        if (state.IsEnabled) { return; }

        HostLog.EnablingNoIommu(_logger);
        _writer.Write(NoIommuParameter, "Y");
        if (!GetNoIommuState().IsEnabled)
        {
            throw new VfioException($"wrote 'Y' to {NoIommuParameter} but it still reads '{SysfsFile.ReadText(NoIommuParameter)}'");
        }
    }

    /// <summary>
    /// The error for a device without an IOMMU group while No-IOMMU mode is off: the usual one says how to turn the mode
    /// on, which is wrong advice when the kernel cannot have it at all.
    /// </summary>
    private VfioException NoGroupError(PciAddress device, string detail)
    {
        var state = GetNoIommuState();
        return state.VfioModuleLoaded && !state.ParameterPresent
            ? new VfioUnavailableException($"{device}: {detail}, and this kernel was built without CONFIG_VFIO_NOIOMMU",
                "without an IOMMU the device can only be used through VFIO on a kernel (or vfio modules) built with " +
                "CONFIG_VFIO_NOIOMMU=y; Debian's kernels lack it")
            : new NoIommuModeDisabledException(device, detail);
    }

    // ---------------------------------------------------------------- binding

    /// <summary>
    /// Binds <paramref name="device"/> to vfio-pci the way Documentation/ABI/testing/sysfs-bus-pci describes for
    /// <c>driver_override</c>: unbind it from its driver (<c>driver/unbind</c>), write "vfio-pci" to
    /// <c>driver_override</c> so no other driver claims it, write its address to
    /// <c>/sys/bus/pci/drivers/vfio-pci/bind</c>, then check the <c>driver</c> link. Does nothing when the device is
    /// already bound to vfio-pci.
    /// </summary>
    /// <remarks>
    /// Checks that can fail without side effects (device exists, vfio-pci loaded, an IOMMU group or No-IOMMU mode) are
    /// made before the device is taken from its driver. If vfio-pci then refuses the device, it is left with no driver
    /// and the exception says how to give it back (<see cref="BindToDriver"/>).
    /// </remarks>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="DeviceInUseException">The host still uses the device (see <see cref="FindUses"/>); nothing
    /// was changed. <see cref="BindToVfio(PciAddress, bool)"/> with <c>force: true</c> overrides.</exception>
    /// <exception cref="VfioUnavailableException">The vfio-pci driver is not loaded.</exception>
    /// <exception cref="NoIommuModeDisabledException">The device has no IOMMU group and No-IOMMU mode is off, so
    /// vfio-pci's probe would fail.</exception>
    /// <exception cref="VfioPermissionException">The process may not write the attributes (not root).</exception>
    /// <exception cref="VfioException">A write failed, or vfio-pci did not end up bound.</exception>
    public void BindToVfio(PciAddress device) => BindToVfio(device, force: false);

    /// <summary>
    /// Binds <paramref name="device"/> to vfio-pci as <see cref="BindToVfio(PciAddress)"/> does; with
    /// <paramref name="force"/> it also takes a device the host still uses (mounted, swap, held, open, carrying
    /// traffic, the boot device) from its driver, logging each use as a warning.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <param name="force">Take the device even when <see cref="FindUses"/> finds the host using it.</param>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="DeviceInUseException">The host still uses the device and <paramref name="force"/> is false;
    /// nothing was changed.</exception>
    /// <exception cref="VfioUnavailableException">The vfio-pci driver is not loaded.</exception>
    /// <exception cref="NoIommuModeDisabledException">The device has no IOMMU group and No-IOMMU mode is off.</exception>
    /// <exception cref="VfioPermissionException">The process may not write the attributes (not root).</exception>
    /// <exception cref="VfioException">A write failed, or vfio-pci did not end up bound.</exception>
    public void BindToVfio(PciAddress device, bool force)
    {
        var dir = DeviceDir(device);
        if (!Directory.Exists(dir)) { throw new DeviceNotFoundException(device); }
        var current = SysfsFile.LinkName(Path.Combine(dir, "driver"));
        if (current == VfioPciDriver)
        {
            HostLog.AlreadyBound(_logger, device, current);
            return;
        }
        if (!Directory.Exists(DriverDir(VfioPciDriver)))
        {
            throw new VfioUnavailableException("the vfio-pci driver is not loaded",
                "load it with 'modprobe vfio-pci' (the library does not load kernel modules)");
        }
        // vfio_pci_core_register_device fails the probe for a device with no IOMMU group unless No-IOMMU mode is on
        // (then VFIO makes a group up). Say so now, before the device loses its current driver.
        if (ReadGroup(dir) is null && !GetNoIommuState().IsEnabled)
        {
            throw NoGroupError(device, "vfio-pci cannot take the device: it has no IOMMU group (no IOMMU translates for it)");
        }

        if (current is not null) { CheckUnused(device, current, force); }

        HostLog.Binding(_logger, device, VfioPciDriver);
        if (current is not null)
        {
            HostLog.Unbinding(_logger, device, current);
            _writer.Write(Path.Combine(dir, "driver", "unbind"), device.ToString(), device);
        }
        _writer.Write(Path.Combine(dir, "driver_override"), VfioPciDriver, device);
        AttachAndVerify(device, VfioPciDriver, current);
    }

    /// <summary>
    /// What the host still does with <paramref name="device"/> through its kernel driver, the most serious first: the
    /// root filesystem on it, the default route through one of its interfaces, mounted filesystems, swap,
    /// device-mapper/md holders, processes with its block devices (or NVMe controller node) open, interfaces that are
    /// up with addresses or routes. Empty when the host would not notice the device going. Read from sysfs
    /// (<c>block/*</c>, the device's <c>net/*</c>) and procfs (<c>self/mountinfo</c>, <c>swaps</c>, <c>*/fd</c>,
    /// <c>net/route</c>, <c>net/if_inet6</c>, <c>net/ipv6_route</c>) under the host's roots; what cannot be read
    /// (another user's fd table) is skipped.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    public IReadOnlyList<DeviceUse> FindUses(PciAddress device)
    {
        var dir = DeviceDir(device);
        if (!Directory.Exists(dir)) { throw new DeviceNotFoundException(device); }
        return new DeviceUsage(SysfsRoot, ProcfsRoot, DevRoot, _logger).Find(dir);
    }

    private void CheckUnused(PciAddress device, string driver, bool force)
    {
        var uses = FindUses(device);
        if (uses.Count == 0) { return; }
        if (!force) { throw new DeviceInUseException(device, driver, uses); }
        HostLog.BindForced(_logger, device, driver, string.Join("; ", uses));
    }

    /// <summary>
    /// Binds <paramref name="device"/> to a kernel driver, e.g. gives an NVMe drive back to "nvme": unbinds it from its
    /// current driver, clears <c>driver_override</c> (which would otherwise keep every other driver from matching),
    /// writes the address to <c>/sys/bus/pci/drivers/DRIVER/bind</c> and checks the result. Does nothing when the
    /// device is already bound to <paramref name="driver"/>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="driver"/> is not a driver name.</exception>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="DeviceInUseException"><paramref name="driver"/> is vfio-pci and the host still uses the device
    /// (as <see cref="BindToVfio(PciAddress)"/>).</exception>
    /// <exception cref="VfioUnavailableException">The driver is not loaded.</exception>
    /// <exception cref="VfioException">A write failed, or the driver did not bind the device.</exception>
    public void BindToDriver(PciAddress device, string driver)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(driver);
        if (driver.Contains('/', StringComparison.Ordinal) || driver is "." or "..")
        {
            throw new ArgumentException($"'{driver}' is not a driver name", nameof(driver));
        }
        if (driver == VfioPciDriver)
        {
            BindToVfio(device);
            return;
        }

        var dir = DeviceDir(device);
        if (!Directory.Exists(dir)) { throw new DeviceNotFoundException(device); }
        var current = SysfsFile.LinkName(Path.Combine(dir, "driver"));
        if (current == driver)
        {
            HostLog.AlreadyBound(_logger, device, driver);
            return;
        }
        if (!Directory.Exists(DriverDir(driver)))
        {
            throw new VfioUnavailableException($"the PCI driver '{driver}' is not loaded",
                $"load it with 'modprobe {driver}' (the library does not load kernel modules)");
        }

        HostLog.Binding(_logger, device, driver);
        if (current is not null)
        {
            HostLog.Unbinding(_logger, device, current);
            _writer.Write(Path.Combine(dir, "driver", "unbind"), device.ToString(), device);
        }
        ClearOverride(device, dir);
        AttachAndVerify(device, driver, current);
    }

    /// <summary>
    /// Unbinds <paramref name="device"/> from its driver, if any, and by default clears <c>driver_override</c> so that
    /// the next probe (a rescan, <c>drivers_probe</c>, a reboot) picks the driver by ID again.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="VfioException">A write failed, or the device is still bound.</exception>
    public void Unbind(PciAddress device, bool clearOverride = true)
    {
        var dir = DeviceDir(device);
        if (!Directory.Exists(dir)) { throw new DeviceNotFoundException(device); }
        var current = SysfsFile.LinkName(Path.Combine(dir, "driver"));
        if (current is not null)
        {
            HostLog.Unbinding(_logger, device, current);
            _writer.Write(Path.Combine(dir, "driver", "unbind"), device.ToString(), device);
            var after = SysfsFile.LinkName(Path.Combine(dir, "driver"));
            if (after is not null)
            {
                throw new VfioException($"unbind from {current}", device, 0,
                    $"the device is still bound to '{after}' after writing to driver/unbind; see the kernel log (dmesg)");
            }
        }
        if (clearOverride) { ClearOverride(device, dir); }
    }

    private void ClearOverride(PciAddress device, string deviceDir)
    {
        // A lone newline clears the override (driver_set_override, drivers/base/driver.c); an empty write would never
        // reach the kernel's store() at all.
        if (ReadDriverOverride(deviceDir) is not null)
        {
            _writer.Write(Path.Combine(deviceDir, "driver_override"), "\n", device);
        }
    }

    private void AttachAndVerify(PciAddress device, string driver, string? previous)
    {
        var dir = DeviceDir(device);
        var bindPath = Path.Combine(DriverDir(driver), "bind");
        VfioException? writeError = null;
        try
        {
            // bind_store (drivers/base/bus.c) probes synchronously: when the write returns, the driver link is final.
            _writer.Write(bindPath, device.ToString(), device);
        }
        catch (VfioPermissionException)
        {
            throw;
        }
        catch (VfioException e)
        {
            // Kept for the report below: the probe's failure shows as the write's errno (e.g. EINVAL, ENODEV).
            writeError = e;
        }

        var now = SysfsFile.LinkName(Path.Combine(dir, "driver"));
        if (now == driver)
        {
            HostLog.Bound(_logger, device, driver);
            return;
        }

        var giveBack = previous is null
            ? ""
            : $"; to give the device back to {previous}: PciHost.BindToDriver({device}, \"{previous}\"), or " +
              $"'echo > {Path.Combine(dir, "driver_override")}; echo {device} > {Path.Combine(DriverDir(previous), "bind")}'";
        if (driver == VfioPciDriver && ReadGroup(dir) is null && !GetNoIommuState().IsEnabled)
        {
            throw NoGroupError(device, "vfio-pci did not bind the device: it has no IOMMU group (no IOMMU translates for it)" + giveBack);
        }
        var state = now is null ? "it has no driver" : $"it is bound to '{now}'";
        throw new VfioException($"bind to {driver} via {bindPath}", device, writeError?.ErrorNumber ?? 0,
            $"{driver} did not take the device ({state}); the kernel log (dmesg) has the probe error{giveBack}");
    }

    // ---------------------------------------------------------------- process limits

    /// <summary>The calling process's effective capabilities, read from <c>PROCFS/self/status</c>.</summary>
    public ProcessCapabilities GetCapabilities() => ProcessCapabilities.Read(ProcfsRoot);

    /// <summary>The calling process's locked-memory limit (RLIMIT_MEMLOCK), which caps pinned DMA memory.</summary>
    public static MemoryLockLimit GetMemoryLockLimit() => MemoryLockLimit.Query();
}
