using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

/// <summary>
/// Identify Controller as a real controller fills it, the log pages 01h-05h with offsets and RAE, SMART counters that
/// move with I/O, the error log, Asynchronous Event Requests and Feature 0Bh (Asynchronous Event Configuration).
/// Section numbers are NVMe Base 2.0 unless 1.4 is named.
/// </summary>
public sealed partial class NvmeDevice
{
    /// <summary>AERL (0's based): four Asynchronous Event Requests may be outstanding.</summary>
    public const int AsyncEventRequestLimit = 3;

    /// <summary>ELPE + 1: the error log keeps the 256 newest entries (16 KiB, more than one 8 KiB transfer at MDTS 1).</summary>
    public const int ErrorLogEntries = 256;

    /// <summary>WCTEMP reported in Identify Controller: 343 K (70 °C).</summary>
    public const int WarningTemperatureKelvin = 343;

    /// <summary>CCTEMP reported in Identify Controller: 353 K (80 °C).</summary>
    public const int CriticalTemperatureKelvin = 353;

    // OAES bit 8: Namespace Attribute Notices; the only optional notice the model raises (§5.17.2.1, Figure 275).
    private const uint SupportedOptionalEvents = 1u << 8;
    private const uint SupportedEventConfiguration = (uint)(AsyncEventConfiguration.SmartCriticalWarnings | AsyncEventConfiguration.NamespaceAttributeNotices);
    // Nominal controller time one I/O command counts towards Controller Busy Time (the model runs commands in ~0 time).
    private static readonly long BusyTicksPerCommand = TimeSpan.FromMicroseconds(100).Ticks;

    private readonly Lock _logLock = new();
    private readonly long _poweredOnAt = Stopwatch.GetTimestamp();
    private readonly ErrorLogEntry[] _errorLog = new ErrorLogEntry[ErrorLogEntries];
    private ulong _errorCount;
    private long _mediaErrors;

    // Guarded by the controller lock, like the admin queue they belong to.
    private readonly Queue<ushort> _aerCids = new();
    private readonly List<uint> _pendingEvents = [];
    private readonly Dictionary<AsyncEventType, byte> _maskedEvents = [];
    private readonly List<uint> _changedNamespaces = [];
    private bool _changedNamespacesOverflow;
    private uint _asyncEventConfig;
    private bool _aerDeferred;
    private byte _smartCriticalWarning;
    private int _temperatureKelvin = 310;
    private long _asyncEventsPosted;

    /// <summary>
    /// The SMART critical warning (log 02h byte 0), as QEMU's <c>smart_critical_warning</c> property: setting a bit that
    /// was clear raises a SMART / Health asynchronous event when Feature 0Bh enables that bit (§5.2, §5.27.1.7).
    /// </summary>
    public byte SmartCriticalWarning
    {
        get { lock (_lock) { return _smartCriticalWarning; } }
        set
        {
            lock (_lock)
            {
                byte raised = (byte)(value & ~_smartCriticalWarning);
                _smartCriticalWarning = value;
                for (int bit = 0; bit < 8; bit++)
                {
                    if ((raised & (1 << bit)) == 0 || (_asyncEventConfig & (1u << bit)) == 0) { continue; }
                    // Figure 149: spare below threshold and temperature have their own information codes; the rest
                    // (reliability, read-only, backup failure, PMR) are "NVM subsystem reliability".
                    var info = bit switch
                    {
                        0 => SmartHealthEventInfo.SpareBelowThreshold,
                        1 => SmartHealthEventInfo.TemperatureThreshold,
                        _ => SmartHealthEventInfo.Reliability,
                    };
                    QueueEvent(AsyncEventInfo.Encode(AsyncEventType.SmartHealth, (byte)info, (byte)LogPageId.SmartHealth));
                }
                DeliverAsyncEvents();
            }
        }
    }

    /// <summary>Composite temperature reported in the SMART / Health log, Kelvin (310 K by default). 0..65535.</summary>
    public int CompositeTemperatureKelvin
    {
        get => Volatile.Read(ref _temperatureKelvin);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, ushort.MaxValue);
            Volatile.Write(ref _temperatureKelvin, value);
        }
    }

    /// <summary>
    /// LPA bit 2 (extended data: log page offsets and NUMDU) as Identify Controller reports it; true by default.
    /// Set before the host identifies the controller. The model serves offsets either way.
    /// </summary>
    public bool ReportsLogPageOffsets { get; set; } = true;

    /// <summary>Test hook: time added to the power-on time the SMART log reports (it counts from construction).</summary>
    public TimeSpan ExtraPowerOnTime { get; set; }

    /// <summary>
    /// Fault injection: post the next asynchronous event completion twice with the same CID, as a broken controller
    /// would; reset once used.
    /// </summary>
    public bool DuplicateNextAsyncEventCompletion { get; set; }

    /// <summary>Asynchronous Event Request commands the controller holds now.</summary>
    public int OutstandingAsyncEventRequests { get { lock (_lock) { return _aerCids.Count; } } }

    /// <summary>Asynchronous event completions posted so far.</summary>
    public long AsyncEventsPosted => Interlocked.Read(ref _asyncEventsPosted);

    /// <summary>Feature 0Bh's current value (the events the host enabled).</summary>
    public AsyncEventConfiguration AsyncEventsEnabled { get { lock (_lock) { return (AsyncEventConfiguration)_asyncEventConfig; } } }

    /// <summary>Block size of namespace <paramref name="nsid"/> (one namespace here).</summary>
    private int BlockSizeOf(uint nsid) => nsid == 1 ? _options.BlockSize : 0;

    partial void OnNamespaceAttributeChanged(uint nsid)
    {
        // §5.16.1.5: up to 1024 NSIDs; more than that is reported as a single FFFFFFFFh.
        if (!_changedNamespaces.Contains(nsid))
        {
            if (_changedNamespaces.Count < 1024) { _changedNamespaces.Add(nsid); } else { _changedNamespacesOverflow = true; }
        }
        if ((_asyncEventConfig & (uint)AsyncEventConfiguration.NamespaceAttributeNotices) != 0)
        {
            QueueEvent(AsyncEventInfo.Encode(AsyncEventType.Notice, (byte)NoticeEventInfo.NamespaceAttributeChanged, (byte)LogPageId.ChangedNamespaceList));
            DeliverAsyncEvents();
        }
    }

    /// <summary>
    /// Test hook: raises any asynchronous event (error, vendor specific, one pointing at a log page the model does not
    /// have), regardless of Feature 0Bh. Its type stays masked until log page <paramref name="logPage"/> is read with RAE = 0.
    /// </summary>
    public void RaiseAsyncEvent(AsyncEventType type, byte info, byte logPage)
    {
        lock (_lock)
        {
            QueueEvent(AsyncEventInfo.Encode(type, info, logPage));
            DeliverAsyncEvents();
        }
    }

    /// <summary>Test hook: reports namespace <paramref name="nsid"/> as changed (what Namespace Management would do).</summary>
    public void RaiseNamespaceAttributeChanged(uint nsid)
    {
        lock (_lock) { OnNamespaceAttributeChanged(nsid); }
    }

    // ------------------------------------------------------------------ Identify Controller (§5.17.2.1, Figure 275)

    /// <summary>Fills the 4096-byte Identify Controller structure.</summary>
    private void FillIdentifyController(Span<byte> data)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(data, 0x1b36);                 // VID
        BinaryPrimitives.WriteUInt16LittleEndian(data[2..], 0x1af4);            // SSVID
        Pad(data.Slice(4, 20), _options.Serial);
        Pad(data.Slice(24, 40), _options.Model);
        Pad(data.Slice(64, 8), "1.0");
        data[72] = 6;                                                           // RAB: 64 commands
        data[73] = 0x00; data[74] = 0x54; data[75] = 0x52;                      // IEEE OUI 52:54:00, least significant byte first
        data[77] = _options.Mdts;
        BinaryPrimitives.WriteUInt16LittleEndian(data[78..], 1);                // CNTLID
        BinaryPrimitives.WriteUInt32LittleEndian(data[80..], 0x0001_0400);      // VER 1.4
        BinaryPrimitives.WriteUInt32LittleEndian(data[92..], SupportedOptionalEvents);   // OAES
        data[111] = 1;                                                          // CNTRLTYPE: I/O controller
        data[258] = 3;                                                          // ACL: four Aborts
        data[259] = AsyncEventRequestLimit;                                     // AERL
        data[260] = 1 << 1 | 1;                                                 // FRMW: one slot, slot 1 read-only
        data[261] = (byte)(LogPageAttributes.CommandEffects | (ReportsLogPageOffsets ? LogPageAttributes.ExtendedData : 0));   // LPA
        data[262] = ErrorLogEntries - 1;                                        // ELPE
        data[263] = 0;                                                          // NPSS: one power state
        BinaryPrimitives.WriteUInt16LittleEndian(data[266..], WarningTemperatureKelvin);
        BinaryPrimitives.WriteUInt16LittleEndian(data[268..], CriticalTemperatureKelvin);
        data[512] = 0x66;                                                       // SQES: 64 bytes
        data[513] = 0x44;                                                       // CQES: 16 bytes
        BinaryPrimitives.WriteUInt32LittleEndian(data[516..], 1);               // NN
        BinaryPrimitives.WriteUInt16LittleEndian(data[520..], (ushort)_options.Oncs);
        data[525] = 1;                                                          // VWC present
        // Power state 0 (Figure 276): 25.00 W maximum (MXPS 0: 0.01 W units), operational, no entry/exit latency.
        var psd = data.Slice(IdentifyController.PowerStateDescriptorOffset, PowerStateDescriptor.Size);
        BinaryPrimitives.WriteUInt16LittleEndian(psd, 2500);
    }

    // ------------------------------------------------------------------ Get Log Page (§5.16)

    private NvmeStatus GetLogPage(in NvmeCommand c)
    {
        var (lid, rae, length, offset) = c.LogPageRequest;
        // MDTS bounds a transfer; without one the model still refuses what it would not allocate (more than 1 MiB).
        if (length > (_options.Mdts != 0 ? 4096L << _options.Mdts : 1L << 20)) { return Generic(GenericStatusCode.InvalidField); }
        if ((offset & 3) != 0) { return Generic(GenericStatusCode.InvalidField); }
        byte[]? page = (LogPageId)lid switch
        {
            LogPageId.ErrorInformation => ErrorLogPage(),
            LogPageId.SmartHealth => c.Nsid is 0 or uint.MaxValue ? SmartLogPage() : null,
            LogPageId.FirmwareSlot => FirmwareSlotPage(),
            LogPageId.ChangedNamespaceList => ChangedNamespacePage(),
            LogPageId.CommandsSupportedAndEffects => CommandEffectsPage(),
            _ => [],
        };
        if (page is null) { return Generic(GenericStatusCode.InvalidField); }   // LPA bit 0 clear: no per-namespace SMART
        if (page.Length == 0) { return Specific(CommandSpecificStatusCode.InvalidLogPage); }
        // An offset past the end of the page is an error (§5.16: Invalid Field); bytes past the end read as zero.
        if (offset >= (ulong)page.Length) { return Generic(GenericStatusCode.InvalidField); }
        var data = new byte[length];
        page.AsSpan((int)offset, (int)Math.Min((ulong)page.Length - offset, (ulong)length)).CopyTo(data);
        var status = Transfer(c.Prp1, c.Prp2, data.Length, data, toHost: true);
        if (status.IsSuccess && !rae) { ClearAfterRead(lid); }
        DeliverAsyncEvents();
        return status;
    }

    /// <summary>A read with RAE = 0 clears the event its log page reports and unmasks its type (§5.2.1, §5.16).</summary>
    private void ClearAfterRead(byte lid)
    {
        if (lid == (byte)LogPageId.ChangedNamespaceList)
        {
            _changedNamespaces.Clear();
            _changedNamespacesOverflow = false;
        }
        foreach (var (type, log) in _maskedEvents.ToArray())
        {
            if (log == lid) { _maskedEvents.Remove(type); }
        }
        // What this log reports, the host has now seen: events waiting for it are cleared with it.
        _pendingEvents.RemoveAll(e => new AsyncEventInfo(e).LogPage == lid);
    }

    private byte[] ErrorLogPage()
    {
        var page = new byte[ErrorLogEntries * ErrorLogEntry.Size];
        lock (_logLock)
        {
            // Newest first; unused entries stay zero (error count 0).
            int n = (int)Math.Min(_errorCount, (ulong)ErrorLogEntries);
            for (int i = 0; i < n; i++)
            {
                var e = _errorLog[(int)((_errorCount - 1 - (ulong)i) % ErrorLogEntries)];
                var d = page.AsSpan(i * ErrorLogEntry.Size, ErrorLogEntry.Size);
                BinaryPrimitives.WriteUInt64LittleEndian(d, e.ErrorCount);
                BinaryPrimitives.WriteUInt16LittleEndian(d[8..], e.SubmissionQueueId);
                BinaryPrimitives.WriteUInt16LittleEndian(d[10..], e.CommandId);
                BinaryPrimitives.WriteUInt16LittleEndian(d[12..], (ushort)(e.Status.Value << 1 | (e.PhaseTag ? 1 : 0)));
                BinaryPrimitives.WriteUInt16LittleEndian(d[14..], e.ParameterErrorLocation);
                BinaryPrimitives.WriteUInt64LittleEndian(d[16..], e.Lba);
                BinaryPrimitives.WriteUInt32LittleEndian(d[24..], e.Nsid);
                d[31] = e.Opcode;
            }
        }
        return page;
    }

    private byte[] SmartLogPage()
    {
        var d = new byte[SmartLog.Size];
        d[0] = _smartCriticalWarning;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(1), (ushort)CompositeTemperatureKelvin);
        d[3] = 100;                 // available spare, percent
        d[4] = 10;                  // available spare threshold
        d[5] = 0;                   // percentage used
        // §5.16.1.3: data units are thousands of 512-byte units, rounded up.
        long read512 = 0, written512 = 0, hostReads = 0, hostWrites = 0, succeeded = 0;
        for (int q = 1; q < _counters.Length; q++)
        {
            read512 += Volatile.Read(ref _counters[q].Read512);
            written512 += Volatile.Read(ref _counters[q].Written512);
            hostReads += Volatile.Read(ref _counters[q].HostReads);
            hostWrites += Volatile.Read(ref _counters[q].HostWrites);
            succeeded += Volatile.Read(ref _counters[q].Succeeded);
        }
        W128(d, 32, DivideRoundingUp(read512, 1000));
        W128(d, 48, DivideRoundingUp(written512, 1000));
        W128(d, 64, (ulong)hostReads);
        W128(d, 80, (ulong)hostWrites);
        W128(d, 96, (ulong)(succeeded * BusyTicksPerCommand / TimeSpan.TicksPerMinute));
        W128(d, 112, 1);            // power cycles: powered up once, at construction
        W128(d, 128, (ulong)(Stopwatch.GetElapsedTime(_poweredOnAt) + ExtraPowerOnTime).TotalHours);
        W128(d, 144, 0);            // unsafe shutdowns
        W128(d, 160, (ulong)Interlocked.Read(ref _mediaErrors));
        lock (_logLock) { W128(d, 176, _errorCount); }
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(200), (ushort)CompositeTemperatureKelvin);   // sensor 1
        return d;
    }

    private static ulong DivideRoundingUp(long value, long by) => (ulong)((value + by - 1) / by);

    private static void W128(byte[] d, int at, ulong value) => BinaryPrimitives.WriteUInt128LittleEndian(d.AsSpan(at), value);

    /// <summary>Log 03h (Figure 205): AFI (active slot, bits 6:4 the slot activated at the next reset) and FRS1-FRS7.</summary>
    private byte[] FirmwareSlotPage()
    {
        var d = new byte[FirmwareSlotLog.Size];
        d[0] = (byte)(_activeFirmwareSlot | _pendingFirmwareSlot << 4);
        for (int slot = 1; slot <= 7; slot++)
        {
            string? revision = slot == 1 ? FactoryFirmwareRevision : _firmwareRevisions[slot];
            if (revision is not null) { Pad(d.AsSpan(8 * slot, 8), revision); }
        }
        return d;
    }

    private byte[] ChangedNamespacePage()
    {
        var d = new byte[ChangedNamespaceList.Size];
        if (_changedNamespacesOverflow) { BinaryPrimitives.WriteUInt32LittleEndian(d, uint.MaxValue); }
        else
        {
            for (int i = 0; i < _changedNamespaces.Count; i++) { BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(4 * i), _changedNamespaces[i]); }
        }
        return d;
    }

    private byte[] CommandEffectsPage()
    {
        var d = new byte[CommandEffectsLog.Size];
        void Admin(AdminOpcode op, CommandEffects e = CommandEffects.Supported) =>
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(4 * (int)op), (uint)(e | CommandEffects.Supported));
        void Io(NvmOpcode op, CommandEffects e = CommandEffects.Supported) =>
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(1024 + 4 * (int)op), (uint)(e | CommandEffects.Supported));
        foreach (var op in new[] { AdminOpcode.DeleteIoSubmissionQueue, AdminOpcode.CreateIoSubmissionQueue, AdminOpcode.GetLogPage,
            AdminOpcode.DeleteIoCompletionQueue, AdminOpcode.CreateIoCompletionQueue, AdminOpcode.Identify, AdminOpcode.SetFeatures,
            AdminOpcode.GetFeatures, AdminOpcode.AsynchronousEventRequest })
        {
            Admin(op);
        }
        // Format NVM changes block contents and the namespace's capabilities (its LBA format); namespace management
        // changes which namespaces exist (Figure 212's LBCC, NCC, NIC).
        Admin(AdminOpcode.FormatNvm, CommandEffects.LogicalBlockContentChange | CommandEffects.NamespaceCapabilityChange);
        if (NamespaceManagementOffered)
        {
            Admin(AdminOpcode.NamespaceManagement, CommandEffects.NamespaceInventoryChange);
            Admin(AdminOpcode.NamespaceAttachment, CommandEffects.NamespaceInventoryChange);
        }
        if (FirmwareSlotCount != 0)
        {
            Admin(AdminOpcode.FirmwareImageDownload);
            Admin(AdminOpcode.FirmwareCommit, CommandEffects.ControllerCapabilityChange);
        }
        Io(NvmOpcode.Flush);
        Io(NvmOpcode.Write, CommandEffects.LogicalBlockContentChange);
        if ((_options.Oncs & OptionalNvmCommands.Compare) != 0) { Io(NvmOpcode.Compare); }
        Io(NvmOpcode.Read);
        if ((_options.Oncs & OptionalNvmCommands.WriteZeroes) != 0) { Io(NvmOpcode.WriteZeroes, CommandEffects.LogicalBlockContentChange); }
        if ((_options.Oncs & OptionalNvmCommands.DatasetManagement) != 0) { Io(NvmOpcode.DatasetManagement, CommandEffects.LogicalBlockContentChange); }
        return d;
    }

    // ------------------------------------------------------------------ counters and the error log

    /// <summary>
    /// After every command, before its completion is posted (the one call site, in Drain): failed commands go to the
    /// error log, successful I/O moves the SMART counters. Returns true when the command was an Asynchronous Event
    /// Request the controller keeps outstanding, so no completion is posted now.
    /// </summary>
    private bool AfterCommand(int qid, in NvmeCommand c, NvmeStatus status)
    {
        if (qid == 0 && _aerDeferred)
        {
            _aerDeferred = false;
            return true;
        }
        if (!status.IsSuccess)
        {
            RecordError(qid, c, status);
            return false;
        }
        if (qid == 0) { return false; }
        // Under the lock Drain(qid) holds, so only this queue's thread writes its counters.
        ref var counters = ref _counters[qid];
        switch ((NvmOpcode)c.Opcode)
        {
            case NvmOpcode.Read:
                counters.Read512 += (long)c.BlockCount * BlockSizeOf(c.Nsid) / 512;
                counters.HostReads++;
                break;
            case NvmOpcode.Write:
                counters.Written512 += (long)c.BlockCount * BlockSizeOf(c.Nsid) / 512;
                counters.HostWrites++;
                break;
        }
        counters.Succeeded++;
        return false;
    }

    private void RecordError(int qid, in NvmeCommand c, NvmeStatus status)
    {
        if (status.Type == StatusCodeType.MediaError) { Interlocked.Increment(ref _mediaErrors); }
        bool ranged = qid != 0 && (NvmOpcode)c.Opcode is NvmOpcode.Read or NvmOpcode.Write or NvmOpcode.WriteZeroes;
        lock (_logLock)
        {
            _errorCount++;
            _errorLog[(int)((_errorCount - 1) % ErrorLogEntries)] = new ErrorLogEntry
            {
                ErrorCount = _errorCount,
                SubmissionQueueId = (ushort)qid,
                CommandId = c.CommandId,
                Status = status,
                ParameterErrorLocation = 0xFFFF,
                Lba = ranged ? c.StartingLba : 0,
                Nsid = c.Nsid,
                Opcode = c.Opcode,
            };
        }
    }

    // ------------------------------------------------------------------ Asynchronous Event Request (§5.2) and Feature 0Bh

    private NvmeStatus AsyncEventRequest(in NvmeCommand c)
    {
        // §5.2: more than AERL + 1 outstanding is refused with Asynchronous Event Request Limit Exceeded.
        if (_aerCids.Count > AsyncEventRequestLimit) { return Specific(CommandSpecificStatusCode.AsyncEventRequestLimitExceeded); }
        _aerCids.Enqueue(c.CommandId);
        _aerDeferred = true;
        DeliverAsyncEvents();
        return default;
    }

    private NvmeStatus SetAsyncEventConfig(in NvmeCommand c)
    {
        // SV (CDW10 bit 31): this feature is not saveable (Feature Identifier Not Saveable, 0Dh).
        if ((c.Cdw10 & (1u << 31)) != 0) { return NvmeStatus.Create(StatusCodeType.CommandSpecific, 0x0D, doNotRetry: true); }
        _asyncEventConfig = c.Cdw11 & SupportedEventConfiguration;
        return default;
    }

    private NvmeStatus GetAsyncEventConfig(in NvmeCommand c, ref uint dw0)
    {
        switch ((c.Cdw10 >> 8) & 7)   // SEL (§5.15, Figure 192)
        {
            case 0: dw0 = _asyncEventConfig; return default;
            case 1 or 2: dw0 = 0; return default;     // default; saved = default when the feature is not saveable
            case 3: dw0 = 1u << 2; return default;    // capabilities: changeable, not saveable, not per namespace
            default: return Generic(GenericStatusCode.InvalidField);
        }
    }

    /// <summary>Under the controller lock: an event waits until an AER is outstanding and its type is not masked.</summary>
    private void QueueEvent(uint dw0)
    {
        if (!_pendingEvents.Contains(dw0)) { _pendingEvents.Add(dw0); }
    }

    /// <summary>
    /// Under the controller lock: completes outstanding AERs with pending events of unmasked types; the type is then
    /// masked until its log page is read with RAE = 0 (§5.2.1). Leaves one CQ slot free for the command being run.
    /// </summary>
    private void DeliverAsyncEvents()
    {
        while (_aerCids.Count > 0 && _cqs[0].Exists && Enabled)
        {
            int index = _pendingEvents.FindIndex(e => !_maskedEvents.ContainsKey(new AsyncEventInfo(e).Type));
            if (index < 0) { return; }
            ref var cq = ref _cqs[0];
            int free = (cq.Head - cq.Tail - 1 + cq.Size) % cq.Size;
            bool duplicate = DuplicateNextAsyncEventCompletion;
            if (free < (duplicate ? 3 : 2)) { return; }
            uint dw0 = _pendingEvents[index];
            _pendingEvents.RemoveAt(index);
            var info = new AsyncEventInfo(dw0);
            _maskedEvents[info.Type] = info.LogPage;
            ushort cid = _aerCids.Dequeue();
            Post(0, 0, _sqs[0].Head, cid, default, dw0);
            if (duplicate)
            {
                DuplicateNextAsyncEventCompletion = false;
                Post(0, 0, _sqs[0].Head, cid, default, dw0);
            }
            Interlocked.Increment(ref _asyncEventsPosted);
        }
    }

    /// <summary>Under the controller lock, at every controller reset: outstanding AERs end without completions (§5.2), the feature returns to its default.</summary>
    private void ResetAsyncEvents()
    {
        _aerCids.Clear();
        _pendingEvents.Clear();
        _maskedEvents.Clear();
        _asyncEventConfig = 0;
        _aerDeferred = false;
    }
}
