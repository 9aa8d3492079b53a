using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Host;
using Vfio.Linux;
using static Interop.Vfio;

namespace Vfio.Kernel;

/// <summary>
/// A PCI device opened through kernel VFIO: through the device cdev bound to an iommufd IOAS (Linux 6.6+), or through
/// its group in a container (type1 or No-IOMMU). <see cref="Open(PciAddress, VfioOpenOptions?)"/> does the whole
/// sequence — checks, IOMMU context, device fd — and on failure closes everything it opened before throwing. Once the
/// device fd exists, regions, interrupts and reset are the same ioctls on either path.
/// </summary>
public sealed partial class VfioDevice : IPciDevice
{
    private readonly ILogger _logger;
    private readonly VfioGroup? _group;
    private readonly VfioContainer? _container;
    private readonly IommufdIoas? _ioas;
    private readonly IDisposable[] _owned;
    private readonly RegionInfo?[] _regionCache;
    private readonly Dictionary<IrqIndex, KernelInterruptSet> _irqSets = [];
    private readonly List<KernelRegion> _openRegions = [];
    private readonly object _lock = new();
    private readonly KernelRegion _configRegion;
    private readonly bool _allowMigratablePages;
    private readonly CancellationTokenSource _releaseRequested = new();
    private long _errorsReported;
    private bool _disposed;

    // owned: what this device opened for itself (group and container, or IOAS and iommufd), released after the
    // device fd in that order.
    private VfioDevice(PciAddress address, SafeFdHandle handle, VfioMode mode, VfioGroup? group, VfioContainer? container,
        IommufdIoas? ioas, IDisposable[] owned, DeviceInfo info, ILogger logger, bool allowMigratablePages)
    {
        Address = address;
        Handle = handle;
        Mode = mode;
        _group = group;
        _container = container;
        _ioas = ioas;
        _owned = owned;
        Info = info;
        _logger = logger;
        _allowMigratablePages = allowMigratablePages;
        _regionCache = new RegionInfo?[Math.Max(info.RegionCount, 0)];
        _configRegion = new KernelRegion(handle, address, GetRegionInfo(PciRegion.Config), map: false);
        Config = new PciConfigSpace(_configRegion);
        WatchReleaseRequests();
        WatchErrors();
    }

    /// <inheritdoc />
    public PciAddress Address { get; }

    /// <summary>
    /// The NUMA node the DMA memory prefers (<see cref="NumaPlacement"/>): the device's node on a host with several,
    /// null on a single-node host or when sysfs names none.
    /// </summary>
    internal int? PreferredNumaNode { get; private init; }

    /// <summary>The device fd.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>The group the device was opened through (type1 and No-IOMMU modes).</summary>
    /// <exception cref="InvalidOperationException">The device was opened through its cdev (<see cref="VfioMode.Iommufd"/>).</exception>
    public VfioGroup Group => _group ?? throw new InvalidOperationException($"{Address} was opened through its VFIO device cdev (iommufd), not a group");

    /// <summary>The container (IOMMU context) the device's group is attached to (type1 and No-IOMMU modes).</summary>
    /// <exception cref="InvalidOperationException">The device was opened through its cdev; see <see cref="Ioas"/>.</exception>
    public VfioContainer Container => _container ?? throw new InvalidOperationException($"{Address} was opened through its VFIO device cdev: its IOMMU context is an iommufd IOAS (Ioas), not a container");

    /// <summary>The iommufd IOAS the device is attached to (<see cref="VfioMode.Iommufd"/>), null on the group path.</summary>
    public IommufdIoas? Ioas => _ioas;

    /// <inheritdoc />
    public DeviceBackend Backend => Mode switch
    {
        VfioMode.NoIommu => DeviceBackend.KernelNoIommu,
        VfioMode.Iommufd => DeviceBackend.KernelIommufd,
        _ => DeviceBackend.KernelType1,
    };

    /// <summary>The VFIO mode the device was opened in (never <see cref="VfioMode.Auto"/>).</summary>
    public VfioMode Mode { get; }

    /// <inheritdoc />
    public bool IsDmaIsolated => Mode != VfioMode.NoIommu;

    /// <inheritdoc />
    public DeviceInfo Info { get; }

    /// <inheritdoc />
    public PciConfigSpace Config { get; }

    /// <inheritdoc />
    /// <remarks>
    /// vfio-pci signals the request interrupt (<c>VFIO_PCI_REQ_IRQ_INDEX</c>) from its remove path and then blocks
    /// the remover until the device fd and every mapping of it are closed, repeating the signal every 10 s
    /// (drivers/vfio/vfio_main.c, <c>vfio_unregister_group_dev</c>).
    /// </remarks>
    public CancellationToken ReleaseRequested { get; private set; }

    /// <inheritdoc />
    public IDmaAllocator Dma
    {
        get
        {
            // After Dispose the container or IOAS (and the allocator's memory) may be gone; say so rather than fail in an ioctl.
            ThrowIfDisposed();
            return _ioas?.GetDmaAllocator(PreferredNumaNode) ?? _container!.GetDmaAllocator(_allowMigratablePages, PreferredNumaNode);
        }
    }

    /// <summary>
    /// Opens <paramref name="address"/> through kernel VFIO. The mode follows the host: a device with an IOMMU group
    /// is opened in type1; a device in a No-IOMMU group only when <see cref="VfioOpenOptions.AllowNoIommu"/> is set.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">No such device.</exception>
    /// <exception cref="DeviceNotBoundException">The device is not bound to vfio-pci.</exception>
    /// <exception cref="NoIommuNotPermittedException">No-IOMMU group, and the caller did not opt in.</exception>
    /// <exception cref="NoIommuModeDisabledException">No IOMMU group and No-IOMMU mode is off.</exception>
    /// <exception cref="MissingCapabilityException">No-IOMMU mode without CAP_SYS_RAWIO.</exception>
    /// <exception cref="GroupNotViableException">Other devices of the group are bound to host drivers.</exception>
    public static VfioDevice Open(PciAddress address, VfioOpenOptions? options = null)
    {
        options ??= new VfioOpenOptions();
        var loggerFactory = options.LoggerFactory;
        ILogger logger = loggerFactory?.CreateLogger<VfioDevice>() ?? NullLogger<VfioDevice>.Instance;
        var host = new PciHost(options.SysfsRoot, options.ProcRoot, options.DevRoot, loggerFactory?.CreateLogger<PciHost>());

        var plan = VfioOpenPlanner.Plan(host, address, options);
        return plan.Mode == VfioMode.Iommufd
            ? OpenCdev(address, plan.NodePath, options, logger)
            : OpenThroughGroup(address, plan, host, options, logger);
    }

    private static VfioDevice OpenThroughGroup(PciAddress address, OpenPlan plan, PciHost host, VfioOpenOptions options, ILogger logger)
    {
        var disposables = new Stack<IDisposable>();
        try
        {
            VfioContainer container;
            if (options.Container is { } shared)
            {
                container = shared;
            }
            else
            {
                container = VfioContainer.Open(options.DevRoot, options.LoggerFactory);
                disposables.Push(container);
            }
            var iommuType = plan.Mode == VfioMode.NoIommu ? VfioIommuType.NoIommu : VfioIommuType.Type1v2;
            if (!container.Supports(iommuType))
            {
                throw iommuType == VfioIommuType.NoIommu
                    ? new NoIommuModeDisabledException(address, "the vfio container does not offer VFIO_NOIOMMU_IOMMU")
                    : new VfioUnavailableException("the vfio container does not offer VFIO_TYPE1v2_IOMMU", "enable the IOMMU (intel_iommu=on or amd_iommu=on) and load vfio_iommu_type1");
            }

            var group = VfioGroup.Open(plan.NodePath, address);
            disposables.Push(group);
            var (viable, _) = group.GetStatus();
            if (!viable)
            {
                var g = host.GetIommuGroup(address);
                throw new GroupNotViableException(address, group.Name, g.BlockingDevices);
            }
            group.SetContainer(container);
            container.SetIommu(iommuType);

            var handle = group.GetDeviceFd(address);
            disposables.Push(handle);
            var info = QueryDeviceInfo(handle, address);
            // Released after the device fd: the group, then the container if this device opened it.
            IDisposable[] release = options.Container is null ? [group, container] : [group];
            var device = new VfioDevice(address, handle, plan.Mode, group, container, null, release, info, logger, options.AllowMigratableDmaPages)
            {
                PreferredNumaNode = NumaPlacement.ForDevice(options.SysfsRoot, address),
            };
            if (device.Mode == VfioMode.NoIommu)
            {
                LogNoIommuOpened(logger, address, group.Name);
            }
            else
            {
                LogOpened(logger, address, group.Path, device.Mode);
            }
            return device;
        }
        catch
        {
            CloseOpened(disposables);
            throw;
        }
    }

    /// <summary>
    /// The device cdev path (Linux 6.6+): open <c>/dev/vfio/devices/vfioN</c>, bind it to an iommufd
    /// (<c>VFIO_DEVICE_BIND_IOMMUFD</c>), attach it to an IOAS (<c>VFIO_DEVICE_ATTACH_IOMMUFD_PT</c>). Until the
    /// bind, the fd answers no device ioctl; after the attach it is the same device fd the group path yields.
    /// </summary>
    private static unsafe VfioDevice OpenCdev(PciAddress address, string cdevPath, VfioOpenOptions options, ILogger logger)
    {
        var disposables = new Stack<IDisposable>();
        try
        {
            IommufdIoas ioas;
            if (options.Ioas is { } shared)
            {
                ioas = shared;
            }
            else
            {
                var iommufd = Iommufd.Open(options.DevRoot, options.LoggerFactory);
                disposables.Push(iommufd);
                ioas = iommufd.AllocateIoas();
                disposables.Push(ioas);
            }

            int fd = Interop.Libc.open(cdevPath, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC);
            if (fd < 0)
            {
                int errno = Errno.Last;
                throw Errno.ToException(errno, $"open {cdevPath}", address,
                    errno == Errno.EBUSY ? "the device is already open (through its cdev or its group) in this or another process" : null);
            }
            var handle = new SafeFdHandle(fd);
            disposables.Push(handle);

            bool added = false;
            ioas.Iommufd.Handle.DangerousAddRef(ref added);
            try
            {
                var bind = new vfio_device_bind_iommufd
                {
                    argsz = (uint)sizeof(vfio_device_bind_iommufd),
                    iommufd = ioas.Iommufd.Handle.Fd,
                };
                // SAFETY: bind is a local of the size argsz states; the iommufd it names is kept open by the AddRef.
                VfioIoctl.Call(handle, VFIO_DEVICE_BIND_IOMMUFD, &bind, "VFIO_DEVICE_BIND_IOMMUFD", address);
            }
            finally
            {
                if (added) { ioas.Iommufd.Handle.DangerousRelease(); }
            }
            var attach = new vfio_device_attach_iommufd_pt
            {
                argsz = (uint)sizeof(vfio_device_attach_iommufd_pt),
                pt_id = ioas.Id,
            };
            // SAFETY: attach is a local of the size argsz states.
            VfioIoctl.Call(handle, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach, $"VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas {ioas.Id})", address);

            var info = QueryDeviceInfo(handle, address);
            // Released after the device fd (whose close detaches it): the IOAS, then the iommufd, if this device made them.
            IDisposable[] release = options.Ioas is null ? [ioas, ioas.Iommufd] : [];
            var device = new VfioDevice(address, handle, VfioMode.Iommufd, null, null, ioas, release, info, logger, options.AllowMigratableDmaPages)
            {
                PreferredNumaNode = NumaPlacement.ForDevice(options.SysfsRoot, address),
            };
            LogOpened(logger, address, cdevPath, VfioMode.Iommufd);
            return device;
        }
        catch
        {
            CloseOpened(disposables);
            throw;
        }
    }

    /// <summary>A failed open's cleanup: closes what it had opened, last opened first (device fd before its group or IOAS).</summary>
    private static void CloseOpened(Stack<IDisposable> opened)
    {
        while (opened.Count > 0)
        {
            opened.Pop().Dispose();
        }
    }

    /// <summary>Opens <paramref name="address"/> given as text ("0000:00:04.0").</summary>
    public static VfioDevice Open(string address, VfioOpenOptions? options = null) => Open(PciAddress.Parse(address), options);

    private static unsafe DeviceInfo QueryDeviceInfo(SafeFdHandle handle, PciAddress address)
    {
        var info = new vfio_device_info { argsz = (uint)sizeof(vfio_device_info) };
        // SAFETY: info is a local of the size argsz states.
        VfioIoctl.Call(handle, VFIO_DEVICE_GET_INFO, &info, "VFIO_DEVICE_GET_INFO", address);
        if ((info.flags & VFIO_DEVICE_FLAGS_PCI) == 0)
        {
            throw new VfioException("VFIO reports the device is not a PCI device", address);
        }
        return new DeviceInfo((DeviceFlags)info.flags, (int)info.num_regions, (int)info.num_irqs);
    }

    /// <inheritdoc />
    public RegionInfo GetRegionInfo(int index)
    {
        ThrowIfDisposed();
        if ((uint)index >= (uint)Info.RegionCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"{Address} has regions 0..{Info.RegionCount - 1}");
        }
        if (_regionCache[index] is { } cached) { return cached; }
        byte[] buffer = VfioInfoBuffer.QueryRegion(Handle, (uint)index, Address);
        var parsed = VfioCapabilityChain.ParseRegionInfo(buffer);
        _regionCache[index] = parsed;
        return parsed;
    }

    /// <inheritdoc />
    public IDeviceRegion OpenRegion(int index)
    {
        var info = GetRegionInfo(index);
        if (!info.Exists)
        {
            throw new ArgumentException($"region {index} of {Address} does not exist (size 0; the BAR is not implemented)", nameof(index));
        }
        var region = new KernelRegion(Handle, Address, info);
        lock (_lock) { _openRegions.Add(region); }
        return region;
    }

    /// <summary>Maps BAR <paramref name="bar"/>.</summary>
    public IDeviceRegion OpenBar(int bar) => OpenRegion(PciRegion.Bar(bar));

    /// <inheritdoc />
    public unsafe IrqInfo GetIrqInfo(IrqIndex index)
    {
        ThrowIfDisposed();
        if ((uint)index >= (uint)Info.IrqCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"{Address} has interrupt indexes 0..{Info.IrqCount - 1}");
        }
        var info = new vfio_irq_info { argsz = (uint)sizeof(vfio_irq_info), index = (uint)index };
        // SAFETY: info is a local of the size argsz states.
        VfioIoctl.Call(Handle, VFIO_DEVICE_GET_IRQ_INFO, &info, $"VFIO_DEVICE_GET_IRQ_INFO({index})", Address);
        return new IrqInfo(index, (IrqFlags)info.flags, (int)info.count);
    }

    /// <inheritdoc />
    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        var info = GetIrqInfo(index);
        if (count < 1 || count > info.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count,
                info.Count == 0 ? $"{Address} has no {index} interrupts" : $"{Address} offers 1..{info.Count} {index} vectors");
        }
        if ((info.Flags & IrqFlags.Eventfd) == 0)
        {
            throw new VfioException($"{index} interrupts cannot be signalled through an eventfd", Address);
        }
        lock (_lock)
        {
            if (index == IrqIndex.Req)
            {
                throw new InvalidOperationException($"the library watches the request interrupt of {Address} itself; use ReleaseRequested");
            }
            if (index == IrqIndex.Err)
            {
                throw new InvalidOperationException($"the library watches the error interrupt of {Address} itself; use ErrorReported");
            }
            if (_irqSets.ContainsKey(index))
            {
                throw new InvalidOperationException($"{index} interrupts of {Address} are already enabled; dispose that set first");
            }
            var set = new KernelInterruptSet(this, index, count, info.Flags);
            _irqSets[index] = set;
            return set;
        }
    }

    /// <summary>
    /// Wires the request interrupt to an eventfd the shared poller watches; its first signal cancels
    /// <see cref="ReleaseRequested"/>. Closing the device disables the index and ends the watch.
    /// </summary>
    private void WatchReleaseRequests()
    {
        ReleaseRequested = _releaseRequested.Token;
        if (Info.IrqCount <= (int)IrqIndex.Req) { return; }
        var info = GetIrqInfo(IrqIndex.Req);
        if (info.Count < 1 || (info.Flags & IrqFlags.Eventfd) == 0) { return; }
        // Called on the poller's thread: the kernel is blocking the remover meanwhile, so no thread-pool hop.
        var set = new KernelInterruptSet(this, IrqIndex.Req, 1, info.Flags, OnReleaseRequested);
        lock (_lock) { _irqSets[IrqIndex.Req] = set; }
    }

    private void OnReleaseRequested()
    {
        if (_releaseRequested.IsCancellationRequested) { return; }   // the kernel repeats the request every 10 s
        LogReleaseRequested(_logger, Address);
        try
        {
            _releaseRequested.Cancel();
        }
        catch (AggregateException e)
        {
            LogTeardownProblem(_logger, Address, $"a ReleaseRequested callback failed: {e.InnerException?.Message}");
        }
    }

    /// <inheritdoc />
    public ErrorReportingSupport ErrorReporting { get; private set; }

    /// <inheritdoc />
    /// <remarks>
    /// vfio-pci signals the error interrupt from its PCI error handler (<c>vfio_pci_core_aer_err_detected</c>), which
    /// Linux's AER recovery calls for uncorrectable errors; the handler answers "can recover", so the host neither
    /// resets nor unbinds the device and recovery is the process's own (drivers/vfio/pci/vfio_pci_core.c).
    /// </remarks>
    public event EventHandler<PciErrorReport>? ErrorReported;

    /// <summary>How many error interrupt signals arrived since open.</summary>
    public long ErrorsReported => Interlocked.Read(ref _errorsReported);

    /// <summary>
    /// Wires the error interrupt to an eventfd the shared poller watches, when the device has one
    /// (<c>VFIO_DEVICE_GET_IRQ_INFO</c> count 1: vfio-pci offers it for PCIe functions). A device without it, or a
    /// kernel that refuses the wiring, opens anyway with <see cref="ErrorReporting"/> saying why.
    /// </summary>
    private void WatchErrors()
    {
        ErrorReporting = ErrorReportingSupport.Unavailable("VFIO_DEVICE_GET_INFO lists no error interrupt index");
        if (Info.IrqCount <= (int)IrqIndex.Err) { return; }
        IrqInfo info;
        try
        {
            info = GetIrqInfo(IrqIndex.Err);
        }
        catch (VfioException e)
        {
            // vfio_pci_ioctl_get_irq_info answers EINVAL for the error index of a function without a PCIe capability
            // (every device on i440fx, and conventional devices on q35's root bus): no error interrupt, not an error.
            ErrorReporting = ErrorReportingSupport.Unavailable($"the kernel offers no error interrupt for this function (not PCIe): {e.Message}");
            return;
        }
        if (info.Count < 1)
        {
            ErrorReporting = ErrorReportingSupport.Unavailable("VFIO_DEVICE_GET_IRQ_INFO reports 0 error interrupts (vfio-pci offers one only for PCIe functions)");
            return;
        }
        if ((info.Flags & IrqFlags.Eventfd) == 0)
        {
            ErrorReporting = ErrorReportingSupport.Unavailable("the error interrupt cannot be signalled through an eventfd");
            return;
        }
        try
        {
            var set = new KernelInterruptSet(this, IrqIndex.Err, 1, info.Flags, OnErrorSignalled);
            lock (_lock) { _irqSets[IrqIndex.Err] = set; }
        }
        catch (VfioException e)
        {
            ErrorReporting = ErrorReportingSupport.Unavailable($"wiring the error interrupt failed: {e.Message}");
            LogTeardownProblem(_logger, Address, ErrorReporting.Detail);
            return;
        }
        ErrorReporting = new ErrorReportingSupport(true, Config.FindAer() is { } aer
            ? $"VFIO error interrupt; AER capability at 0x{aer.Offset:x3}"
            : "VFIO error interrupt; no AER capability, so reports carry no error status");
    }

    /// <summary>On the poller's thread: reads the AER registers and raises <see cref="ErrorReported"/>.</summary>
    private void OnErrorSignalled()
    {
        Interlocked.Increment(ref _errorsReported);
        AerStatus? aer = null;
        try
        {
            aer = Config.FindAer()?.Read();
        }
        catch (Exception e) when (e is VfioException or ObjectDisposedException)
        {
            LogTeardownProblem(_logger, Address, $"reading the AER status after an error interrupt: {e.Message}");
        }
        var report = new PciErrorReport(Address, PciErrorReport.Classify(aer), aer);
        LogErrorReported(_logger, Address, report.Severity, aer?.ToString() ?? "no AER capability");
        var handlers = ErrorReported;
        if (handlers is null) { return; }
        foreach (EventHandler<PciErrorReport> handler in handlers.GetInvocationList())
        {
            try
            {
                handler(this, report);
            }
            catch (Exception e)
            {
                // One failing subscriber must not keep the others from hearing of the error, nor kill the poller.
                LogTeardownProblem(_logger, Address, $"an ErrorReported handler failed: {e.Message}");
            }
        }
    }

    internal void OnInterruptSetDisposed(KernelInterruptSet set)
    {
        lock (_lock) { _irqSets.Remove(set.Index); }
    }

    /// <summary>
    /// <c>VFIO_DEVICE_SET_IRQS</c>: <paramref name="fds"/> null means DATA_NONE (trigger/unmask/disable), otherwise
    /// DATA_EVENTFD with one fd per vector (-1 leaves a vector unassigned).
    /// </summary>
    internal unsafe void SetIrqs(IrqIndex index, uint action, uint start, uint count, ReadOnlySpan<int> fds)
    {
        ThrowIfDisposed();
        bool withFds = !fds.IsEmpty;
        int size = sizeof(vfio_irq_set) + (withFds ? fds.Length * sizeof(int) : 0);
        byte* buffer = stackalloc byte[size];
        var set = (vfio_irq_set*)buffer;
        set->argsz = (uint)size;
        set->flags = action | (withFds ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
        set->index = (uint)index;
        set->start = start;
        set->count = count;
        if (withFds)
        {
            fds.CopyTo(new Span<int>(buffer + sizeof(vfio_irq_set), fds.Length));
        }
        // SAFETY: buffer holds the header and the fd array, argsz bytes in all, on this stack frame.
        VfioIoctl.Call(Handle, VFIO_DEVICE_SET_IRQS, buffer, $"VFIO_DEVICE_SET_IRQS({index}, start {start}, count {count})", Address);
    }

    /// <inheritdoc />
    public void Reset()
    {
        ThrowIfDisposed();
        if (!Info.CanReset)
        {
            throw new ResetNotSupportedException(Address);
        }
        VfioIoctl.CallValue(Handle, VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET", Address);
        LogReset(_logger, Address);
    }

    /// <summary>
    /// Stops the device's DMA (bus master off), disables its interrupts, unmaps its regions and closes it, then
    /// releases the group and, if this device opened it, the container (or the IOAS and iommufd) with its DMA memory
    /// — in that order, so no memory is freed while the device could still write it.
    /// </summary>
    public void Dispose()
    {
        KernelInterruptSet[] sets;
        KernelRegion[] regions;
        lock (_lock)
        {
            if (_disposed) { return; }
            sets = [.. _irqSets.Values];
            regions = [.. _openRegions];
            _openRegions.Clear();
        }
        try
        {
            // PCI Local Bus 3.0 §6.2.2: with Bus Master clear the function issues no memory requests, so no more DMA.
            Config.BusMaster = false;
        }
        catch (VfioException e)
        {
            LogTeardownProblem(_logger, Address, e.Message);
        }
        foreach (var s in sets) { s.Dispose(); }
        foreach (var r in regions) { r.Dispose(); }
        _configRegion.Dispose();
        lock (_lock) { _disposed = true; }
        Handle.Dispose();
        foreach (var o in _owned) { o.Dispose(); }
        LogClosed(_logger, Address);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    [LoggerMessage(Level = LogLevel.Warning, Message =
        "{Device} opened in No-IOMMU mode (group {Group}): the device can DMA to any host memory and nothing confines it; " +
        "the kernel is tainted. Use only trusted devices and drivers.")]
    private static partial void LogNoIommuOpened(ILogger logger, PciAddress device, string group);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device} opened through {Node} in {Mode} mode")]
    private static partial void LogOpened(ILogger logger, PciAddress device, string node, VfioMode mode);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the kernel asks for the device back (VFIO request interrupt); it stays blocked until the device is closed")]
    private static partial void LogReleaseRequested(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: the device reported a {Severity} PCIe error (VFIO error interrupt): {Aer}")]
    private static partial void LogErrorReported(ILogger logger, PciAddress device, PciErrorSeverity severity, string aer);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device} reset")]
    private static partial void LogReset(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Device} closed")]
    private static partial void LogClosed(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: while closing: {Problem}")]
    private static partial void LogTeardownProblem(ILogger logger, PciAddress device, string problem);
}
