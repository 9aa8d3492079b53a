using System.Buffers.Binary;
using System.Text;
using Vfio.Nvme.Protocol;

namespace Vfio.Nvme.Tests;

/// <summary>Identify structures parsed from bytes laid out as QEMU 7.2's nvme device fills them (hw/nvme/ctrl.c).</summary>
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
