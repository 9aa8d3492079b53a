using System.Buffers.Binary;
using System.Runtime.InteropServices;
using CsCheck;
using Vfio.Nvme.Protocol;
using Vfio.Nvme.Queues;

namespace Vfio.Nvme.Tests;

public sealed class RegisterTests
{
    [Fact]
    public void CapabilitiesDecodeEveryField()
    {
        // QEMU 7.2's CAP: MQES 0x7ff, CQR, TO 0xf, DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
        var cap = new ControllerCapabilities(0x0040_0020_0F01_07FF);
        Assert.Equal(2048, cap.MaxQueueEntries);
        Assert.True(cap.ContiguousQueuesRequired);
        Assert.Equal(TimeSpan.FromMilliseconds(7500), cap.ReadyTimeout);
        Assert.Equal(0, cap.DoorbellStride);
        Assert.True(cap.SupportsNvmCommandSet);
        Assert.Equal(12, cap.MinPageShift);
        Assert.Equal(16, cap.MaxPageShift);
        Assert.False(cap.SubsystemResetSupported);
    }

    [Theory]
    [InlineData(0, 0, 0x1000, 0x1004)]
    [InlineData(0, 1, 0x1008, 0x100C)]
    [InlineData(0, 5, 0x1028, 0x102C)]
    [InlineData(1, 1, 0x1010, 0x1018)]
    [InlineData(2, 3, 0x1060, 0x1070)]
    public void DoorbellOffsetsFollowTheStride(int stride, int qid, ulong sq, ulong cq)
    {
        Assert.Equal(sq, ControllerRegister.SubmissionTailDoorbell(qid, stride));
        Assert.Equal(cq, ControllerRegister.CompletionHeadDoorbell(qid, stride));
    }

    [Fact]
    public void ControllerConfigurationSetsEntrySizesPageSizeAndShutdown()
    {
        uint cc = ControllerConfiguration.Encode(enable: true, pageShift: 12);
        Assert.Equal(0x0046_0001u, cc);
        Assert.Equal(0x0046_0000u | 1u << 7, ControllerConfiguration.Encode(false, 13));
        Assert.Equal(0x0046_4001u, ControllerConfiguration.WithShutdown(cc, ShutdownNotification.Normal));
        Assert.Equal(0x0046_8001u, ControllerConfiguration.WithShutdown(0x0046_4001u, ShutdownNotification.Abrupt));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerConfiguration.Encode(true, 11));
    }

    [Fact]
    public void StatusAndAdminQueueAttributesDecode()
    {
        Assert.True(ControllerConfiguration.IsReady(0x1));
        Assert.True(ControllerConfiguration.IsFatal(0x3));
        Assert.Equal(ShutdownStatus.Complete, ControllerConfiguration.GetShutdownStatus(0x9));
        Assert.Equal(ShutdownStatus.Occurring, ControllerConfiguration.GetShutdownStatus(0x4));
        Assert.Equal(0x001F_001Fu, ControllerConfiguration.EncodeAdminQueueAttributes(32, 32));
        Assert.Throws<ArgumentOutOfRangeException>(() => ControllerConfiguration.EncodeAdminQueueAttributes(4097, 2));
        Assert.Equal("1.4.0", new NvmeVersion(0x0001_0400).ToString());
    }
}

public sealed class CommandEncodingTests
{
    private static byte[] Bytes(NvmeCommand c) => MemoryMarshal.AsBytes(new ReadOnlySpan<NvmeCommand>(ref c)).ToArray();
    private static uint Dword(byte[] b, int index) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(index * 4));

    [Fact]
    public void EntriesAre64And16Bytes()
    {
        Assert.Equal(64, Marshal.SizeOf<NvmeCommand>());
        Assert.Equal(16, Marshal.SizeOf<NvmeCompletion>());
        Assert.Equal(16, Marshal.SizeOf<DsmRange>());
        Assert.Equal(24, (int)Marshal.OffsetOf<NvmeCommand>(nameof(NvmeCommand.Prp1)));
        Assert.Equal(40, (int)Marshal.OffsetOf<NvmeCommand>(nameof(NvmeCommand.Cdw10)));
        Assert.Equal(14, (int)Marshal.OffsetOf<NvmeCompletion>(nameof(NvmeCompletion.StatusAndPhase)));
    }

    [Fact]
    public void ReadPutsOpcodeCidNsidPrpsLbaAndZeroBasedCount()
    {
        var c = NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0x1_2345_6789, 8, 0xAAAA_0000, 0xBBBB_0000);
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
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.ReadWrite(NvmOpcode.Write, 1, 0, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.ReadWrite(NvmOpcode.Flush, 1, 0, 1, 0, 0));
    }

    [Fact]
    public void AdminCommandsEncodeTheirDwords()
    {
        var cq = Bytes(NvmeCommand.CreateIoCompletionQueue(3, 256, 0x10_0000, interruptsEnabled: true, vector: 3));
        Assert.Equal(0x05u, Dword(cq, 0) & 0xFF);
        Assert.Equal(3u | 255u << 16, Dword(cq, 10));
        Assert.Equal(1u | 2u | 3u << 16, Dword(cq, 11));
        var polled = Bytes(NvmeCommand.CreateIoCompletionQueue(3, 256, 0x10_0000, interruptsEnabled: false, vector: 0));
        Assert.Equal(1u, Dword(polled, 11));
        var sq = Bytes(NvmeCommand.CreateIoSubmissionQueue(3, 256, 0x20_0000, 3));
        Assert.Equal(0x01u, Dword(sq, 0) & 0xFF);
        Assert.Equal(1u | 3u << 16, Dword(sq, 11));
        var nq = Bytes(NvmeCommand.SetNumberOfQueues(4, 4));
        Assert.Equal(0x09u, Dword(nq, 0) & 0xFF);
        Assert.Equal(0x07u, Dword(nq, 10));
        Assert.Equal(3u | 3u << 16, Dword(nq, 11));
        var id = Bytes(NvmeCommand.Identify(IdentifyCns.Controller, 0, 0x3000, 0));
        Assert.Equal(0x06u, Dword(id, 0) & 0xFF);
        Assert.Equal(1u, Dword(id, 10));
        Assert.Equal(0x04u, Dword(Bytes(NvmeCommand.DeleteIoCompletionQueue(7)), 0) & 0xFF);
        Assert.Equal(7u, Dword(Bytes(NvmeCommand.DeleteIoSubmissionQueue(7)), 10));
        var dsm = Bytes(NvmeCommand.Deallocate(1, 2, 0x5000));
        Assert.Equal(1u, Dword(dsm, 10));
        Assert.Equal(4u, Dword(dsm, 11));
        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeCommand.CreateIoSubmissionQueue(0, 16, 0, 0));
    }

    [Fact]
    public void CompletionStatusDecodesTypeCodeDnrMoreAndPhase()
    {
        // QEMU's LBA Out of Range: NVME_LBA_RANGE | NVME_DNR = 0x4080, shifted above the phase tag.
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, 0xDEAD);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), 5);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(10), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(12), 42);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(14), (ushort)(0x4080 << 1 | 1));
        var c = MemoryMarshal.Read<NvmeCompletion>(bytes);
        Assert.True(c.Phase);
        Assert.Equal(42, c.CommandId);
        Assert.Equal(5, c.SubmissionQueueHead);
        Assert.Equal(0xDEADu, c.Dw0);
        var s = c.Status;
        Assert.False(s.IsSuccess);
        Assert.Equal(StatusCodeType.Generic, s.Type);
        Assert.Equal(0x80, s.Code);
        Assert.True(s.DoNotRetry);
        Assert.False(s.More);
        Assert.Equal("LBA Out of Range", s.Name);
        var more = NvmeStatus.Create(StatusCodeType.MediaError, 0x81, more: true, retryDelay: 2);
        Assert.Equal(StatusCodeType.MediaError, more.Type);
        Assert.True(more.More);
        Assert.Equal(2, more.RetryDelay);
        Assert.True(NvmeStatus.FromStatusAndPhase(1).IsSuccess);
    }

    [Fact]
    public void CommandInfoNamesTheCommand()
    {
        var c = NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 100, 8, 0, 0);
        c.CommandId = 5;
        var text = NvmeCommandInfo.From(2, c).ToString();
        Assert.Contains("Read", text);
        Assert.Contains("cid 5", text);
        Assert.Contains("LBA 100..107", text);
        Assert.Equal("CreateIoSubmissionQueue", NvmeCommandInfo.From(0, NvmeCommand.CreateIoSubmissionQueue(1, 2, 0, 1)).OpcodeName);
    }
}

public sealed class QueueMathTests
{
    [Fact]
    public void PhaseFlipsEachTimeTheHeadWraps()
    {
        int head = 0;
        bool phase = true;
        var seen = new List<(int, bool)>();
        for (int i = 0; i < 7; i++)
        {
            seen.Add((head, phase));
            QueueMath.AdvanceHead(ref head, ref phase, 3);
        }
        Assert.Equal([(0, true), (1, true), (2, true), (0, false), (1, false), (2, false), (0, true)], seen);
    }

    [Fact]
    public void FullMeansOneSlotLeftEmpty()
    {
        Assert.True(QueueMath.IsFull(0, 3, 4));
        Assert.False(QueueMath.IsFull(0, 2, 4));
        Assert.True(QueueMath.IsFull(2, 1, 4));
        Assert.Equal(3, QueueMath.Used(1, 0, 4));
        Assert.Equal(0, QueueMath.Used(2, 2, 4));
        Assert.Equal(0, QueueMath.Next(3, 4));
    }

    [Fact]
    public void UsedAndNextAgreeForAnyRing()
    {
        Gen.Int[2, 4096].SelectMany(n => Gen.Int[0, n - 1].SelectMany(h => Gen.Int[0, n - 1].Select(t => (n, h, t))))
            .Sample(x =>
            {
                var (n, h, t) = x;
                int used = QueueMath.Used(h, t, n);
                return used >= 0 && used < n
                    && QueueMath.Used(h, QueueMath.Next(t, n), n) == (used + 1) % n
                    && QueueMath.IsFull(h, t, n) == (used == n - 1);
            });
    }
}
