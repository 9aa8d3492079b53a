using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>
/// An NVMe controller driven from user space through <see cref="IPciDevice"/>: brought up per the NVMe base
/// specification's initialisation sequence (NVMe 1.4 §7.6.1), identified, and shut down in order on
/// <see cref="Dispose"/>. I/O goes through <see cref="NvmeIoQueue"/>s created with <see cref="CreateIoQueue"/>,
/// one per submitting thread. The caller keeps owning <see cref="IPciDevice"/> and disposes it after the controller.
/// <para>When the host asks for the device back (<see cref="IPciDevice.ReleaseRequested"/>), the controller stops
/// the device, fails waiting and new I/O with <see cref="DeviceReleasedException"/>, frees its memory and (by default,
/// <see cref="NvmeControllerOptions.DisposeDeviceOnReleaseRequest"/>) disposes the device, without the owner's help.</para>
/// <para>When the device reports an uncorrectable PCIe error (<see cref="IPciDevice.ErrorReported"/>), the controller
/// stops submitting, stops the device and fails work in flight and new work with <see cref="NvmeDeviceErrorException"/>
/// until the application calls <see cref="RecoverFromError"/>; correctable errors are only counted.</para>
/// </summary>
public sealed partial class NvmeController : IDisposable
{
    private readonly IPciDevice _device;
    private readonly IDeviceRegion _bar;
    private readonly NvmeControllerOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _adminLock = new();
    private readonly QueuePair _admin;
    private readonly DmaBuffer _scratch;
    private readonly List<NvmeIoQueue> _ioQueues = [];
    private readonly IInterruptSet? _msix;
    private DeviceUseLease? _scratchLease;
    private ushort _adminCid;
    private int _grantedQueues;
    private volatile bool _fatal;
    private volatile bool _released;
    private readonly CancellationTokenSource _releasedSource = new();
    private CancellationTokenRegistration _releaseRequest;
    private volatile PciErrorReport? _deviceError;
    private long _correctableErrors;
    private long _uncorrectableErrors;
    private bool _watchingErrors;
    private bool _disposed;

    private NvmeController(IPciDevice device, IDeviceRegion bar, NvmeControllerOptions options, ILogger logger,
        ControllerCapabilities cap, QueuePair admin, DmaBuffer scratch, IInterruptSet? msix)
    {
        _device = device;
        _bar = bar;
        _options = options;
        _logger = logger;
        Capabilities = cap;
        _admin = admin;
        _scratch = scratch;
        _msix = msix;
        PageShift = cap.MinPageShift;
    }

    /// <summary>The device underneath.</summary>
    public IPciDevice Device => _device;

    /// <summary>CAP as read at bring-up.</summary>
    public ControllerCapabilities Capabilities { get; }

    /// <summary>VS as read at bring-up.</summary>
    public NvmeVersion Version { get; private set; }

    /// <summary>Identify Controller data.</summary>
    public IdentifyController Identity { get; private set; } = null!;

    /// <summary>The active namespaces, by ascending NSID.</summary>
    public IReadOnlyList<NvmeNamespace> Namespaces { get; private set; } = [];

    /// <summary>Memory page size in use (CC.MPS), as a shift: pages are <c>1 &lt;&lt; PageShift</c> bytes.</summary>
    public int PageShift { get; }

    /// <summary>
    /// Largest transfer one command carries: MDTS, and at most what one PRP list page describes. Larger requests
    /// are split into several commands, submitted together.
    /// </summary>
    public int MaxTransferBytes { get; private set; }

    /// <summary>I/O queue pairs the controller granted (Set Features, Number of Queues).</summary>
    public int GrantedIoQueues => _grantedQueues;

    /// <summary>True after the controller reported a fatal status or a command timed out; <see cref="Reset"/> clears it.</summary>
    public bool IsFaulted => _fatal;

    /// <summary>
    /// True once the controller gave the device back to the host after <see cref="IPciDevice.ReleaseRequested"/>:
    /// every operation then throws <see cref="DeviceReleasedException"/>.
    /// </summary>
    public bool IsReleased => _released;

    /// <summary>Cancelled when <see cref="IsReleased"/> becomes true.</summary>
    public CancellationToken Released => _releasedSource.Token;

    /// <summary>
    /// How long the release took, from the request to the device being closed; set once the release is complete
    /// (memory freed too), null before.
    /// </summary>
    public TimeSpan? ReleaseDuration { get; private set; }

    /// <summary>Correctable PCIe errors the device reported (counted only: the hardware corrected them).</summary>
    public long CorrectableErrorCount => Interlocked.Read(ref _correctableErrors);

    /// <summary>Uncorrectable PCIe errors the device reported since open.</summary>
    public long UncorrectableErrorCount => Interlocked.Read(ref _uncorrectableErrors);

    /// <summary>
    /// The uncorrectable error that stopped the controller, while it is stopped for it; null once
    /// <see cref="RecoverFromError"/> (or <see cref="Reset"/>) brought it back, and before any error.
    /// </summary>
    public PciErrorReport? DeviceError => _deviceError;

    /// <summary>
    /// Raised, on a thread of the driver's own, once the controller has stopped for an uncorrectable error and failed
    /// its work: the application's cue to call <see cref="RecoverFromError"/> (from any thread, this one included).
    /// </summary>
    public event EventHandler<PciErrorReport>? DeviceErrorStopped;

    /// <summary>How many times <see cref="Reset"/> has re-initialised the controller.</summary>
    public int ResetCount { get; private set; }

    internal TimeProvider Time => _options.TimeProvider;

    internal IDeviceRegion Bar => _bar;

    internal TimeSpan CommandTimeout => _options.CommandTimeout;

    internal IInterruptSet? Msix => _msix;

    /// <summary>
    /// Brings up the NVMe controller on <paramref name="device"/>: enables memory decoding and bus mastering,
    /// resets the controller (CC.EN 1→0), sets up the admin queue, enables it, identifies the controller and its
    /// active namespaces, and negotiates the number of I/O queues.
    /// </summary>
    /// <exception cref="NvmeException">The device is not a usable NVMe controller.</exception>
    /// <exception cref="NvmeControllerFatalException">The controller reported a fatal status.</exception>
    /// <exception cref="DeviceTimeoutException">The controller did not become ready within CAP.TO.</exception>
    public static NvmeController Open(IPciDevice device, NvmeControllerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        return NvmeTelemetry.Traced("nvme.controller.bringup", device.Address, () => OpenTraced(device, options));
    }

    private static NvmeController OpenTraced(IPciDevice device, NvmeControllerOptions? options)
    {
        options ??= new NvmeControllerOptions();
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("NVMe structures are little-endian; this driver lays them out in host order");
        }
        if (options.MaxIoQueues is < 1 or > 65535) { throw new ArgumentOutOfRangeException(nameof(options), "MaxIoQueues must be 1..65535"); }
        ValidateAsyncEventOptions(options);
        ILogger logger = options.LoggerFactory?.CreateLogger<NvmeController>() ?? NullLogger<NvmeController>.Instance;

        // PCI Local Bus 3.0 §6.2.2: memory space lets us reach BAR0; bus master lets the controller fetch
        // commands and write completions and data (DMA), and deliver MSI-X (a memory write). INTx is unused.
        device.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster | PciCommand.IntxDisable);

        var disposables = new Stack<IDisposable>();
        try
        {
            var bar = device.OpenRegion(PciRegion.Bar0);
            disposables.Push(bar);
            if (bar.Size < 0x1000 + 8)
            {
                throw new NvmeException($"BAR0 is {bar.Size} bytes, too small for NVMe registers and doorbells", device.Address,
                    "is this device an NVMe controller (class code 01:08:02)?");
            }
            var cap = new ControllerCapabilities(bar.Read64(ControllerRegister.Cap));
            if (cap.Raw == ulong.MaxValue)
            {
                throw new NvmeException("CAP reads all ones: the controller does not respond", device.Address);
            }
            if (!cap.SupportsNvmCommandSet)
            {
                throw new NvmeException($"the controller does not support the NVM command set ({cap})", device.Address);
            }
            if (cap.MinPageShift > 21)
            {
                throw new NvmeException($"the controller's smallest memory page is 2^{cap.MinPageShift} bytes; this driver supports up to 2 MiB", device.Address);
            }
            int adminEntries = options.AdminQueueEntries;
            ControllerConfiguration.EncodeAdminQueueAttributes(adminEntries, adminEntries);   // validates
            var admin = new QueuePair(0, adminEntries, device.Dma, bar, cap.DoorbellStride, "nvme admin");
            disposables.Push(admin);
            ulong pageBytes = 1UL << cap.MinPageShift;
            // The admin data buffer: AdminDataBytes (at least one page) of data, then one page for its PRP list.
            ulong dataBytes = Math.Max((ulong)AdminDataBytes, pageBytes);
            var scratch = device.Dma.Allocate(dataBytes + pageBytes, new DmaAllocationOptions { Alignment = Math.Max(4096, pageBytes), Name = "nvme admin data" });
            disposables.Push(scratch);
            IInterruptSet? msix = null;
            if (options.EnableMsix)
            {
                var info = device.GetIrqInfo(IrqIndex.Msix);
                if (info.Count < 1)
                {
                    throw new NvmeException("MSI-X was asked for but the device has no MSI-X vectors", device.Address);
                }
                msix = device.EnableInterrupts(IrqIndex.Msix, Math.Min(info.Count, 1 + options.MaxIoQueues));
                disposables.Push(msix);
            }

            var controller = new NvmeController(device, bar, options, logger, cap, admin, scratch, msix);
            controller.Version = new NvmeVersion(bar.Read32(ControllerRegister.Vs));
            controller.Initialize(firstTime: true);
            // The callback only starts the release: it runs on the poller's thread, or inline if the request came
            // before this line. A thread of its own, not the pool: the pool may be slow to add a worker while
            // queue threads spin, and the kernel keeps the remover blocked meanwhile.
            controller._releaseRequest = device.ReleaseRequested.UnsafeRegister(
                static s => new Thread(static c => ((NvmeController)c!).ReleaseToHost()) { IsBackground = true, Name = "nvme release" }.Start(s),
                controller);
            device.ErrorReported += controller.OnDeviceError;
            controller._watchingErrors = true;
            LogOpened(logger, device.Address, controller.Identity.ModelNumber, controller.Identity.SerialNumber, controller.Version,
                controller.Namespaces.Count, controller._grantedQueues);
            return controller;
        }
        catch
        {
            // Whatever state the controller is in, it must not DMA into memory about to be freed.
            try { device.Config.BusMaster = false; }
            catch (VfioException) { /* the device is gone; nothing can DMA */ }
            while (disposables.Count > 0)
            {
                try { disposables.Pop().Dispose(); }
                catch (InvalidOperationException) { /* memory still leased to a controller we could not disable: leave it allocated */ }
            }
            throw;
        }
    }

    /// <summary>
    /// Resets and re-initialises the controller without restarting the process: disables it (CC.EN 1→0, which
    /// deletes every I/O queue in the controller), re-creates the admin queue and every I/O queue of this driver
    /// in the same memory, and clears <see cref="IsFaulted"/>. Commands in flight are completed as aborted.
    /// If the controller does not come back, a PCI function reset is tried once.
    /// </summary>
    public void Reset()
    {
        lock (_adminLock)
        {
            ResetLocked();
        }
    }

    /// <summary>
    /// Recovers after an uncorrectable PCIe error (<see cref="DeviceError"/>, <see cref="NvmeDeviceErrorException"/>):
    /// clears the error status the device logged in its AER capability (PCIe Base 6.0 §7.8.4.2 and §7.8.4.5, RW1C) so the
    /// next error is seen afresh, turns memory decoding and bus mastering back on, and resets and re-initialises the
    /// controller as <see cref="Reset"/> does: the admin queue and every I/O queue are re-created in their memory and
    /// the <see cref="NvmeIoQueue"/> objects accept work again. Work that failed is not retried; the application
    /// resubmits it. Safe to call when no error is pending (it is then a plain <see cref="Reset"/>).
    /// </summary>
    /// <exception cref="NvmeException">The controller did not come back; it stays faulted.</exception>
    /// <exception cref="DeviceTimeoutException">The controller did not become ready.</exception>
    public void RecoverFromError()
    {
        lock (_adminLock)
        {
            ThrowIfUnusable();
            var report = _deviceError;
            try
            {
                _device.Config.FindAer()?.ClearLogged();
            }
            catch (VfioException e)
            {
                LogTeardownProblem(_logger, _device.Address, $"clearing the AER status: {e.Message}");
            }
            ResetLocked();
            LogRecovered(_logger, _device.Address, report?.Severity.ToString() ?? "no");
        }
    }

    private void ResetLocked() => NvmeTelemetry.Traced("nvme.controller.reset", _device.Address, () =>
    {
        ResetLockedTraced();
        return true;
    });

    private void ResetLockedTraced()
    {
        ThrowIfUnusable();
        LogResetting(_logger, _device.Address, _fatal);
        // After an error stop bus mastering is off: without it the controller could not fetch a command.
        if (_deviceError is not null)
        {
            _device.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster | PciCommand.IntxDisable);
        }
        // 1. No thread is inside a queue from here on, so nothing rings a doorbell or reads a completion
        //    while the controller goes down; new operations wait for the reset.
        foreach (var q in _ioQueues) { q.Quiesce(); }
        try
        {
            // 2. Disabled, the controller fetches no command and moves no data (NVMe 1.4 §3.1.5) ...
            try
            {
                Disable();
            }
            catch (DeviceTimeoutException) when (_device.Info.CanReset)
            {
                // The controller is wedged: a function-level reset brings it to its power-on state.
                _device.Reset();
                _device.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster | PciCommand.IntxDisable);
                Disable();
            }
            // 3. ... so every command in flight can end (NvmeCommandAbortedException) and its buffers be returned.
            foreach (var q in _ioQueues) { q.AbortInFlight(released: false); }
            Initialize(firstTime: false);
            ResetCount++;
        }
        catch (Exception e) when (e is VfioException)
        {
            // The controller did not come back: what waited fails, and the queues stay faulted.
            _fatal = true;
            foreach (var q in _ioQueues) { q.Resume(); }
            throw;
        }
        // 4. The queues exist again: what waited for the reset is submitted.
        foreach (var q in _ioQueues) { q.Resume(); }
    }

    /// <summary>
    /// Creates an I/O queue pair (completion queue first, then its submission queue, NVMe 1.4 §7.4). Each queue
    /// is meant for one submitting thread.
    /// </summary>
    /// <exception cref="InvalidOperationException">Every granted queue is in use, or interrupts were asked for
    /// without MSI-X.</exception>
    public NvmeIoQueue CreateIoQueue(NvmeIoQueueOptions? options = null) =>
        NvmeTelemetry.Traced("nvme.queue.create", _device.Address, () => CreateIoQueueTraced(options));

    private NvmeIoQueue CreateIoQueueTraced(NvmeIoQueueOptions? options)
    {
        options ??= new NvmeIoQueueOptions();
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            int qid = 1;
            while (qid <= _grantedQueues && _ioQueues.Exists(q => q.QueueId == qid)) { qid++; }
            if (qid > _grantedQueues)
            {
                throw new InvalidOperationException($"all {_grantedQueues} I/O queues the controller granted are in use; dispose one first");
            }
            int entries = Math.Min(options.Entries, Capabilities.MaxQueueEntries);
            if (entries < 2) { throw new ArgumentOutOfRangeException(nameof(options), options.Entries, "a queue needs at least 2 entries"); }
            var mode = options.CompletionMode ?? (options.UseInterrupts ? NvmeCompletionMode.Interrupt : NvmeCompletionMode.Polled);
            IInterruptVector? vector = null;
            if (options.UseInterrupts || mode != NvmeCompletionMode.Polled)
            {
                if (_msix is null)
                {
                    throw new InvalidOperationException($"interrupt-driven queues ({mode} completion) need NvmeControllerOptions.EnableMsix = true");
                }
                if (qid >= _msix.Count)
                {
                    throw new InvalidOperationException($"queue {qid} has no MSI-X vector of its own ({_msix.Count} enabled)");
                }
                vector = _msix[qid];
            }
            var queue = new NvmeIoQueue(this, qid, entries, vector, mode, options.HybridSpin);
            try
            {
                CreateOnController(queue);
            }
            catch
            {
                queue.DisposeMemory();
                throw;
            }
            _ioQueues.Add(queue);
            NvmeTelemetry.Track(queue);
            NvmeTelemetry.TagCurrent(NvmeTelemetry.QueueIdTag, qid);
            return queue;
        }
    }

    /// <summary>Finds namespace <paramref name="nsid"/>.</summary>
    /// <exception cref="ArgumentException">No such active namespace.</exception>
    public NvmeNamespace GetNamespace(uint nsid)
    {
        foreach (var ns in Namespaces)
        {
            if (ns.Id == nsid) { return ns; }
        }
        throw new ArgumentException($"namespace {nsid} is not active on {_device.Address}", nameof(nsid));
    }

    /// <summary>Runs an admin command and waits for its completion.</summary>
    /// <returns>DW0 of the completion.</returns>
    /// <exception cref="NvmeCommandException">The command failed.</exception>
    public uint ExecuteAdmin(NvmeCommand command)
    {
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            return ExecuteAdminLocked(command);
        }
    }

    /// <summary>Identify with the 4 KiB result copied out.</summary>
    public byte[] Identify(IdentifyCns cns, uint nsid)
    {
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            return IdentifyLocked(cns, nsid);
        }
    }

    private byte[] IdentifyLocked(IdentifyCns cns, uint nsid)
    {
        _scratch.Span.Clear();
        DmaAddress prp2 = default;
        ulong pageBytes = 1UL << PageShift;
        if (pageBytes < 4096)
        {
            prp2 = _scratch.GetDeviceAddress(pageBytes);   // unreachable with 4 KiB minimum pages, kept for clarity
        }
        ExecuteAdminLocked(NvmeCommand.Identify(cns, nsid, _scratch.DeviceAddress, prp2), new DmaWindow(_scratch, 0, 4096));
        return _scratch.Span[..4096].ToArray();
    }

    private void Initialize(bool firstTime)
    {
        // NVMe 1.4 §7.6.1 step 1-2: the controller must be disabled before the admin queue is configured. Once it
        // is, it no longer touches the admin queue memory, which can be cleared.
        Disable();
        _admin.ResetState();
        _bar.Write32(ControllerRegister.Aqa, ControllerConfiguration.EncodeAdminQueueAttributes(_admin.Entries, _admin.Entries));
        _bar.Write64(ControllerRegister.Asq, _admin.SubmissionAddress.Value);
        _bar.Write64(ControllerRegister.Acq, _admin.CompletionAddress.Value);
        // From enable on, the controller may read the admin SQ and write the admin CQ.
        _admin.TakeOwnership("nvme admin queue");
        _scratchLease ??= _scratch.MarkInUse("nvme identify");
        // §7.6.1 step 4: CSS, MPS and AMS are set before EN (written once without EN, then with it); IOSQES and
        // IOCQES are only needed before I/O queues are created but are fixed here once.
        uint cc = ControllerConfiguration.Encode(enable: false, PageShift);
        _bar.Write32(ControllerRegister.Cc, cc);
        _bar.Write32(ControllerRegister.Cc, cc | ControllerConfiguration.Enable);
        WaitForStatus(static csts => ControllerConfiguration.IsReady(csts), "CSTS.RDY = 1 after CC.EN = 1", ReadyTimeout);
        _fatal = false;
        _deviceError = null;
        _adminCid = 0;

        if (firstTime)
        {
            Identity = IdentifyController.Parse(IdentifyLocked(IdentifyCns.Controller, 0));
            ulong limit = (ulong)(1 << (PageShift - 3)) << PageShift;   // what one PRP list page describes
            ulong mdts = Identity.MaxTransferBytes(Capabilities.MinPageShift) ?? limit;
            MaxTransferBytes = (int)Math.Min(Math.Min(mdts, limit), 1UL << 30);
            Namespaces = DiscoverNamespaces();
        }

        // §5.21.1.7: Number of Queues may be set only once after each controller enable; 0's based in and out.
        uint granted = ExecuteAdminLocked(NvmeCommand.SetNumberOfQueues(_options.MaxIoQueues, _options.MaxIoQueues));
        int sq = (int)(granted & 0xFFFF) + 1, cq = (int)(granted >> 16) + 1;
        int now = Math.Min(_options.MaxIoQueues, Math.Min(sq, cq));
        if (!firstTime && now < _ioQueues.Count)
        {
            throw new NvmeException($"after reset the controller grants {now} I/O queues; {_ioQueues.Count} existed", _device.Address);
        }
        _grantedQueues = now;

        if (!firstTime)
        {
            foreach (var q in _ioQueues)
            {
                q.ResetState();
                CreateOnController(q);
            }
        }
        ArmAsyncEvents();
    }

    private List<NvmeNamespace> DiscoverNamespaces()
    {
        List<uint> ids;
        try
        {
            ids = ReadNamespaceListLocked(IdentifyCns.ActiveNamespaces, 0);   // every page, checked (NvmeController.Namespaces.cs)
        }
        catch (NvmeCommandException e) when (e.Status.Type == StatusCodeType.Generic && e.Status.Code == (byte)GenericStatusCode.InvalidField)
        {
            // Before NVMe 1.1 CNS 02h is reserved: probe 1..NN instead, skipping namespaces of size 0 (inactive).
            ids = [];
            for (uint id = 1; id <= Math.Min(Identity.NamespaceCount, 1024u); id++) { ids.Add(id); }
        }
        var list = new List<NvmeNamespace>();
        foreach (uint id in ids)
        {
            var ns = Spec.Nvme.IdentifyNamespace.Parse(IdentifyLocked(IdentifyCns.Namespace, id));
            if (ns.SizeInBlocks == 0) { continue; }
            if (ns.MetadataSize != 0)
            {
                LogNamespaceSkipped(_logger, _device.Address, id, ns.MetadataSize);
                continue;
            }
            list.Add(new NvmeNamespace(id, ns));
        }
        return list;
    }

    private void CreateOnController(NvmeIoQueue queue)
    {
        var pair = queue.Pair;
        pair.TakeOwnership($"nvme I/O queue {queue.QueueId}");
        queue.TakeBufferOwnership();
        try
        {
            ExecuteAdminLocked(NvmeCommand.CreateIoCompletionQueue(queue.QueueId, pair.Entries, pair.CompletionAddress,
                interruptsEnabled: queue.Vector is not null, vector: queue.Vector?.Vector ?? 0), pair.CompletionWindow, contiguous: true);
            try
            {
                ExecuteAdminLocked(NvmeCommand.CreateIoSubmissionQueue(queue.QueueId, pair.Entries, pair.SubmissionAddress, queue.QueueId), pair.SubmissionWindow, contiguous: true);
            }
            catch (NvmeCommandException)
            {
                ExecuteAdminLocked(NvmeCommand.DeleteIoCompletionQueue(queue.QueueId));
                throw;
            }
        }
        catch (NvmeCommandException)
        {
            // The controller refused the queue, so it never owned the memory.
            pair.ReleaseOwnership();
            queue.ReleaseBufferOwnership();
            throw;
        }
    }

    /// <summary>Deletes a queue pair in the controller (SQ first, then its CQ) and frees its memory.</summary>
    internal void DeleteIoQueue(NvmeIoQueue queue)
    {
        lock (_adminLock)
        {
            if (!_ioQueues.Remove(queue)) { return; }
            NvmeTelemetry.Untrack(queue);
            if (_disposed) { return; }
            queue.Quiesce();
            bool deleted = false;
            if (!_fatal)
            {
                try
                {
                    ExecuteAdminLocked(NvmeCommand.DeleteIoSubmissionQueue(queue.QueueId));
                    ExecuteAdminLocked(NvmeCommand.DeleteIoCompletionQueue(queue.QueueId));
                    deleted = true;
                }
                catch (Exception e) when (e is NvmeException or DeviceTimeoutException)
                {
                    LogTeardownProblem(_logger, _device.Address, $"deleting I/O queue {queue.QueueId}: {e.Message}");
                }
            }
            // A deleted SQ's commands are aborted by the controller (NVMe 1.4 §5.6): none can still move data.
            queue.Terminate(new ObjectDisposedException(nameof(NvmeIoQueue), $"NVMe I/O queue {queue.QueueId} was disposed"), deviceStopped: deleted, released: false);
            if (deleted)
            {
                queue.DisposeMemory();
            }
            else
            {
                // The controller may still own the memory: keep it allocated (leaked until exit) rather than let
                // the device write into freed pages. Reset or dispose of the controller does not reclaim it.
                LogQueueMemoryKept(_logger, _device.Address, queue.QueueId);
            }
        }
    }

    internal uint ExecuteAdminLocked(NvmeCommand command) => ExecuteAdminLocked(command, default, default);

    /// <summary>
    /// Runs an admin command the driver built over its own memory: <paramref name="data"/> is exactly what the command
    /// transfers (or a queue's entries) and <paramref name="list"/> the PRP list page it may use, both checked by the
    /// DMA audit before the doorbell. Commands without a data window (no data, or a caller's raw command) are not audited.
    /// <paramref name="contiguous"/>: PRP1 addresses the whole window as one range (a queue created with PC = 1).
    /// </summary>
    internal uint ExecuteAdminLocked(NvmeCommand command, in DmaWindow data, in DmaWindow list = default, bool contiguous = false)
    {
        command.CommandId = _adminCid;
        _adminCid = (ushort)((_adminCid + 1) % (_admin.Entries - 1));
        if (DmaAudit.Enabled && data.Buffer is not null)
        {
            nint listPointer = list.Buffer is null ? 0 : list.Buffer.Pointer + (nint)list.Offset;
            DmaAddress listAddress = list.Buffer is null ? default : list.Buffer.GetDeviceAddress(list.Offset);
            PrpAudit.Check(command, new PrpAudit.Lease(_device.Address, "NVMe admin queue", PageShift, data, list, listPointer, listAddress, contiguous));
        }
        var info = NvmeCommandInfo.From(0, command);
        _admin.Place(command);
        _admin.RingSubmissions();
        long start = Time.GetTimestamp();
        long nextHealthCheck = 0;
        while (true)
        {
            if (_admin.TryTake(out var c))
            {
                _admin.RingCompletions();
                if (c.CommandId != command.CommandId && TryTakeAsyncEventCompletion(c)) { continue; }   // an AER ended meanwhile (§5.2)
                // One admin command is outstanding at a time, and the admin queue is cleared at every reset, so
                // any other CID, a head outside the queue, another SQ's id or a reserved status code type is the
                // controller breaking §4.6: the same checks as the I/O queues' (CompletionCheck).
                string? violation = CompletionCheck.Violation(c, 0, _admin.Entries, commandOutstanding: c.CommandId == command.CommandId);
                if (violation is not null)
                {
                    _fatal = true;
                    throw new DeviceProtocolViolationException(_device.Address, $"NVMe admin completion for {info}", violation);
                }
                if (!c.Status.IsSuccess)
                {
                    throw new NvmeCommandException(info, c.Status, _device.Address);
                }
                return c.Dw0;
            }
            var elapsed = Time.GetElapsedTime(start);
            if (elapsed.Ticks >= nextHealthCheck)
            {
                CheckHealth();
                nextHealthCheck = elapsed.Ticks + TimeSpan.TicksPerMillisecond;
            }
            if (elapsed > CommandTimeout)
            {
                _fatal = true;
                throw new NvmeTimeoutException(info, CommandTimeout, _device.Address);
            }
            Thread.SpinWait(32);
        }
    }

    /// <summary>Reads CSTS; throws when the controller reports a fatal status or has vanished.</summary>
    internal void CheckHealth()
    {
        uint csts = _bar.Read32(ControllerRegister.Csts);
        if (csts == uint.MaxValue)
        {
            _fatal = true;
            throw new NvmeControllerFatalException("CSTS reads all ones: the controller is gone or in reset", csts, _device.Address);
        }
        if (ControllerConfiguration.IsFatal(csts))
        {
            _fatal = true;
            throw new NvmeControllerFatalException("the controller reports a fatal status (CSTS.CFS)", csts, _device.Address);
        }
    }

    internal void MarkFaulted() => _fatal = true;

    /// <summary>The exception for work hit by the pending device error (<paramref name="command"/> null: work submitted after it); null when none is pending.</summary>
    internal NvmeDeviceErrorException? DeviceErrorException(NvmeCommandInfo? command) =>
        _deviceError is { } report ? new NvmeDeviceErrorException(report, command) : null;

    /// <summary>
    /// The device's error interrupt (on the poller's thread, or the thread of a test hook): a correctable error is
    /// counted; an uncorrectable one stops the controller on a thread of its own, as a release does, so the poller
    /// is not held while queues drain.
    /// </summary>
    private void OnDeviceError(object? sender, PciErrorReport report)
    {
        if (!report.IsUncorrectable)
        {
            Interlocked.Increment(ref _correctableErrors);
            LogCorrectableError(_logger, _device.Address, report.Aer?.ToString() ?? "no AER status");
            return;
        }
        Interlocked.Increment(ref _uncorrectableErrors);
        new Thread(static s =>
        {
            var (controller, r) = ((NvmeController, PciErrorReport))s!;
            controller.StopForDeviceError(r);
        }) { IsBackground = true, Name = "nvme device error" }.Start((this, report));
    }

    /// <summary>
    /// Stops the controller after an uncorrectable error: no thread enters a queue, the controller is disabled (it
    /// then fetches no command and moves no data, NVMe 1.4 §3.1.5) and bus mastering is cleared so that even a
    /// controller that no longer answers cannot DMA (PCI Local Bus 3.0 §6.2.2); only then is work in flight failed
    /// and its buffers returned. The data of commands in flight cannot be trusted (the error may have been a poisoned
    /// or lost TLP of theirs), so none is reported as done.
    /// </summary>
    private void StopForDeviceError(PciErrorReport report)
    {
        lock (_adminLock)
        {
            if (_disposed || _released) { return; }
            LogStoppingForError(_logger, _device.Address, report.ToString());
            _deviceError = report;
            _fatal = true;
            foreach (var q in _ioQueues) { q.Quiesce(); }
            bool stopped = false;
            try
            {
                Disable();
                stopped = true;
            }
            catch (VfioException e)
            {
                LogTeardownProblem(_logger, _device.Address, $"disabling after the error: {e.Message}");
            }
            try
            {
                _device.Config.BusMaster = false;
                stopped = true;
            }
            catch (VfioException e)
            {
                LogTeardownProblem(_logger, _device.Address, $"clearing bus master after the error: {e.Message}");
            }
            var error = new NvmeDeviceErrorException(report, null);
            foreach (var q in _ioQueues) { q.FailForDeviceError(error, stopped); }
        }
        DeviceErrorStopped?.Invoke(this, report);
    }

    /// <summary>Throws <see cref="DeviceReleasedException"/> after a release to the host, else ObjectDisposedException after Dispose.</summary>
    internal void ThrowIfUnusable()
    {
        ThrowIfReleased();
        ObjectDisposedException.ThrowIf(_disposed, this);
    }

    internal void ThrowIfReleased()
    {
        if (_released)
        {
            throw new DeviceReleasedException(_device.Address, "the NVMe controller was stopped and its queues freed");
        }
    }

    internal void ThrowIfFaulted()
    {
        if (DeviceErrorException(null) is { } deviceError) { throw deviceError; }
        if (_fatal)
        {
            throw new NvmeControllerFatalException("the controller faulted earlier (fatal status or timeout) and has not been reset",
                _bar.Read32(ControllerRegister.Csts), _device.Address);
        }
    }

    private TimeSpan ReadyTimeout => Capabilities.ReadyTimeout > _options.MinimumReadyTimeout ? Capabilities.ReadyTimeout : _options.MinimumReadyTimeout;

    /// <summary>
    /// Clears CC.EN and waits for CSTS.RDY = 0 (NVMe 1.4 §3.1.5: a 1→0 transition of EN is a controller reset).
    /// If EN is set but RDY not yet, waits for RDY first: changing EN mid-transition is undefined (§3.1.6).
    /// </summary>
    private void Disable()
    {
        uint cc = _bar.Read32(ControllerRegister.Cc);
        uint csts = _bar.Read32(ControllerRegister.Csts);
        if ((cc & ControllerConfiguration.Enable) != 0 && !ControllerConfiguration.IsReady(csts) && !ControllerConfiguration.IsFatal(csts))
        {
            WaitForStatus(static s => ControllerConfiguration.IsReady(s) || ControllerConfiguration.IsFatal(s), "CSTS.RDY = 1 before disabling", ReadyTimeout);
        }
        _bar.Write32(ControllerRegister.Cc, cc & ~ControllerConfiguration.Enable & ~(3u << 14));
        WaitForStatus(static s => !ControllerConfiguration.IsReady(s), "CSTS.RDY = 0 after CC.EN = 0", ReadyTimeout);
        // A disabled controller fetches no commands and posts no completions: it no longer owns queue memory.
        _admin.ReleaseOwnership();
        foreach (var q in _ioQueues)
        {
            q.Pair.ReleaseOwnership();
            q.ReleaseBufferOwnership();
        }
    }

    private void WaitForStatus(Func<uint, bool> condition, string what, TimeSpan timeout)
    {
        long start = Time.GetTimestamp();
        while (true)
        {
            uint csts = _bar.Read32(ControllerRegister.Csts);
            if (csts != uint.MaxValue && condition(csts)) { return; }
            if (Time.GetElapsedTime(start) > timeout)
            {
                throw new DeviceTimeoutException(_device.Address, $"NVMe {what}", timeout, $"CSTS 0x{csts:x8}");
            }
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// Shuts the controller down in order: deletes the I/O queues, requests a normal shutdown (CC.SHN = 01b) and
    /// waits for CSTS.SHST = 10b (NVMe 1.4 §7.6.2), disables it (CC.EN = 0), turns bus mastering off so no DMA
    /// can follow, disables MSI-X, and only then frees the queue and PRP memory. The device stays open.
    /// </summary>
    public void Dispose()
    {
        StopWatchingErrors();
        StopAsyncEvents();
        lock (_adminLock)
        {
            if (_disposed) { return; }
            foreach (var q in _ioQueues) { q.Quiesce(); }
            bool stopped = Stop(deleteQueues: true, shutdown: true);
            var disposed = new ObjectDisposedException(nameof(NvmeController), "the NVMe controller was disposed");
            foreach (var q in _ioQueues) { q.Terminate(disposed, stopped, released: false); }
            FreeAfterStop(stopped);
        }
        _releaseRequest.Dispose();
    }

    /// <summary>
    /// The host asked for the device back: stop it (disable, which deletes every queue in the controller, and bus
    /// master off), fail the waiting I/O, close the device so the kernel can finish the removal, then free the
    /// memory. Runs on a thread of its own.
    /// </summary>
    private void ReleaseToHost()
    {
        long start = Time.GetTimestamp();
        lock (_adminLock)
        {
            if (_disposed) { return; }
            StopWatchingErrors();
            LogReleaseRequested(_logger, _device.Address);
            // No thread is inside a queue once they are quiesced: nothing touches the BAR or the rings after this.
            foreach (var q in _ioQueues) { q.Quiesce(); }
            bool stopped = Stop(deleteQueues: false, shutdown: false);
            // The device no longer fetches commands or moves data, so waiters may now give up and their callers
            // reuse their buffers.
            _released = true;
            _releasedSource.Cancel();
            var released = new DeviceReleasedException(_device.Address, "the NVMe controller was stopped and its queues freed");
            foreach (var q in _ioQueues) { q.Terminate(released, stopped, released: true); }
            // The kernel waits for the BAR mappings and the device fd only, and the stopped device no longer
            // touches queue memory: close first, free after, so the remover is not kept waiting on IOMMU unmaps.
            _bar.Dispose();
            if (_options.DisposeDeviceOnReleaseRequest)
            {
                _device.Dispose();
            }
            // Measured to the close (what the remover waits for), published once the memory is freed too, so a
            // non-null ReleaseDuration means the release is complete.
            var closedAfter = Time.GetElapsedTime(start);
            FreeAfterStop(stopped);
            ReleaseDuration = closedAfter;
            LogReleased(_logger, _device.Address, closedAfter.TotalMilliseconds);
        }
    }

    /// <summary>
    /// Deletes the I/O queues (when asked and the controller is healthy), shuts the controller down (when asked),
    /// disables it and clears bus mastering. Returns whether the device is known to have stopped DMA.
    /// </summary>
    /// <remarks>
    /// A release to the host skips the shutdown notification: disabling alone stops all DMA (a controller reset),
    /// while CC.SHN also commits the volatile write cache, which NVMe leaves to Flush (data is durable once a Flush
    /// completed) and which costs a whole host fsync under QEMU, blocking the remover for it.
    /// </remarks>
    private bool Stop(bool deleteQueues, bool shutdown)
    {
        bool stopped = false;
        try
        {
            if (!_fatal && shutdown)
            {
                if (deleteQueues)
                {
                    foreach (var q in _ioQueues.ToArray())
                    {
                        try
                        {
                            ExecuteAdminLocked(NvmeCommand.DeleteIoSubmissionQueue(q.QueueId));
                            ExecuteAdminLocked(NvmeCommand.DeleteIoCompletionQueue(q.QueueId));
                        }
                        catch (Exception e) when (e is NvmeException or DeviceTimeoutException)
                        {
                            LogTeardownProblem(_logger, _device.Address, $"deleting I/O queue {q.QueueId}: {e.Message}");
                            break;
                        }
                    }
                }
                uint cc = _bar.Read32(ControllerRegister.Cc);
                _bar.Write32(ControllerRegister.Cc, ControllerConfiguration.WithShutdown(cc, ShutdownNotification.Normal));
                WaitForStatus(static s => ControllerConfiguration.GetShutdownStatus(s) == ShutdownStatus.Complete || ControllerConfiguration.IsFatal(s),
                    "CSTS.SHST = complete after CC.SHN = normal", ReadyTimeout);
            }
            Disable();
            stopped = true;
        }
        catch (VfioException e)
        {
            LogTeardownProblem(_logger, _device.Address, e.Message);
        }
        try
        {
            // PCI Local Bus 3.0 §6.2.2: with Bus Master clear the function starts no memory transactions.
            _device.Config.BusMaster = false;
            stopped = true;
        }
        catch (VfioException e)
        {
            LogTeardownProblem(_logger, _device.Address, $"clearing bus master: {e.Message}");
        }
        return stopped;
    }

    /// <summary>Disables MSI-X and frees queue and PRP memory (kept allocated when the device may still DMA), then unmaps BAR0.</summary>
    private void FreeAfterStop(bool stopped)
    {
        _disposed = true;
        _msix?.Dispose();
        if (stopped)
        {
            foreach (var q in _ioQueues)
            {
                q.Pair.ReleaseOwnership();
                q.ReleaseBufferOwnership();
                q.DisposeMemory();
            }
            _admin.ReleaseOwnership();
            _admin.Dispose();
            _scratchLease?.Dispose();
            _scratch.Dispose();
        }
        else
        {
            LogQueueMemoryKept(_logger, _device.Address, -1);
        }
        foreach (var q in _ioQueues) { NvmeTelemetry.Untrack(q); }
        _ioQueues.Clear();
        _bar.Dispose();
        LogClosed(_logger, _device.Address);
    }

    private void StopWatchingErrors()
    {
        if (!_watchingErrors) { return; }
        _watchingErrors = false;
        _device.ErrorReported -= OnDeviceError;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: correctable PCIe error reported ({Aer}); counted, no recovery needed")]
    private static partial void LogCorrectableError(ILogger logger, PciAddress device, string aer);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: uncorrectable PCIe error ({Report}); stopping the NVMe controller and failing its I/O until RecoverFromError")]
    private static partial void LogStoppingForError(ILogger logger, PciAddress device, string report);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: NVMe controller recovered ({Severity} error was pending): queues re-created")]
    private static partial void LogRecovered(ILogger logger, PciAddress device, string severity);

    [LoggerMessage(Level = LogLevel.Information, Message =
        "{Device}: NVMe {Version} controller '{Model}' serial '{Serial}', {Namespaces} namespace(s), {Queues} I/O queue(s) granted")]
    private static partial void LogOpened(ILogger logger, PciAddress device, string model, string serial, NvmeVersion version, int namespaces, int queues);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: resetting the NVMe controller (faulted: {Faulted})")]
    private static partial void LogResetting(ILogger logger, PciAddress device, bool faulted);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: namespace {Nsid} has {Metadata} metadata bytes per block; not supported, skipped")]
    private static partial void LogNamespaceSkipped(ILogger logger, PciAddress device, uint nsid, int metadata);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: while tearing down: {Problem}")]
    private static partial void LogTeardownProblem(ILogger logger, PciAddress device, string problem);

    [LoggerMessage(Level = LogLevel.Warning, Message =
        "{Device}: the controller could not be stopped, so the memory of queue {Queue} (-1: all) stays allocated until the process exits")]
    private static partial void LogQueueMemoryKept(ILogger logger, PciAddress device, int queue);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: the host asks for the NVMe controller back; stopping it and failing its I/O")]
    private static partial void LogReleaseRequested(ILogger logger, PciAddress device);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: NVMe controller released to the host in {Milliseconds:F1} ms")]
    private static partial void LogReleased(ILogger logger, PciAddress device, double milliseconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: a continuation of an operation on I/O queue {Queue} threw; the queue goes on")]
    private static partial void LogContinuationFailed(ILogger logger, PciAddress device, int queue, Exception exception);

    internal void LogContinuationFailure(int queueId, Exception e) => LogContinuationFailed(_logger, _device.Address, queueId, e);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Device}: NVMe controller shut down")]
    private static partial void LogClosed(ILogger logger, PciAddress device);
}
