using System.Buffers.Binary;
using Vfio.Dma;

namespace Vfio.Spec.Nvme;

/// <summary>Log page identifiers this project reads or serves (NVMe 2.0 §5.16, Figure 202; NVMe 1.4 Figure 191).</summary>
public enum LogPageId : byte
{
    /// <summary>Error Information (01h, §5.16.1.2).</summary>
    ErrorInformation = 0x01,
    /// <summary>SMART / Health Information (02h, §5.16.1.3).</summary>
    SmartHealth = 0x02,
    /// <summary>Firmware Slot Information (03h, §5.16.1.4).</summary>
    FirmwareSlot = 0x03,
    /// <summary>Changed Namespace List (04h, §5.16.1.5).</summary>
    ChangedNamespaceList = 0x04,
    /// <summary>Commands Supported and Effects (05h, §5.16.1.6).</summary>
    CommandsSupportedAndEffects = 0x05,
}

/// <summary>SMART / Health critical warning bits (byte 0 of log 02h, NVMe 2.0 Figure 207).</summary>
[Flags]
public enum CriticalWarnings : byte
{
    /// <summary>No warning.</summary>
    None = 0,
    /// <summary>Available spare fell below the threshold.</summary>
    AvailableSpareLow = 1 << 0,
    /// <summary>A temperature is above an over-temperature or below an under-temperature threshold.</summary>
    Temperature = 1 << 1,
    /// <summary>NVM subsystem reliability degraded (media or internal errors).</summary>
    ReliabilityDegraded = 1 << 2,
    /// <summary>All media are read-only.</summary>
    ReadOnly = 1 << 3,
    /// <summary>The volatile memory backup device failed.</summary>
    VolatileMemoryBackupFailed = 1 << 4,
    /// <summary>The persistent memory region became read-only (NVMe 1.4).</summary>
    PersistentMemoryRegionReadOnly = 1 << 5,
}

/// <summary>
/// The SMART / Health Information log page (02h, 512 bytes; NVMe 2.0 §5.16.1.3, Figure 207; NVMe 1.4 §5.14.1.2,
/// Figure 194). Data units count thousands of 512-byte units, rounded up (1 = 512 000 bytes).
/// </summary>
public sealed record SmartLog
{
    /// <summary>Size of the log page.</summary>
    public const int Size = 512;

    /// <summary>The bytes parsed.</summary>
    public ReadOnlyMemory<byte> Raw { get; init; }
    /// <summary>Critical warning (byte 0).</summary>
    public CriticalWarnings CriticalWarning { get; init; }
    /// <summary>Composite temperature (bytes 2:1), Kelvin.</summary>
    public ushort CompositeTemperatureKelvin { get; init; }
    /// <summary>Composite temperature in degrees Celsius (Kelvin − 273, as nvme-cli prints it).</summary>
    public int CompositeTemperatureCelsius => CompositeTemperatureKelvin - 273;
    /// <summary>Available spare (byte 3), percent.</summary>
    public byte AvailableSpare { get; init; }
    /// <summary>Available spare threshold (byte 4), percent.</summary>
    public byte AvailableSpareThreshold { get; init; }
    /// <summary>Percentage used (byte 5); may exceed 100.</summary>
    public byte PercentageUsed { get; init; }
    /// <summary>Endurance group critical warning summary (byte 6).</summary>
    public byte EnduranceGroupCriticalWarningSummary { get; init; }
    /// <summary>Data units read (bytes 47:32), in 1000 × 512 bytes.</summary>
    public UInt128 DataUnitsRead { get; init; }
    /// <summary>Data units written (bytes 63:48), in 1000 × 512 bytes.</summary>
    public UInt128 DataUnitsWritten { get; init; }
    /// <summary>Host read commands completed (bytes 79:64).</summary>
    public UInt128 HostReadCommands { get; init; }
    /// <summary>Host write commands completed (bytes 95:80).</summary>
    public UInt128 HostWriteCommands { get; init; }
    /// <summary>Controller busy time (bytes 111:96), minutes.</summary>
    public UInt128 ControllerBusyTime { get; init; }
    /// <summary>Power cycles (bytes 127:112).</summary>
    public UInt128 PowerCycles { get; init; }
    /// <summary>Power-on hours (bytes 143:128).</summary>
    public UInt128 PowerOnHours { get; init; }
    /// <summary>Unsafe shutdowns (bytes 159:144).</summary>
    public UInt128 UnsafeShutdowns { get; init; }
    /// <summary>Media and data integrity errors (bytes 175:160).</summary>
    public UInt128 MediaErrors { get; init; }
    /// <summary>Number of error information log entries over the controller's life (bytes 191:176).</summary>
    public UInt128 ErrorLogEntries { get; init; }
    /// <summary>Warning composite temperature time (bytes 195:192), minutes.</summary>
    public uint WarningTemperatureTime { get; init; }
    /// <summary>Critical composite temperature time (bytes 199:196), minutes.</summary>
    public uint CriticalTemperatureTime { get; init; }
    /// <summary>Temperature sensors 1-8 (bytes 215:200), Kelvin; 0 means not implemented.</summary>
    public IReadOnlyList<ushort> TemperatureSensors { get; init; } = [];
    /// <summary>Thermal management temperature 1 transition count (bytes 219:216).</summary>
    public uint ThermalTemp1TransitionCount { get; init; }
    /// <summary>Thermal management temperature 2 transition count (bytes 223:220).</summary>
    public uint ThermalTemp2TransitionCount { get; init; }
    /// <summary>Total time for thermal management temperature 1 (bytes 227:224), seconds.</summary>
    public uint ThermalTemp1TotalTime { get; init; }
    /// <summary>Total time for thermal management temperature 2 (bytes 231:228), seconds.</summary>
    public uint ThermalTemp2TotalTime { get; init; }

    /// <summary>Parses the 512-byte page.</summary>
    /// <exception cref="FormatException">Fewer than 512 bytes arrived.</exception>
    public static SmartLog Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length < Size) { throw new FormatException($"the SMART / Health log is {Size} bytes; {d.Length} arrived"); }
        var sensors = new ushort[8];
        for (int i = 0; i < 8; i++) { sensors[i] = BinaryPrimitives.ReadUInt16LittleEndian(d[(200 + 2 * i)..]); }
        return new SmartLog
        {
            Raw = d[..Size].ToArray(),
            CriticalWarning = (CriticalWarnings)d[0],
            CompositeTemperatureKelvin = BinaryPrimitives.ReadUInt16LittleEndian(d[1..]),
            AvailableSpare = d[3],
            AvailableSpareThreshold = d[4],
            PercentageUsed = d[5],
            EnduranceGroupCriticalWarningSummary = d[6],
            DataUnitsRead = U128(d, 32),
            DataUnitsWritten = U128(d, 48),
            HostReadCommands = U128(d, 64),
            HostWriteCommands = U128(d, 80),
            ControllerBusyTime = U128(d, 96),
            PowerCycles = U128(d, 112),
            PowerOnHours = U128(d, 128),
            UnsafeShutdowns = U128(d, 144),
            MediaErrors = U128(d, 160),
            ErrorLogEntries = U128(d, 176),
            WarningTemperatureTime = BinaryPrimitives.ReadUInt32LittleEndian(d[192..]),
            CriticalTemperatureTime = BinaryPrimitives.ReadUInt32LittleEndian(d[196..]),
            TemperatureSensors = sensors,
            ThermalTemp1TransitionCount = BinaryPrimitives.ReadUInt32LittleEndian(d[216..]),
            ThermalTemp2TransitionCount = BinaryPrimitives.ReadUInt32LittleEndian(d[220..]),
            ThermalTemp1TotalTime = BinaryPrimitives.ReadUInt32LittleEndian(d[224..]),
            ThermalTemp2TotalTime = BinaryPrimitives.ReadUInt32LittleEndian(d[228..]),
        };
    }

    /// <summary>
    /// The page under the names of nvme-cli's <c>smart-log -o json</c> (nvme-cli 2.x <c>json_smart_log</c>, not verbose):
    /// temperature is Kelvin (nvme-cli's JSON does not convert), 128-bit counters are <see cref="UInt128"/> (printed
    /// as bare decimal numbers), and temperature_sensor_N appears only for sensors that report (non-zero).
    /// </summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("critical_warning", (byte)CriticalWarning);
        yield return ("temperature", CompositeTemperatureKelvin);
        yield return ("avail_spare", AvailableSpare);
        yield return ("spare_thresh", AvailableSpareThreshold);
        yield return ("percent_used", PercentageUsed);
        yield return ("endurance_grp_critical_warning_summary", EnduranceGroupCriticalWarningSummary);
        yield return ("data_units_read", DataUnitsRead);
        yield return ("data_units_written", DataUnitsWritten);
        yield return ("host_read_commands", HostReadCommands);
        yield return ("host_write_commands", HostWriteCommands);
        yield return ("controller_busy_time", ControllerBusyTime);
        yield return ("power_cycles", PowerCycles);
        yield return ("power_on_hours", PowerOnHours);
        yield return ("unsafe_shutdowns", UnsafeShutdowns);
        yield return ("media_errors", MediaErrors);
        yield return ("num_err_log_entries", ErrorLogEntries);
        yield return ("warning_temp_time", WarningTemperatureTime);
        yield return ("critical_comp_time", CriticalTemperatureTime);
        for (int i = 0; i < TemperatureSensors.Count; i++)
        {
            if (TemperatureSensors[i] != 0) { yield return ($"temperature_sensor_{i + 1}", TemperatureSensors[i]); }
        }
        yield return ("thm_temp1_trans_count", ThermalTemp1TransitionCount);
        yield return ("thm_temp2_trans_count", ThermalTemp2TransitionCount);
        yield return ("thm_temp1_total_time", ThermalTemp1TotalTime);
        yield return ("thm_temp2_total_time", ThermalTemp2TotalTime);
    }

    internal static UInt128 U128(ReadOnlySpan<byte> d, int at) => BinaryPrimitives.ReadUInt128LittleEndian(d[at..]);
}

/// <summary>One Error Information log entry (64 bytes; NVMe 2.0 §5.16.1.2, Figure 205; NVMe 1.4 Figure 193).</summary>
public sealed record ErrorLogEntry
{
    /// <summary>Bytes per entry.</summary>
    public const int Size = 64;

    /// <summary>Error count (bytes 7:0): unique, increasing; 0 marks an empty entry.</summary>
    public ulong ErrorCount { get; init; }
    /// <summary>Submission queue ID (bytes 9:8); FFFFh when not specific to a command.</summary>
    public ushort SubmissionQueueId { get; init; }
    /// <summary>Command ID (bytes 11:10).</summary>
    public ushort CommandId { get; init; }
    /// <summary>Phase tag (byte 12 bit 0) as it was posted.</summary>
    public bool PhaseTag { get; init; }
    /// <summary>The status field of the failed completion (bytes 13:12, bits 15:1).</summary>
    public NvmeStatus Status { get; init; }
    /// <summary>Parameter error location (bytes 15:14): byte 7:0 and bit 10:8 of the field in error; FFFFh when none.</summary>
    public ushort ParameterErrorLocation { get; init; }
    /// <summary>LBA (bytes 23:16): first LBA that saw the error.</summary>
    public ulong Lba { get; init; }
    /// <summary>Namespace (bytes 27:24).</summary>
    public uint Nsid { get; init; }
    /// <summary>Vendor specific information available (byte 28): a log page identifier, or 0.</summary>
    public byte VendorSpecific { get; init; }
    /// <summary>Transport type (byte 29).</summary>
    public byte TransportType { get; init; }
    /// <summary>Command set indicator (byte 30, NVMe 2.0).</summary>
    public byte CommandSetIndicator { get; init; }
    /// <summary>Opcode of the failed command (byte 31, NVMe 2.1; 0 from older controllers).</summary>
    public byte Opcode { get; init; }
    /// <summary>Command specific information (bytes 39:32).</summary>
    public ulong CommandSpecific { get; init; }
    /// <summary>Transport type specific information (bytes 41:40).</summary>
    public ushort TransportTypeSpecific { get; init; }
    /// <summary>Log page version (byte 63, NVMe 2.0).</summary>
    public byte LogPageVersion { get; init; }

    /// <summary>Decodes one 64-byte entry.</summary>
    /// <exception cref="FormatException">Fewer than 64 bytes.</exception>
    public static ErrorLogEntry Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length < Size) { throw new FormatException($"an error log entry is {Size} bytes; {d.Length} arrived"); }
        ushort sf = BinaryPrimitives.ReadUInt16LittleEndian(d[12..]);
        return new ErrorLogEntry
        {
            ErrorCount = BinaryPrimitives.ReadUInt64LittleEndian(d),
            SubmissionQueueId = BinaryPrimitives.ReadUInt16LittleEndian(d[8..]),
            CommandId = BinaryPrimitives.ReadUInt16LittleEndian(d[10..]),
            PhaseTag = (sf & 1) != 0,
            Status = NvmeStatus.FromStatusAndPhase(sf),
            ParameterErrorLocation = BinaryPrimitives.ReadUInt16LittleEndian(d[14..]),
            Lba = BinaryPrimitives.ReadUInt64LittleEndian(d[16..]),
            Nsid = BinaryPrimitives.ReadUInt32LittleEndian(d[24..]),
            VendorSpecific = d[28],
            TransportType = d[29],
            CommandSetIndicator = d[30],
            Opcode = d[31],
            CommandSpecific = BinaryPrimitives.ReadUInt64LittleEndian(d[32..]),
            TransportTypeSpecific = BinaryPrimitives.ReadUInt16LittleEndian(d[40..]),
            LogPageVersion = d[63],
        };
    }

    /// <summary>
    /// Parses as many whole entries as arrived, at most <paramref name="maxEntries"/> (ELPE + 1), keeping empty ones
    /// (error count 0) out. A trailing partial entry is ignored.
    /// </summary>
    public static List<ErrorLogEntry> ParseLog(ReadOnlySpan<byte> d, int maxEntries)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxEntries);
        var list = new List<ErrorLogEntry>();
        int count = Math.Min(maxEntries, d.Length / Size);
        for (int i = 0; i < count; i++)
        {
            var e = Parse(d.Slice(i * Size, Size));
            if (e.ErrorCount != 0) { list.Add(e); }
        }
        return list;
    }

    /// <summary>The entry under the names nvme-cli's <c>error-log -o json</c> uses for each element of <c>errors</c>.</summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("error_count", ErrorCount);
        yield return ("sqid", SubmissionQueueId);
        yield return ("cmdid", CommandId);
        yield return ("status_field", Status.Value);
        yield return ("phase_tag", PhaseTag ? 1 : 0);
        yield return ("parm_error_location", ParameterErrorLocation);
        yield return ("lba", Lba);
        yield return ("nsid", Nsid);
        yield return ("vs", VendorSpecific);
        yield return ("trtype", TransportType);
        yield return ("csi", CommandSetIndicator);
        yield return ("opcode", Opcode);
        yield return ("cs", CommandSpecific);
        yield return ("trtype_spec_info", TransportTypeSpecific);
        yield return ("log_page_version", LogPageVersion);
    }
}

/// <summary>The Firmware Slot Information log page (03h, 512 bytes; NVMe 2.0 §5.16.1.4, Figure 209).</summary>
public sealed record FirmwareSlotLog
{
    /// <summary>Size of the log page.</summary>
    public const int Size = 512;

    /// <summary>AFI (byte 0): bits 2:0 the active slot, bits 6:4 the slot activated at the next reset (0: none given).</summary>
    public byte ActiveFirmwareInfo { get; init; }
    /// <summary>The slot running now (AFI bits 2:0).</summary>
    public int ActiveSlot => ActiveFirmwareInfo & 7;
    /// <summary>The slot activated at the next controller reset (AFI bits 6:4), 0 when none.</summary>
    public int NextSlot => (ActiveFirmwareInfo >> 4) & 7;
    /// <summary>FRS1..FRS7 (bytes 15:8 .. 63:56): the revision in each slot, trimmed; empty when the slot is empty.</summary>
    public IReadOnlyList<string> SlotRevisions { get; init; } = [];

    /// <summary>Parses the page.</summary>
    /// <exception cref="FormatException">Fewer than 64 bytes arrived (the slots end at byte 63).</exception>
    public static FirmwareSlotLog Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length < 64) { throw new FormatException($"the firmware slot log holds its slots in bytes 0-63; {d.Length} arrived"); }
        var slots = new string[7];
        for (int i = 0; i < 7; i++) { slots[i] = IdentifyController.Ascii(d.Slice(8 + 8 * i, 8)); }
        return new FirmwareSlotLog { ActiveFirmwareInfo = d[0], SlotRevisions = slots };
    }

    /// <summary>nvme-cli <c>fw-log -o json</c> keys: "Active Firmware Slot (afi)" and "Firmware Rev Slot N" for non-empty slots.</summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("Active Firmware Slot (afi)", ActiveFirmwareInfo);
        for (int i = 0; i < SlotRevisions.Count; i++)
        {
            if (SlotRevisions[i].Length != 0) { yield return ($"Firmware Rev Slot {i + 1}", SlotRevisions[i]); }
        }
    }
}

/// <summary>Effects of one command (a Commands Supported and Effects data structure, NVMe 2.0 Figure 212).</summary>
[Flags]
public enum CommandEffects : uint
{
    /// <summary>Not supported.</summary>
    None = 0,
    /// <summary>CSUPP: the command is supported.</summary>
    Supported = 1 << 0,
    /// <summary>LBCC: may change logical block content.</summary>
    LogicalBlockContentChange = 1 << 1,
    /// <summary>NCC: may change namespace capabilities.</summary>
    NamespaceCapabilityChange = 1 << 2,
    /// <summary>NIC: may change the namespace inventory.</summary>
    NamespaceInventoryChange = 1 << 3,
    /// <summary>CCC: may change controller capabilities.</summary>
    ControllerCapabilityChange = 1 << 4,
    /// <summary>CSE bit 16: must be submitted when no other command is outstanding in the namespace.</summary>
    SubmitAloneInNamespace = 1 << 16,
    /// <summary>CSE bit 17: must be submitted when no other command is outstanding in the controller.</summary>
    SubmitAloneInController = 1 << 17,
    /// <summary>UUID selection supported (bit 19, NVMe 2.0).</summary>
    UuidSelection = 1 << 19,
}

/// <summary>The Commands Supported and Effects log page (05h, 4096 bytes; NVMe 2.0 §5.16.1.6, Figure 211).</summary>
public sealed record CommandEffectsLog
{
    /// <summary>Size of the log page.</summary>
    public const int Size = 4096;

    /// <summary>ACS0..ACS255 (bytes 1023:0): admin commands by opcode.</summary>
    public IReadOnlyList<CommandEffects> Admin { get; init; } = [];
    /// <summary>IOCS0..IOCS255 (bytes 2047:1024): I/O commands by opcode.</summary>
    public IReadOnlyList<CommandEffects> Io { get; init; } = [];

    /// <summary>Parses the page.</summary>
    /// <exception cref="FormatException">Fewer than 2048 bytes arrived.</exception>
    public static CommandEffectsLog Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length < 2048) { throw new FormatException($"the commands supported and effects log needs 2048 bytes; {d.Length} arrived"); }
        var admin = new CommandEffects[256];
        var io = new CommandEffects[256];
        for (int i = 0; i < 256; i++)
        {
            admin[i] = (CommandEffects)BinaryPrimitives.ReadUInt32LittleEndian(d[(4 * i)..]);
            io[i] = (CommandEffects)BinaryPrimitives.ReadUInt32LittleEndian(d[(1024 + 4 * i)..]);
        }
        return new CommandEffectsLog { Admin = admin, Io = io };
    }
}

/// <summary>The Changed Namespace List log page (04h, up to 1024 NSIDs; NVMe 2.0 §5.16.1.5, Figure 210).</summary>
public sealed record ChangedNamespaceList
{
    /// <summary>Size of the log page.</summary>
    public const int Size = 4096;

    /// <summary>The changed namespaces, in the order listed (empty when <see cref="MoreThan1024"/>).</summary>
    public IReadOnlyList<uint> Nsids { get; init; } = [];

    /// <summary>More than 1024 namespaces changed (first entry FFFFFFFFh): the host should rescan them all.</summary>
    public bool MoreThan1024 { get; init; }

    /// <summary>Parses as many entries as arrived, up to the first zero or 1024 entries.</summary>
    public static ChangedNamespaceList Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(d) == uint.MaxValue)
        {
            return new ChangedNamespaceList { MoreThan1024 = true };
        }
        return new ChangedNamespaceList { Nsids = IdentifyNamespace.ParseActiveList(d) };
    }
}

/// <summary>Asynchronous event types (completion DW0 bits 2:0, NVMe 2.0 §5.2, Figure 146).</summary>
public enum AsyncEventType : byte
{
    /// <summary>Error status.</summary>
    Error = 0,
    /// <summary>SMART / Health status.</summary>
    SmartHealth = 1,
    /// <summary>Notice.</summary>
    Notice = 2,
    /// <summary>Immediate (NVMe 2.1).</summary>
    ImmediateNotice = 3,
    /// <summary>I/O command specific status.</summary>
    IoCommandSet = 6,
    /// <summary>Vendor specific.</summary>
    VendorSpecific = 7,
}

/// <summary>Asynchronous Event Information for <see cref="AsyncEventType.SmartHealth"/> (NVMe 2.0 Figure 149).</summary>
public enum SmartHealthEventInfo : byte
{
    /// <summary>NVM subsystem reliability.</summary>
    Reliability = 0,
    /// <summary>A temperature threshold was crossed.</summary>
    TemperatureThreshold = 1,
    /// <summary>Available spare fell below the threshold.</summary>
    SpareBelowThreshold = 2,
}

/// <summary>Asynchronous Event Information for <see cref="AsyncEventType.Notice"/> (NVMe 2.0 Figure 150): the ones named here.</summary>
public enum NoticeEventInfo : byte
{
    /// <summary>Namespace attribute changed: read the Changed Namespace List log (04h).</summary>
    NamespaceAttributeChanged = 0,
    /// <summary>Firmware activation starting.</summary>
    FirmwareActivationStarting = 1,
    /// <summary>Telemetry log changed.</summary>
    TelemetryLogChanged = 2,
    /// <summary>Asymmetric namespace access change.</summary>
    AnaChange = 3,
}

/// <summary>
/// Asynchronous Event Configuration (Feature 0Bh, CDW11 / DW0; NVMe 2.0 §5.27.1.7, Figure 324): which events the
/// controller reports through Asynchronous Event Requests. Error events cannot be masked.
/// </summary>
[Flags]
public enum AsyncEventConfiguration : uint
{
    /// <summary>Nothing but errors.</summary>
    None = 0,
    /// <summary>SMART / Health critical warning bits 7:0: one bit per <see cref="CriticalWarnings"/> bit.</summary>
    SmartCriticalWarnings = 0xFF,
    /// <summary>Namespace Attribute Notices (bit 8).</summary>
    NamespaceAttributeNotices = 1 << 8,
    /// <summary>Firmware Activation Notices (bit 9).</summary>
    FirmwareActivationNotices = 1 << 9,
    /// <summary>Telemetry Log Notices (bit 10).</summary>
    TelemetryLogNotices = 1 << 10,
    /// <summary>ANA Change Notices (bit 11).</summary>
    AnaChangeNotices = 1 << 11,
}

/// <summary>
/// The DW0 of an Asynchronous Event Request completion (NVMe 2.0 §5.2.1, Figure 145): type bits 2:0, information
/// bits 15:8, the log page to read bits 23:16.
/// </summary>
/// <param name="Dw0">The raw completion DW0.</param>
public readonly record struct AsyncEventInfo(uint Dw0)
{
    /// <summary>Event type.</summary>
    public AsyncEventType Type => (AsyncEventType)(Dw0 & 7);
    /// <summary>Event information (meaning depends on <see cref="Type"/>).</summary>
    public byte Info => (byte)(Dw0 >> 8);
    /// <summary>The log page that holds the details and whose read (RAE = 0) clears the event.</summary>
    public byte LogPage => (byte)(Dw0 >> 16);

    /// <summary>Encodes a DW0 (for device models).</summary>
    public static uint Encode(AsyncEventType type, byte info, byte logPage) => (uint)type | (uint)info << 8 | (uint)logPage << 16;
}

public partial struct NvmeCommand
{
    /// <summary>Most dwords one Get Log Page asks for: NUMD is 32 bits, 0's based (NUMDL | NUMDU &lt;&lt; 16).</summary>
    public const long MaxLogPageDwords = 1L << 32;

    /// <summary>
    /// Get Log Page (NVMe 2.0 §5.16; 1.4 §5.14): CDW10 LID 7:0, RAE bit 15, NUMDL 31:16; CDW11 NUMDU 15:0;
    /// CDW12/CDW13 the byte offset (LPOL/LPOU, dword aligned). NUMD is a 0's based dword count; the data pointer is
    /// left for the caller (the driver fills PRPs).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not 4..2^34 bytes in whole dwords, or the offset is not dword aligned.</exception>
    public static NvmeCommand GetLogPage(byte logPageId, uint nsid, ulong offset, long length, bool retainAsyncEvent)
    {
        if (length < 4 || (length & 3) != 0 || length / 4 > MaxLogPageDwords)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "a log page read is 4 bytes to 16 GiB in whole dwords");
        }
        if ((offset & 3) != 0) { throw new ArgumentOutOfRangeException(nameof(offset), offset, "the log page offset is dword aligned (§5.16, LPOL bits 1:0 are 0)"); }
        uint numd = (uint)(length / 4 - 1);
        var c = Make((byte)AdminOpcode.GetLogPage, nsid);
        c.Cdw10 = logPageId | (retainAsyncEvent ? 1u << 15 : 0) | (numd & 0xFFFF) << 16;
        c.Cdw11 = numd >> 16;
        c.Cdw12 = (uint)offset;
        c.Cdw13 = (uint)(offset >> 32);
        return c;
    }

    /// <summary>Asynchronous Event Request (NVMe 2.0 §5.2): no parameters; completes when an event occurs.</summary>
    public static NvmeCommand AsyncEventRequest() => Make((byte)AdminOpcode.AsynchronousEventRequest, 0);

    /// <summary>Set Features, Asynchronous Event Configuration (FID 0Bh, §5.27.1.7): the enabled events in CDW11.</summary>
    public static NvmeCommand SetAsyncEventConfiguration(AsyncEventConfiguration enabled)
    {
        var c = Make((byte)AdminOpcode.SetFeatures, 0);
        c.Cdw10 = (byte)FeatureId.AsynchronousEventConfiguration;
        c.Cdw11 = (uint)enabled;
        return c;
    }

    /// <summary>Get Features, Asynchronous Event Configuration: SEL (CDW10 bits 10:8) 0 current, 1 default, 2 saved, 3 supported capabilities.</summary>
    /// <exception cref="ArgumentOutOfRangeException">SEL is not 0-3.</exception>
    public static NvmeCommand GetAsyncEventConfiguration(int select = 0)
    {
        if (select is < 0 or > 3) { throw new ArgumentOutOfRangeException(nameof(select), select, "SEL is 0 (current), 1 (default), 2 (saved) or 3 (supported capabilities)"); }
        var c = Make((byte)AdminOpcode.GetFeatures, 0);
        c.Cdw10 = (byte)FeatureId.AsynchronousEventConfiguration | (uint)select << 8;
        return c;
    }

    /// <summary>The Get Log Page fields of a command (for device models): LID, RAE, byte length and byte offset.</summary>
    public readonly (byte LogPageId, bool RetainAsyncEvent, long Length, ulong Offset) LogPageRequest =>
        ((byte)Cdw10, (Cdw10 & (1u << 15)) != 0, ((long)((Cdw10 >> 16) | (Cdw11 & 0xFFFF) << 16) + 1) * 4, Cdw12 | (ulong)Cdw13 << 32);

    /// <summary>Get Log Page with its data pointer set (for callers with their own buffer).</summary>
    public static NvmeCommand GetLogPage(byte logPageId, uint nsid, ulong offset, long length, bool retainAsyncEvent, DmaAddress prp1, DmaAddress prp2)
    {
        var c = GetLogPage(logPageId, nsid, offset, length, retainAsyncEvent);
        c.Prp1 = prp1;
        c.Prp2 = prp2;
        return c;
    }
}
