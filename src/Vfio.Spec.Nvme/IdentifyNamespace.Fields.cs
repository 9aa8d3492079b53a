using System.Buffers.Binary;

namespace Vfio.Spec.Nvme;

/// <summary>
/// The rest of the Identify Namespace data structure (NVMe 1.4 §5.15.2.1, Figure 245; NVMe 2.0 Figure 276 for MSSRL,
/// MCL, MSRC and NULBAF), read from <see cref="Raw"/>. A structure built without raw bytes reads 0 in every field here.
/// </summary>
public sealed partial record IdentifyNamespace
{
    /// <summary>NLBAF (byte 25): number of LBA formats, 0's based.</summary>
    public byte LbaFormatCountMinusOne => U8(25);
    /// <summary>MC (byte 27): metadata capabilities.</summary>
    public byte MetadataCapabilities => U8(27);
    /// <summary>DPC (byte 28): end-to-end data protection capabilities.</summary>
    public byte DataProtectionCapabilities => U8(28);
    /// <summary>DPS (byte 29): end-to-end data protection type settings.</summary>
    public byte DataProtectionSettings => U8(29);
    /// <summary>NMIC (byte 30): bit 0, the namespace may be attached to two or more controllers.</summary>
    public byte MultiPathSharing => U8(30);
    /// <summary>True when NMIC bit 0 is set (a shared namespace).</summary>
    public bool IsShared => (MultiPathSharing & 1) != 0;
    /// <summary>RESCAP (byte 31): reservation capabilities.</summary>
    public byte ReservationCapabilities => U8(31);
    /// <summary>FPI (byte 32): format progress indicator (bit 7 supported, bits 6:0 percent remaining).</summary>
    public byte FormatProgressIndicator => U8(32);
    /// <summary>DLFEAT (byte 33): deallocate logical block features (bits 2:0 what deallocated blocks read as).</summary>
    public byte DeallocateFeatures => U8(33);
    /// <summary>NAWUN (bytes 35:34): namespace atomic write unit normal, 0's based blocks.</summary>
    public ushort AtomicWriteUnitNormal => U16(34);
    /// <summary>NAWUPF (bytes 37:36): namespace atomic write unit power fail.</summary>
    public ushort AtomicWriteUnitPowerFail => U16(36);
    /// <summary>NACWU (bytes 39:38): namespace atomic compare and write unit.</summary>
    public ushort AtomicCompareWriteUnit => U16(38);
    /// <summary>NABSN (bytes 41:40): namespace atomic boundary size normal.</summary>
    public ushort AtomicBoundarySizeNormal => U16(40);
    /// <summary>NABO (bytes 43:42): namespace atomic boundary offset.</summary>
    public ushort AtomicBoundaryOffset => U16(42);
    /// <summary>NABSPF (bytes 45:44): namespace atomic boundary size power fail.</summary>
    public ushort AtomicBoundarySizePowerFail => U16(44);
    /// <summary>NOIOB (bytes 47:46): namespace optimal I/O boundary, in blocks.</summary>
    public ushort OptimalIoBoundary => U16(46);
    /// <summary>NVMCAP (bytes 63:48): NVM capacity in bytes.</summary>
    public UInt128 NvmCapacity => Raw.Length >= 64 ? BinaryPrimitives.ReadUInt128LittleEndian(Raw.Span[48..]) : UInt128.Zero;
    /// <summary>NPWG (bytes 65:64): preferred write granularity, 0's based blocks.</summary>
    public ushort PreferredWriteGranularity => U16(64);
    /// <summary>NPWA (bytes 67:66): preferred write alignment.</summary>
    public ushort PreferredWriteAlignment => U16(66);
    /// <summary>NPDG (bytes 69:68): preferred deallocate granularity.</summary>
    public ushort PreferredDeallocateGranularity => U16(68);
    /// <summary>NPDA (bytes 71:70): preferred deallocate alignment.</summary>
    public ushort PreferredDeallocateAlignment => U16(70);
    /// <summary>NOWS (bytes 73:72): optimal write size.</summary>
    public ushort OptimalWriteSize => U16(72);
    /// <summary>MSSRL (bytes 75:74): maximum single source range length (Copy, NVMe 2.0).</summary>
    public ushort MaxSingleSourceRangeLength => U16(74);
    /// <summary>MCL (bytes 79:76): maximum copy length (NVMe 2.0).</summary>
    public uint MaxCopyLength => U32(76);
    /// <summary>MSRC (byte 80): maximum source range count, 0's based (NVMe 2.0).</summary>
    public byte MaxSourceRangeCount => U8(80);
    /// <summary>NULBAF (byte 82): number of unique attribute LBA formats (NVMe 2.0).</summary>
    public byte UniqueAttributeLbaFormats => U8(82);
    /// <summary>ANAGRPID (bytes 95:92): ANA group identifier.</summary>
    public uint AnaGroupId => U32(92);
    /// <summary>NSATTR (byte 99): namespace attributes (bit 0 write protected).</summary>
    public byte Attributes => U8(99);
    /// <summary>NVMSETID (bytes 101:100): NVM set identifier.</summary>
    public ushort NvmSetId => U16(100);
    /// <summary>ENDGID (bytes 103:102): endurance group identifier.</summary>
    public ushort EnduranceGroupId => U16(102);
    /// <summary>NGUID (bytes 119:104): namespace globally unique identifier, as sent (all zero: not reported).</summary>
    public ReadOnlyMemory<byte> Nguid => Raw.Length >= 120 ? Raw[104..120] : new byte[16];
    /// <summary>EUI64 (bytes 127:120): IEEE extended unique identifier, as sent (all zero: not reported).</summary>
    public ReadOnlyMemory<byte> Eui64 => Raw.Length >= 128 ? Raw[120..128] : new byte[8];
    /// <summary>NGUID as 32 lower-case hex digits, the way nvme-cli prints it.</summary>
    public string NguidHex => Convert.ToHexStringLower(Nguid.Span);
    /// <summary>EUI64 as 16 lower-case hex digits, the way nvme-cli prints it.</summary>
    public string Eui64Hex => Convert.ToHexStringLower(Eui64.Span);

    /// <summary>
    /// Every field <c>nvme id-ns -o json</c> reports, under nvme-cli's JSON names and in its order, with the value as
    /// nvme-cli shows it (integers; NVMCAP as <see cref="UInt128"/>; NGUID and EUI64 as hex strings; <c>lbafs</c> as a
    /// list of (ms, ds, rp) field lists). nvme-cli leaves some fields out depending on NSFEAT; this list always has
    /// them all, so a caller that wants the exact output filters.
    /// </summary>
    public IReadOnlyList<(string JsonName, object Value)> NvmeCliFields()
    {
        var lbafs = new List<IReadOnlyList<(string JsonName, object Value)>>(LbaFormats.Count);
        foreach (var f in LbaFormats)
        {
            lbafs.Add([("ms", (int)f.MetadataSize), ("ds", (int)f.DataShift), ("rp", (int)f.RelativePerformance)]);
        }
        return
        [
            ("nsze", SizeInBlocks), ("ncap", Capacity), ("nuse", Utilization), ("nsfeat", (int)Features),
            ("nlbaf", (int)LbaFormatCountMinusOne), ("flbas", (int)FormattedLbaSize), ("mc", (int)MetadataCapabilities),
            ("dpc", (int)DataProtectionCapabilities), ("dps", (int)DataProtectionSettings), ("nmic", (int)MultiPathSharing),
            ("rescap", (int)ReservationCapabilities), ("fpi", (int)FormatProgressIndicator), ("dlfeat", (int)DeallocateFeatures),
            ("nawun", (int)AtomicWriteUnitNormal), ("nawupf", (int)AtomicWriteUnitPowerFail), ("nacwu", (int)AtomicCompareWriteUnit),
            ("nabsn", (int)AtomicBoundarySizeNormal), ("nabo", (int)AtomicBoundaryOffset), ("nabspf", (int)AtomicBoundarySizePowerFail),
            ("noiob", (int)OptimalIoBoundary), ("nvmcap", NvmCapacity), ("npwg", (int)PreferredWriteGranularity),
            ("npwa", (int)PreferredWriteAlignment), ("npdg", (int)PreferredDeallocateGranularity), ("npda", (int)PreferredDeallocateAlignment),
            ("nows", (int)OptimalWriteSize), ("mssrl", (int)MaxSingleSourceRangeLength), ("mcl", MaxCopyLength),
            ("msrc", (int)MaxSourceRangeCount), ("nulbaf", (int)UniqueAttributeLbaFormats), ("anagrpid", AnaGroupId),
            ("nsattr", (int)Attributes), ("nvmsetid", (int)NvmSetId), ("endgid", (int)EnduranceGroupId),
            ("nguid", NguidHex), ("eui64", Eui64Hex), ("lbafs", lbafs),
        ];
    }

    private byte U8(int at) => Raw.Length > at ? Raw.Span[at] : (byte)0;

    private ushort U16(int at) => Raw.Length >= at + 2 ? BinaryPrimitives.ReadUInt16LittleEndian(Raw.Span[at..]) : (ushort)0;

    private uint U32(int at) => Raw.Length >= at + 4 ? BinaryPrimitives.ReadUInt32LittleEndian(Raw.Span[at..]) : 0;
}
