using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// The 64-byte submission queue entry against NVMe Base 1.4 §4.2 "Submission Queue Entry – Command Format"
///, the opcodes of §5 (admin) and §6 (NVM
/// command set), and the command dwords of each command the project builds.
/// </summary>
public sealed class SubmissionEntryTests
{
    private static byte[] Bytes(NvmeCommand c) => MemoryMarshal.AsBytes(new ReadOnlySpan<NvmeCommand>(ref c)).ToArray();
    private static uint Dword(byte[] b, int index) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(index * 4));
    private static DmaAddress A(ulong value) => new(value);

    [Fact]
    public void EntriesAre64And16Bytes()
    {
        Assert.Equal(64, Marshal.SizeOf<NvmeCommand>());
        Assert.Equal(16, Marshal.SizeOf<NvmeCompletion>());
        Assert.Equal(16, Marshal.SizeOf<DsmRange>());
        Assert.Equal(24, (int)Marshal.OffsetOf<NvmeCommand>("_prp1"));
        Assert.Equal(40, (int)Marshal.OffsetOf<NvmeCommand>(nameof(NvmeCommand.Cdw10)));
        Assert.Equal(14, (int)Marshal.OffsetOf<NvmeCompletion>(nameof(NvmeCompletion.StatusAndPhase)));
    }

    [Theory]
    [InlineData(nameof(NvmeCommand.Cdw0), 0)]      // CDW0: opcode, FUSE, PSDT, CID
    [InlineData(nameof(NvmeCommand.Nsid), 4)]      // NSID, bytes 07:04
    [InlineData(nameof(NvmeCommand.Cdw2), 8)]      // CDW2, bytes 11:08
    [InlineData(nameof(NvmeCommand.Cdw3), 12)]     // CDW3, bytes 15:12
    [InlineData("_mptr", 16)]                      // MPTR, bytes 23:16
    [InlineData("_prp1", 24)]                      // DPTR PRP entry 1, bytes 31:24
    [InlineData("_prp2", 32)]                      // DPTR PRP entry 2, bytes 39:32
    [InlineData(nameof(NvmeCommand.Cdw10), 40)]
    [InlineData(nameof(NvmeCommand.Cdw11), 44)]
    [InlineData(nameof(NvmeCommand.Cdw12), 48)]
    [InlineData(nameof(NvmeCommand.Cdw13), 52)]
    [InlineData(nameof(NvmeCommand.Cdw14), 56)]
    [InlineData(nameof(NvmeCommand.Cdw15), 60)]    // CDW15, bytes 63:60
    public void EveryFieldIsAtItsOffset(string field, int offset)
    {
        // §4.2, the common command format.
        Assert.Equal(offset, (int)Marshal.OffsetOf<NvmeCommand>(field));
        Assert.Equal(NvmeCommand.Size, Unsafe.SizeOf<NvmeCommand>());
        Assert.Equal(64, NvmeCommand.Size);
    }

    [Fact]
    public void TypedPointersAreTheWireFields()
    {
        // §4.2: MPTR bytes 23:16, PRP1 bytes 31:24, PRP2 bytes 39:32, each a 64-bit little-endian address.
        var c = new NvmeCommand { Mptr = A(0x1111_2222_3333_4440), Prp1 = A(0x5555_6666_7777_8880), Prp2 = A(0x9999_AAAA_BBBB_C000) };
        var b = Bytes(c);
        Assert.Equal(0x1111_2222_3333_4440UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(16)));
        Assert.Equal(0x5555_6666_7777_8880UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(24)));
        Assert.Equal(0x9999_AAAA_BBBB_C000UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(32)));
        var back = MemoryMarshal.Read<NvmeCommand>(b);
        Assert.Equal(c.Mptr, back.Mptr);
        Assert.Equal(c.Prp1, back.Prp1);
        Assert.Equal(c.Prp2, back.Prp2);
    }

    [Fact]
    public void CommandDwordZeroHoldsOpcodeAndIdentifier()
    {
        // §4.2, Command Dword 0: OPC 07:00, FUSE 09:08, PSDT 15:14 (00b: PRPs), CID 31:16.
        var c = new NvmeCommand { Cdw0 = 0x0000_C3A5 };
        c.CommandId = 0xBEEF;
        Assert.Equal(0xBEEF_C3A5u, c.Cdw0);
        Assert.Equal(0xA5, c.Opcode);
        Assert.Equal(0xBEEF, c.CommandId);
        // Commands the project builds use PRPs and no fusing.
        Assert.Equal(0u, NvmeCommand.ReadWrite(NvmOpcode.Write, 1, 0, 1, A(0x1000), default).Cdw0 & 0xFF00);
    }

    [Fact]
    public void OpcodesAreThoseOfTheSpecification()
    {
        // §5, Figure 139 (admin commands).
        Assert.Equal(0x00, (byte)AdminOpcode.DeleteIoSubmissionQueue);
        Assert.Equal(0x01, (byte)AdminOpcode.CreateIoSubmissionQueue);
        Assert.Equal(0x02, (byte)AdminOpcode.GetLogPage);
        Assert.Equal(0x04, (byte)AdminOpcode.DeleteIoCompletionQueue);
        Assert.Equal(0x05, (byte)AdminOpcode.CreateIoCompletionQueue);
        Assert.Equal(0x06, (byte)AdminOpcode.Identify);
        Assert.Equal(0x08, (byte)AdminOpcode.Abort);
        Assert.Equal(0x09, (byte)AdminOpcode.SetFeatures);
        Assert.Equal(0x0A, (byte)AdminOpcode.GetFeatures);
        // §6, Figure 346 (NVM command set).
        Assert.Equal(0x00, (byte)NvmOpcode.Flush);
        Assert.Equal(0x01, (byte)NvmOpcode.Write);
        Assert.Equal(0x02, (byte)NvmOpcode.Read);
        Assert.Equal(0x08, (byte)NvmOpcode.WriteZeroes);
        Assert.Equal(0x09, (byte)NvmOpcode.DatasetManagement);
        // §5.15.1 (Identify CNS) and §5.21.1 (feature identifiers).
        Assert.Equal(0x00, (byte)IdentifyCns.Namespace);
        Assert.Equal(0x01, (byte)IdentifyCns.Controller);
        Assert.Equal(0x02, (byte)IdentifyCns.ActiveNamespaces);
        Assert.Equal(0x07, (byte)FeatureId.NumberOfQueues);
    }

    [Fact]
    public void ReadPutsOpcodeCidNsidPrpsLbaAndZeroBasedCount()
    {
        // §6.9 Read (§6.15 Write): SLBA CDW11:CDW10, NLB CDW12 15:00 (0's based), data at PRP1/PRP2.
        var c = NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0x1_2345_6789, 8, A(0xAAAA_0000), A(0xBBBB_0000));
        c.CommandId = 0x1234;
        var b = Bytes(c);
        Assert.Equal(0x1234_0002u, Dword(b, 0));
        Assert.Equal(1u, Dword(b, 1));
        Assert.Equal(0xAAAA_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(24)));
        Assert.Equal(0xBBBB_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(32)));
        Assert.Equal(0x2345_6789u, Dword(b, 10));
        Assert.Equal(0x1u, Dword(b, 11));
        Assert.Equal(7u, Dword(b, 12));
        Assert.Equal(8, c.BlockCount);
        Assert.Equal(0x1_2345_6789UL, c.StartingLba);
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.ReadWrite(NvmOpcode.Write, 1, 0, 0, default, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.ReadWrite(NvmOpcode.Flush, 1, 0, 1, default, default));
    }

    [Fact]
    public void WriteZeroesAndFlushCarryNoDataPointer()
    {
        // §6.16 Write Zeroes: SLBA and NLB as for Write; §6.8 Flush: opcode and NSID only.
        var wz = NvmeCommand.WriteZeroes(3, 0x10, 65536);
        Assert.Equal((byte)NvmOpcode.WriteZeroes, wz.Opcode);
        Assert.Equal(3u, wz.Nsid);
        Assert.Equal(0x10u, wz.Cdw10);
        Assert.Equal(0xFFFFu, wz.Cdw12);
        Assert.Equal(default, wz.Prp1);
        var flush = Bytes(NvmeCommand.Flush(2));
        Assert.Equal(0u, Dword(flush, 0));
        Assert.Equal(2u, Dword(flush, 1));
        Assert.All(flush.AsSpan(8).ToArray(), x => Assert.Equal(0, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.WriteZeroes(1, 0, 65537));
    }

    [Fact]
    public void AdminCommandsEncodeTheirDwords()
    {
        // §5.3 Create I/O CQ, §5.4 Create I/O SQ, §5.21.1.7 Number of Queues, §5.15 Identify, §5.5/§5.6 Delete, §6.7 DSM.
        var cq = Bytes(NvmeCommand.CreateIoCompletionQueue(3, 256, A(0x10_0000), interruptsEnabled: true, vector: 3));
        Assert.Equal(0x05u, Dword(cq, 0) & 0xFF);
        Assert.Equal(3u | 255u << 16, Dword(cq, 10));
        Assert.Equal(1u | 2u | 3u << 16, Dword(cq, 11));
        Assert.Equal(0x10_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(cq.AsSpan(24)));
        var polled = Bytes(NvmeCommand.CreateIoCompletionQueue(3, 256, A(0x10_0000), interruptsEnabled: false, vector: 0));
        Assert.Equal(1u, Dword(polled, 11));
        var sq = Bytes(NvmeCommand.CreateIoSubmissionQueue(3, 256, A(0x20_0000), 3));
        Assert.Equal(0x01u, Dword(sq, 0) & 0xFF);
        Assert.Equal(1u | 3u << 16, Dword(sq, 11));
        Assert.Equal(0x20_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(sq.AsSpan(24)));
        var nq = Bytes(NvmeCommand.SetNumberOfQueues(4, 4));
        Assert.Equal(0x09u, Dword(nq, 0) & 0xFF);
        Assert.Equal(0x07u, Dword(nq, 10));
        Assert.Equal(3u | 3u << 16, Dword(nq, 11));
        var id = Bytes(NvmeCommand.Identify(IdentifyCns.Controller, 0, A(0x3000), default));
        Assert.Equal(0x06u, Dword(id, 0) & 0xFF);
        Assert.Equal(1u, Dword(id, 10));
        Assert.Equal(0x04u, Dword(Bytes(NvmeCommand.DeleteIoCompletionQueue(7)), 0) & 0xFF);
        Assert.Equal(7u, Dword(Bytes(NvmeCommand.DeleteIoSubmissionQueue(7)), 10));
        var dsm = Bytes(NvmeCommand.Deallocate(1, 2, A(0x5000)));
        Assert.Equal(1u, Dword(dsm, 10));
        Assert.Equal(4u, Dword(dsm, 11));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.CreateIoSubmissionQueue(0, 16, default, 0));
    }

    [Fact]
    public void DatasetManagementRangeIsSixteenBytes()
    {
        // §6.7, Figure 364: context attributes bytes 03:00, length in logical blocks 07:04, starting LBA 15:08.
        Assert.Equal(16, Unsafe.SizeOf<DsmRange>());
        Assert.Equal(0, (int)Marshal.OffsetOf<DsmRange>(nameof(DsmRange.ContextAttributes)));
        Assert.Equal(4, (int)Marshal.OffsetOf<DsmRange>(nameof(DsmRange.BlockCount)));
        Assert.Equal(8, (int)Marshal.OffsetOf<DsmRange>(nameof(DsmRange.StartingLba)));
    }
}
