using System.Buffers.Binary;
using System.Text;

namespace Vfio.Spec.Nvme;

/// <summary>Optional admin commands the controller supports (OACS, Identify Controller bytes 257:256, NVMe 2.0 Figure 275).</summary>
[Flags]
public enum OptionalAdminCommands : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Security Send and Security Receive.</summary>
    Security = 1 << 0,
    /// <summary>Format NVM.</summary>
    FormatNvm = 1 << 1,
    /// <summary>Firmware Commit and Firmware Image Download.</summary>
    Firmware = 1 << 2,
    /// <summary>Namespace Management (and Namespace Attachment in NVMe 1.x wording).</summary>
    NamespaceManagement = 1 << 3,
    /// <summary>Device Self-test.</summary>
    DeviceSelfTest = 1 << 4,
    /// <summary>Directives (Directive Send, Directive Receive).</summary>
    Directives = 1 << 5,
    /// <summary>NVMe-MI Send and NVMe-MI Receive.</summary>
    NvmeMi = 1 << 6,
    /// <summary>Virtualization Management.</summary>
    VirtualizationManagement = 1 << 7,
    /// <summary>Doorbell Buffer Config.</summary>
    DoorbellBufferConfig = 1 << 8,
    /// <summary>Get LBA Status.</summary>
    GetLbaStatus = 1 << 9,
    /// <summary>Command and Feature Lockdown (NVMe 2.0).</summary>
    Lockdown = 1 << 10,
}

/// <summary>Log page attributes (LPA, Identify Controller byte 261, NVMe 2.0 Figure 275).</summary>
[Flags]
public enum LogPageAttributes : byte
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>The SMART / Health log page can be read per namespace.</summary>
    SmartPerNamespace = 1 << 0,
    /// <summary>The Commands Supported and Effects log page (05h) is supported.</summary>
    CommandEffects = 1 << 1,
    /// <summary>Extended data for Get Log Page: NUMDU and the log page offset (LPOL/LPOU) are supported.</summary>
    ExtendedData = 1 << 2,
    /// <summary>Telemetry host-initiated and controller-initiated log pages.</summary>
    Telemetry = 1 << 3,
    /// <summary>Persistent Event log (NVMe 1.4).</summary>
    PersistentEvent = 1 << 4,
}

/// <summary>
/// One power state descriptor (Identify Controller bytes 2079:2048 onward, 32 bytes each; NVMe 2.0 Figure 276).
/// Latencies are in microseconds; powers in units of <see cref="MaxPowerScale"/> (0: 0.01 W, 1: 0.0001 W).
/// </summary>
/// <param name="MaxPower">MP (bytes 1:0): most power the state draws.</param>
/// <param name="Flags">Byte 3: MXPS (bit 0) and NOPS (bit 1).</param>
/// <param name="EntryLatency">ENLAT (bytes 7:4), µs.</param>
/// <param name="ExitLatency">EXLAT (bytes 11:8), µs.</param>
/// <param name="RelativeReadThroughput">RRT (byte 12; bits 4:0 defined).</param>
/// <param name="RelativeReadLatency">RRL (byte 13; bits 4:0 defined).</param>
/// <param name="RelativeWriteThroughput">RWT (byte 14; bits 4:0 defined).</param>
/// <param name="RelativeWriteLatency">RWL (byte 15; bits 4:0 defined).</param>
/// <param name="IdlePower">IDLP (bytes 17:16).</param>
/// <param name="IdlePowerScaleByte">Byte 18: IPS in bits 7:6.</param>
/// <param name="ActivePower">ACTP (bytes 21:20).</param>
/// <param name="ActivePowerWorkloadScaleByte">Byte 22: APW in bits 2:0, APS in bits 7:6.</param>
public readonly record struct PowerStateDescriptor(ushort MaxPower, byte Flags, uint EntryLatency, uint ExitLatency,
    byte RelativeReadThroughput, byte RelativeReadLatency, byte RelativeWriteThroughput, byte RelativeWriteLatency,
    ushort IdlePower, byte IdlePowerScaleByte, ushort ActivePower, byte ActivePowerWorkloadScaleByte)
{
    /// <summary>Bytes per descriptor.</summary>
    public const int Size = 32;

    /// <summary>MXPS: 0 when <see cref="MaxPower"/> counts 0.01 W, 1 when it counts 0.0001 W.</summary>
    public int MaxPowerScale => Flags & 1;

    /// <summary>NOPS: the controller processes no I/O in this state.</summary>
    public bool NonOperational => (Flags & 2) != 0;

    /// <summary>IPS: scale of <see cref="IdlePower"/> (0: not reported, 1: 0.0001 W, 2: 0.01 W).</summary>
    public int IdlePowerScale => (IdlePowerScaleByte >> 6) & 3;

    /// <summary>APW: the workload <see cref="ActivePower"/> was measured with.</summary>
    public int ActivePowerWorkload => ActivePowerWorkloadScaleByte & 7;

    /// <summary>APS: scale of <see cref="ActivePower"/>, as <see cref="IdlePowerScale"/>.</summary>
    public int ActivePowerScale => (ActivePowerWorkloadScaleByte >> 6) & 3;

    /// <summary>Decodes one 32-byte descriptor.</summary>
    public static PowerStateDescriptor Parse(ReadOnlySpan<byte> d)
    {
        if (d.Length < Size) { throw new ArgumentException($"a power state descriptor is {Size} bytes; got {d.Length}", nameof(d)); }
        return new PowerStateDescriptor(BinaryPrimitives.ReadUInt16LittleEndian(d), d[3],
            BinaryPrimitives.ReadUInt32LittleEndian(d[4..]), BinaryPrimitives.ReadUInt32LittleEndian(d[8..]),
            d[12], d[13], d[14], d[15], BinaryPrimitives.ReadUInt16LittleEndian(d[16..]), d[18],
            BinaryPrimitives.ReadUInt16LittleEndian(d[20..]), d[22]);
    }

    /// <summary>
    /// The descriptor as nvme-cli's <c>id-ctrl -o json</c> names its members in each <c>psds</c> entry (nvme-cli
    /// 2.x nvme-print-json.c). Throughput and latency fields are the raw bytes, as nvme-cli prints them.
    /// </summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("max_power", MaxPower);
        yield return ("max_power_scale", MaxPowerScale);
        yield return ("non-operational_state", NonOperational ? 1 : 0);
        yield return ("entry_lat", EntryLatency);
        yield return ("exit_lat", ExitLatency);
        yield return ("read_tput", RelativeReadThroughput);
        yield return ("read_lat", RelativeReadLatency);
        yield return ("write_tput", RelativeWriteThroughput);
        yield return ("write_lat", RelativeWriteLatency);
        yield return ("idle_power", IdlePower);
        yield return ("idle_scale", IdlePowerScale);
        yield return ("active_power", ActivePower);
        yield return ("active_power_work", ActivePowerWorkload);
        yield return ("active_scale", ActivePowerScale);
    }
}

/// <summary>
/// The rest of Identify Controller (NVMe 2.0 §5.17.2.1, Figure 275; byte offsets are the same in NVMe 1.4 Figure 247
/// for the fields 1.4 has), read from <see cref="Raw"/> on demand: every field nvme-cli's <c>id-ctrl</c> reports.
/// </summary>
public sealed partial record IdentifyController
{
    /// <summary>Power state descriptors start here; 32 of 32 bytes each.</summary>
    public const int PowerStateDescriptorOffset = 2048;

    private ReadOnlySpan<byte> R => Raw.Length >= Size ? Raw.Span : new byte[Size];
    private byte B(int at) => R[at];
    private ushort U16(int at) => BinaryPrimitives.ReadUInt16LittleEndian(R[at..]);
    private uint U32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(R[at..]);
    private UInt128 U128(int at) => BinaryPrimitives.ReadUInt128LittleEndian(R[at..]);

    /// <summary>RAB (byte 72): recommended arbitration burst, as a power of two.</summary>
    public byte RecommendedArbitrationBurst => B(72);
    /// <summary>IEEE (bytes 75:73): the OUI, least significant byte first on the wire, as a 24-bit number.</summary>
    public uint IeeeOui => (uint)(B(75) << 16 | B(74) << 8 | B(73));
    /// <summary>CMIC (byte 76): multi-path I/O and namespace sharing capabilities.</summary>
    public byte MultiPathCapabilities => B(76);
    /// <summary>RTD3R (bytes 87:84): RTD3 resume latency, µs.</summary>
    public uint Rtd3ResumeLatency => U32(84);
    /// <summary>RTD3E (bytes 91:88): RTD3 entry latency, µs.</summary>
    public uint Rtd3EntryLatency => U32(88);
    /// <summary>OAES (bytes 95:92): optional asynchronous events supported (bit 8 Namespace Attribute Notices, bit 9 Firmware Activation Notices).</summary>
    public uint OptionalAsyncEvents => U32(92);
    /// <summary>CTRATT (bytes 99:96): controller attributes.</summary>
    public uint ControllerAttributes => U32(96);
    /// <summary>RRLS (bytes 101:100): read recovery levels supported.</summary>
    public ushort ReadRecoveryLevels => U16(100);
    /// <summary>CNTRLTYPE (byte 111): 1 I/O, 2 discovery, 3 administrative controller; 0 not reported.</summary>
    public byte ControllerType => B(111);
    /// <summary>FGUID (bytes 127:112): FRU globally unique identifier.</summary>
    public ReadOnlySpan<byte> FruGuid => R.Slice(112, 16);
    /// <summary>CRDT1 (bytes 129:128): command retry delay time 1, in 100 ms.</summary>
    public ushort CommandRetryDelay1 => U16(128);
    /// <summary>CRDT2 (bytes 131:130).</summary>
    public ushort CommandRetryDelay2 => U16(130);
    /// <summary>CRDT3 (bytes 133:132).</summary>
    public ushort CommandRetryDelay3 => U16(132);
    /// <summary>NVMSR (byte 253): NVM subsystem report (NVMe-MI).</summary>
    public byte NvmSubsystemReport => B(253);
    /// <summary>VWCI (byte 254): VPD write cycle information.</summary>
    public byte VpdWriteCycleInformation => B(254);
    /// <summary>MEC (byte 255): management endpoint capabilities.</summary>
    public byte ManagementEndpointCapabilities => B(255);
    /// <summary>OACS (bytes 257:256): optional admin commands.</summary>
    public OptionalAdminCommands OptionalAdminCommands => (OptionalAdminCommands)U16(256);
    /// <summary>ACL (byte 258): abort command limit, 0's based.</summary>
    public byte AbortCommandLimit => B(258);
    /// <summary>AERL (byte 259): asynchronous event request limit, 0's based (AERL + 1 may be outstanding).</summary>
    public byte AsyncEventRequestLimit => B(259);
    /// <summary>Firmware slots the controller has (FRMW bits 3:1).</summary>
    public int FirmwareSlots => (B(260) >> 1) & 7;
    /// <summary>LPA (byte 261): log page attributes.</summary>
    public LogPageAttributes LogPageAttributes => (LogPageAttributes)B(261);
    /// <summary>ELPE (byte 262): error log page entries, 0's based.</summary>
    public byte ErrorLogPageEntries => B(262);
    /// <summary>NPSS (byte 263): number of power states, 0's based.</summary>
    public byte PowerStateCount => B(263);
    /// <summary>AVSCC (byte 264): admin vendor specific command configuration.</summary>
    public byte AdminVendorSpecificConfig => B(264);
    /// <summary>APSTA (byte 265): autonomous power state transition attributes.</summary>
    public byte AutonomousPowerStateAttributes => B(265);
    /// <summary>WCTEMP (bytes 267:266): warning composite temperature threshold, Kelvin.</summary>
    public ushort WarningTemperatureKelvin => U16(266);
    /// <summary>CCTEMP (bytes 269:268): critical composite temperature threshold, Kelvin.</summary>
    public ushort CriticalTemperatureKelvin => U16(268);
    /// <summary>MTFA (bytes 271:270): maximum time for firmware activation, 100 ms units.</summary>
    public ushort MaxFirmwareActivationTime => U16(270);
    /// <summary>HMPRE (bytes 275:272): host memory buffer preferred size, 4 KiB units.</summary>
    public uint HostMemoryPreferred => U32(272);
    /// <summary>HMMIN (bytes 279:276): host memory buffer minimum size, 4 KiB units.</summary>
    public uint HostMemoryMinimum => U32(276);
    /// <summary>TNVMCAP (bytes 295:280): total NVM capacity, bytes.</summary>
    public UInt128 TotalNvmCapacity => U128(280);
    /// <summary>UNVMCAP (bytes 311:296): unallocated NVM capacity, bytes.</summary>
    public UInt128 UnallocatedNvmCapacity => U128(296);
    /// <summary>RPMBS (bytes 315:312): replay protected memory block support.</summary>
    public uint RpmbSupport => U32(312);
    /// <summary>EDSTT (bytes 317:316): extended device self-test time, minutes.</summary>
    public ushort ExtendedSelfTestMinutes => U16(316);
    /// <summary>DSTO (byte 318): device self-test options.</summary>
    public byte SelfTestOptions => B(318);
    /// <summary>KAS (bytes 321:320): keep alive support, 100 ms units.</summary>
    public ushort KeepAliveSupport => U16(320);
    /// <summary>HCTMA (bytes 323:322): host controlled thermal management attributes.</summary>
    public ushort ThermalManagementAttributes => U16(322);
    /// <summary>MNTMT (bytes 325:324): minimum thermal management temperature, Kelvin.</summary>
    public ushort MinThermalManagementKelvin => U16(324);
    /// <summary>MXTMT (bytes 327:326): maximum thermal management temperature, Kelvin.</summary>
    public ushort MaxThermalManagementKelvin => U16(326);
    /// <summary>SANICAP (bytes 331:328): sanitize capabilities.</summary>
    public uint SanitizeCapabilities => U32(328);
    /// <summary>HMMINDS (bytes 335:332): host memory buffer minimum descriptor entry size, 4 KiB units.</summary>
    public uint HostMemoryMinDescriptorSize => U32(332);
    /// <summary>HMMAXD (bytes 337:336): host memory maximum descriptor entries.</summary>
    public ushort HostMemoryMaxDescriptors => U16(336);
    /// <summary>NSETIDMAX (bytes 339:338): NVM set identifier maximum.</summary>
    public ushort NvmSetIdMax => U16(338);
    /// <summary>ENDGIDMAX (bytes 341:340): endurance group identifier maximum.</summary>
    public ushort EnduranceGroupIdMax => U16(340);
    /// <summary>ANATT (byte 342): ANA transition time, seconds.</summary>
    public byte AnaTransitionTime => B(342);
    /// <summary>ANACAP (byte 343): asymmetric namespace access capabilities.</summary>
    public byte AnaCapabilities => B(343);
    /// <summary>ANAGRPMAX (bytes 347:344): ANA group identifier maximum.</summary>
    public uint AnaGroupIdMax => U32(344);
    /// <summary>NANAGRPID (bytes 351:348): number of ANA group identifiers.</summary>
    public uint AnaGroupIdCount => U32(348);
    /// <summary>PELS (bytes 355:352): persistent event log size, 64 KiB units.</summary>
    public uint PersistentEventLogSize => U32(352);
    /// <summary>DOMAINID (bytes 357:356): domain identifier (NVMe 2.0).</summary>
    public ushort DomainId => U16(356);
    /// <summary>MEGCAP (bytes 383:368): maximum endurance group capacity, bytes (NVMe 2.0).</summary>
    public UInt128 MaxEnduranceGroupCapacity => U128(368);
    /// <summary>FUSES (bytes 523:522): fused operations supported (bit 0 Compare and Write).</summary>
    public ushort FusedOperations => U16(522);
    /// <summary>FNA (byte 524): format NVM attributes.</summary>
    public byte FormatNvmAttributes => B(524);
    /// <summary>VWC (byte 525) as a whole byte (bits 2:1 say whether Flush with NSID FFFFFFFFh is supported).</summary>
    public byte VolatileWriteCacheByte => B(525);
    /// <summary>AWUN (bytes 527:526): atomic write unit normal, blocks, 0's based.</summary>
    public ushort AtomicWriteUnitNormal => U16(526);
    /// <summary>AWUPF (bytes 529:528): atomic write unit power fail, blocks, 0's based.</summary>
    public ushort AtomicWriteUnitPowerFail => U16(528);
    /// <summary>ICSVSCC (byte 530): I/O command set vendor specific command configuration.</summary>
    public byte IoVendorSpecificConfig => B(530);
    /// <summary>NWPC (byte 531): namespace write protection capabilities.</summary>
    public byte NamespaceWriteProtection => B(531);
    /// <summary>ACWU (bytes 533:532): atomic compare and write unit, blocks, 0's based.</summary>
    public ushort AtomicCompareWriteUnit => U16(532);
    /// <summary>OCFS (bytes 535:534): optional copy formats supported (NVMe 2.0).</summary>
    public ushort OptionalCopyFormats => U16(534);
    /// <summary>SGLS (bytes 539:536): SGL support.</summary>
    public uint SglSupport => U32(536);
    /// <summary>MNAN (bytes 543:540): maximum number of allowed namespaces.</summary>
    public uint MaxAllowedNamespaces => U32(540);
    /// <summary>MAXDNA (bytes 559:544): maximum domain namespace attachments (NVMe 2.0).</summary>
    public UInt128 MaxDomainNamespaceAttachments => U128(544);
    /// <summary>MAXCNA (bytes 563:560): maximum I/O controller namespace attachments (NVMe 2.0).</summary>
    public uint MaxControllerNamespaceAttachments => U32(560);
    /// <summary>IOCCSZ (bytes 1795:1792): I/O queue command capsule size, 16-byte units (fabrics).</summary>
    public uint IoCommandCapsuleSize => U32(1792);
    /// <summary>IORCSZ (bytes 1799:1796): I/O queue response capsule size (fabrics).</summary>
    public uint IoResponseCapsuleSize => U32(1796);
    /// <summary>ICDOFF (bytes 1801:1800): in-capsule data offset (fabrics).</summary>
    public ushort InCapsuleDataOffset => U16(1800);
    /// <summary>FCATT (byte 1802): fabrics controller attributes.</summary>
    public byte FabricsControllerAttributes => B(1802);
    /// <summary>MSDBD (byte 1803): maximum SGL data block descriptors (fabrics).</summary>
    public byte MaxSglDataBlockDescriptors => B(1803);
    /// <summary>OFCS (bytes 1805:1804): optional fabric commands supported.</summary>
    public ushort OptionalFabricCommands => U16(1804);

    /// <summary>The power state descriptors 0..NPSS (NPSS is 0's based, at most 31, so this never reads past the structure).</summary>
    public IReadOnlyList<PowerStateDescriptor> PowerStates
    {
        get
        {
            var span = R;
            int count = Math.Min(span[263] + 1, 32);
            var list = new PowerStateDescriptor[count];
            for (int i = 0; i < count; i++)
            {
                list[i] = PowerStateDescriptor.Parse(span.Slice(PowerStateDescriptorOffset + i * PowerStateDescriptor.Size, PowerStateDescriptor.Size));
            }
            return list;
        }
    }

    /// <summary>
    /// The FRU GUID as nvme-cli prints it: 16 bytes in wire order as lower-case hex, grouped 8-4-4-4-12.
    /// </summary>
    public string FruGuidText
    {
        get
        {
            string hex = Convert.ToHexStringLower(FruGuid);
            return $"{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..]}";
        }
    }

    /// <summary>
    /// Every field in the order and under the names of nvme-cli's <c>nvme id-ctrl -o json</c> (nvme-cli 2.x
    /// nvme-print-json.c, <c>json_nvme_id_ctrl</c>), with the value nvme-cli prints:
    /// <list type="bullet">
    /// <item>numbers are numbers (ushort, byte, uint, int); 128-bit fields (tnvmcap, unvmcap, megcap, maxdna) are
    /// <see cref="UInt128"/>, which nvme-cli prints as a bare decimal number;</item>
    /// <item>sn, mn, fr are the whole field, NOT trimmed: nvme-cli copies them with <c>"%-.*s"</c>, so the trailing
    /// spaces of a space-padded field stay in the JSON string (cut at a NUL only);</item>
    /// <item>subnqn is cut at the first NUL and left out altogether when empty, as nvme-cli does;</item>
    /// <item>fguid is the 8-4-4-4-12 hex text; psds is a list of field lists (see <see cref="PowerStateDescriptor.NvmeCliFields"/>).</item>
    /// </list>
    /// Fields newer nvme-cli versions add (bpcap, nssl, plsi, crcap, kpioc, tmpthha, oaqd and later NVMe 2.1
    /// fields) are not listed.
    /// </summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("vid", VendorId);
        yield return ("ssvid", SubsystemVendorId);
        yield return ("sn", Untrimmed(4, 20));
        yield return ("mn", Untrimmed(24, 40));
        yield return ("fr", Untrimmed(64, 8));
        yield return ("rab", RecommendedArbitrationBurst);
        yield return ("ieee", IeeeOui);
        yield return ("cmic", MultiPathCapabilities);
        yield return ("mdts", MaxDataTransferShift);
        yield return ("cntlid", ControllerId);
        yield return ("ver", Version.Raw);
        yield return ("rtd3r", Rtd3ResumeLatency);
        yield return ("rtd3e", Rtd3EntryLatency);
        yield return ("oaes", OptionalAsyncEvents);
        yield return ("ctratt", ControllerAttributes);
        yield return ("rrls", ReadRecoveryLevels);
        yield return ("cntrltype", ControllerType);
        yield return ("fguid", FruGuidText);
        yield return ("crdt1", CommandRetryDelay1);
        yield return ("crdt2", CommandRetryDelay2);
        yield return ("crdt3", CommandRetryDelay3);
        yield return ("nvmsr", NvmSubsystemReport);
        yield return ("vwci", VpdWriteCycleInformation);
        yield return ("mec", ManagementEndpointCapabilities);
        yield return ("oacs", (ushort)OptionalAdminCommands);
        yield return ("acl", AbortCommandLimit);
        yield return ("aerl", AsyncEventRequestLimit);
        yield return ("frmw", FirmwareUpdates.Value);
        yield return ("lpa", (byte)LogPageAttributes);
        yield return ("elpe", ErrorLogPageEntries);
        yield return ("npss", PowerStateCount);
        yield return ("avscc", AdminVendorSpecificConfig);
        yield return ("apsta", AutonomousPowerStateAttributes);
        yield return ("wctemp", WarningTemperatureKelvin);
        yield return ("cctemp", CriticalTemperatureKelvin);
        yield return ("mtfa", MaxFirmwareActivationTime);
        yield return ("hmpre", HostMemoryPreferred);
        yield return ("hmmin", HostMemoryMinimum);
        yield return ("tnvmcap", TotalNvmCapacity);
        yield return ("unvmcap", UnallocatedNvmCapacity);
        yield return ("rpmbs", RpmbSupport);
        yield return ("edstt", ExtendedSelfTestMinutes);
        yield return ("dsto", SelfTestOptions);
        yield return ("fwug", B(319));
        yield return ("kas", KeepAliveSupport);
        yield return ("hctma", ThermalManagementAttributes);
        yield return ("mntmt", MinThermalManagementKelvin);
        yield return ("mxtmt", MaxThermalManagementKelvin);
        yield return ("sanicap", SanitizeCapabilities);
        yield return ("hmminds", HostMemoryMinDescriptorSize);
        yield return ("hmmaxd", HostMemoryMaxDescriptors);
        yield return ("nsetidmax", NvmSetIdMax);
        yield return ("endgidmax", EnduranceGroupIdMax);
        yield return ("anatt", AnaTransitionTime);
        yield return ("anacap", AnaCapabilities);
        yield return ("anagrpmax", AnaGroupIdMax);
        yield return ("nanagrpid", AnaGroupIdCount);
        yield return ("pels", PersistentEventLogSize);
        yield return ("domainid", DomainId);
        yield return ("megcap", MaxEnduranceGroupCapacity);
        yield return ("sqes", SubmissionEntrySizes);
        yield return ("cqes", CompletionEntrySizes);
        yield return ("maxcmd", MaxCommands);
        yield return ("nn", NamespaceCount);
        yield return ("oncs", (ushort)OptionalCommands);
        yield return ("fuses", FusedOperations);
        yield return ("fna", FormatNvmAttributes);
        yield return ("vwc", VolatileWriteCacheByte);
        yield return ("awun", AtomicWriteUnitNormal);
        yield return ("awupf", AtomicWriteUnitPowerFail);
        yield return ("icsvscc", IoVendorSpecificConfig);
        yield return ("nwpc", NamespaceWriteProtection);
        yield return ("acwu", AtomicCompareWriteUnit);
        yield return ("ocfs", OptionalCopyFormats);
        yield return ("sgls", SglSupport);
        yield return ("mnan", MaxAllowedNamespaces);
        yield return ("maxdna", MaxDomainNamespaceAttachments);
        yield return ("maxcna", MaxControllerNamespaceAttachments);
        string subnqn = Untrimmed(768, 256);
        if (subnqn.Length != 0) { yield return ("subnqn", subnqn); }
        yield return ("ioccsz", IoCommandCapsuleSize);
        yield return ("iorcsz", IoResponseCapsuleSize);
        yield return ("icdoff", InCapsuleDataOffset);
        yield return ("fcatt", FabricsControllerAttributes);
        yield return ("msdbd", MaxSglDataBlockDescriptors);
        yield return ("ofcs", OptionalFabricCommands);
        yield return ("psds", PowerStates.Select(p => p.NvmeCliFields().ToList()).ToList());
    }

    /// <summary>A text field as nvme-cli copies it: up to the first NUL, padding kept.</summary>
    private string Untrimmed(int at, int length)
    {
        var field = R.Slice(at, length);
        int end = field.IndexOf((byte)0);
        if (end >= 0) { field = field[..end]; }
        return Encoding.ASCII.GetString(field);
    }
}
