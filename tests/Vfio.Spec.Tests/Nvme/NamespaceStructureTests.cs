using System.Buffers.Binary;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// The namespace structures and commands against NVMe Base 1.4: Identify Namespace (§5.15.2.1, Figure 245, with the
/// NVMe 2.0 fields of Figure 276), Namespace Identification Descriptors (§5.15.2.3), namespace and controller lists
/// (§5.15.2.4-5), Namespace Management and Attachment (§5.19-5.20), Format NVM (§5.23), Compare (§6.2), Dataset
/// Management (§6.7), and the OACS, TNVMCAP and UNVMCAP fields of Identify Controller (Figure 247).
/// </summary>
public sealed class NamespaceStructureTests
{
    /// <summary>Every field at its Figure 245 offset, each a distinct value.</summary>
    private static byte[] FullNamespace()
    {
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 1000);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), 900);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 800);
        b[24] = 0x1F;                                   // NSFEAT
        b[25] = 2;                                      // NLBAF: three formats
        b[26] = 1;                                      // FLBAS
        b[27] = 3; b[28] = 4; b[29] = 5; b[30] = 1; b[31] = 6; b[32] = 0x80; b[33] = 9;
        for (int i = 0; i < 7; i++) { BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(34 + 2 * i), (ushort)(100 + i)); }   // NAWUN..NOIOB
        BinaryPrimitives.WriteUInt128LittleEndian(b.AsSpan(48), (UInt128)ulong.MaxValue + 5);                            // NVMCAP
        for (int i = 0; i < 6; i++) { BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(64 + 2 * i), (ushort)(200 + i)); }  // NPWG..MSSRL
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(76), 70000);   // MCL
        b[80] = 11;                                                      // MSRC
        b[82] = 12;                                                      // NULBAF
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(92), 0xABCD);  // ANAGRPID
        b[99] = 1;                                                       // NSATTR
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(100), 13);     // NVMSETID
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(102), 14);     // ENDGID
        for (int i = 0; i < 16; i++) { b[104 + i] = (byte)(0xA0 + i); }  // NGUID
        for (int i = 0; i < 8; i++) { b[120 + i] = (byte)(0x10 + i); }   // EUI64
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(128), 9u << 16);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(132), 12u << 16 | 2u << 24);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(136), 8 | 12u << 16 | 1u << 24);
        return b;
    }

    [Fact]
    public void IdentifyNamespaceFieldsAreAtTheirOffsets()
    {
        var ns = IdentifyNamespace.Parse(FullNamespace());
        Assert.Equal(2, ns.LbaFormatCountMinusOne);
        Assert.Equal(3, ns.MetadataCapabilities);
        Assert.Equal(4, ns.DataProtectionCapabilities);
        Assert.Equal(5, ns.DataProtectionSettings);
        Assert.True(ns.IsShared);
        Assert.Equal(6, ns.ReservationCapabilities);
        Assert.Equal(0x80, ns.FormatProgressIndicator);
        Assert.Equal(9, ns.DeallocateFeatures);
        Assert.Equal([100, 101, 102, 103, 104, 105, 106], new[] { ns.AtomicWriteUnitNormal, ns.AtomicWriteUnitPowerFail, ns.AtomicCompareWriteUnit,
            ns.AtomicBoundarySizeNormal, ns.AtomicBoundaryOffset, ns.AtomicBoundarySizePowerFail, ns.OptimalIoBoundary }.Select(v => (int)v));
        Assert.Equal((UInt128)ulong.MaxValue + 5, ns.NvmCapacity);
        Assert.Equal([200, 201, 202, 203, 204, 205], new[] { ns.PreferredWriteGranularity, ns.PreferredWriteAlignment, ns.PreferredDeallocateGranularity,
            ns.PreferredDeallocateAlignment, ns.OptimalWriteSize, ns.MaxSingleSourceRangeLength }.Select(v => (int)v));
        Assert.Equal(70000u, ns.MaxCopyLength);
        Assert.Equal(11, ns.MaxSourceRangeCount);
        Assert.Equal(12, ns.UniqueAttributeLbaFormats);
        Assert.Equal(0xABCDu, ns.AnaGroupId);
        Assert.Equal(1, ns.Attributes);
        Assert.Equal(13, ns.NvmSetId);
        Assert.Equal(14, ns.EnduranceGroupId);
        Assert.Equal("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", ns.NguidHex);
        Assert.Equal("1011121314151617", ns.Eui64Hex);
        Assert.Equal(4096, ns.BlockSize);
        Assert.Equal(new LbaFormat(8, 12, 1), ns.LbaFormats[2]);
    }

    [Fact]
    public void NvmeCliFieldsUseNvmeCliNamesAndValues()
    {
        var fields = IdentifyNamespace.Parse(FullNamespace()).NvmeCliFields().ToDictionary(f => f.JsonName, f => f.Value);
        Assert.Equal(1000UL, fields["nsze"]);
        Assert.Equal(2, fields["nlbaf"]);
        Assert.Equal(106, fields["noiob"]);
        Assert.Equal((UInt128)ulong.MaxValue + 5, fields["nvmcap"]);
        Assert.Equal(70000u, fields["mcl"]);
        Assert.Equal(0xABCDu, fields["anagrpid"]);
        Assert.Equal("1011121314151617", fields["eui64"]);
        var lbafs = Assert.IsAssignableFrom<IReadOnlyList<IReadOnlyList<(string JsonName, object Value)>>>(fields["lbafs"]);
        Assert.Equal([("ms", (object)8), ("ds", 12), ("rp", 1)], lbafs[2]);
    }

    [Fact]
    public void FieldsOfAStructureWithoutRawBytesReadZero()
    {
        var ns = new IdentifyNamespace { SizeInBlocks = 1, Capacity = 1, Utilization = 0, Features = 0, FormattedLbaSize = 0, LbaFormats = [new(0, 9, 0)] };
        Assert.Equal(0, ns.OptimalIoBoundary);
        Assert.Equal(UInt128.Zero, ns.NvmCapacity);
        Assert.Equal(new string('0', 32), ns.NguidHex);
    }

    [Fact]
    public void DescriptorListIsWalkedUntilTypeZero()
    {
        var b = new byte[4096];
        int at = NamespaceIdentifier.WriteList(b,
        [
            new(NamespaceIdentifierType.Eui64, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }),
            new(NamespaceIdentifierType.Nguid, Enumerable.Range(0, 16).Select(i => (byte)i).ToArray()),
            new(NamespaceIdentifierType.CommandSetIdentifier, new byte[] { 0 }),
        ]);
        Assert.Equal(12 + 20 + 5, at);                 // 4-byte header and NIDL bytes each (Figure 247)
        Assert.Equal([1, 8, 0, 0], b[..4]);
        // A descriptor of a type this library does not know (here 7, 3 bytes) is stepped over by its NIDL.
        b[at] = 7; b[at + 1] = 3;
        b[at + 7] = (byte)NamespaceIdentifierType.Uuid; b[at + 8] = 16;
        var list = NamespaceIdentifier.ParseList(b);
        Assert.Equal([NamespaceIdentifierType.Eui64, NamespaceIdentifierType.Nguid, NamespaceIdentifierType.CommandSetIdentifier, NamespaceIdentifierType.Uuid],
            list.Select(d => d.Type));
        Assert.Equal("0102030405060708", list[0].Hex);
        Assert.Empty(NamespaceIdentifier.ParseList(new byte[4096]));
    }

    [Theory]
    [InlineData(1, 16)]   // EUI64 is 8 bytes
    [InlineData(3, 8)]    // UUID is 16
    [InlineData(4, 2)]    // CSI is 1
    [InlineData(9, 0)]    // NIDL 0 never advances
    public void BadDescriptorLengthsAreFormatErrors(byte type, byte length)
    {
        var b = new byte[4096];
        b[0] = type;
        b[1] = length;
        Assert.Throws<FormatException>(() => NamespaceIdentifier.ParseList(b));
    }

    [Fact]
    public void ADescriptorRunningPastTheListIsAFormatError()
    {
        // Descriptors of an unknown type with NIDL 255 take 259 bytes each: the 16th starts at byte 3885 and would end
        // at 4144, past the 4 KiB list.
        var b = new byte[4096];
        for (int at = 0; at + 4 <= b.Length; at += 259) { b[at] = 9; b[at + 1] = 255; }
        Assert.Throws<FormatException>(() => NamespaceIdentifier.ParseList(b));
    }

    [Fact]
    public void ControllerListRoundTripsAndRejectsBadCounts()
    {
        var b = new byte[4096];
        Assert.Equal(8, ControllerList.Write(b, [1, 2, 0xFFEF]));
        Assert.Equal(3, BinaryPrimitives.ReadUInt16LittleEndian(b));
        Assert.Equal([1, 2, 0xFFEF], ControllerList.Parse(b));
        Assert.Equal(2047, ControllerList.Parse(WithCount(2047)).Length);
        Assert.Throws<FormatException>(() => ControllerList.Parse(WithCount(2048)));
        Assert.Throws<FormatException>(() => ControllerList.Parse(new byte[] { 3, 0, 1, 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerList.Write(b, new ushort[2048]));

        static byte[] WithCount(ushort n)
        {
            var d = new byte[4096];
            BinaryPrimitives.WriteUInt16LittleEndian(d, n);
            return d;
        }
    }

    [Fact]
    public void NamespaceListsMustAscend()
    {
        var b = new byte[4096];
        uint[] ids = [2, 5, 9];
        for (int i = 0; i < ids.Length; i++) { BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4 * i), ids[i]); }
        Assert.Equal(ids, NamespaceIdList.Parse(b));
        Assert.Equal(ids, NamespaceIdList.Parse(b, startAfter: 1));
        Assert.Throws<FormatException>(() => NamespaceIdList.Parse(b, startAfter: 2));   // 2 is not above 2
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), 0xFFFF_FFFF);
        Assert.Throws<FormatException>(() => NamespaceIdList.Parse(b));
    }

    [Fact]
    public void ManagementAttachmentAndIdentifyCommands()
    {
        // §5.20 Figure 262: SEL in CDW10 3:0; create has NSID 0 (reserved).
        var create = NvmeCommand.NamespaceManagement(NamespaceManagementSelect.Create, 7);
        Assert.Equal(0x0D, create.Opcode);
        Assert.Equal(0u, create.Nsid);
        Assert.Equal(0u, create.Cdw10);
        var delete = NvmeCommand.NamespaceManagement(NamespaceManagementSelect.Delete, 7);
        Assert.Equal((7u, 1u), (delete.Nsid, delete.Cdw10));
        // §5.19 Figure 259.
        var detach = NvmeCommand.NamespaceAttachment(NamespaceAttachmentSelect.Detach, 3);
        Assert.Equal((0x15, 3u, 1u), (detach.Opcode, detach.Nsid, detach.Cdw10));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.NamespaceAttachment((NamespaceAttachmentSelect)2, 1));
        // §5.15.1 Figure 241: CNTID in CDW10 31:16.
        var id = NvmeCommand.Identify(IdentifyCns.AttachedControllers, 4, 0x1234, default, default);
        Assert.Equal(0x1234_0012u, id.Cdw10);
        Assert.Equal([0x03, 0x10, 0x11, 0x12, 0x13], new[] { IdentifyCns.NamespaceDescriptors, IdentifyCns.AllocatedNamespaces,
            IdentifyCns.AllocatedNamespace, IdentifyCns.AttachedControllers, IdentifyCns.SubsystemControllers }.Select(c => (int)c));
    }

    [Fact]
    public void CreateDataSitsAtIdentifyNamespaceOffsets()
    {
        var b = new byte[4096];
        b.AsSpan().Fill(0xFF);
        new NamespaceCreateData(100, 90, NamespaceCreateData.FlbasFor(17), DataProtection: 2, MultiPathSharing: 1, AnaGroupId: 5, NvmSetId: 6).Write(b);
        Assert.Equal(100UL, BinaryPrimitives.ReadUInt64LittleEndian(b));
        Assert.Equal(90UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(8)));
        Assert.Equal(0x21, b[26]);            // format 17: bits 3:0 = 1, bits 6:5 = 1
        Assert.Equal(2, b[29]);
        Assert.Equal(1, b[30]);
        Assert.Equal(5u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(92)));
        Assert.Equal(6, BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(100)));
        Assert.Equal(0, b[24]);               // everything else reserved
        Assert.Equal(new NamespaceCreateData(100, 90, 0x21, 2, 1, 5, 6), NamespaceCreateData.Read(b));
        Assert.Throws<ArgumentOutOfRangeException>(() => NamespaceCreateData.FlbasFor(64));
    }

    [Fact]
    public void FormatNvmDword10()
    {
        // §5.23 Figure 281: LBAF 3:0, MSET 4, PI 7:5, PIL 8, SES 11:9; NVMe 2.0 LBAFU 13:12.
        var c = NvmeCommand.FormatNvm(0xFFFF_FFFF, 0x23, SecureErase.Cryptographic, protectionInformation: 3, metadataExtended: true, protectionFirst: true);
        Assert.Equal(0x80, c.Opcode);
        Assert.Equal(0xFFFF_FFFFu, c.Nsid);
        Assert.Equal(3u | 1u << 4 | 3u << 5 | 1u << 8 | 2u << 9 | 2u << 12, c.Cdw10);
        Assert.Equal(0x23, c.FormatIndex);
        Assert.Equal(SecureErase.Cryptographic, c.FormatSecureErase);
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FormatNvm(1, 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.FormatNvm(1, 0, protectionInformation: 8));
    }

    [Fact]
    public void CompareAndDatasetManagementCommands()
    {
        var cmp = NvmeCommand.Compare(1, 0x1_0000_0002, 8, new(0x1000), new(0x2000));
        Assert.Equal(0x05, cmp.Opcode);
        Assert.Equal((2u, 1u, 7u), (cmp.Cdw10, cmp.Cdw11, cmp.Cdw12));
        var dsm = NvmeCommand.DatasetManagement(1, 256, DsmAttributes.Deallocate | DsmAttributes.IntegralRead, new(0x3000));
        Assert.Equal((0x09, 255u, 5u), (dsm.Opcode, dsm.Cdw10, dsm.Cdw11));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.DatasetManagement(1, 257, DsmAttributes.Deallocate, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.DatasetManagement(1, 1, (DsmAttributes)8, default));
        // Figure 363: context attributes.
        Assert.Equal(0x0400_01E5u, DsmContext.Create(accessFrequency: 5, accessLatency: 2, sequentialRead: true, sequentialWrite: true, writePrepare: true, commandAccessSize: 4));
        var list = new byte[4096];
        Assert.Equal(32, DsmContext.WriteRanges(list, [new DsmRange { ContextAttributes = 1, BlockCount = 2, StartingLba = 3 }, new DsmRange { StartingLba = 9 }]));
        Assert.Equal((1u, 2u, 3UL), (BinaryPrimitives.ReadUInt32LittleEndian(list), BinaryPrimitives.ReadUInt32LittleEndian(list.AsSpan(4)),
            BinaryPrimitives.ReadUInt64LittleEndian(list.AsSpan(8))));
        Assert.Equal(9UL, BinaryPrimitives.ReadUInt64LittleEndian(list.AsSpan(24)));
    }

    [Fact]
    public void ControllerNamespaceManagementFields()
    {
        var b = IdentifyTests.QemuController();
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(256), 0x000A);                 // OACS: Format NVM, Namespace Management
        BinaryPrimitives.WriteUInt128LittleEndian(b.AsSpan(280), (UInt128)1 << 70);       // TNVMCAP
        BinaryPrimitives.WriteUInt128LittleEndian(b.AsSpan(296), 12345);                  // UNVMCAP
        b[524] = 4;
        var id = IdentifyController.Parse(b);
        Assert.Equal(OptionalAdminCommands.FormatNvm | OptionalAdminCommands.NamespaceManagement, id.OptionalAdminCommands);
        Assert.Equal((UInt128)1 << 70, id.TotalNvmCapacity);
        Assert.Equal((UInt128)12345, id.UnallocatedNvmCapacity);
        Assert.Equal(4, id.FormatNvmAttributes);
    }

    [Fact]
    public void NamespaceStatusCodesAreNamed()
    {
        Assert.Equal("Namespace Insufficient Capacity", NvmeStatus.Create(CommandSpecificStatusCode.NamespaceInsufficientCapacity).Name);
        Assert.Equal("Controller List Invalid", NvmeStatus.Create(CommandSpecificStatusCode.ControllerListInvalid).Name);
        Assert.Equal("Invalid Format", NvmeStatus.Create(CommandSpecificStatusCode.InvalidFormat).Name);
        var compare = NvmeStatus.Create(StatusCodeType.MediaError, 0x85);
        Assert.Equal("Compare Failure", compare.Name);
        Assert.Equal((byte)MediaErrorStatusCode.CompareFailure, compare.Code);
    }
}
