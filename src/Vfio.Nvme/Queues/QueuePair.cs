using System.Runtime.CompilerServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Queues;

/// <summary>
/// Ring arithmetic of NVMe queues (NVMe 1.4 §4.1): indices wrap to 0 past the last entry; a queue is full
/// when tail + 1 == head, so it holds at most entries - 1 commands; the phase tag the host expects starts at 1
/// and flips each time the completion head wraps (§4.6, "Phase Tag").
/// </summary>
internal static class QueueMath
{
    /// <summary>The index after <paramref name="index"/> in a ring of <paramref name="entries"/>.</summary>
    public static int Next(int index, int entries) => index + 1 == entries ? 0 : index + 1;

    /// <summary>Advances a completion head; flips <paramref name="phase"/> when it wraps.</summary>
    public static void AdvanceHead(ref int head, ref bool phase, int entries)
    {
        head++;
        if (head == entries)
        {
            head = 0;
            phase = !phase;
        }
    }

    /// <summary>Entries in use between head and tail.</summary>
    public static int Used(int head, int tail, int entries) => tail >= head ? tail - head : entries - head + tail;

    /// <summary>True when no more entries can be placed (tail + 1 == head).</summary>
    public static bool IsFull(int head, int tail, int entries) => Next(tail, entries) == head;
}

/// <summary>
/// One submission queue and its completion queue in DMA memory, with their doorbells. Used by one thread at a
/// time. The controller owns the memory from creation until the queue is deleted or the controller is
/// disabled; the leases taken here make the memory impossible to free before that.
/// </summary>
internal sealed unsafe class QueuePair : IDisposable
{
    private readonly IDeviceRegion _bar;
    private readonly DmaBuffer _sqMemory;
    private readonly DmaBuffer _cqMemory;
    private DeviceUseLease? _sqLease;
    private DeviceUseLease? _cqLease;
    private readonly nint _sq;
    private readonly nint _cq;
    private readonly ulong _sqDoorbell;
    private readonly ulong _cqDoorbell;
    private int _tail;
    private int _head;
    private bool _phase;
    private int _unrungSubmissions;
    private int _unrungCompletions;

    public QueuePair(int queueId, int entries, IDmaAllocator dma, IDeviceRegion bar, int doorbellStride, string owner)
    {
        QueueId = queueId;
        Entries = entries;
        _bar = bar;
        _sqDoorbell = ControllerRegister.SubmissionTailDoorbell(queueId, doorbellStride);
        _cqDoorbell = ControllerRegister.CompletionHeadDoorbell(queueId, doorbellStride);
        // Queues are physically contiguous (CC/CQR: we always create them with PC = 1) and page aligned
        // (NVMe 1.4 §5.3/§5.4: PRP1 of a contiguous queue has no offset).
        var options = new DmaAllocationOptions { Alignment = 4096, Contiguous = true };
        _sqMemory = dma.Allocate(RoundUp((ulong)entries * NvmeCommand.Size), options with { Name = $"{owner} SQ{queueId}" });
        try
        {
            _cqMemory = dma.Allocate(RoundUp((ulong)entries * NvmeCompletion.Size), options with { Name = $"{owner} CQ{queueId}" });
        }
        catch
        {
            _sqMemory.Dispose();
            throw;
        }
        _sq = _sqMemory.Pointer;
        _cq = _cqMemory.Pointer;
        ResetState();
    }

    public int QueueId { get; }

    public int Entries { get; }

    public DmaAddress SubmissionAddress => _sqMemory.DeviceAddress;

    /// <summary>The submission queue's entries, as the window Create I/O Submission Queue leases (for the DMA audit).</summary>
    public DmaWindow SubmissionWindow => new(_sqMemory, 0, (ulong)Entries * NvmeCommand.Size);

    /// <summary>The completion queue's entries, as the window Create I/O Completion Queue leases (for the DMA audit).</summary>
    public DmaWindow CompletionWindow => new(_cqMemory, 0, (ulong)Entries * NvmeCompletion.Size);

    public DmaAddress CompletionAddress => _cqMemory.DeviceAddress;

    /// <summary>The last SQ head the controller reported (SQHD).</summary>
    public int ControllerHead { get; private set; }

    /// <summary>The current submission tail (host side).</summary>
    public int Tail => _tail;

    /// <summary>SQ tail doorbell writes since creation (one per batch of placed commands).</summary>
    public long SubmissionDoorbellWrites { get; private set; }

    /// <summary>CQ head doorbell writes since creation (one per batch of consumed completions).</summary>
    public long CompletionDoorbellWrites { get; private set; }

    /// <summary>Commands written but not yet announced by a doorbell write.</summary>
    public int Unrung => _unrungSubmissions;

    /// <summary>
    /// Returns the rings to their initial state, as after queue creation or a controller reset: empty, tail and
    /// head 0, every completion entry's phase tag 0 so that the first pass (expecting 1) sees nothing
    /// (NVMe 1.4 §4.6: host software initialises phase tags to 0 before the queue is created).
    /// </summary>
    public void ResetState()
    {
        _cqMemory.Span.Clear();
        _sqMemory.Span.Clear();
        _tail = 0;
        _head = 0;
        _phase = true;
        _unrungSubmissions = 0;
        _unrungCompletions = 0;
        ControllerHead = 0;
    }

    /// <summary>Marks the queue memory as owned by the controller.</summary>
    public void TakeOwnership(string owner)
    {
        _sqLease ??= _sqMemory.MarkInUse(owner);
        _cqLease ??= _cqMemory.MarkInUse(owner);
    }

    /// <summary>Ends the controller's ownership (the queue was deleted or the controller disabled).</summary>
    public void ReleaseOwnership()
    {
        _sqLease?.Dispose();
        _sqLease = null;
        _cqLease?.Dispose();
        _cqLease = null;
    }

    /// <summary>
    /// Writes <paramref name="command"/> at the tail and advances it, without ringing. The caller keeps fewer
    /// than <see cref="Entries"/> commands outstanding, so the tail never overtakes the controller's head.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Place(in NvmeCommand command)
    {
        // SAFETY: _tail < Entries and the SQ memory holds Entries × 64 bytes, owned by this object.
        Unsafe.Write((void*)(_sq + _tail * NvmeCommand.Size), command);
        _tail = QueueMath.Next(_tail, Entries);
        _unrungSubmissions++;
    }

    /// <summary>Announces every placed command with one tail doorbell write.</summary>
    public void RingSubmissions()
    {
        if (_unrungSubmissions == 0) { return; }
        // Orders the stores of the submission entries before the doorbell store: the controller may fetch the
        // entries as soon as it sees the new tail (NVMe 1.4 §4.1), so they must be globally visible first.
        // x86 keeps store order anyway; on arm64 this is the DMB the MMIO store needs.
        Interlocked.MemoryBarrier();
        _bar.Write32(_sqDoorbell, (uint)_tail);
        _unrungSubmissions = 0;
        SubmissionDoorbellWrites++;
    }

    /// <summary>
    /// Takes the completion at the head if the controller has posted it (its phase tag equals the expected phase),
    /// and advances the head. Does not ring the head doorbell; <see cref="RingCompletions"/> does, once per batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTake(out NvmeCompletion completion)
    {
        var entry = (NvmeCompletion*)(_cq + _head * NvmeCompletion.Size);
        // SAFETY: _head < Entries and the CQ memory holds Entries × 16 bytes. The device writes this memory:
        // the volatile (acquire) read of the status word is ordered before the reads of the rest of the entry,
        // so a new phase tag is never paired with stale DW0-DW2 (NVMe 1.4 §4.6: the entry is complete when its
        // phase tag is new).
        ushort status = Volatile.Read(ref entry->StatusAndPhase);
        if (((status & 1) != 0) != _phase)
        {
            completion = default;
            return false;
        }
        completion = *entry;
        completion.StatusAndPhase = status;
        ControllerHead = completion.SubmissionQueueHead;
        QueueMath.AdvanceHead(ref _head, ref _phase, Entries);
        _unrungCompletions++;
        return true;
    }

    /// <summary>Tells the controller how far the host has consumed completions, freeing those slots.</summary>
    public void RingCompletions()
    {
        if (_unrungCompletions == 0) { return; }
        // The volatile write is a release: the loads of the consumed entries (in TryTake) complete before the
        // controller learns it may overwrite those slots.
        _bar.Write32(_cqDoorbell, (uint)_head);
        _unrungCompletions = 0;
        CompletionDoorbellWrites++;
    }

    /// <summary>
    /// Frees the memory. Throws <see cref="InvalidOperationException"/> while the controller owns it: call
    /// <see cref="ReleaseOwnership"/> once the queue is deleted or the controller disabled.
    /// </summary>
    public void Dispose()
    {
        _sqMemory.Dispose();
        _cqMemory.Dispose();
    }

    private static ulong RoundUp(ulong bytes) => (bytes + 4095) & ~4095UL;
}
