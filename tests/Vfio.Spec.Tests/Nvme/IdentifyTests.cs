using System.Buffers.Binary;
using System.Text;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// The Identify data structures (NVMe Base 1.4 §5.15.2) parsed from bytes laid out as the specification places them,
/// and as QEMU 7.2's nvme device fills them (hw/nvme/ctrl.c).
/// </summary>
public sealed class IdentifyTests
{
    internal static byte[] QemuController()
    {
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1b36);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 0x1af4);
        Field(b, 4, 20, "VFIOLAB0001");
        Field(b, 24, 40, "QEMU NVMe Ctrl");
        Field(b, 64, 8, "7.2.0");
        b[77] = 7;                                              // MDTS: 2^7 pages = 512 KiB
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(80), 0x0001_0400);
        b[512] = 0x66; b[513] = 0x44;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(516), 256);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(520), 0x015D);   // compare, DSM, write zeroes, timestamp, verify, copy
        b[525] = 1;
        Encoding.ASCII.GetBytes("nqn.2019-08.org.qemu:VFIOLAB0001", b.AsSpan(768));
        return b;
    }

    private static void Field(byte[] b, int at, int length, string text)
    {
        b.AsSpan(at, length).Fill((byte)' ');
        Encoding.ASCII.GetBytes(text, b.AsSpan(at));
    }

    [Fact]
    public void ControllerFieldsAreParsedAndTrimmed()
    {
        var id = IdentifyController.Parse(QemuController());
        Assert.Equal(0x1b36, id.VendorId);
        Assert.Equal("VFIOLAB0001", id.SerialNumber);
        Assert.Equal("QEMU NVMe Ctrl", id.ModelNumber);
        Assert.Equal("7.2.0", id.FirmwareRevision);
        Assert.Equal(524288UL, id.MaxTransferBytes(12));
        Assert.Equal(256u, id.NamespaceCount);
        Assert.True(id.OptionalCommands.HasFlag(OptionalNvmCommands.WriteZeroes));
        Assert.True(id.OptionalCommands.HasFlag(OptionalNvmCommands.DatasetManagement));
        Assert.False(id.OptionalCommands.HasFlag(OptionalNvmCommands.WriteUncorrectable));
        Assert.True(id.VolatileWriteCache);
        Assert.Equal("1.4.0", id.Version.ToString());
        Assert.Equal("nqn.2019-08.org.qemu:VFIOLAB0001", id.SubsystemNqn);
        Assert.Throws<ArgumentException>(() => IdentifyController.Parse(new byte[100]));
    }

    [Fact]
    public void ControllerFieldsAreReadFromTheirOffsets()
    {
        // NVMe 1.4 §5.15.2.2, Figure 247: VID 01:00, SSVID 03:02, SN 23:04, MN 63:24, FR 71:64, MDTS 77, CNTLID 79:78,
        // VER 83:80, SQES 512, CQES 513, MAXCMD 515:514, NN 519:516, ONCS 521:520, VWC 525, SUBNQN 1023:768.
        // Distinct values in every field, so a field read one byte off cannot match.
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1122);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 0x3344);
        Field(b, 4, 20, "SSSSSSSSSSSSSSSSSSSS");
        Field(b, 24, 40, "MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM");
        Field(b, 64, 8, "FFFFFFFF");
        b[77] = 0x55;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(78), 0x6677);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(80), 0x0002_0100);
        b[512] = 0x76;
        b[513] = 0x54;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(514), 0x8899);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(516), 0xAABB_CCDD);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(520), 0x00A5);
        b[525] = 0xFE;                                          // bit 0 clear: no volatile write cache
        Field(b, 768, 256, new string('Q', 256));
        var id = IdentifyController.Parse(b);
        Assert.Equal(0x1122, id.VendorId);
        Assert.Equal(0x3344, id.SubsystemVendorId);
        Assert.Equal(new string('S', 20), id.SerialNumber);
        Assert.Equal(new string('M', 40), id.ModelNumber);
        Assert.Equal("FFFFFFFF", id.FirmwareRevision);
        Assert.Equal(0x55, id.MaxDataTransferShift);
        Assert.Equal(0x6677, id.ControllerId);
        Assert.Equal("2.1.0", id.Version.ToString());
        Assert.Equal(0x76, id.SubmissionEntrySizes);
        Assert.Equal(0x54, id.CompletionEntrySizes);
        Assert.Equal(0x8899, id.MaxCommands);
        Assert.Equal(0xAABB_CCDDu, id.NamespaceCount);
        Assert.Equal((OptionalNvmCommands)0x00A5, id.OptionalCommands);
        Assert.False(id.VolatileWriteCache);
        Assert.Equal(new string('Q', 256), id.SubsystemNqn);
        Assert.Equal(4096, IdentifyController.Size);
    }

    [Fact]
    public void OptionalCommandBitsAreThoseOfOncs()
    {
        // §5.15.2.2, ONCS bits: 0 Compare, 1 Write Uncorrectable, 2 Dataset Management, 3 Write Zeroes,
        // 4 Save/Select in Set/Get Features, 5 Reservations, 6 Timestamp, 7 Verify.
        Assert.Equal(1 << 0, (int)OptionalNvmCommands.Compare);
        Assert.Equal(1 << 1, (int)OptionalNvmCommands.WriteUncorrectable);
        Assert.Equal(1 << 2, (int)OptionalNvmCommands.DatasetManagement);
        Assert.Equal(1 << 3, (int)OptionalNvmCommands.WriteZeroes);
        Assert.Equal(1 << 4, (int)OptionalNvmCommands.SaveAndSelect);
        Assert.Equal(1 << 5, (int)OptionalNvmCommands.Reservations);
        Assert.Equal(1 << 6, (int)OptionalNvmCommands.Timestamp);
        Assert.Equal(1 << 7, (int)OptionalNvmCommands.Verify);
    }

    [Fact]
    public void NoMdtsMeansNoLimit()
    {
        var b = QemuController();
        b[77] = 0;
        Assert.Null(IdentifyController.Parse(b).MaxTransferBytes(12));
    }

    internal static byte[] Namespace(ulong blocks, int flbas, params (int Ms, int Lbads)[] formats)
    {
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt64LittleEndian(b, blocks);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), blocks);
        b[25] = (byte)(formats.Length - 1);
        b[26] = (byte)flbas;
        for (int i = 0; i < formats.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(128 + 4 * i), (uint)formats[i].Ms | (uint)formats[i].Lbads << 16);
        }
        return b;
    }

    // QEMU's eight default formats: 512 and 4096 bytes with 0, 8, 16 and 64 bytes of metadata.
    private static readonly (int, int)[] QemuFormats = [(0, 9), (8, 9), (16, 9), (64, 9), (0, 12), (8, 12), (16, 12), (64, 12)];

    [Theory]
    [InlineData(0, 512, 0)]
    [InlineData(4, 4096, 0)]
    [InlineData(5, 4096, 8)]
    [InlineData(0x10 | 4, 4096, 0)]      // bit 4: metadata at the end of the LBA, not part of the index
    public void BlockSizeComesFromTheFormatFlbasSelects(int flbas, int blockSize, int metadata)
    {
        var ns = IdentifyNamespace.Parse(Namespace(524288, flbas, QemuFormats));
        Assert.Equal(blockSize, ns.BlockSize);
        Assert.Equal(metadata, ns.MetadataSize);
        Assert.Equal(524288UL, ns.SizeInBlocks);
        Assert.Equal(8, ns.LbaFormats.Count);
    }

    [Fact]
    public void NamespaceFieldsAreReadFromTheirOffsets()
    {
        // NVMe 1.4 §5.15.2.1, Figure 245: NSZE 07:00, NCAP 15:08, NUSE 23:16, NSFEAT 24, NLBAF 25 (0's based),
        // FLBAS 26, LBA formats from byte 128, 4 bytes each (Figure 251: MS 15:00, LBADS 23:16, RP 25:24).
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 0x0102_0304_0506_0708);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), 0x1112_1314_1516_1718);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 0x2122_2324_2526_2728);
        b[24] = 0x1F;
        b[25] = 2;
        b[26] = 2;
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(128), 9u << 16);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(132), 0xFFu << 24 | 9u << 16 | 8);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(136), 2u << 24 | 12u << 16 | 64);
        var ns = IdentifyNamespace.Parse(b);
        Assert.Equal(0x0102_0304_0506_0708UL, ns.SizeInBlocks);
        Assert.Equal(0x1112_1314_1516_1718UL, ns.Capacity);
        Assert.Equal(0x2122_2324_2526_2728UL, ns.Utilization);
        Assert.Equal(0x1F, ns.Features);
        Assert.Equal(3, ns.LbaFormats.Count);
        Assert.Equal(new LbaFormat(0, 9, 0), ns.LbaFormats[0]);
        Assert.Equal(new LbaFormat(8, 9, 3), ns.LbaFormats[1]);          // RP is two bits; bits 31:26 are reserved
        Assert.Equal(new LbaFormat(64, 12, 2), ns.LbaFormats[2]);
        Assert.Equal(2, ns.FormatIndex);
        Assert.Equal(4096, ns.BlockSize);
        Assert.Equal(64, ns.MetadataSize);
        Assert.Equal(4096, IdentifyNamespace.Size);
    }

    [Fact]
    public void MoreThanSixteenFormatsUseTheUpperFlbasBits()
    {
        var formats = Enumerable.Range(0, 20).Select(i => (0, i == 17 ? 12 : 9)).ToArray();
        var ns = IdentifyNamespace.Parse(Namespace(100, 1 | 1 << 5, formats));
        Assert.Equal(17, ns.FormatIndex);
        Assert.Equal(4096, ns.BlockSize);
    }

    [Fact]
    public void AFormatOutsideTheListIsRejected()
    {
        Assert.Throws<FormatException>(() => IdentifyNamespace.Parse(Namespace(100, 3, (0, 9))));
        Assert.Throws<FormatException>(() => IdentifyNamespace.Parse(Namespace(100, 0, (0, 0))));
    }

    [Fact]
    public void ActiveNamespaceListEndsAtTheFirstZero()
    {
        var b = new byte[4096];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 3);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), 9);
        Assert.Equal([1u, 3u], IdentifyNamespace.ParseActiveList(b));
        Assert.Empty(IdentifyNamespace.ParseActiveList(new byte[4096]));
    }
}
