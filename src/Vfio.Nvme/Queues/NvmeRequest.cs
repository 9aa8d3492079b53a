using System.Threading.Tasks.Sources;
using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Queues;

/// <summary>
/// One I/O operation of the engine in <see cref="NvmeIoQueue"/>: a range of blocks (or one Flush or Dataset
/// Management command) that the queue splits into as many commands as the controller's transfer limit requires,
/// and the pooled <see cref="IValueTaskSource"/> its caller awaits. A request never lives in memory the device
/// can write; the device only sees the commands built from it.
/// <para>Lifetime: a count of two owners (<see cref="Refs"/>) — the caller until it has the result, and the queue
/// (<see cref="QueueOwned"/>) from queueing until the request is answered and none of its commands is in flight or
/// waiting for a slot. A request on the completed list was claimed for its answer, so its caller cannot let go of
/// it before it is answered. Only when the count reaches 0 are its buffer lease and bounce buffer given back and
/// the request reused, so a buffer stays leased as long as the device may still move data for it, also after a
/// cancellation or a timeout has already answered the caller. The count changes atomically where the two owners
/// can race (a release), and plainly where only one thread can see the request (its queueing).</para>
/// <para>Every field is guarded by the queue's lock except <see cref="Claimed"/> (an atomic flag: whoever sets
/// it first, completion or cancellation, answers the caller, exactly once) and the core's own state.</para>
/// </summary>
internal sealed class NvmeRequest(NvmeIoQueue queue) : IValueTaskSource
{
    /// <summary>The awaitable state; continuations run inline on the thread that completes the request.</summary>
    internal ManualResetValueTaskSourceCore<bool> Core;

    internal readonly NvmeIoQueue Queue = queue;
    internal NvmOpcode Opcode;
    internal uint Nsid;
    internal int BlockSize;

    /// <summary>Where the next command starts, and how many blocks are still to be submitted (Flush and Dataset Management: 1 until submitted).</summary>
    internal ulong Lba;
    internal int Blocks;

    /// <summary>Dataset Management: the blocks of the one range to deallocate.</summary>
    internal int RangeBlocks;

    /// <summary>Dataset Management with a range list (NvmeIoQueue.Namespaces.cs): the ranges and CDW11's attributes.</summary>
    internal DsmRange[]? DsmRanges;
    internal DsmAttributes DsmAttributes;

    /// <summary>The data buffer (the caller's, or <see cref="Bounce"/>) and the offset of the next command's data in it.</summary>
    internal DmaBuffer? Buffer;
    internal ulong Offset;

    /// <summary>True when this request holds a device-use claim on <see cref="Buffer"/> (a caller's buffer).</summary>
    internal bool BufferLeased;

    /// <summary>A pooled bounce buffer of the queue, when the caller's memory is not DMA memory.</summary>
    internal DmaBuffer? Bounce;

    /// <summary>For a bounced read answered asynchronously: where the data goes once every command succeeded.</summary>
    internal Memory<byte> CopyOut;

    /// <summary>Commands of this request the controller holds.</summary>
    internal int ChunksInFlight;

    internal int Refs;

    /// <summary>The next request of the queue's list of returned requests.</summary>
    internal NvmeRequest? NextReturned;

    /// <summary>The next request of the queue's list of claimed answers (under the queue's lock).</summary>
    internal NvmeRequest? NextCompleted;

    /// <summary>True while the queue owns the request: from queueing until it is answered and none of its commands is in flight or waiting.</summary>
    internal bool QueueOwned;

    /// <summary>1 once the caller has been (or is being) answered.</summary>
    internal int Claimed;

    /// <summary>Submit no more commands: the request failed or was cancelled.</summary>
    internal bool Stop;

    /// <summary>Answer the caller now, although commands are still in flight (a timeout or a fatal controller).</summary>
    internal bool AnswerEarly;

    /// <summary>Set once the request is handed to be answered (completed list, or <see cref="SyncDone"/>).</summary>
    internal bool Completing;

    internal bool InPending;

    /// <summary>A caller thread polls <see cref="SyncDone"/> instead of awaiting.</summary>
    internal bool Synchronous;

    internal volatile bool SyncDone;

    /// <summary>The first failure; null while every command succeeded.</summary>
    internal Exception? Failure;

    internal CancellationToken Token;
    internal CancellationTokenRegistration Registration;

    internal bool HasMore => Blocks > 0;

    /// <summary>The token of the current use, for the <see cref="ValueTask"/> handed to the caller.</summary>
    internal short Version => Core.Version;

    public ValueTaskSourceStatus GetStatus(short token) => Core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        Core.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        if (token != Core.Version || Core.GetStatus(token) == ValueTaskSourceStatus.Pending)
        {
            throw new InvalidOperationException("an NVMe operation's ValueTask may be awaited once, after it completed; await it rather than block on it");
        }
        try
        {
            Core.GetResult(token);
        }
        finally
        {
            // The caller's ownership ends with its result.
            Queue.ReleaseRequest(this);
        }
    }

    /// <summary>
    /// Claims the right to answer the caller; false when a cancellation answered first. Once claimed, the caller's
    /// own ownership keeps the request alive until it has the result, so the completed list's may be dropped.
    /// </summary>
    internal bool TryClaim() => Interlocked.Exchange(ref Claimed, 1) == 0;

    /// <summary>Answers the caller (after <see cref="TryClaim"/>); its continuation may run inline. Called without the queue's lock.</summary>
    internal void Deliver()
    {
        Registration.Unregister();
        if (Failure is { } failure)
        {
            Core.SetException(failure);
            return;
        }
        if (!CopyOut.IsEmpty)
        {
            // Every command completed, so the device no longer writes the bounce buffer; the caller's memory is
            // written only here, before the caller is told, never after a cancellation told it first.
            Bounce!.Span[..CopyOut.Length].CopyTo(CopyOut.Span);
        }
        Core.SetResult(true);
    }

    /// <summary>The caller's token was cancelled: answer now; commands in flight keep their owners' claims.</summary>
    internal void Cancel()
    {
        if (Interlocked.Exchange(ref Claimed, 1) != 0) { return; }
        Queue.StopRequest(this);
        Core.SetException(new OperationCanceledException(Token));
    }

    /// <summary>Back to the pool's state (called under the queue's lock, once no one owns the request).</summary>
    internal void Clear()
    {
        Registration.Unregister();
        Registration = default;
        Token = default;
        Core.Reset();
        Buffer = null;
        Bounce = null;
        CopyOut = default;
        BufferLeased = false;
        Failure = null;
        Blocks = 0;
        RangeBlocks = 0;
        DsmRanges = null;
        DsmAttributes = default;
        Offset = 0;
        Lba = 0;
        ChunksInFlight = 0;
        Claimed = 0;
        Stop = false;
        AnswerEarly = false;
        Completing = false;
        InPending = false;
        QueueOwned = false;
        Synchronous = false;
        SyncDone = false;
    }
}
