using System.Diagnostics;
using System.Runtime.CompilerServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>A finished command from the batch interface (<see cref="NvmeIoQueue.Reap"/>).</summary>
/// <param name="Tag">The tag <c>Submit*</c> returned (the command identifier).</param>
/// <param name="Status">Completion status.</param>
/// <param name="Command">What the command was.</param>
/// <param name="SubmittedTimestamp">When it was placed in the queue, in <see cref="TimeProvider.GetTimestamp"/> units of the controller's clock.</param>
public readonly record struct NvmeIoCompletion(ushort Tag, NvmeStatus Status, NvmeCommandInfo Command, long SubmittedTimestamp)
{
    /// <summary>True when the command succeeded.</summary>
    public bool IsSuccess => Status.IsSuccess;
}

/// <summary>
/// One I/O submission/completion queue pair and the engine that drives it. Safe to use from any number of
/// threads at once: every access to the rings and the doorbells happens under the queue's lock, which is held
/// only to place or consume entries, never while waiting.
/// <para>One engine, three front ends. Every operation is a request of the engine: split into as many commands
/// as the transfer limit needs, placed in free submission slots (waiting in order for a slot when all are taken:
/// backpressure, never an error), its buffer leased from submission to the completion of its last command, and
/// retired by the one routine that validates completions. Synchronous calls (<see cref="Read"/>, <see cref="Write"/>,
/// ...) poll for their own request; asynchronous calls (<see cref="ReadAsync"/>, ...) return a
/// <see cref="ValueTask"/> backed by a pooled request, completed by the queue's completion thread (polled,
/// interrupt-driven or hybrid: <see cref="NvmeIoQueueOptions.CompletionMode"/>), allocating nothing in steady
/// state; the batch interface (<see cref="SubmitRead"/>, <see cref="RingDoorbell"/>, <see cref="Reap"/>) places
/// single commands without a request and leaves reaping to the caller.</para>
/// <para>Data buffers must stay allocated until their commands complete (the lease makes disposing them throw),
/// and be dword aligned at the start and page aligned in device address space from the second page on
/// (NVMe 1.4 §4.3).</para>
/// </summary>
public sealed partial class NvmeIoQueue : IDisposable
{
    private const byte Free = 0, InFlight = 1, Done = 2;
    private const byte BatchKind = 1, RequestKind = 2;
    private const int MaxWriteZeroesBlocks = 65536;   // NLB is 16 bits, 0's based (NVMe 1.4 §6.16)

    /// <summary>The queue whose completion thread is answering requests on this thread: its doorbell is rung once after the round.</summary>
    [ThreadStatic] private static NvmeIoQueue? t_answering;

    /// <summary>Set on a queue's completion thread: the queue a continuation running there should submit to.</summary>
    [ThreadStatic] private static NvmeIoQueue? t_pollerQueue;

    private readonly NvmeController _controller;
    private readonly Lock _lock = new();
    private readonly DmaBuffer _prpPages;
    private DeviceUseLease? _prpLease;
    private readonly Slot[] _slots;
    private readonly ushort[] _freeTags;
    private int _freeCount;
    private readonly ushort[] _doneTags;
    private int _doneHead, _doneCount;
    private readonly Queue<NvmeRequest> _pending = new();
    // Requests claimed for an answer, oldest first, linked through NvmeRequest.NextCompleted (under the lock).
    private NvmeRequest? _completedHead, _completedTail;
    // Requests the completion thread's continuations gave back; only that thread touches it (see ReleaseRequest).
    private NvmeRequest? _answeringFree;
    // When the completion thread collected the round it is answering (the controller clock's timestamp).
    private long _roundTimestamp;
    // Commands placed since the last SQ doorbell: their time starts when the doorbell announces them (see RingSubmissionsLocked).
    private readonly ushort[] _unrung;
    private int _unrungCount;
    private long _lastRing;
    private readonly Stack<NvmeRequest> _pool = new();
    private readonly Stack<DmaBuffer> _bounces = new();
    private readonly List<DmaBuffer> _allBounces = [];
    private readonly int _pageShift;
    private readonly string _leaseOwner;
    private readonly ManualResetEventSlim _running = new(true);
    private readonly ManualResetEventSlim _wake = new(false);
    private Thread? _poller;
    private volatile bool _pollerStop;
    private bool _parked;
    private int _activeAsync;
    private bool _stopped;
    private Exception? _terminal;
    private bool _faulted;
    private bool _disposed;
    private long _requestsCompleted, _interruptWakeups, _bounced;

    private struct Slot
    {
        public byte State;
        public byte Kind;
        public NvmeStatus Status;
        public NvmeCommandInfo Info;
        public long Submitted;
        public DmaAddress PrpList;
        public nint PrpListPointer;
        public DmaBuffer? Leased;
        public NvmeRequest? Request;
    }

    /// <summary>Why a command ended.</summary>
    private enum EndReason : byte { Device, Reset, Released, Deleted, DeviceError }

    internal NvmeIoQueue(NvmeController controller, int queueId, int entries, IInterruptVector? vector, NvmeCompletionMode mode, TimeSpan hybridSpin)
    {
        _controller = controller;
        QueueId = queueId;
        Vector = vector;
        CompletionMode = mode;
        HybridSpin = hybridSpin;
        _pageShift = controller.PageShift;
        _leaseOwner = $"NVMe I/O queue {queueId}";
        var device = controller.Device;
        Pair = new QueuePair(queueId, entries, device.Dma, controller.Bar, controller.Capabilities.DoorbellStride, "nvme");
        int depth = entries - 1;
        ulong page = 1UL << _pageShift;
        try
        {
            // One PRP list page per command slot: enough for MaxTransferBytes, so lists never chain.
            _prpPages = device.Dma.Allocate((ulong)depth * page,
                new DmaAllocationOptions { Alignment = Math.Max(4096, page), Contiguous = false, Name = $"nvme PRP lists Q{queueId}" });
        }
        catch
        {
            Pair.Dispose();
            throw;
        }
        _slots = new Slot[depth];
        _freeTags = new ushort[depth];
        _doneTags = new ushort[depth];
        _unrung = new ushort[depth];
        for (int i = 0; i < depth; i++)
        {
            _freeTags[i] = (ushort)(depth - 1 - i);
            var address = _prpPages.GetDeviceAddress((ulong)i * page);
            if ((address.Value & (page - 1)) != 0 || _prpPages.GetContiguousLength((ulong)i * page) < page)
            {
                Pair.Dispose();
                _prpPages.Dispose();
                throw new NvmeException($"PRP list page {i} at {address} is not a contiguous, aligned page", device.Address);
            }
            _slots[i].PrpList = address;
            _slots[i].PrpListPointer = _prpPages.Pointer + (nint)((ulong)i * page);
        }
        _freeCount = depth;
    }

    internal QueuePair Pair { get; }

    internal IInterruptVector? Vector { get; }

    internal NvmeController Controller => _controller;

    /// <summary>The queue identifier (1..).</summary>
    public int QueueId { get; }

    /// <summary>Most commands in flight at once (entries - 1).</summary>
    public int Depth => _slots.Length;

    /// <summary>Commands in flight (submitted and not retired; batch commands until reaped).</summary>
    public int Outstanding => _slots.Length - Volatile.Read(ref _freeCount);

    /// <summary>True when the completion queue signals an MSI-X vector.</summary>
    public bool UsesInterrupts => Vector is not null;

    /// <summary>How the completion thread learns of completions for asynchronous calls.</summary>
    public NvmeCompletionMode CompletionMode { get; }

    /// <summary>In <see cref="NvmeCompletionMode.Hybrid"/>: how long the completion thread polls after the last completion before it sleeps on the vector.</summary>
    public TimeSpan HybridSpin { get; }

    /// <summary>SQ tail doorbell writes (MMIO) since the queue was created: one per batch of submissions.</summary>
    public long SubmissionDoorbellWrites => Pair.SubmissionDoorbellWrites;

    /// <summary>CQ head doorbell writes (MMIO) since the queue was created: one per batch of reaped completions.</summary>
    public long CompletionDoorbellWrites => Pair.CompletionDoorbellWrites;

    /// <summary>Operations (synchronous or asynchronous, not batch commands) completed since the queue was created.</summary>
    public long OperationsCompleted => Interlocked.Read(ref _requestsCompleted);

    /// <summary>Times the completion thread woke from a sleep on the MSI-X vector with the vector signalled.</summary>
    public long InterruptWakeups => Interlocked.Read(ref _interruptWakeups);

    /// <summary>Operations whose data went through a bounce buffer (the caller's memory was not DMA memory).</summary>
    public long BouncedOperations => Interlocked.Read(ref _bounced);

    /// <summary>
    /// When this queue's completion thread collected the completions it is answering now, in the controller's
    /// <see cref="TimeProvider"/> timestamp units (<see cref="Stopwatch"/> ticks with the system clock). A
    /// continuation running on that thread can time its operation from it instead of reading the clock, as the
    /// batch interface's <see cref="NvmeIoCompletion.SubmittedTimestamp"/> does; on other threads it is only the
    /// time of the latest round.
    /// </summary>
    public long CompletionTimestamp => Volatile.Read(ref _roundTimestamp);

    /// <summary>Completions the controller wrote against the rules (see <see cref="DeviceProtocolViolationException"/>); each faults the queue.</summary>
    public long StrayCompletions { get; private set; }

    /// <summary>Largest transfer per command, in bytes.</summary>
    public int MaxTransferBytes => _controller.MaxTransferBytes;

    /// <summary>The queue whose completion thread is the current thread, if any.</summary>
    internal static NvmeIoQueue? CurrentPollerQueue => t_pollerQueue;

    /// <summary>True when a command slot is free right now (a hint for choosing a queue).</summary>
    internal bool HasFreeSlot => Volatile.Read(ref _freeCount) > 0;

    // ---------------------------------------------------------------- synchronous (the caller polls)

    /// <summary>Reads <paramref name="blocks"/> blocks from <paramref name="lba"/> into <paramref name="buffer"/> at <paramref name="offset"/>.</summary>
    /// <exception cref="NvmeCommandException">The controller failed the command.</exception>
    /// <exception cref="NvmeTimeoutException">A command did not complete in time; the controller is faulted until reset.</exception>
    /// <exception cref="NvmeCommandAbortedException">A controller reset ended the command.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public void Read(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        RunSync(PrepareTransfer(NvmOpcode.Read, ns, lba, blocks, buffer, offset, synchronous: true));

    /// <summary>Writes <paramref name="blocks"/> blocks at <paramref name="lba"/> from <paramref name="buffer"/> at <paramref name="offset"/>.</summary>
    /// <exception cref="NvmeCommandException">The controller failed the command.</exception>
    /// <exception cref="NvmeTimeoutException">A command did not complete in time; the controller is faulted until reset.</exception>
    /// <exception cref="NvmeCommandAbortedException">A controller reset ended the command.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back.</exception>
    public void Write(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        RunSync(PrepareTransfer(NvmOpcode.Write, ns, lba, blocks, buffer, offset, synchronous: true));

    /// <summary>Commits the namespace's volatile write cache to media (Flush, NVMe 1.4 §6.8).</summary>
    public void Flush(NvmeNamespace ns) => RunSync(PrepareCommand(NvmOpcode.Flush, ns, 0, 1, synchronous: true));

    /// <summary>Zeroes <paramref name="blocks"/> blocks at <paramref name="lba"/> without a data transfer (Write Zeroes, NVMe 1.4 §6.16).</summary>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Write Zeroes.</exception>
    public void WriteZeroes(NvmeNamespace ns, ulong lba, int blocks)
    {
        RequireOptional(OptionalNvmCommands.WriteZeroes, "Write Zeroes");
        RunSync(PrepareCommand(NvmOpcode.WriteZeroes, ns, lba, blocks, synchronous: true));
    }

    /// <summary>Deallocates (trims) a range (Dataset Management with AD, NVMe 1.4 §6.7).</summary>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Dataset Management.</exception>
    public void Deallocate(NvmeNamespace ns, ulong lba, int blocks)
    {
        RequireOptional(OptionalNvmCommands.DatasetManagement, "Dataset Management");
        RunSync(PrepareCommand(NvmOpcode.DatasetManagement, ns, lba, blocks, synchronous: true));
    }

    // ---------------------------------------------------------------- asynchronous (the completion thread answers)

    /// <summary>
    /// Reads asynchronously. Any number of calls may be outstanding, from any threads: when every slot is taken the
    /// operation waits for one. The <see cref="ValueTask"/> may be awaited once.
    /// </summary>
    /// <exception cref="NvmeCommandException">The controller failed a command (in the task).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (in the task). A command
    /// already in flight keeps its slot and the buffer's lease until the device completes it or a reset ends it.</exception>
    public ValueTask ReadAsync(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default) =>
        SubmitTransferAsync(NvmOpcode.Read, ns, lba, blocks, buffer, offset, cancellationToken);

    /// <summary>Writes asynchronously; see <see cref="ReadAsync"/>.</summary>
    public ValueTask WriteAsync(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default) =>
        SubmitTransferAsync(NvmOpcode.Write, ns, lba, blocks, buffer, offset, cancellationToken);

    /// <summary>
    /// The hot path of an asynchronous transfer on DMA memory: the request is taken from the pool, filled and
    /// queued under one acquisition of the lock.
    /// </summary>
    private ValueTask SubmitTransferAsync(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset, CancellationToken cancellationToken)
    {
        CheckTransfer(ns, blocks, buffer, offset);
        if (cancellationToken.IsCancellationRequested) { return ValueTask.FromCanceled(cancellationToken); }
        EnsurePoller();
        buffer.AddDeviceUse(_leaseOwner);
        NvmeRequest r;
        short version;
        lock (_lock)
        {
            if (CurrentFailureLocked() is { } failure)
            {
                buffer.ReleaseDeviceUse();
                return ValueTask.FromException(failure);
            }
            r = RentLocked(opcode, ns, lba, blocks, synchronous: false, rangeBlocks: 0);
            r.Buffer = buffer;
            r.BufferLeased = true;
            r.Offset = offset;
            version = r.Version;
            StartAsyncLocked(r);
        }
        if (cancellationToken.CanBeCanceled) { Register(r, cancellationToken); }
        return new ValueTask(r, version);
    }

    /// <summary>Flushes asynchronously; see <see cref="Flush"/>.</summary>
    public ValueTask FlushAsync(NvmeNamespace ns, CancellationToken cancellationToken = default) =>
        SubmitAsync(PrepareCommand(NvmOpcode.Flush, ns, 0, 1, synchronous: false), cancellationToken);

    /// <summary>Write Zeroes asynchronously; see <see cref="WriteZeroes"/>.</summary>
    public ValueTask WriteZeroesAsync(NvmeNamespace ns, ulong lba, int blocks, CancellationToken cancellationToken = default)
    {
        RequireOptional(OptionalNvmCommands.WriteZeroes, "Write Zeroes");
        return SubmitAsync(PrepareCommand(NvmOpcode.WriteZeroes, ns, lba, blocks, synchronous: false), cancellationToken);
    }

    /// <summary>Deallocate asynchronously; see <see cref="Deallocate"/>.</summary>
    public ValueTask DeallocateAsync(NvmeNamespace ns, ulong lba, int blocks, CancellationToken cancellationToken = default)
    {
        RequireOptional(OptionalNvmCommands.DatasetManagement, "Dataset Management");
        return SubmitAsync(PrepareCommand(NvmOpcode.DatasetManagement, ns, lba, blocks, synchronous: false), cancellationToken);
    }

    // ---------------------------------------------------------------- bounced transfers (NvmeBlockDevice)

    /// <summary>Bytes one bounce buffer holds: a transfer through bounce buffers larger than this is split by the caller.</summary>
    internal int BounceBytes => Math.Min(_controller.MaxTransferBytes, 128 * 1024);

    /// <summary>An asynchronous read into ordinary memory: the device writes a pooled bounce buffer, copied out once every command succeeded.</summary>
    internal ValueTask ReadBouncedAsync(NvmeNamespace ns, ulong lba, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var r = PrepareBounced(NvmOpcode.Read, ns, lba, destination.Length, synchronous: false);
        r.CopyOut = destination;
        return SubmitAsync(r, cancellationToken);
    }

    /// <summary>An asynchronous write from ordinary memory, copied into a pooled bounce buffer first.</summary>
    internal ValueTask WriteBouncedAsync(NvmeNamespace ns, ulong lba, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        var r = PrepareBounced(NvmOpcode.Write, ns, lba, source.Length, synchronous: false);
        source.Span.CopyTo(r.Bounce!.Span);
        return SubmitAsync(r, cancellationToken);
    }

    /// <summary>A synchronous read into a span through a bounce buffer (the caller copies after completion).</summary>
    internal void ReadBounced(NvmeNamespace ns, ulong lba, Span<byte> destination)
    {
        var r = PrepareBounced(NvmOpcode.Read, ns, lba, destination.Length, synchronous: true);
        var bounce = r.Bounce!;
        WaitSync(r, out var failure);
        try
        {
            if (failure is null) { bounce.Span[..destination.Length].CopyTo(destination); }
        }
        finally
        {
            ReleaseRequest(r);
        }
        if (failure is not null) { throw failure; }
    }

    /// <summary>A synchronous write from a span through a bounce buffer.</summary>
    internal void WriteBounced(NvmeNamespace ns, ulong lba, ReadOnlySpan<byte> source)
    {
        var r = PrepareBounced(NvmOpcode.Write, ns, lba, source.Length, synchronous: true);
        source.CopyTo(r.Bounce!.Span);
        RunSync(r);
    }

    // ---------------------------------------------------------------- batch interface

    /// <summary>
    /// Places a Read in the submission queue without ringing the doorbell; <see cref="RingDoorbell"/> announces
    /// every placed command with one register write. The transfer must fit <see cref="MaxTransferBytes"/>. The
    /// buffer is leased until <see cref="Reap"/> returns the command.
    /// </summary>
    /// <returns>A tag that <see cref="Reap"/> reports with the completion.</returns>
    /// <exception cref="InvalidOperationException">The queue is full: reap completions first.</exception>
    public ushort SubmitRead(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        SubmitBatch(NvmOpcode.Read, ns, lba, blocks, buffer, offset);

    /// <summary>Places a Write without ringing; see <see cref="SubmitRead"/>.</summary>
    public ushort SubmitWrite(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        SubmitBatch(NvmOpcode.Write, ns, lba, blocks, buffer, offset);

    private ushort SubmitBatch(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset)
    {
        CheckTransfer(ns, blocks, buffer, offset);
        if ((long)blocks * ns.BlockSize > _controller.MaxTransferBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"one command moves at most {_controller.MaxTransferBytes} bytes");
        }
        while (true)
        {
            lock (_lock)
            {
                ThrowIfUnusableLocked();
                if (!_stopped)
                {
                    if (_freeCount == 0)
                    {
                        throw new InvalidOperationException($"queue {QueueId} has {Depth} commands in flight; reap completions before submitting more");
                    }
                    ushort tag = _freeTags[--_freeCount];
                    ref var slot = ref _slots[tag];
                    PrpPair prp;
                    try
                    {
                        var map = new DmaBufferAddressMap(buffer, offset);
                        prp = BuildPrp(ref map, (ulong)blocks * (ulong)ns.BlockSize, slot.PrpListPointer, slot.PrpList);
                    }
                    catch
                    {
                        _freeTags[_freeCount++] = tag;
                        throw;
                    }
                    buffer.AddDeviceUse(_leaseOwner);
                    try
                    {
                        PlaceLocked(tag, NvmeCommand.ReadWrite(opcode, ns.Id, lba, blocks, prp.Prp1, prp.Prp2),
                            new DmaWindow(buffer, offset, (ulong)blocks * (ulong)ns.BlockSize));
                    }
                    catch (DmaAuditViolationException)
                    {
                        buffer.ReleaseDeviceUse();
                        _freeTags[_freeCount++] = tag;
                        throw;
                    }
                    slot.Leased = buffer;
                    slot.Kind = BatchKind;
                    slot.Request = null;
                    return tag;
                }
            }
            WaitWhileStopped();
        }
    }

    /// <summary>Announces every command placed since the last ring with one doorbell write.</summary>
    public void RingDoorbell()
    {
        lock (_lock)
        {
            ThrowIfUnusableLocked();
            if (!_stopped) { RingSubmissionsLocked(); }
        }
    }

    /// <summary>
    /// Collects finished batch commands into <paramref name="completions"/> (without waiting) and frees their
    /// slots; returns how many. Errors are reported in <see cref="NvmeIoCompletion.Status"/>, not thrown; see
    /// <see cref="EnsureSuccess"/>. Commands a controller reset ended come back with status Command Aborted due
    /// to SQ Deletion.
    /// </summary>
    public int Reap(Span<NvmeIoCompletion> completions)
    {
        lock (_lock)
        {
            ThrowIfUnusableLocked();
            if (_doneCount < completions.Length && !_stopped && ReapLocked() > 0)
            {
                PumpLocked();
                RingLocked();
            }
            int n = 0;
            while (n < completions.Length && _doneCount > 0)
            {
                ushort tag = _doneTags[_doneHead];
                _doneHead = _doneHead + 1 == _doneTags.Length ? 0 : _doneHead + 1;
                _doneCount--;
                ref var slot = ref _slots[tag];
                completions[n++] = new NvmeIoCompletion(tag, slot.Status, slot.Info, slot.Submitted);
                slot.State = Free;
                _freeTags[_freeCount++] = tag;
            }
            if (n > 0 && _pending.Count > 0)
            {
                PumpLocked();
                RingLocked();
            }
            return n;
        }
    }

    /// <summary>Throws <see cref="NvmeCommandException"/> when <paramref name="completion"/> failed.</summary>
    public void EnsureSuccess(in NvmeIoCompletion completion)
    {
        if (!completion.Status.IsSuccess)
        {
            throw new NvmeCommandException(completion.Command, completion.Status, _controller.Device.Address);
        }
    }

    // ---------------------------------------------------------------- requests: preparation

    private NvmeRequest PrepareTransfer(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset, bool synchronous)
    {
        CheckTransfer(ns, blocks, buffer, offset);
        var r = Rent(opcode, ns, lba, blocks, synchronous);
        try
        {
            buffer.AddDeviceUse(_leaseOwner);
        }
        catch
        {
            ReleaseRequest(r);
            throw;
        }
        r.Buffer = buffer;
        r.BufferLeased = true;
        r.Offset = offset;
        return r;
    }

    private NvmeRequest PrepareCommand(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, bool synchronous)
    {
        ArgumentNullException.ThrowIfNull(ns);
        if (blocks < 1) { throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "at least one block"); }
        return Rent(opcode, ns, lba, opcode is NvmOpcode.Flush or NvmOpcode.DatasetManagement ? 1 : blocks, synchronous, rangeBlocks: blocks);
    }

    private NvmeRequest PrepareBounced(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int bytes, bool synchronous)
    {
        ArgumentNullException.ThrowIfNull(ns);
        if (bytes <= 0 || bytes % ns.BlockSize != 0 || bytes > BounceBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"a bounced transfer is 1..{BounceBytes} bytes in whole {ns.BlockSize}-byte blocks");
        }
        var r = Rent(opcode, ns, lba, bytes / ns.BlockSize, synchronous);
        lock (_lock)
        {
            if (!_bounces.TryPop(out var bounce))
            {
                try
                {
                    bounce = _controller.Device.Dma.Allocate((ulong)BounceBytes,
                        new DmaAllocationOptions { Alignment = 4096, Contiguous = false, Name = $"nvme bounce Q{QueueId}" });
                }
                catch
                {
                    ReleaseRefLocked(r);
                    throw;
                }
                _allBounces.Add(bounce);
            }
            r.Bounce = bounce;
            r.Buffer = bounce;
            r.Offset = 0;
            // Claimed like a caller's buffer, so it cannot be freed while its command is with the device (and the DMA
            // audit sees it leased); RecycleLocked releases the claim before the buffer goes back to the stack.
            bounce.AddDeviceUse(_leaseOwner);
            r.BufferLeased = true;
        }
        Interlocked.Increment(ref _bounced);
        return r;
    }

    private NvmeRequest Rent(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, bool synchronous, int rangeBlocks = 0)
    {
        lock (_lock)
        {
            ThrowIfUnusableLocked();
            return RentLocked(opcode, ns, lba, blocks, synchronous, rangeBlocks);
        }
    }

    private NvmeRequest RentLocked(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, bool synchronous, int rangeBlocks)
    {
        NvmeRequest? r;
        if (t_answering == this && _answeringFree is { } free)
        {
            _answeringFree = free.NextReturned;
            free.NextReturned = null;
            r = free;
        }
        else if (!_pool.TryPop(out r))
        {
            for (var back = Interlocked.Exchange(ref _returned, null); back is not null;)
            {
                var next = back.NextReturned;
                back.NextReturned = null;
                _pool.Push(back);
                back = next;
            }
            if (!_pool.TryPop(out r)) { r = new NvmeRequest(this); }
        }
        r.Opcode = opcode;
        r.Nsid = ns.Id;
        r.BlockSize = ns.BlockSize;
        r.Lba = lba;
        r.Blocks = blocks;
        r.RangeBlocks = rangeBlocks;
        r.Synchronous = synchronous;
        r.Refs = 1;   // the caller
        return r;
    }

    // ---------------------------------------------------------------- requests: submission and waiting

    private ValueTask SubmitAsync(NvmeRequest r, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            ReleaseRequest(r);
            return ValueTask.FromCanceled(cancellationToken);
        }
        EnsurePoller();
        short version = r.Version;
        lock (_lock)
        {
            if (CurrentFailureLocked() is { } failure)
            {
                ReleaseRefLocked(r);
                return ValueTask.FromException(failure);
            }
            StartAsyncLocked(r);
        }
        if (cancellationToken.CanBeCanceled) { Register(r, cancellationToken); }
        return new ValueTask(r, version);
    }

    private void StartAsyncLocked(NvmeRequest r)
    {
        _activeAsync++;
        EnqueueLocked(r);
        if (_parked)
        {
            _parked = false;
            _wake.Set();
        }
    }

    private static void Register(NvmeRequest r, CancellationToken cancellationToken)
    {
        r.Token = cancellationToken;
        r.Registration = cancellationToken.UnsafeRegister(static s => ((NvmeRequest)s!).Cancel(), r);
    }

    private void RunSync(NvmeRequest r)
    {
        WaitSync(r, out var failure);
        ReleaseRequest(r);
        if (failure is not null) { throw failure; }
    }

    /// <summary>Submits a synchronous request and polls until it is done; the caller still owns it afterwards.</summary>
    private void WaitSync(NvmeRequest r, out Exception? failure)
    {
        lock (_lock)
        {
            if (CurrentFailureLocked() is { } f)
            {
                failure = f;
                return;
            }
            EnqueueLocked(r);
            // Rung now even on the completion thread (a continuation calling a synchronous method): this thread
            // waits for the command, so the doorbell cannot wait for the end of the round.
            if (!_stopped) { RingSubmissionsLocked(); }
        }
        var time = _controller.Time;
        long start = time.GetTimestamp();
        long nextCheck = TimeSpan.TicksPerMillisecond;
        int idle = 0;
        while (!r.SyncDone)
        {
            bool progressed = false;
            lock (_lock)
            {
                if (!_stopped && !r.SyncDone && ReapLocked() > 0)
                {
                    PumpLocked();
                    RingSubmissionsLocked();
                    progressed = true;
                }
            }
            if (r.SyncDone) { break; }
            if (progressed)
            {
                idle = 0;
                continue;
            }
            if (++idle < 64) { continue; }
            idle = 0;
            var elapsed = time.GetElapsedTime(start);
            if (elapsed.Ticks >= nextCheck)
            {
                nextCheck = elapsed.Ticks + 10 * TimeSpan.TicksPerMillisecond;
                CheckHealthAndTimeouts();
            }
            Thread.SpinWait(16);
        }
        failure = r.Failure;
    }

    /// <summary>Queues a request behind those already waiting and places what fits. Under the lock.</summary>
    private void EnqueueLocked(NvmeRequest r)
    {
        // The queue's ownership, until the request is answered and none of its commands is in flight or waiting.
        // A plain increment: until it is queued, no other thread can reach the request.
        r.Refs++;
        r.QueueOwned = true;
        if (!_stopped && _pending.Count == 0 && _freeCount > 0)
        {
            // Nothing waits ahead of it: placed at once, the waiting line only for what does not fit.
            PlaceRequestLocked(r);
            if (r.Stop || !r.HasMore)
            {
                SettleLocked(r);
                RingLocked();
                return;
            }
        }
        r.InPending = true;
        _pending.Enqueue(r);
        if (!_stopped)
        {
            PumpLocked();
            RingLocked();
        }
    }

    /// <summary>Places commands of waiting requests, in order, while slots are free. Under the lock.</summary>
    private void PumpLocked()
    {
        while (_pending.Count > 0)
        {
            var r = _pending.Peek();
            if (!r.Stop && r.HasMore)
            {
                if (_freeCount == 0) { return; }
                PlaceRequestLocked(r);
                if (!r.Stop && r.HasMore) { return; }   // out of slots
            }
            _pending.Dequeue();
            r.InPending = false;
            SettleLocked(r);
        }
    }

    private unsafe void PlaceRequestLocked(NvmeRequest r)
    {
        while (!r.Stop && r.HasMore && _freeCount > 0)
        {
            ushort tag = _freeTags[--_freeCount];
            ref var slot = ref _slots[tag];
            NvmeCommand command;
            DmaWindow data = default;   // what the command transfers, for the DMA audit
            switch (r.Opcode)
            {
                case NvmOpcode.Read or NvmOpcode.Write or NvmOpcode.Compare:
                {
                    int chunk = Math.Min(r.Blocks, Math.Min(_controller.MaxTransferBytes / r.BlockSize, 65536));
                    ulong bytes = (ulong)chunk * (ulong)r.BlockSize;
                    PrpPair prp;
                    try
                    {
                        var map = new DmaBufferAddressMap(r.Buffer!, r.Offset);
                        prp = BuildPrp(ref map, bytes, slot.PrpListPointer, slot.PrpList);
                    }
                    catch (Exception e) when (e is ArgumentException or ObjectDisposedException)
                    {
                        _freeTags[_freeCount++] = tag;
                        r.Failure ??= e;
                        r.Stop = true;
                        return;
                    }
                    command = r.Opcode == NvmOpcode.Compare
                        ? NvmeCommand.Compare(r.Nsid, r.Lba, chunk, prp.Prp1, prp.Prp2)
                        : NvmeCommand.ReadWrite(r.Opcode, r.Nsid, r.Lba, chunk, prp.Prp1, prp.Prp2);
                    data = new DmaWindow(r.Buffer, r.Offset, bytes);
                    r.Lba += (ulong)chunk;
                    r.Offset += bytes;
                    r.Blocks -= chunk;
                    break;
                }
                case NvmOpcode.WriteZeroes:
                {
                    int chunk = Math.Min(r.Blocks, MaxWriteZeroesBlocks);
                    command = NvmeCommand.WriteZeroes(r.Nsid, r.Lba, chunk);
                    r.Lba += (ulong)chunk;
                    r.Blocks -= chunk;
                    break;
                }
                case NvmOpcode.DatasetManagement when r.DsmRanges is not null:
                    command = RangesCommandLocked(r, slot.PrpListPointer, slot.PrpList);
                    data = SlotPageWindow(tag, (ulong)r.DsmRanges.Length * (ulong)sizeof(DsmRange));
                    r.Blocks = 0;
                    break;
                case NvmOpcode.DatasetManagement:
                    // The range list goes in the slot's PRP page, which this command does not need for PRPs.
                    // SAFETY: the page belongs to this slot (taken above) and is at least 16 bytes.
                    *(DsmRange*)slot.PrpListPointer = new DsmRange { BlockCount = (uint)r.RangeBlocks, StartingLba = r.Lba };
                    command = NvmeCommand.Deallocate(r.Nsid, 1, slot.PrpList);
                    data = SlotPageWindow(tag, (ulong)sizeof(DsmRange));
                    r.Blocks = 0;
                    break;
                default:
                    command = NvmeCommand.Flush(r.Nsid);
                    r.Blocks = 0;
                    break;
            }
            try
            {
                PlaceLocked(tag, command, data);
            }
            catch (DmaAuditViolationException e)
            {
                // As a failed PRP build: the slot goes back, the request ends with the violation once its chunks in flight do.
                _freeTags[_freeCount++] = tag;
                r.Failure ??= e;
                r.Stop = true;
                return;
            }
            slot.Kind = RequestKind;
            slot.Request = r;
            slot.Leased = null;
            r.ChunksInFlight++;
        }
    }

    /// <summary>
    /// Writes the submission queue entry of command <paramref name="tag"/>: the one place an I/O command reaches the
    /// ring. <paramref name="data"/> is what the command transfers (no buffer when nothing), checked by the DMA audit
    /// before anything is written (a violation leaves the ring and the slot's state untouched).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PlaceLocked(ushort tag, NvmeCommand command, in DmaWindow data = default)
    {
        command.CommandId = tag;
        if (DmaAudit.Enabled) { AuditLocked(tag, ref command, data); }
        ref var slot = ref _slots[tag];
        slot.State = InFlight;
        slot.Status = default;
        slot.Info = NvmeCommandInfo.From(QueueId, command);
        // Stamped for real by the doorbell that announces it (one clock read per doorbell, not per command); until
        // then it carries the previous doorbell's time.
        slot.Submitted = _lastRing;
        if (_unrungCount < _unrung.Length) { _unrung[_unrungCount++] = tag; }
        else { slot.Submitted = _controller.Time.GetTimestamp(); }
        Pair.Place(command);
    }

    /// <summary>Rings the SQ doorbell, unless this queue's completion thread is answering on this thread (it rings once after the round).</summary>
    private void RingLocked()
    {
        if (!_stopped && t_answering != this) { RingSubmissionsLocked(); }
    }

    /// <summary>
    /// Announces the placed commands with one SQ doorbell write, and starts their time (the command timeout, the
    /// batch interface's <see cref="NvmeIoCompletion.SubmittedTimestamp"/>) now: the device can fetch them from
    /// this moment, and a clock read per doorbell rather than per command keeps the clock off the per-I/O path
    /// (under TCG the guest's HPET clock costs about 2 us a read). Under the lock.
    /// </summary>
    private void RingSubmissionsLocked()
    {
        if (_unrungCount > 0)
        {
            long now = _controller.Time.GetTimestamp();
            for (int i = 0; i < _unrungCount; i++)
            {
                ref var slot = ref _slots[_unrung[i]];
                if (slot.State == InFlight) { slot.Submitted = now; }
            }
            _unrungCount = 0;
            _lastRing = now;
        }
        Pair.RingSubmissions();
    }

    /// <summary>
    /// A test's chance to corrupt a command and its slot's PRP list after the driver built them, to prove the DMA
    /// audit stops it before the doorbell. Consulted only while <see cref="DmaAudit.Enabled"/>.
    /// </summary>
    internal delegate void CommandTamper(ushort tag, ref NvmeCommand command, Span<DmaAddress> prpList);

    /// <inheritdoc cref="CommandTamper"/>
    internal CommandTamper? TamperForTests { get; set; }

    /// <summary>The first <paramref name="bytes"/> of slot <paramref name="tag"/>'s PRP page (DSM ranges live there).</summary>
    private DmaWindow SlotPageWindow(ushort tag, ulong bytes) => new(_prpPages, (ulong)tag << _pageShift, bytes);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private unsafe void AuditLocked(ushort tag, ref NvmeCommand command, in DmaWindow data)
    {
        ref var slot = ref _slots[tag];
        TamperForTests?.Invoke(tag, ref command, new Span<DmaAddress>((void*)slot.PrpListPointer, 1 << (_pageShift - 3)));
        // A failed audit leaves the slot to the caller as a failed PRP build would: nothing reached the ring.
        PrpAudit.Check(command, new PrpAudit.Lease(_controller.Device.Address, _leaseOwner, _pageShift, data,
            SlotPageWindow(tag, 1UL << _pageShift), slot.PrpListPointer, slot.PrpList));
    }

    private unsafe PrpPair BuildPrp(ref DmaBufferAddressMap map, ulong bytes, nint listPointer, DmaAddress listAddress)
    {
        // SAFETY: the slot's list page is page-size bytes of DMA memory owned by this queue; a DmaAddress is the
        // 8-byte little-endian PRP entry itself (Vfio.Spec.Nvme tests assert its size), so the page is its entries.
        var list = new Span<DmaAddress>((void*)listPointer, 1 << (_pageShift - 3));
        return Prp.Build(ref map, bytes, _pageShift, list, listAddress);
    }

    // ---------------------------------------------------------------- completions: the one place they are retired

    /// <summary>
    /// Takes every posted completion, validates what the controller wrote, retires its command, and rings the CQ
    /// head doorbell once. Under the lock, not stopped. A completion the specification does not allow (NVMe 1.4
    /// §4.6: the CID of a command outstanding on this SQ, SQHD inside the queue, SQID of this queue) faults the
    /// queue with <see cref="DeviceProtocolViolationException"/>: no further entry is consumed, and commands in
    /// flight keep their slots and buffers (the device may still write them) until a reset.
    /// </summary>
    private int ReapLocked()
    {
        if (_faulted) { return 0; }
        int n = 0;
        // With a listener, every retired command records its latency: one clock read for the whole round.
        long retired = 0;
        while (Pair.TryTake(out var c))
        {
            if (n++ == 0 && NvmeTelemetry.Recording) { retired = _controller.Time.GetTimestamp(); }
            int tag = c.CommandId;
            string? violation = CompletionCheck.Violation(c, QueueId, Pair.Entries,
                commandOutstanding: (uint)tag < (uint)_slots.Length && _slots[tag].State == InFlight);
            if (violation is not null)
            {
                StrayCompletions++;
                FaultLocked(new DeviceProtocolViolationException(_controller.Device.Address,
                    $"NVMe I/O completion queue {QueueId} entry (CID {tag}, status 0x{c.Status.Value:x4})", violation));
                break;
            }
            RetireLocked((ushort)tag, c.Status, EndReason.Device, retired);
        }
        Pair.RingCompletions();
        return n;
    }

    /// <param name="tag">The command.</param>
    /// <param name="status">How it ended.</param>
    /// <param name="reason">Who ended it.</param>
    /// <param name="retired">When, for the latency a listener records (0: read the clock now).</param>
    private void RetireLocked(ushort tag, NvmeStatus status, EndReason reason, long retired = 0)
    {
        ref var slot = ref _slots[tag];
        if (NvmeTelemetry.Recording)
        {
            RecordCompletion(slot.Info, status, slot.Submitted, retired != 0 ? retired : _controller.Time.GetTimestamp());
        }
        if (slot.Kind == BatchKind)
        {
            slot.Leased?.ReleaseDeviceUse();
            slot.Leased = null;
            slot.State = Done;
            slot.Status = status;
            PushDone(tag);
            return;
        }
        var r = slot.Request!;
        slot.Request = null;
        slot.State = Free;
        _freeTags[_freeCount++] = tag;
        r.ChunksInFlight--;
        if (!status.IsSuccess && r.Failure is null)
        {
            var address = _controller.Device.Address;
            r.Failure = reason switch
            {
                EndReason.Reset => new NvmeCommandAbortedException(slot.Info, address),
                EndReason.Released => new DeviceReleasedException(address, "the NVMe controller was stopped while the command was in flight"),
                EndReason.Deleted => new ObjectDisposedException(nameof(NvmeIoQueue), $"NVMe I/O queue {QueueId} was deleted while {slot.Info} was in flight"),
                EndReason.DeviceError => _controller.DeviceErrorException(slot.Info),
                _ => new NvmeCommandException(slot.Info, status, address),
            };
        }
        if (!status.IsSuccess) { r.Stop = true; }
        SettleLocked(r);
    }

    /// <summary>
    /// After any change to a request's commands, under the lock: answers it once it is finished (or must be answered
    /// early), and ends the queue's ownership once it is answered and none of its commands is in flight or waiting.
    /// </summary>
    private void SettleLocked(NvmeRequest r)
    {
        MaybeCompleteLocked(r);
        if (r.QueueOwned && r.Completing && r.ChunksInFlight == 0 && !r.InPending)
        {
            r.QueueOwned = false;
            ReleaseRefLocked(r);
        }
    }

    /// <summary>Hands a request to be answered once it is finished (or must be answered early). Under the lock.</summary>
    private void MaybeCompleteLocked(NvmeRequest r)
    {
        if (r.Completing) { return; }
        bool finished = r.ChunksInFlight == 0 && (!r.HasMore || r.Stop) && !r.InPending;
        if (!finished && !(r.AnswerEarly && r.Failure is not null)) { return; }
        r.Completing = true;
        _requestsCompleted++;
        if (r.Synchronous)
        {
            r.SyncDone = true;
            return;
        }
        _activeAsync--;
        // Claimed here, so the answer is this queue's to give (a cancellation that answered first keeps it): the
        // caller then owns the request until it has the result, and the completed list needs no ownership of its own.
        if (!r.TryClaim()) { return; }
        if (_completedTail is null) { _completedHead = r; }
        else { _completedTail.NextCompleted = r; }
        _completedTail = r;
        if (_parked)
        {
            _parked = false;
            _wake.Set();
        }
    }

    private void ReleaseRefLocked(NvmeRequest r)
    {
        if (Interlocked.Decrement(ref r.Refs) > 0) { return; }
        RecycleLocked(r);
    }

    /// <summary>No one owns <paramref name="r"/> any more: its lease and bounce buffer go back, the request to the pool.</summary>
    private void RecycleLocked(NvmeRequest r)
    {
        Debug.Assert(r.ChunksInFlight == 0 && !r.InPending);
        if (r.BufferLeased) { r.Buffer!.ReleaseDeviceUse(); }
        if (r.Bounce is { } bounce)
        {
            // After the queue's memory was freed (its caller answered late), the bounce buffer goes too.
            if (_disposed)
            {
                _allBounces.Remove(bounce);
                bounce.Dispose();
            }
            else { _bounces.Push(bounce); }
        }
        r.Clear();
        _pool.Push(r);
    }

    /// <summary>The caller is done with <paramref name="r"/> (it has its result).</summary>
    internal void ReleaseRequest(NvmeRequest r)
    {
        // Owners are counted atomically, so the caller's release takes the lock only when it is the last one:
        // in steady state the command retired before the answer, and this is the last release.
        if (Interlocked.Decrement(ref r.Refs) > 0) { return; }
        if (r.Bounce is not null)
        {
            lock (_lock) { RecycleLocked(r); }
            return;
        }
        // No one else can reach the request now: its lease ends and it is cleared here, and it joins a lock-free
        // list the next rent moves into the pool (one consumer, under the lock, takes the whole list at once).
        if (r.BufferLeased) { r.Buffer!.ReleaseDeviceUse(); }
        r.Clear();
        if (t_answering == this)
        {
            // A continuation on this queue's completion thread: the next one it runs rents from here, no atomics.
            r.NextReturned = _answeringFree;
            _answeringFree = r;
            return;
        }
        var head = Volatile.Read(ref _returned);
        do
        {
            r.NextReturned = head;
        }
        while (!ReferenceEquals(head = Interlocked.CompareExchange(ref _returned, r, head), r.NextReturned));
    }

    private NvmeRequest? _returned;

    /// <summary>A cancelled request places no further commands; one still waiting for a slot leaves the line.</summary>
    internal void StopRequest(NvmeRequest r)
    {
        lock (_lock)
        {
            r.Stop = true;
            if (r.InPending && r.ChunksInFlight == 0 && !_stopped) { PumpLocked(); }
        }
    }

    private void PushDone(ushort tag)
    {
        int tail = (_doneHead + _doneCount) % _doneTags.Length;
        _doneTags[tail] = tag;
        _doneCount++;
    }

    // ---------------------------------------------------------------- the completion thread

    private void EnsurePoller()
    {
        if (_poller is not null) { return; }
        lock (_lock)
        {
            if (_poller is not null || _pollerStop) { return; }
            var thread = new Thread(static s => ((NvmeIoQueue)s!).PollerMain())
            {
                IsBackground = true,
                Name = $"nvme Q{QueueId} completions",
            };
            thread.Start(this);
            _poller = thread;
        }
    }

    /// <summary>
    /// Reaps the queue and answers asynchronous requests, running their continuations inline on this thread; a
    /// continuation that submits to this queue has its command placed and the doorbell rung once for the whole
    /// round. Sleeps when no asynchronous request is outstanding; between completions it polls, sleeps on the
    /// MSI-X vector, or polls for <see cref="HybridSpin"/> and then sleeps, by <see cref="CompletionMode"/>.
    /// </summary>
    private void PollerMain()
    {
        t_pollerQueue = this;
        var time = _controller.Time;
        // Every time here is the controller clock's; under TCG a read costs microseconds, so it is read once per round.
        long lastWork = time.GetTimestamp();
        long spinTicks = (long)(HybridSpin.TotalSeconds * time.TimestampFrequency);
        long nextCheck = 0;
        int spins = 0;
        while (true)
        {
            NvmeRequest? answers;
            bool idle;
            lock (_lock)
            {
                if (!_stopped && ReapLocked() > 0) { PumpLocked(); }
                // Every claimed answer at once: each lives on through its caller's ownership until it has the result.
                answers = _completedHead;
                _completedHead = _completedTail = null;
                // Stopping for good: the requests the end failed are answered first.
                if (answers is null && _pollerStop) { break; }
                idle = answers is null && (_stopped || _activeAsync == 0);
                if (idle)
                {
                    _parked = true;
                    _wake.Reset();
                }
                if (!_stopped) { RingSubmissionsLocked(); }
            }
            if (answers is not null)
            {
                _roundTimestamp = time.GetTimestamp();
                t_answering = this;
                try
                {
                    while (answers is not null)
                    {
                        // The link is read first: once answered, the request may be reused by its caller's next call.
                        var r = answers;
                        answers = r.NextCompleted;
                        r.NextCompleted = null;
                        try { r.Deliver(); }
                        catch (Exception e) { _controller.LogContinuationFailure(QueueId, e); }
                    }
                }
                finally { t_answering = null; }
                lock (_lock)
                {
                    if (!_stopped) { RingSubmissionsLocked(); }
                }
                lastWork = _roundTimestamp;
                spins = 0;
                continue;
            }
            if (idle)
            {
                _wake.Wait();
                lastWork = time.GetTimestamp();
                continue;
            }
            long now = time.GetTimestamp();
            if (now >= nextCheck)
            {
                nextCheck = now + time.TimestampFrequency / 100;
                CheckHealthAndTimeouts();
            }
            bool sleep = Vector is not null && (CompletionMode == NvmeCompletionMode.Interrupt
                || (CompletionMode == NvmeCompletionMode.Hybrid && now - lastWork > spinTicks));
            if (sleep)
            {
                try
                {
                    // Bounded so timeouts and CSTS are still checked when no interrupt comes.
                    if (Vector!.Wait(TimeSpan.FromMilliseconds(10)) > 0) { Interlocked.Increment(ref _interruptWakeups); }
                }
                catch (ObjectDisposedException)
                {
                    // Interrupts are being torn down (release or dispose): the stop flag follows.
                    Thread.Sleep(1);
                }
            }
            else if (++spins % 256 == 0)
            {
                Thread.Yield();   // on one CPU, let the threads that submit run
            }
            else
            {
                Thread.SpinWait(8);
            }
        }
        t_pollerQueue = null;
    }

    /// <summary>
    /// Reads CSTS and checks the oldest commands against the command timeout; either failure faults the queue:
    /// every request in flight is answered with the error at once while its commands keep their slots (the device
    /// may still complete them or move data) until a reset.
    /// </summary>
    private void CheckHealthAndTimeouts()
    {
        lock (_lock)
        {
            if (_stopped || _terminal is not null) { return; }
            try
            {
                _controller.CheckHealth();
            }
            catch (NvmeControllerFatalException e)
            {
                FaultLocked(e);
                return;
            }
            long now = _controller.Time.GetTimestamp();
            var limit = _controller.CommandTimeout;
            for (int i = 0; i < _slots.Length; i++)
            {
                ref var slot = ref _slots[i];
                if (slot.State == InFlight && slot.Kind == RequestKind && !slot.Request!.AnswerEarly
                    && _controller.Time.GetElapsedTime(slot.Submitted, now) > limit)
                {
                    FaultLocked(new NvmeTimeoutException(slot.Info, limit, _controller.Device.Address));
                    return;
                }
            }
        }
    }

    private void FaultLocked(Exception e)
    {
        _faulted = true;
        _controller.MarkFaulted();
        FailOutstandingLocked(e);
    }

    /// <summary>Answers every request in flight or waiting with <paramref name="e"/>; commands in flight keep their slots.</summary>
    private void FailOutstandingLocked(Exception e)
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            ref var slot = ref _slots[i];
            if (slot.State == InFlight && slot.Kind == RequestKind && slot.Request is { } r)
            {
                r.Failure ??= e;
                r.Stop = true;
                r.AnswerEarly = true;
                SettleLocked(r);
            }
        }
        while (_pending.TryDequeue(out var r))
        {
            r.InPending = false;
            r.Failure ??= e;
            r.Stop = true;
            r.AnswerEarly = true;
            SettleLocked(r);
        }
    }

    /// <summary>The error a new operation gets now, if any. Under the lock.</summary>
    private Exception? CurrentFailureLocked()
    {
        if (_terminal is not null) { return _terminal; }
        if (_controller.DeviceErrorException(null) is { } deviceError) { return deviceError; }
        if (_faulted || _controller.IsFaulted)
        {
            return new NvmeControllerFatalException("the controller faulted earlier (fatal status or a command timeout) and has not been reset; call NvmeController.Reset()",
                0, _controller.Device.Address);
        }
        return null;
    }

    // ---------------------------------------------------------------- lifetime: quiesce, reset, release

    /// <summary>
    /// Stops every use of the rings and the doorbells: once this returns, no thread is inside the queue (they all
    /// need the lock, and see the flag), so the controller may be disabled and its memory reset or freed.
    /// </summary>
    internal void Quiesce()
    {
        lock (_lock)
        {
            _stopped = true;
            _running.Reset();
        }
    }

    /// <summary>After the controller was disabled (it no longer fetches commands or writes completions): ends every command in flight.</summary>
    internal void AbortInFlight(bool released)
    {
        var aborted = NvmeStatus.Create(GenericStatusCode.CommandAbortedSqDeletion);
        lock (_lock)
        {
            for (int i = 0; i < _slots.Length; i++)
            {
                if (_slots[i].State == InFlight)
                {
                    RetireLocked((ushort)i, aborted, released ? EndReason.Released : EndReason.Reset);
                }
            }
        }
    }

    /// <summary>
    /// After the device reported an uncorrectable error, quiesced already: every request in flight or waiting is
    /// answered with <see cref="NvmeDeviceErrorException"/>. With <paramref name="deviceStopped"/> (the controller is
    /// disabled or bus mastering is off) the commands' slots are retired and their leases returned; otherwise they
    /// stay taken until a reset. The queue stays stopped (no thread touches its rings) but callers waiting for it
    /// wake and get the error, until <see cref="NvmeController.RecoverFromError"/> resets it.
    /// </summary>
    internal void FailForDeviceError(Exception error, bool deviceStopped)
    {
        var aborted = NvmeStatus.Create(GenericStatusCode.CommandAbortedSqDeletion);
        lock (_lock)
        {
            if (deviceStopped)
            {
                for (int i = 0; i < _slots.Length; i++)
                {
                    if (_slots[i].State == InFlight)
                    {
                        RetireLocked((ushort)i, aborted, EndReason.DeviceError);
                    }
                }
            }
            FailOutstandingLocked(error);
            _running.Set();
        }
    }

    /// <summary>After a controller reset: empty rings, ready for the queue to be created again.</summary>
    internal void ResetState()
    {
        lock (_lock)
        {
            Pair.ResetState();
            _unrungCount = 0;
            _faulted = false;
        }
    }

    /// <summary>After the queue exists again: places what waited and lets everyone in.</summary>
    internal void Resume()
    {
        lock (_lock)
        {
            _stopped = false;
            PumpLocked();
            RingLocked();
            _running.Set();
            if (_parked)
            {
                _parked = false;
                _wake.Set();
            }
        }
    }

    /// <summary>
    /// The queue ends for good (release to the host, controller or queue disposal), quiesced already: every
    /// request in flight or waiting is answered with <paramref name="error"/>, later calls get it too. With
    /// <paramref name="deviceStopped"/> the device can no longer touch the commands' memory, so their slots are
    /// retired and leases returned; otherwise they stay taken (the memory stays allocated).
    /// </summary>
    internal void Terminate(Exception error, bool deviceStopped, bool released)
    {
        lock (_lock)
        {
            _terminal ??= error;
            if (deviceStopped)
            {
                var aborted = NvmeStatus.Create(GenericStatusCode.CommandAbortedSqDeletion);
                for (int i = 0; i < _slots.Length; i++)
                {
                    if (_slots[i].State == InFlight)
                    {
                        RetireLocked((ushort)i, aborted, released ? EndReason.Released : EndReason.Deleted);
                    }
                }
            }
            FailOutstandingLocked(error);
            _running.Set();
            _pollerStop = true;
            _wake.Set();
        }
    }

    /// <summary>Blocks a batch submission while a reset is in progress.</summary>
    private void WaitWhileStopped()
    {
        var limit = _controller.CommandTimeout + TimeSpan.FromSeconds(30);
        if (!_running.Wait(limit))
        {
            throw new DeviceTimeoutException(_controller.Device.Address, $"the end of the reset of NVMe I/O queue {QueueId}", limit);
        }
    }

    private void ThrowIfUnusableLocked()
    {
        if (_terminal is not null)
        {
            if (_terminal is DeviceReleasedException) { _controller.ThrowIfReleased(); }
            ObjectDisposedException.ThrowIf(true, this);
        }
        if (_faulted || _controller.IsFaulted)
        {
            _controller.ThrowIfFaulted();
            throw new InvalidOperationException($"queue {QueueId} faulted (a command timed out); reset the controller");
        }
    }

    // ---------------------------------------------------------------- checks

    private static void CheckTransfer(NvmeNamespace ns, int blocks, DmaBuffer buffer, ulong offset)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(buffer);
        if (blocks < 1) { throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "at least one block"); }
        ulong bytes = (ulong)blocks * (ulong)ns.BlockSize;
        if (offset > buffer.Length || bytes > buffer.Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks,
                $"{blocks} blocks of {ns.BlockSize} bytes at offset {offset} do not fit the {buffer.Length}-byte buffer");
        }
        // The LBA range is deliberately not checked against the namespace size: the controller does that and
        // answers LBA Out of Range, which callers may rely on.
    }

    private void RequireOptional(OptionalNvmCommands command, string name)
    {
        if ((_controller.Identity.OptionalCommands & command) == 0)
        {
            throw new NotSupportedException($"the controller does not support {name} (Identify Controller ONCS 0x{(ushort)_controller.Identity.OptionalCommands:x4})");
        }
    }

    internal void TakeBufferOwnership() => _prpLease ??= _prpPages.MarkInUse($"nvme queue {QueueId} PRP lists");

    internal void ReleaseBufferOwnership()
    {
        _prpLease?.Dispose();
        _prpLease = null;
    }

    /// <summary>Frees the rings, PRP pages and the bounce buffers no request holds. The device must be stopped or the queue deleted.</summary>
    internal void DisposeMemory()
    {
        lock (_lock) { _disposed = true; }
        ReleaseBufferOwnership();
        Pair.ReleaseOwnership();
        Pair.Dispose();
        _prpPages.Dispose();
        lock (_lock)
        {
            while (_bounces.TryPop(out var b))
            {
                _allBounces.Remove(b);
                b.Dispose();
            }
        }
    }

    internal bool IsDisposed => _disposed;

    /// <summary>Deletes the queue pair in the controller (SQ, then CQ) and frees its memory; operations in flight end with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _controller.DeleteIoQueue(this);
        _disposed = true;
    }
}
