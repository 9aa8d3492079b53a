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
/// One I/O submission/completion queue pair. Not thread-safe: use one queue per submitting thread (the controller
/// grants several), and one operation at a time per queue; a concurrent call throws
/// <see cref="InvalidOperationException"/>.
/// <para>Three ways to do I/O: synchronous calls (<see cref="Read"/>, <see cref="Write"/>, ...) that submit and
/// poll the completion queue, allocating nothing; asynchronous calls that sleep on the queue's MSI-X vector when
/// it has one; and the batch interface (<see cref="SubmitRead"/>, <see cref="RingDoorbell"/>, <see cref="Reap"/>)
/// that keeps many commands in flight with one doorbell write per batch.</para>
/// <para>Data buffers must stay allocated until their commands complete, and be dword aligned at the start and
/// page aligned in device address space from the second page on (NVMe 1.4 §4.3).</para>
/// </summary>
public sealed class NvmeIoQueue : IDisposable
{
    private const byte Free = 0, InFlight = 1, Done = 2;
    private const int Wave = 64;

    private readonly NvmeController _controller;
    private readonly DmaBuffer _prpPages;
    private DeviceUseLease? _prpLease;
    private readonly Slot[] _slots;
    private readonly ushort[] _freeTags;
    private int _freeCount;
    private readonly ushort[] _doneTags;
    private int _doneHead, _doneCount;
    private readonly int _pageShift;
    private int _busy;
    private bool _faulted;
    private bool _disposed;

    private struct Slot
    {
        public byte State;
        public bool Batched;
        public NvmeStatus Status;
        public NvmeCommandInfo Info;
        public long Submitted;
        public DmaAddress PrpList;
        public nint PrpListPointer;
    }

    internal NvmeIoQueue(NvmeController controller, int queueId, int entries, IInterruptVector? vector)
    {
        _controller = controller;
        QueueId = queueId;
        Vector = vector;
        _pageShift = controller.PageShift;
        var device = controller.Device;
        Pair = new QueuePair(queueId, entries, device.Dma, GetBar(controller), controller.Capabilities.DoorbellStride, "nvme");
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

    private static IDeviceRegion GetBar(NvmeController controller) => controller.Bar;

    internal QueuePair Pair { get; }

    internal IInterruptVector? Vector { get; }

    /// <summary>The queue identifier (1..).</summary>
    public int QueueId { get; }

    /// <summary>Most commands in flight at once (entries - 1).</summary>
    public int Depth => _slots.Length;

    /// <summary>Commands submitted and not yet reaped.</summary>
    public int Outstanding => _slots.Length - _freeCount;

    /// <summary>True when the completion queue signals an MSI-X vector.</summary>
    public bool UsesInterrupts => Vector is not null;

    /// <summary>SQ tail doorbell writes (MMIO) since the queue was created: one per batch of submissions.</summary>
    public long SubmissionDoorbellWrites => Pair.SubmissionDoorbellWrites;

    /// <summary>CQ head doorbell writes (MMIO) since the queue was created: one per batch of reaped completions.</summary>
    public long CompletionDoorbellWrites => Pair.CompletionDoorbellWrites;

    /// <summary>Largest transfer per command, in bytes.</summary>
    public int MaxTransferBytes => _controller.MaxTransferBytes;

    // ---------------------------------------------------------------- synchronous, polled

    /// <summary>Reads <paramref name="blocks"/> blocks from <paramref name="lba"/> into <paramref name="buffer"/> at <paramref name="offset"/>.</summary>
    /// <exception cref="NvmeCommandException">The controller failed the command.</exception>
    public void Read(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        Transfer(NvmOpcode.Read, ns, lba, blocks, buffer, offset);

    /// <summary>Writes <paramref name="blocks"/> blocks at <paramref name="lba"/> from <paramref name="buffer"/> at <paramref name="offset"/>.</summary>
    /// <exception cref="NvmeCommandException">The controller failed the command.</exception>
    public void Write(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        Transfer(NvmOpcode.Write, ns, lba, blocks, buffer, offset);

    /// <summary>Commits the namespace's volatile write cache to media (Flush, NVMe 1.4 §6.8).</summary>
    public void Flush(NvmeNamespace ns)
    {
        Enter();
        try
        {
            Span<ushort> tags = stackalloc ushort[1];
            tags[0] = Place(NvmeCommand.Flush(ns.Id), batched: false);
            Pair.RingSubmissions();
            WaitPolled(tags);
            ThrowFirstError(tags);
        }
        finally { Exit(); }
    }

    /// <summary>Zeroes <paramref name="blocks"/> blocks at <paramref name="lba"/> without a data transfer (Write Zeroes, NVMe 1.4 §6.16).</summary>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Write Zeroes.</exception>
    public void WriteZeroes(NvmeNamespace ns, ulong lba, int blocks)
    {
        RequireOptional(OptionalNvmCommands.WriteZeroes, "Write Zeroes");
        CheckBlocks(ns, blocks);
        Enter();
        try
        {
            Span<ushort> tags = stackalloc ushort[Wave];
            while (blocks > 0)
            {
                int n = 0;
                while (blocks > 0 && n < Wave && _freeCount > 0)
                {
                    int chunk = Math.Min(blocks, 65536);
                    tags[n++] = Place(NvmeCommand.WriteZeroes(ns.Id, lba, chunk), batched: false);
                    lba += (ulong)chunk;
                    blocks -= chunk;
                }
                Pair.RingSubmissions();
                WaitPolled(tags[..n]);
                ThrowFirstError(tags[..n]);
            }
        }
        finally { Exit(); }
    }

    /// <summary>Deallocates (trims) a range (Dataset Management with AD, NVMe 1.4 §6.7).</summary>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Dataset Management.</exception>
    public unsafe void Deallocate(NvmeNamespace ns, ulong lba, int blocks)
    {
        RequireOptional(OptionalNvmCommands.DatasetManagement, "Dataset Management");
        CheckBlocks(ns, blocks);
        Enter();
        try
        {
            Span<ushort> tags = stackalloc ushort[1];
            ushort tag = TakeTag();
            ref var slot = ref _slots[tag];
            // The range list goes in the slot's PRP page, which this command does not need for PRPs.
            // SAFETY: the page belongs to this slot and is at least 16 bytes.
            *(DsmRange*)slot.PrpListPointer = new DsmRange { BlockCount = (uint)blocks, StartingLba = lba };
            PlaceTagged(tag, NvmeCommand.Deallocate(ns.Id, 1, slot.PrpList), batched: false);
            tags[0] = tag;
            Pair.RingSubmissions();
            WaitPolled(tags);
            ThrowFirstError(tags);
        }
        finally { Exit(); }
    }

    private void Transfer(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset)
    {
        CheckTransfer(ns, lba, blocks, buffer, offset);
        Enter();
        try
        {
            int blockSize = ns.BlockSize;
            int perCommand = Math.Min(_controller.MaxTransferBytes / blockSize, 65536);
            Span<ushort> tags = stackalloc ushort[Wave];
            while (blocks > 0)
            {
                int n = 0;
                while (blocks > 0 && n < Wave && _freeCount > 0)
                {
                    int chunk = Math.Min(blocks, perCommand);
                    tags[n++] = PlaceTransfer(opcode, ns, lba, chunk, buffer, offset, batched: false);
                    lba += (ulong)chunk;
                    offset += (ulong)chunk * (ulong)blockSize;
                    blocks -= chunk;
                }
                // One doorbell write for the whole wave.
                Pair.RingSubmissions();
                WaitPolled(tags[..n]);
                ThrowFirstError(tags[..n]);
            }
        }
        finally { Exit(); }
    }

    private void WaitPolled(ReadOnlySpan<ushort> tags)
    {
        var time = _controller.Time;
        long start = time.GetTimestamp();
        long nextHealthCheck = TimeSpan.TicksPerMillisecond;
        int spins = 0;
        while (!AllDone(tags))
        {
            if (ReapInternal() > 0)
            {
                spins = 0;
                continue;
            }
            if (++spins < 64) { continue; }
            spins = 0;
            LeaveIfReleased();
            var elapsed = time.GetElapsedTime(start);
            if (elapsed.Ticks >= nextHealthCheck)
            {
                _controller.CheckHealth();
                nextHealthCheck = elapsed.Ticks + 10 * TimeSpan.TicksPerMillisecond;
            }
            if (elapsed > _controller.CommandTimeout)
            {
                ThrowTimeout(tags);
            }
            Thread.SpinWait(16);
        }
    }

    // ---------------------------------------------------------------- asynchronous

    /// <summary>Reads asynchronously; sleeps on the queue's MSI-X vector when it has one.</summary>
    public ValueTask ReadAsync(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default) =>
        TransferAsync(NvmOpcode.Read, ns, lba, blocks, buffer, offset, cancellationToken);

    /// <summary>Writes asynchronously; sleeps on the queue's MSI-X vector when it has one.</summary>
    public ValueTask WriteAsync(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default) =>
        TransferAsync(NvmOpcode.Write, ns, lba, blocks, buffer, offset, cancellationToken);

    /// <summary>Flushes asynchronously.</summary>
    public async ValueTask FlushAsync(NvmeNamespace ns, CancellationToken cancellationToken = default)
    {
        Enter();
        try
        {
            ushort[] tags = [Place(NvmeCommand.Flush(ns.Id), batched: false)];
            Pair.RingSubmissions();
            await WaitAsync(tags, cancellationToken).ConfigureAwait(false);
            ThrowFirstError(tags);
        }
        finally { Exit(); }
    }

    private async ValueTask TransferAsync(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset, CancellationToken cancellationToken)
    {
        CheckTransfer(ns, lba, blocks, buffer, offset);
        Enter();
        // The controller writes or reads the buffer until the commands complete: it may not be freed before.
        using var lease = buffer.MarkInUse($"NVMe {opcode} on queue {QueueId}");
        try
        {
            int blockSize = ns.BlockSize;
            int perCommand = Math.Min(_controller.MaxTransferBytes / blockSize, 65536);
            var tags = new List<ushort>();
            while (blocks > 0)
            {
                tags.Clear();
                while (blocks > 0 && tags.Count < Wave && _freeCount > 0)
                {
                    int chunk = Math.Min(blocks, perCommand);
                    tags.Add(PlaceTransfer(opcode, ns, lba, chunk, buffer, offset, batched: false));
                    lba += (ulong)chunk;
                    offset += (ulong)chunk * (ulong)blockSize;
                    blocks -= chunk;
                }
                Pair.RingSubmissions();
                var wave = tags.ToArray();
                await WaitAsync(wave, cancellationToken).ConfigureAwait(false);
                ThrowFirstError(wave);
            }
        }
        finally { Exit(); }
    }

    private async ValueTask WaitAsync(ushort[] tags, CancellationToken cancellationToken)
    {
        var time = _controller.Time;
        long start = time.GetTimestamp();
        while (true)
        {
            ReapInternal();
            if (AllDone(tags)) { return; }
            LeaveIfReleased();
            _controller.CheckHealth();
            if (time.GetElapsedTime(start) > _controller.CommandTimeout)
            {
                ThrowTimeout(tags);
            }
            if (Vector is null)
            {
                await Task.Yield();
                continue;
            }
            // Sleep until the controller signals this queue's vector. The eventfd counts signals, so one that
            // arrived between the reap above and this wait is not lost. The slice bounds the sleep so the
            // timeout and CSTS are still checked if a signal never comes.
            using var slice = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _controller.Released);
            slice.CancelAfter(TimeSpan.FromMilliseconds(100));
            try
            {
                await Vector.WaitAsync(slice.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }
    }

    // ---------------------------------------------------------------- batch interface

    /// <summary>
    /// Places a Read in the submission queue without ringing the doorbell; <see cref="RingDoorbell"/> announces
    /// every placed command with one register write. The transfer must fit <see cref="MaxTransferBytes"/>.
    /// </summary>
    /// <returns>A tag that <see cref="Reap"/> reports with the completion.</returns>
    /// <exception cref="InvalidOperationException">The queue is full: reap completions first.</exception>
    public ushort SubmitRead(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        SubmitTransfer(NvmOpcode.Read, ns, lba, blocks, buffer, offset);

    /// <summary>Places a Write without ringing; see <see cref="SubmitRead"/>.</summary>
    public ushort SubmitWrite(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0) =>
        SubmitTransfer(NvmOpcode.Write, ns, lba, blocks, buffer, offset);

    private ushort SubmitTransfer(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset)
    {
        CheckTransfer(ns, lba, blocks, buffer, offset);
        if ((long)blocks * ns.BlockSize > _controller.MaxTransferBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(blocks), blocks, $"one command moves at most {_controller.MaxTransferBytes} bytes");
        }
        Enter();
        try
        {
            if (_freeCount == 0)
            {
                throw new InvalidOperationException($"queue {QueueId} has {Depth} commands in flight; reap completions before submitting more");
            }
            return PlaceTransfer(opcode, ns, lba, blocks, buffer, offset, batched: true);
        }
        finally { Exit(); }
    }

    /// <summary>Announces every command placed since the last ring with one doorbell write.</summary>
    public void RingDoorbell()
    {
        Enter();
        try { Pair.RingSubmissions(); }
        finally { Exit(); }
    }

    /// <summary>
    /// Collects finished batch commands into <paramref name="completions"/> (without waiting) and frees their
    /// slots; returns how many. Errors are reported in <see cref="NvmeIoCompletion.Status"/>, not thrown; see
    /// <see cref="EnsureSuccess"/>.
    /// </summary>
    public int Reap(Span<NvmeIoCompletion> completions)
    {
        Enter();
        try
        {
            if (_doneCount < completions.Length) { ReapInternal(); }
            int n = 0;
            while (n < completions.Length && _doneCount > 0)
            {
                ushort tag = _doneTags[_doneHead];
                _doneHead = _doneHead + 1 == _doneTags.Length ? 0 : _doneHead + 1;
                _doneCount--;
                ref var slot = ref _slots[tag];
                completions[n++] = new NvmeIoCompletion(tag, slot.Status, slot.Info, slot.Submitted);
                Release(tag);
            }
            return n;
        }
        finally { Exit(); }
    }

    /// <summary>Throws <see cref="NvmeCommandException"/> when <paramref name="completion"/> failed.</summary>
    public void EnsureSuccess(in NvmeIoCompletion completion)
    {
        if (!completion.Status.IsSuccess)
        {
            throw new NvmeCommandException(completion.Command, completion.Status, _controller.Device.Address);
        }
    }

    // ---------------------------------------------------------------- slots

    private ushort PlaceTransfer(NvmOpcode opcode, NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset, bool batched)
    {
        ushort tag = TakeTag();
        ref var slot = ref _slots[tag];
        ulong bytes = (ulong)blocks * (ulong)ns.BlockSize;
        var map = new DmaBufferAddressMap(buffer, offset);
        PrpPair prp;
        try
        {
            prp = BuildPrp(ref map, bytes, slot.PrpListPointer, slot.PrpList);
        }
        catch
        {
            Release(tag);
            throw;
        }
        PlaceTagged(tag, NvmeCommand.ReadWrite(opcode, ns.Id, lba, blocks, prp.Prp1, prp.Prp2), batched);
        return tag;
    }

    private unsafe PrpPair BuildPrp(ref DmaBufferAddressMap map, ulong bytes, nint listPointer, DmaAddress listAddress)
    {
        // SAFETY: the slot's list page is page-size bytes of DMA memory owned by this queue; a DmaAddress is the
        // 8-byte little-endian PRP entry itself (Vfio.Spec.Nvme tests assert its size), so the page is its entries.
        var list = new Span<DmaAddress>((void*)listPointer, 1 << (_pageShift - 3));
        return Prp.Build(ref map, bytes, _pageShift, list, listAddress);
    }

    private ushort Place(NvmeCommand command, bool batched)
    {
        ushort tag = TakeTag();
        PlaceTagged(tag, command, batched);
        return tag;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PlaceTagged(ushort tag, NvmeCommand command, bool batched)
    {
        command.CommandId = tag;
        ref var slot = ref _slots[tag];
        slot.State = InFlight;
        slot.Batched = batched;
        slot.Status = default;
        slot.Info = NvmeCommandInfo.From(QueueId, command);
        slot.Submitted = _controller.Time.GetTimestamp();
        Pair.Place(command);
    }

    private ushort TakeTag()
    {
        if (_faulted || _controller.IsFaulted)
        {
            _controller.ThrowIfFaulted();
            throw new InvalidOperationException($"queue {QueueId} faulted (a command timed out); reset the controller");
        }
        if (_freeCount == 0)
        {
            throw new InvalidOperationException($"queue {QueueId} is full ({Depth} commands in flight)");
        }
        return _freeTags[--_freeCount];
    }

    private void Release(ushort tag)
    {
        _slots[tag].State = Free;
        _freeTags[_freeCount++] = tag;
    }

    /// <summary>Takes every posted completion, records it in its slot, and rings the CQ head doorbell once.</summary>
    private int ReapInternal()
    {
        int n = 0;
        while (Pair.TryTake(out var c))
        {
            n++;
            int tag = c.CommandId;
            if ((uint)tag >= (uint)_slots.Length || _slots[tag].State != InFlight)
            {
                StrayCompletions++;
                continue;
            }
            ref var slot = ref _slots[tag];
            slot.State = Done;
            slot.Status = c.Status;
            if (slot.Batched) { PushDone((ushort)tag); }
        }
        Pair.RingCompletions();
        return n;
    }

    /// <summary>Completions whose identifier matched no command in flight (a controller bug, or after a reset).</summary>
    public long StrayCompletions { get; private set; }

    private void PushDone(ushort tag)
    {
        int tail = (_doneHead + _doneCount) % _doneTags.Length;
        _doneTags[tail] = tag;
        _doneCount++;
    }

    private bool AllDone(ReadOnlySpan<ushort> tags)
    {
        foreach (var t in tags)
        {
            if (_slots[t].State != Done) { return false; }
        }
        return true;
    }

    /// <summary>Frees the waited-for slots and throws for the first that failed.</summary>
    private void ThrowFirstError(ReadOnlySpan<ushort> tags)
    {
        int failed = -1;
        foreach (var t in tags)
        {
            if (failed < 0 && !_slots[t].Status.IsSuccess) { failed = t; }
        }
        if (failed >= 0)
        {
            var info = _slots[failed].Info;
            var status = _slots[failed].Status;
            foreach (var t in tags) { Release(t); }
            throw new NvmeCommandException(info, status, _controller.Device.Address);
        }
        foreach (var t in tags) { Release(t); }
    }

    private void ThrowTimeout(ReadOnlySpan<ushort> tags)
    {
        var info = default(NvmeCommandInfo);
        foreach (var t in tags)
        {
            if (_slots[t].State != Done) { info = _slots[t].Info; break; }
        }
        // The controller may still complete or DMA for these commands: the slots stay taken and the queue
        // refuses work until a reset.
        _faulted = true;
        _controller.MarkFaulted();
        throw new NvmeTimeoutException(info, _controller.CommandTimeout, _controller.Device.Address);
    }

    // ---------------------------------------------------------------- checks, reset, lifetime

    private void CheckTransfer(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset)
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

    private static void CheckBlocks(NvmeNamespace ns, int blocks)
    {
        ArgumentNullException.ThrowIfNull(ns);
        if (blocks < 1) { throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "at least one block"); }
    }

    private void RequireOptional(OptionalNvmCommands command, string name)
    {
        if ((_controller.Identity.OptionalCommands & command) == 0)
        {
            throw new NotSupportedException($"the controller does not support {name} (Identify Controller ONCS 0x{(ushort)_controller.Identity.OptionalCommands:x4})");
        }
    }

    private void Enter()
    {
        _controller.ThrowIfReleased();
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException($"NVMe I/O queue {QueueId} is in use by another operation; use one queue per thread");
        }
        // Checked again after taking the queue (the exchange is a full fence): a release that began in between
        // waits for IsBusy to clear, and this thread sees the flag here and never touches the BAR.
        LeaveIfReleased();
    }

    /// <summary>
    /// Once the controller is released, gives the queue up before throwing: the thread touches neither the BAR nor
    /// queue memory again, so the release need not wait for the exception to unwind (slow the first time).
    /// </summary>
    private void LeaveIfReleased()
    {
        if (_controller.IsReleased)
        {
            Exit();
            _controller.ThrowIfReleased();
        }
    }

    private void Exit() => Volatile.Write(ref _busy, 0);

    /// <summary>True while a thread is inside an operation on this queue.</summary>
    internal bool IsBusy => Volatile.Read(ref _busy) != 0;

    /// <summary>Before a controller reset: every command in flight ends as aborted (SQ deletion, NVMe 1.4 Figure 127).</summary>
    internal void AbandonInFlight()
    {
        var aborted = NvmeStatus.Create(GenericStatusCode.CommandAbortedSqDeletion);
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i].State == InFlight)
            {
                _slots[i].State = Done;
                _slots[i].Status = aborted;
                if (_slots[i].Batched) { PushDone((ushort)i); }
            }
        }
    }

    /// <summary>After a controller reset: empty rings; slots whose owners are gone are freed.</summary>
    internal void ResetState()
    {
        Pair.ResetState();
        _faulted = false;
        // Synchronous waiters that timed out left their slots taken; nobody will release them.
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i].State == Done && !_slots[i].Batched && Volatile.Read(ref _busy) == 0)
            {
                Release((ushort)i);
            }
        }
    }

    internal void TakeBufferOwnership() => _prpLease ??= _prpPages.MarkInUse($"nvme queue {QueueId} PRP lists");

    internal void ReleaseBufferOwnership()
    {
        _prpLease?.Dispose();
        _prpLease = null;
    }

    internal void DisposeMemory()
    {
        _disposed = true;
        ReleaseBufferOwnership();
        Pair.ReleaseOwnership();
        Pair.Dispose();
        _prpPages.Dispose();
    }

    /// <summary>Deletes the queue pair in the controller (SQ, then CQ) and frees its memory.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _controller.DeleteIoQueue(this);
        _disposed = true;
    }
}
