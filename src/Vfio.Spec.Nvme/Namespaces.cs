using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Spec.Nvme;

/// <summary>Namespace Identifier Type, NIDT (NVMe 1.4 §5.15.2.3, Figure 248; CSI added by NVMe 2.0 Figure 281).</summary>
public enum NamespaceIdentifierType : byte
{
    /// <summary>IEEE Extended Unique Identifier, 8 bytes.</summary>
    Eui64 = 1,
    /// <summary>Namespace Globally Unique Identifier, 16 bytes.</summary>
    Nguid = 2,
    /// <summary>Namespace UUID (RFC 4122), 16 bytes.</summary>
    Uuid = 3,
    /// <summary>Command Set Identifier, 1 byte (NVMe 2.0).</summary>
    CommandSetIdentifier = 4,
}

/// <summary>
/// One Namespace Identification Descriptor (NVMe 1.4 §5.15.2.3, Figure 247): a type (NIDT, byte 0), a length (NIDL,
/// byte 1), two reserved bytes, then NIDL bytes of identifier.
/// </summary>
/// <param name="Type">NIDT.</param>
/// <param name="Value">The identifier bytes, in the order the controller sent them.</param>
public readonly record struct NamespaceIdentifier(NamespaceIdentifierType Type, ReadOnlyMemory<byte> Value)
{
    /// <summary>Size of the descriptor list CNS 03h returns.</summary>
    public const int ListSize = 4096;

    /// <summary>The identifier as lower-case hex, most significant byte first as sent (nvme-cli prints EUI64 and NGUID so).</summary>
    public string Hex => Convert.ToHexStringLower(Value.Span);

    /// <summary>The length NIDL must have for <paramref name="type"/>, or -1 for a type this library does not know.</summary>
    public static int LengthOf(NamespaceIdentifierType type) => type switch
    {
        NamespaceIdentifierType.Eui64 => 8,
        NamespaceIdentifierType.Nguid or NamespaceIdentifierType.Uuid => 16,
        NamespaceIdentifierType.CommandSetIdentifier => 1,
        _ => -1,
    };

    /// <summary>
    /// Walks a descriptor list: descriptors follow each other until one with NIDT 0 or the end of the 4 KiB.
    /// Descriptors of types not known here are skipped by their NIDL.
    /// </summary>
    /// <exception cref="FormatException">A known type carries the wrong NIDL, a NIDL of 0, or a descriptor runs past the list.</exception>
    public static List<NamespaceIdentifier> ParseList(ReadOnlySpan<byte> data)
    {
        if (data.Length > ListSize) { data = data[..ListSize]; }
        var list = new List<NamespaceIdentifier>();
        int at = 0;
        // A descriptor header is 4 bytes; a list that ends without a zero NIDT simply ends at 4 KiB.
        while (at + 4 <= data.Length)
        {
            var type = (NamespaceIdentifierType)data[at];
            if (type == 0) { break; }
            int length = data[at + 1];
            int expected = LengthOf(type);
            if (length == 0)
            {
                throw new FormatException($"namespace identification descriptor at byte {at}: NIDT {(byte)type} with NIDL 0");
            }
            if (expected >= 0 && length != expected)
            {
                throw new FormatException($"namespace identification descriptor at byte {at}: NIDT {(byte)type} ({type}) must have NIDL {expected}, got {length}");
            }
            if (at + 4 + length > data.Length)
            {
                throw new FormatException($"namespace identification descriptor at byte {at}: NIDL {length} runs past the {data.Length}-byte list");
            }
            if (expected >= 0) { list.Add(new NamespaceIdentifier(type, data.Slice(at + 4, length).ToArray())); }
            at += 4 + length;
        }
        return list;
    }

    /// <summary>Writes descriptors into a list (for emulators and tests); returns the bytes used.</summary>
    /// <exception cref="ArgumentException">A descriptor has the wrong length for its type, or they do not fit.</exception>
    public static int WriteList(Span<byte> data, IEnumerable<NamespaceIdentifier> descriptors)
    {
        ArgumentNullException.ThrowIfNull(descriptors);
        int at = 0;
        foreach (var d in descriptors)
        {
            int length = d.Value.Length;
            if (length is < 1 or > 255 || (LengthOf(d.Type) is var e && e >= 0 && e != length))
            {
                throw new ArgumentException($"NIDT {(byte)d.Type} cannot carry {length} bytes", nameof(descriptors));
            }
            if (at + 4 + length > data.Length) { throw new ArgumentException("the descriptors do not fit the list", nameof(data)); }
            data[at] = (byte)d.Type;
            data[at + 1] = (byte)length;
            data[at + 2] = data[at + 3] = 0;
            d.Value.Span.CopyTo(data[(at + 4)..]);
            at += 4 + length;
        }
        return at;
    }
}

/// <summary>
/// A Controller List (NVMe 1.4 §5.15.2.5, Figure 250; the data of Namespace Attachment and of Identify CNS 12h/13h):
/// bytes 1:0 the number of identifiers, then that many 16-bit controller identifiers, at most 2047 in 4 KiB.
/// </summary>
public static class ControllerList
{
    /// <summary>Size of the structure.</summary>
    public const int Size = 4096;

    /// <summary>Most identifiers one list holds.</summary>
    public const int MaxEntries = 2047;

    /// <summary>Parses a list the controller wrote.</summary>
    /// <exception cref="FormatException">The count is above 2047 or the data is shorter than the count says.</exception>
    public static ushort[] Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < 2) { throw new FormatException($"a controller list is at least 2 bytes; got {data.Length}"); }
        int count = BinaryPrimitives.ReadUInt16LittleEndian(data);
        if (count > MaxEntries)
        {
            throw new FormatException($"controller list says {count} identifiers; at most {MaxEntries} fit");
        }
        if (2 + 2 * count > data.Length)
        {
            throw new FormatException($"controller list says {count} identifiers, but only {(data.Length - 2) / 2} fit the {data.Length} bytes");
        }
        var ids = new ushort[count];
        for (int i = 0; i < count; i++) { ids[i] = BinaryPrimitives.ReadUInt16LittleEndian(data[(2 + 2 * i)..]); }
        return ids;
    }

    /// <summary>Writes a list; returns the bytes used (the rest of <paramref name="data"/> is left as it was).</summary>
    /// <exception cref="ArgumentOutOfRangeException">More than 2047 identifiers, or they do not fit.</exception>
    public static int Write(Span<byte> data, ReadOnlySpan<ushort> controllerIds)
    {
        if (controllerIds.Length > MaxEntries)
        {
            throw new ArgumentOutOfRangeException(nameof(controllerIds), controllerIds.Length, $"a controller list holds 0..{MaxEntries} identifiers");
        }
        int bytes = 2 + 2 * controllerIds.Length;
        if (bytes > data.Length) { throw new ArgumentOutOfRangeException(nameof(data), data.Length, $"{bytes} bytes are needed"); }
        BinaryPrimitives.WriteUInt16LittleEndian(data, (ushort)controllerIds.Length);
        for (int i = 0; i < controllerIds.Length; i++) { BinaryPrimitives.WriteUInt16LittleEndian(data[(2 + 2 * i)..], controllerIds[i]); }
        return bytes;
    }
}

/// <summary>Namespace ID lists (CNS 02h active, CNS 10h allocated; NVMe 1.4 §5.15.2.4, Figure 249).</summary>
public static class NamespaceIdList
{
    /// <summary>Most NSIDs one list holds (4 KiB of 32-bit entries).</summary>
    public const int MaxEntries = 1024;

    /// <summary>
    /// Parses a list: NSIDs in increasing order, each above <paramref name="startAfter"/>, ended by the first 0 or the end
    /// of the 4 KiB. Unlike <see cref="IdentifyNamespace.ParseActiveList"/>, checks the order the specification requires.
    /// </summary>
    /// <exception cref="FormatException">An NSID is not above the one before it (or <paramref name="startAfter"/>), or is a
    /// broadcast value (FFFFFFFEh, FFFFFFFFh).</exception>
    public static List<uint> Parse(ReadOnlySpan<byte> data, uint startAfter = 0)
    {
        var list = new List<uint>();
        uint last = startAfter;
        for (int i = 0; i + 4 <= data.Length && i < 4 * MaxEntries; i += 4)
        {
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(data[i..]);
            if (id == 0) { break; }
            if (id <= last || id >= 0xFFFF_FFFE)
            {
                throw new FormatException($"namespace list entry {i / 4} is NSID {id}: entries must increase from {startAfter} and stay below FFFFFFFEh");
            }
            list.Add(id);
            last = id;
        }
        return list;
    }
}

/// <summary>Select field of Namespace Management (NVMe 1.4 §5.20, Figure 262, CDW10 bits 3:0).</summary>
public enum NamespaceManagementSelect : byte
{
    /// <summary>Create a namespace from the host's data structure; DW0 of the completion is the new NSID.</summary>
    Create = 0,
    /// <summary>Delete the namespace NSID names (FFFFFFFFh: every namespace).</summary>
    Delete = 1,
}

/// <summary>Select field of Namespace Attachment (NVMe 1.4 §5.19, Figure 259, CDW10 bits 3:0).</summary>
public enum NamespaceAttachmentSelect : byte
{
    /// <summary>Attach the namespace to the controllers in the list.</summary>
    Attach = 0,
    /// <summary>Detach the namespace from the controllers in the list.</summary>
    Detach = 1,
}

/// <summary>Secure Erase Settings of Format NVM (SES, NVMe 1.4 §5.23, Figure 281, CDW10 bits 11:9).</summary>
public enum SecureErase : byte
{
    /// <summary>No secure erase requested.</summary>
    None = 0,
    /// <summary>User Data Erase: user data is erased (reads return zeroes or a vendor pattern).</summary>
    UserData = 1,
    /// <summary>Cryptographic Erase: the encryption key is deleted (Identify Controller FNA bit 2 says it is offered).</summary>
    Cryptographic = 2,
}

/// <summary>Dataset Management attributes (NVMe 1.4 §6.7, Figure 362, CDW11).</summary>
[Flags]
public enum DsmAttributes : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>IDR: integral dataset for read.</summary>
    IntegralRead = 1 << 0,
    /// <summary>IDW: integral dataset for write.</summary>
    IntegralWrite = 1 << 1,
    /// <summary>AD: deallocate the ranges.</summary>
    Deallocate = 1 << 2,
}

/// <summary>
/// The host's data structure of Namespace Management create (NVMe 1.4 §5.20.1, Figure 263): the fields the host sets
/// sit at their Identify Namespace offsets in 4 KiB, everything else reserved (zero).
/// </summary>
/// <param name="SizeInBlocks">NSZE (bytes 7:0).</param>
/// <param name="CapacityInBlocks">NCAP (bytes 15:8); below NSZE only with thin provisioning.</param>
/// <param name="FormattedLbaSize">FLBAS (byte 26): bits 3:0 the LBA format index, bits 6:5 its upper bits (NVMe 2.0), bit 4 extended metadata.</param>
/// <param name="DataProtection">DPS (byte 29).</param>
/// <param name="MultiPathSharing">NMIC (byte 30): bit 0 the namespace may be attached to several controllers.</param>
/// <param name="AnaGroupId">ANAGRPID (bytes 95:92).</param>
/// <param name="NvmSetId">NVMSETID (bytes 101:100).</param>
public readonly record struct NamespaceCreateData(ulong SizeInBlocks, ulong CapacityInBlocks, byte FormattedLbaSize,
    byte DataProtection = 0, byte MultiPathSharing = 0, uint AnaGroupId = 0, ushort NvmSetId = 0)
{
    /// <summary>Size of the structure.</summary>
    public const int Size = 4096;

    /// <summary>FLBAS for LBA format <paramref name="index"/> (0..63): bits 3:0 and, above 15, bits 6:5 (NVMe 2.0 §5.27.1.5 FLBAS).</summary>
    public static byte FlbasFor(int index)
    {
        if (index is < 0 or > 63) { throw new ArgumentOutOfRangeException(nameof(index), index, "LBA format indexes are 0..63"); }
        return (byte)((index & 0xF) | ((index >> 4) & 3) << 5);
    }

    /// <summary>Lays the structure out in <paramref name="data"/> (at least 4 KiB; cleared first).</summary>
    public void Write(Span<byte> data)
    {
        if (data.Length < Size) { throw new ArgumentException($"the structure is {Size} bytes", nameof(data)); }
        data[..Size].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(data, SizeInBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(data[8..], CapacityInBlocks);
        data[26] = FormattedLbaSize;
        data[29] = DataProtection;
        data[30] = MultiPathSharing;
        BinaryPrimitives.WriteUInt32LittleEndian(data[92..], AnaGroupId);
        BinaryPrimitives.WriteUInt16LittleEndian(data[100..], NvmSetId);
    }

    /// <summary>Reads the fields back (for emulators).</summary>
    public static NamespaceCreateData Read(ReadOnlySpan<byte> data)
    {
        if (data.Length < Size) { throw new ArgumentException($"the structure is {Size} bytes", nameof(data)); }
        return new NamespaceCreateData(BinaryPrimitives.ReadUInt64LittleEndian(data), BinaryPrimitives.ReadUInt64LittleEndian(data[8..]),
            data[26], data[29], data[30], BinaryPrimitives.ReadUInt32LittleEndian(data[92..]), BinaryPrimitives.ReadUInt16LittleEndian(data[100..]));
    }
}

public partial struct NvmeCommand
{
    /// <summary>The broadcast NSID: every namespace (NVMe 1.4 §6.1.2).</summary>
    public const uint AllNamespaces = 0xFFFF_FFFF;

    /// <summary>
    /// Identify with a controller identifier (NVMe 1.4 §5.15.1, Figure 241): CNS in CDW10 bits 7:0, CNTID in bits
    /// 31:16, used by CNS 12h and 13h to start the controller list.
    /// </summary>
    public static NvmeCommand Identify(IdentifyCns cns, uint nsid, ushort controllerId, DmaAddress prp1, DmaAddress prp2)
    {
        var c = Identify(cns, nsid, prp1, prp2);
        c.Cdw10 |= (uint)controllerId << 16;
        return c;
    }

    /// <summary>
    /// Namespace Management (NVMe 1.4 §5.20): SEL in CDW10 bits 3:0. Create takes the 4 KiB
    /// <see cref="NamespaceCreateData"/> at the data pointer and NSID 0; delete takes the NSID and no data.
    /// </summary>
    public static NvmeCommand NamespaceManagement(NamespaceManagementSelect select, uint nsid)
    {
        if (select is not (NamespaceManagementSelect.Create or NamespaceManagementSelect.Delete))
        {
            throw new ArgumentOutOfRangeException(nameof(select), select, "Create or Delete");
        }
        var c = Make((byte)AdminOpcode.NamespaceManagement, select == NamespaceManagementSelect.Create ? 0 : nsid);
        c.Cdw10 = (uint)select;
        return c;
    }

    /// <summary>Namespace Attachment (NVMe 1.4 §5.19): SEL in CDW10 bits 3:0; the 4 KiB <see cref="ControllerList"/> at the data pointer.</summary>
    public static NvmeCommand NamespaceAttachment(NamespaceAttachmentSelect select, uint nsid)
    {
        if (select is not (NamespaceAttachmentSelect.Attach or NamespaceAttachmentSelect.Detach))
        {
            throw new ArgumentOutOfRangeException(nameof(select), select, "Attach or Detach");
        }
        var c = Make((byte)AdminOpcode.NamespaceAttachment, nsid);
        c.Cdw10 = (uint)select;
        return c;
    }

    /// <summary>
    /// Format NVM (NVMe 1.4 §5.23, Figure 281): CDW10 LBAF bits 3:0, MSET bit 4, PI bits 7:5, PIL bit 8, SES bits 11:9,
    /// and (NVMe 2.0 §5.27, LBAFU) the upper two bits of the format index in bits 13:12. No data.
    /// </summary>
    /// <param name="nsid">The namespace, or <see cref="AllNamespaces"/>.</param>
    /// <param name="lbaFormatIndex">The LBA format, 0..63.</param>
    /// <param name="ses">Secure erase.</param>
    /// <param name="protectionInformation">PI type, 0..7 (0: none).</param>
    /// <param name="metadataExtended">MSET: metadata transferred at the end of each block rather than in a separate buffer.</param>
    /// <param name="protectionFirst">PIL: protection information in the first bytes of the metadata.</param>
    public static NvmeCommand FormatNvm(uint nsid, int lbaFormatIndex, SecureErase ses = SecureErase.None, int protectionInformation = 0,
        bool metadataExtended = false, bool protectionFirst = false)
    {
        if (lbaFormatIndex is < 0 or > 63) { throw new ArgumentOutOfRangeException(nameof(lbaFormatIndex), lbaFormatIndex, "LBA format indexes are 0..63"); }
        if ((uint)ses > 7) { throw new ArgumentOutOfRangeException(nameof(ses), ses, "SES is 3 bits"); }
        if (protectionInformation is < 0 or > 7) { throw new ArgumentOutOfRangeException(nameof(protectionInformation), protectionInformation, "PI is 0..7"); }
        var c = Make((byte)AdminOpcode.FormatNvm, nsid);
        c.Cdw10 = (uint)(lbaFormatIndex & 0xF) | (metadataExtended ? 1u << 4 : 0) | (uint)protectionInformation << 5
            | (protectionFirst ? 1u << 8 : 0) | (uint)ses << 9 | (uint)((lbaFormatIndex >> 4) & 3) << 12;
        return c;
    }

    /// <summary>Format NVM CDW10 LBAF with LBAFU: the format index the command asks for.</summary>
    public readonly int FormatIndex => (int)(Cdw10 & 0xF) | (int)((Cdw10 >> 12) & 3) << 4;

    /// <summary>Format NVM CDW10 SES.</summary>
    public readonly SecureErase FormatSecureErase => (SecureErase)((Cdw10 >> 9) & 7);

    /// <summary>
    /// Compare (NVMe 1.4 §6.2): SLBA and NLB as for Read; the controller reads the host's data at PRP1/PRP2 and
    /// completes with Compare Failure (SCT 2h, SC 85h) when it differs from the media.
    /// </summary>
    public static NvmeCommand Compare(uint nsid, ulong startingLba, int blocks, DmaAddress prp1, DmaAddress prp2) =>
        RangeWithData(NvmOpcode.Compare, nsid, startingLba, blocks, prp1, prp2);

    /// <summary>
    /// Dataset Management (NVMe 1.4 §6.7): NR (CDW10 bits 7:0, 0's based) ranges of 16 bytes at PRP1 (with PRP2 if
    /// the list crosses a page), the attributes in CDW11.
    /// </summary>
    public static NvmeCommand DatasetManagement(uint nsid, int ranges, DsmAttributes attributes, DmaAddress prp1, DmaAddress prp2 = default)
    {
        if (ranges is < 1 or > 256) { throw new ArgumentOutOfRangeException(nameof(ranges), ranges, "1..256 ranges"); }
        if (((uint)attributes & ~7u) != 0) { throw new ArgumentOutOfRangeException(nameof(attributes), attributes, "IDR, IDW and AD are bits 0..2"); }
        var c = Make((byte)NvmOpcode.DatasetManagement, nsid);
        c.Prp1 = prp1;
        c.Prp2 = prp2;
        c.Cdw10 = (uint)(ranges - 1);
        c.Cdw11 = (uint)attributes;
        return c;
    }
}

/// <summary>The context attributes of a Dataset Management range (NVMe 1.4 §6.7, Figure 363), as one 32-bit value.</summary>
public static class DsmContext
{
    /// <summary>Builds the attributes: access frequency (bits 3:0), access latency (5:4), sequential read (6), sequential
    /// write (7), write prepare (8) and command access size in blocks (31:24).</summary>
    public static uint Create(int accessFrequency = 0, int accessLatency = 0, bool sequentialRead = false, bool sequentialWrite = false,
        bool writePrepare = false, byte commandAccessSize = 0)
    {
        if (accessFrequency is < 0 or > 15) { throw new ArgumentOutOfRangeException(nameof(accessFrequency), accessFrequency, "0..15"); }
        if (accessLatency is < 0 or > 3) { throw new ArgumentOutOfRangeException(nameof(accessLatency), accessLatency, "0..3"); }
        return (uint)accessFrequency | (uint)accessLatency << 4 | (sequentialRead ? 1u << 6 : 0) | (sequentialWrite ? 1u << 7 : 0)
            | (writePrepare ? 1u << 8 : 0) | (uint)commandAccessSize << 24;
    }

    /// <summary>Writes ranges into a range list (16 bytes each, NVMe 1.4 Figure 364); returns the bytes used.</summary>
    public static int WriteRanges(Span<byte> data, ReadOnlySpan<DsmRange> ranges)
    {
        if (ranges.Length is < 1 or > 256) { throw new ArgumentOutOfRangeException(nameof(ranges), ranges.Length, "1..256 ranges"); }
        var bytes = MemoryMarshal.AsBytes(ranges);
        bytes.CopyTo(data);
        return bytes.Length;
    }
}
