using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Queues;

/// <summary>What <see cref="CompletionCheck"/> found in one completion queue entry.</summary>
internal enum CompletionVerdict : byte
{
    /// <summary>The entry is posted and every field the host can check is consistent with the queue.</summary>
    Valid,

    /// <summary>The phase tag is the previous pass's: the controller has not written this entry yet (NVMe 1.4 §4.6, Phase Tag). Not a violation.</summary>
    NotPosted,

    /// <summary>SQID names another submission queue than the one this completion queue serves (§4.6, Figure 124 DW2).</summary>
    WrongQueue,

    /// <summary>SQHD is not an index of the submission queue (§4.6, Figure 124 DW2: a head pointer of that queue).</summary>
    HeadOutsideQueue,

    /// <summary>
    /// SQHD lies outside [the last SQHD seen, the host's tail] in ring order: the controller claims to have consumed
    /// entries the host never submitted, or moved its head backwards (§4.1: only the controller advances the head,
    /// and only over entries the host placed before the tail). Checked only when the caller tracks the window.
    /// </summary>
    HeadPastTail,

    /// <summary>CID names no command outstanding on this submission queue (§4.6, Figure 124 DW3: the identifier the host gave).</summary>
    CommandNotOutstanding,

    /// <summary>The status code type is one NVMe 1.4 §4.6.1.1 Figure 125 reserves (4h-6h).</summary>
    ReservedStatusCodeType,
}

/// <summary>Answers whether a command identifier is outstanding on the queue being checked: a read-only view of the driver's slot table.</summary>
internal interface IOutstandingCommands
{
    /// <summary>True when <paramref name="commandId"/> was submitted on this queue and has not been completed.</summary>
    bool IsOutstanding(ushort commandId);
}

/// <summary>
/// The part of the submission queue the controller may report as its head: from the last SQHD the host accepted to
/// the host's tail, in ring order (NVMe 1.4 §4.1). <see cref="None"/> (the default) skips the check, for callers
/// that do not keep the previous SQHD.
/// </summary>
/// <param name="LastHead">The SQHD of the last accepted completion on this queue (0 after creation).</param>
/// <param name="Tail">The host's submission tail (entries placed, rung or not: the controller sees at most this far).</param>
internal readonly record struct SubmissionWindow(int LastHead, int Tail)
{
    /// <summary>Whether the window is checked at all.</summary>
    public bool IsTracked { get; private init; }

    /// <summary>A window to check SQHD against.</summary>
    public static SubmissionWindow Tracked(int lastHead, int tail) => new(lastHead, tail) { IsTracked = true };

    /// <summary>No window: SQHD is checked only against the queue size.</summary>
    public static SubmissionWindow None => default;
}

/// <summary>
/// Validation of one completion queue entry before the host acts on it (issue 18 item 2): every field NVMe 1.4 §4.6
/// lets a host check without knowing the command, so a buggy or hostile controller (No-IOMMU, vfio-user peer) cannot
/// make the driver retire a command it never issued, retire one twice, or read a head outside its queue. Pure and
/// allocation-free on the valid path: <see cref="Describe"/> builds a message only for a violation.
/// <para>Not checked, because the host cannot tell without per-command knowledge: DW0/DW1 (command specific), and
/// the status code itself (any SC is legal for some command).</para>
/// </summary>
internal static class CompletionCheck
{
    /// <summary>SCT values 4h-6h are reserved (NVMe 1.4 Figure 125); 7h is vendor specific and allowed.</summary>
    private const int FirstReservedType = 4, LastReservedType = 6;

    /// <summary>Decodes a raw 16-byte entry as the controller wrote it (little endian, Figure 124).</summary>
    /// <exception cref="ArgumentException">Fewer than 16 bytes.</exception>
    public static NvmeCompletion Decode(ReadOnlySpan<byte> raw)
    {
        if (raw.Length < NvmeCompletion.Size) { throw new ArgumentException($"a completion queue entry is {NvmeCompletion.Size} bytes, not {raw.Length}", nameof(raw)); }
        return new NvmeCompletion
        {
            Dw0 = BinaryPrimitives.ReadUInt32LittleEndian(raw),
            Dw1 = BinaryPrimitives.ReadUInt32LittleEndian(raw[4..]),
            SubmissionQueueHead = BinaryPrimitives.ReadUInt16LittleEndian(raw[8..]),
            SubmissionQueueId = BinaryPrimitives.ReadUInt16LittleEndian(raw[10..]),
            CommandId = BinaryPrimitives.ReadUInt16LittleEndian(raw[12..]),
            StatusAndPhase = BinaryPrimitives.ReadUInt16LittleEndian(raw[14..]),
        };
    }

    /// <summary>
    /// Judges <paramref name="entry"/>, read at the head of the completion queue of submission queue
    /// <paramref name="queueId"/> (<paramref name="entries"/> entries), when the host expects phase
    /// <paramref name="expectedPhase"/>. Checks in this order, reporting the first that fails: phase, SQID, SQHD in
    /// the queue, SQHD in <paramref name="window"/>, CID outstanding, status code type.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static CompletionVerdict Check<TOutstanding>(in NvmeCompletion entry, int queueId, int entries, bool expectedPhase,
        in TOutstanding outstanding, SubmissionWindow window = default)
        where TOutstanding : struct, IOutstandingCommands, allows ref struct
    {
        if (entry.Phase != expectedPhase) { return CompletionVerdict.NotPosted; }
        var verdict = CheckQueueFields(entry, queueId, entries, window);
        if (verdict != CompletionVerdict.Valid) { return verdict; }
        if (!outstanding.IsOutstanding(entry.CommandId)) { return CompletionVerdict.CommandNotOutstanding; }
        return CheckStatus(entry);
    }

    /// <summary>
    /// The same checks for an entry whose phase the caller has already matched (the queue pair consumed it), with the
    /// caller's own answer to "is this CID outstanding": the form the I/O queue's reaper uses, whose slot table stays
    /// private to it. Returns null when the entry is valid, otherwise the violation text.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static string? Violation(in NvmeCompletion entry, int queueId, int entries, bool commandOutstanding)
    {
        var verdict = CheckQueueFields(entry, queueId, entries, SubmissionWindow.None);
        if (verdict == CompletionVerdict.Valid && !commandOutstanding) { verdict = CompletionVerdict.CommandNotOutstanding; }
        if (verdict == CompletionVerdict.Valid) { verdict = CheckStatus(entry); }
        return verdict == CompletionVerdict.Valid ? null : Describe(verdict, entry, queueId, entries);
    }

    /// <summary>The message for a violation (null for <see cref="CompletionVerdict.Valid"/> and <see cref="CompletionVerdict.NotPosted"/>).</summary>
    public static string? Describe(CompletionVerdict verdict, in NvmeCompletion entry, int queueId, int entries, SubmissionWindow window = default) => verdict switch
    {
        CompletionVerdict.WrongQueue => $"SQID {entry.SubmissionQueueId}, but this is the completion queue of SQ {queueId}",
        CompletionVerdict.HeadOutsideQueue => $"SQHD {entry.SubmissionQueueHead}, but the queue has {entries} entries",
        CompletionVerdict.HeadPastTail => $"SQHD {entry.SubmissionQueueHead}, outside the entries submitted since the last head ({window.LastHead} up to the tail {window.Tail})",
        CompletionVerdict.CommandNotOutstanding => $"CID {entry.CommandId}, which is not outstanding on this queue",
        CompletionVerdict.ReservedStatusCodeType => $"status code type {(int)entry.Status.Type:x}h, which NVMe 1.4 reserves",
        _ => null,
    };

    private static CompletionVerdict CheckQueueFields(in NvmeCompletion entry, int queueId, int entries, SubmissionWindow window)
    {
        if (entry.SubmissionQueueId != queueId) { return CompletionVerdict.WrongQueue; }
        int head = entry.SubmissionQueueHead;
        if (head >= entries) { return CompletionVerdict.HeadOutsideQueue; }
        // Both distances are taken forward from the last head, so a head that moved backwards shows up as one far
        // past the tail; the window's own indices come from the host and are inside the queue.
        if (window.IsTracked && QueueMath.Used(window.LastHead, head, entries) > QueueMath.Used(window.LastHead, window.Tail, entries))
        {
            return CompletionVerdict.HeadPastTail;
        }
        return CompletionVerdict.Valid;
    }

    private static CompletionVerdict CheckStatus(in NvmeCompletion entry)
    {
        int type = (int)entry.Status.Type;
        return type is >= FirstReservedType and <= LastReservedType ? CompletionVerdict.ReservedStatusCodeType : CompletionVerdict.Valid;
    }
}
