using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// The 16-byte completion queue entry and its status field against NVMe Base 1.4 §4.6 "Completion Queue Entry"
/// (Figure 124), §4.6.1 "Status Field Definition" (Figure 126) and the status code tables of §4.6.1.1-§4.6.1.2.
/// </summary>
public sealed class CompletionEntryTests
{
    [Theory]
    [InlineData(nameof(NvmeCompletion.Dw0), 0)]                    // DW0, command specific
    [InlineData(nameof(NvmeCompletion.Dw1), 4)]                    // DW1, reserved
    [InlineData(nameof(NvmeCompletion.SubmissionQueueHead), 8)]    // DW2 15:00 SQHD
    [InlineData(nameof(NvmeCompletion.SubmissionQueueId), 10)]     // DW2 31:16 SQID
    [InlineData(nameof(NvmeCompletion.CommandId), 12)]             // DW3 15:00 CID
    [InlineData(nameof(NvmeCompletion.StatusAndPhase), 14)]        // DW3 16 P, 31:17 status field
    public void EveryFieldIsAtItsOffset(string field, int offset)
    {
        // §4.6, Figure 124.
        Assert.Equal(offset, (int)Marshal.OffsetOf<NvmeCompletion>(field));
        Assert.Equal(NvmeCompletion.Size, Unsafe.SizeOf<NvmeCompletion>());
        Assert.Equal(16, NvmeCompletion.Size);
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
        Assert.Equal(1, c.SubmissionQueueId);
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
    public void StatusFieldPartsSitAtTheirBits()
    {
        // §4.6.1, Figure 126, counted in the 15-bit status field above the phase tag: SC 07:00, SCT 10:08,
        // CRD 12:11, M 13, DNR 14. Each part alone, so that a shifted mask cannot pass.
        Assert.Equal(0xA5, new NvmeStatus(0x00A5).Code);
        Assert.Equal(StatusCodeType.Generic, new NvmeStatus(0x00FF).Type);
        Assert.Equal(StatusCodeType.VendorSpecific, new NvmeStatus(7 << 8).Type);
        Assert.Equal(0, new NvmeStatus(7 << 8).Code);
        Assert.Equal(3, new NvmeStatus(3 << 11).RetryDelay);
        Assert.Equal(StatusCodeType.Generic, new NvmeStatus(3 << 11).Type);
        Assert.True(new NvmeStatus(1 << 13).More);
        Assert.False(new NvmeStatus(1 << 13).DoNotRetry);
        Assert.True(new NvmeStatus(1 << 14).DoNotRetry);
        Assert.Equal(0, new NvmeStatus(1 << 14).RetryDelay);
        // Success is SCT 0 and SC 0 whatever CRD, M and DNR say.
        Assert.True(new NvmeStatus(0x7800).IsSuccess);
        Assert.False(new NvmeStatus(0x0100).IsSuccess);
        // Create puts each part back where decoding finds it.
        Assert.Equal((ushort)(0x13 | 1 << 8 | 2 << 11 | 1 << 13 | 1 << 14),
            NvmeStatus.Create(StatusCodeType.CommandSpecific, 0x13, doNotRetry: true, more: true, retryDelay: 2).Value);
        // The phase tag is bit 0 of the last word (DW3 bit 16); the status field is bits 15:01.
        Assert.Equal(0x4080, NvmeStatus.FromStatusAndPhase(0x4080 << 1).Value);
        Assert.Equal(0x4080, NvmeStatus.FromStatusAndPhase(0x4080 << 1 | 1).Value);
        Assert.False(new NvmeCompletion { StatusAndPhase = 0xFFFE }.Phase);
    }

    [Fact]
    public void StatusCodeTypesAndCodesAreThoseOfTheTables()
    {
        // §4.6.1.1, Figure 125: status code types.
        Assert.Equal(0, (int)StatusCodeType.Generic);
        Assert.Equal(1, (int)StatusCodeType.CommandSpecific);
        Assert.Equal(2, (int)StatusCodeType.MediaError);
        Assert.Equal(3, (int)StatusCodeType.Path);
        Assert.Equal(7, (int)StatusCodeType.VendorSpecific);
        // §4.6.1.2.1: generic command status (and its NVM command set values from 80h).
        Assert.Equal(0x00, (byte)GenericStatusCode.SuccessfulCompletion);
        Assert.Equal(0x01, (byte)GenericStatusCode.InvalidCommandOpcode);
        Assert.Equal(0x02, (byte)GenericStatusCode.InvalidField);
        Assert.Equal(0x03, (byte)GenericStatusCode.CommandIdConflict);
        Assert.Equal(0x04, (byte)GenericStatusCode.DataTransferError);
        Assert.Equal(0x06, (byte)GenericStatusCode.InternalError);
        Assert.Equal(0x07, (byte)GenericStatusCode.CommandAbortRequested);
        Assert.Equal(0x08, (byte)GenericStatusCode.CommandAbortedSqDeletion);
        Assert.Equal(0x0B, (byte)GenericStatusCode.InvalidNamespaceOrFormat);
        Assert.Equal(0x0C, (byte)GenericStatusCode.CommandSequenceError);
        Assert.Equal(0x13, (byte)GenericStatusCode.InvalidPrpOffset);
        Assert.Equal(0x80, (byte)GenericStatusCode.LbaOutOfRange);
        Assert.Equal(0x81, (byte)GenericStatusCode.CapacityExceeded);
        Assert.Equal(0x82, (byte)GenericStatusCode.NamespaceNotReady);
        // §4.6.1.2.2: command specific status of the queue management commands.
        Assert.Equal(0x00, (byte)CommandSpecificStatusCode.CompletionQueueInvalid);
        Assert.Equal(0x01, (byte)CommandSpecificStatusCode.InvalidQueueIdentifier);
        Assert.Equal(0x02, (byte)CommandSpecificStatusCode.InvalidQueueSize);
        Assert.Equal(0x08, (byte)CommandSpecificStatusCode.InvalidInterruptVector);
        Assert.Equal(0x0C, (byte)CommandSpecificStatusCode.InvalidQueueDeletion);
        // §4.6.1.2.3: media and data integrity errors.
        Assert.Equal(0x81, (byte)MediaErrorStatusCode.UnrecoveredReadError);
    }

    [Fact]
    public void TypedCreatorsPickTheStatusCodeType()
    {
        var generic = NvmeStatus.Create(GenericStatusCode.InvalidPrpOffset, doNotRetry: true);
        Assert.Equal(StatusCodeType.Generic, generic.Type);
        Assert.Equal(0x13, generic.Code);
        Assert.True(generic.DoNotRetry);
        Assert.Equal("Invalid PRP Offset", generic.Name);
        var specific = NvmeStatus.Create(CommandSpecificStatusCode.InvalidQueueDeletion);
        Assert.Equal(StatusCodeType.CommandSpecific, specific.Type);
        Assert.Equal(0x0C, specific.Code);
        Assert.False(specific.DoNotRetry);
        Assert.Equal("Invalid Queue Deletion", specific.Name);
        // The same code means different things under different types.
        Assert.Equal("Invalid Queue Identifier", NvmeStatus.Create(CommandSpecificStatusCode.InvalidQueueIdentifier).Name);
        Assert.Equal("Invalid Command Opcode", NvmeStatus.Create(GenericStatusCode.InvalidCommandOpcode).Name);
        Assert.Null(NvmeStatus.Create(StatusCodeType.VendorSpecific, 0x01).Name);
    }
}
