using System.Buffers.Binary;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// The completion queue entry check (NVMe 1.4 §4.6) as a pure function: each violation kind, the valid cases next to
/// them, the phase tag, and the SQHD window across the wrap.
/// </summary>
public sealed class CompletionCheckTests
{
    private const int Queue = 3, Entries = 8;

    /// <summary>A slot table as a bit mask of outstanding CIDs 0-63.</summary>
    private readonly struct Outstanding(ulong mask) : IOutstandingCommands
    {
        public bool IsOutstanding(ushort commandId) => commandId < 64 && (mask >> commandId & 1) != 0;
    }

    private static NvmeCompletion Entry(ushort cid = 5, ushort sqid = Queue, ushort sqhd = 2, bool phase = true, NvmeStatus status = default) => new()
    {
        CommandId = cid,
        SubmissionQueueId = sqid,
        SubmissionQueueHead = sqhd,
        StatusAndPhase = (ushort)(status.Value << 1 | (phase ? 1 : 0)),
    };

    private static CompletionVerdict Check(in NvmeCompletion entry, ulong outstanding = 1UL << 5, bool expectedPhase = true, SubmissionWindow window = default) =>
        CompletionCheck.Check(entry, Queue, Entries, expectedPhase, new Outstanding(outstanding), window);

    [Fact]
    public void An_entry_for_an_outstanding_command_on_this_queue_is_valid()
    {
        Assert.Equal(CompletionVerdict.Valid, Check(Entry()));
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(sqhd: Entries - 1)));
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(phase: false), expectedPhase: false));
    }

    [Fact]
    public void An_entry_with_the_previous_phase_is_not_posted_whatever_else_it_holds()
    {
        Assert.Equal(CompletionVerdict.NotPosted, Check(Entry(phase: false)));
        Assert.Equal(CompletionVerdict.NotPosted, Check(Entry(cid: 60, sqid: 9, sqhd: 999, phase: true), expectedPhase: false));
    }

    [Fact]
    public void A_completion_naming_another_submission_queue_is_rejected()
    {
        Assert.Equal(CompletionVerdict.WrongQueue, Check(Entry(sqid: Queue + 1)));
        Assert.Equal(CompletionVerdict.WrongQueue, Check(Entry(sqid: 0)));
    }

    [Fact]
    public void A_head_outside_the_queue_is_rejected()
    {
        Assert.Equal(CompletionVerdict.HeadOutsideQueue, Check(Entry(sqhd: Entries)));
        Assert.Equal(CompletionVerdict.HeadOutsideQueue, Check(Entry(sqhd: ushort.MaxValue)));
    }

    [Fact]
    public void A_cid_that_is_not_outstanding_is_rejected()
    {
        Assert.Equal(CompletionVerdict.CommandNotOutstanding, Check(Entry(cid: 4)));
        Assert.Equal(CompletionVerdict.CommandNotOutstanding, Check(Entry(cid: 5), outstanding: 0));
        Assert.Equal(CompletionVerdict.CommandNotOutstanding, Check(Entry(cid: ushort.MaxValue)));
    }

    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void A_reserved_status_code_type_is_rejected(int type)
    {
        var status = NvmeStatus.Create((StatusCodeType)type, 0x01);
        Assert.Equal(CompletionVerdict.ReservedStatusCodeType, Check(Entry(status: status)));
    }

    [Theory]
    [InlineData(StatusCodeType.Generic, (byte)GenericStatusCode.InvalidField)]
    [InlineData(StatusCodeType.CommandSpecific, (byte)CommandSpecificStatusCode.InvalidQueueIdentifier)]
    [InlineData(StatusCodeType.MediaError, (byte)MediaErrorStatusCode.UnrecoveredReadError)]
    [InlineData(StatusCodeType.Path, 0x00)]
    [InlineData(StatusCodeType.VendorSpecific, 0xff)]
    public void Failed_commands_with_defined_status_code_types_are_valid_completions(StatusCodeType type, byte code)
    {
        var status = NvmeStatus.Create(type, code, doNotRetry: true, more: true, retryDelay: 3);
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(status: status)));
    }

    [Fact]
    public void The_first_failing_field_is_reported_in_the_documented_order()
    {
        var everything = Entry(cid: 4, sqid: 1, sqhd: 100, status: NvmeStatus.Create((StatusCodeType)5, 0));
        Assert.Equal(CompletionVerdict.WrongQueue, Check(everything));
        Assert.Equal(CompletionVerdict.HeadOutsideQueue, Check(everything with { SubmissionQueueId = Queue }));
        Assert.Equal(CompletionVerdict.CommandNotOutstanding, Check(everything with { SubmissionQueueId = Queue, SubmissionQueueHead = 1 }));
        Assert.Equal(CompletionVerdict.ReservedStatusCodeType, Check(everything with { SubmissionQueueId = Queue, SubmissionQueueHead = 1, CommandId = 5 }));
    }

    [Theory]
    [InlineData(2, 5, 2)]   // no entry consumed since the last completion
    [InlineData(2, 5, 4)]
    [InlineData(2, 5, 5)]   // everything submitted consumed
    [InlineData(6, 2, 7)]   // the window wraps: 6, 7, 0, 1, up to 2
    [InlineData(6, 2, 0)]
    [InlineData(6, 2, 2)]
    public void A_head_between_the_last_head_and_the_tail_is_valid(int lastHead, int tail, ushort sqhd) =>
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(sqhd: sqhd), window: SubmissionWindow.Tracked(lastHead, tail)));

    [Theory]
    [InlineData(2, 5, 6)]   // past the tail: entries never submitted
    [InlineData(2, 5, 1)]   // backwards
    [InlineData(6, 2, 3)]
    [InlineData(6, 2, 5)]
    [InlineData(2, 2, 3)]   // nothing submitted, yet the head moved
    public void A_head_past_the_tail_or_moving_backwards_is_rejected(int lastHead, int tail, ushort sqhd) =>
        Assert.Equal(CompletionVerdict.HeadPastTail, Check(Entry(sqhd: sqhd), window: SubmissionWindow.Tracked(lastHead, tail)));

    [Fact]
    public void Without_a_tracked_window_any_head_inside_the_queue_is_valid()
    {
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(sqhd: 1), window: SubmissionWindow.None));
        Assert.Equal(CompletionVerdict.Valid, Check(Entry(sqhd: 1)));
    }

    [Fact]
    public void The_reaper_form_keeps_the_messages_it_had_and_names_the_status_violation()
    {
        Assert.Null(CompletionCheck.Violation(Entry(), Queue, Entries, commandOutstanding: true));
        Assert.Equal("SQID 4, but this is the completion queue of SQ 3", CompletionCheck.Violation(Entry(sqid: 4), Queue, Entries, true));
        Assert.Equal("SQHD 8, but the queue has 8 entries", CompletionCheck.Violation(Entry(sqhd: 8), Queue, Entries, true));
        Assert.Equal("CID 5, which is not outstanding on this queue", CompletionCheck.Violation(Entry(), Queue, Entries, false));
        Assert.Equal("status code type 6h, which NVMe 1.4 reserves",
            CompletionCheck.Violation(Entry(status: NvmeStatus.Create((StatusCodeType)6, 0)), Queue, Entries, true));
    }

    [Fact]
    public void Describe_has_no_text_for_valid_or_unposted_entries_and_names_the_window()
    {
        Assert.Null(CompletionCheck.Describe(CompletionVerdict.Valid, Entry(), Queue, Entries));
        Assert.Null(CompletionCheck.Describe(CompletionVerdict.NotPosted, Entry(), Queue, Entries));
        Assert.Equal("SQHD 6, outside the entries submitted since the last head (2 up to the tail 5)",
            CompletionCheck.Describe(CompletionVerdict.HeadPastTail, Entry(sqhd: 6), Queue, Entries, SubmissionWindow.Tracked(2, 5)));
    }

    [Fact]
    public void A_raw_entry_decodes_as_figure_124_lays_it_out()
    {
        var raw = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(raw, 0xdead_beef);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(4), 0x0102_0304);
        BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(8), 7);
        BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(10), Queue);
        BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(12), 5);
        BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(14), 0x8005);   // DNR, SC 02h, phase 1
        var e = CompletionCheck.Decode(raw);
        Assert.Equal((0xdead_beefu, 0x0102_0304u, (ushort)7, (ushort)Queue, (ushort)5), (e.Dw0, e.Dw1, e.SubmissionQueueHead, e.SubmissionQueueId, e.CommandId));
        Assert.True(e.Phase);
        Assert.Equal((byte)GenericStatusCode.InvalidField, e.Status.Code);
        Assert.True(e.Status.DoNotRetry);
        Assert.Equal(CompletionVerdict.Valid, Check(e));
        Assert.Throws<ArgumentException>(() => CompletionCheck.Decode(raw.AsSpan(0, 15)));
    }
}
