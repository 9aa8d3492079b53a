using Vfio.Dma;

namespace Vfio.Nvme;

/// <summary>How an <see cref="NvmeBlockDevice"/> is set up.</summary>
public sealed record NvmeBlockDeviceOptions
{
    /// <summary>The namespace to expose; 0 (the default) for the first active one.</summary>
    public uint NamespaceId { get; init; }

    /// <summary>I/O queue pairs to create; 0 (the default) for every queue the controller granted that is not in use.</summary>
    public int Queues { get; init; }

    /// <summary>Entries per queue (each queue keeps at most entries - 1 commands in flight).</summary>
    public int QueueEntries { get; init; } = 128;

    /// <summary>How the queues' completion threads wait (interrupt and hybrid need <see cref="NvmeControllerOptions.EnableMsix"/>).</summary>
    public NvmeCompletionMode CompletionMode { get; init; } = NvmeCompletionMode.Polled;

    /// <summary>In <see cref="NvmeCompletionMode.Hybrid"/>: how long to poll after the last completion before sleeping on the vector.</summary>
    public TimeSpan HybridSpin { get; init; } = TimeSpan.FromMicroseconds(50);
}

/// <summary>
/// One namespace of an <see cref="NvmeController"/> as a block device that any number of threads use at once:
/// <c>ReadAsync</c>, <c>WriteAsync</c>, <c>FlushAsync</c>, <c>WriteZeroesAsync</c>, <c>DeallocateAsync</c>, in
/// logical blocks, over every I/O queue it owns.
/// <para>Queue choice: an operation started on a queue's completion thread (a continuation of an earlier
/// operation) goes to that queue, so a chain of operations stays on one queue and its doorbell is rung once per
/// round, as SPDK keeps a qpair per thread; any other thread goes to the queue its managed thread id maps to, or,
/// when that queue has no free slot, to the least loaded one. A full queue makes the operation wait for a slot;
/// it never fails for it.</para>
/// <para>Memory: <see cref="Memory{T}"/> from <see cref="DmaBuffer.Memory"/> (see <see cref="AllocateBuffer"/>) is
/// given to the device as is; any other memory is copied through pooled bounce buffers of the queue. In steady
/// state neither path allocates: the <see cref="ValueTask"/>s are backed by pooled objects. Await each task
/// once. Continuations run inline on the queue's completion thread unless the awaiter captured a context: keep
/// them short, or the queue's completions wait for them.</para>
/// <para>Cancellation: an operation still waiting for a slot is dropped; one whose commands are in flight answers
/// at once with <see cref="OperationCanceledException"/> while its commands keep their slots, and a
/// <see cref="DmaBuffer"/> they use stays leased, until the device completes them or a reset ends them.</para>
/// </summary>
public sealed partial class NvmeBlockDevice : IDisposable
{
    private readonly NvmeIoQueue[] _queues;
    private bool _disposed;
    private int _next;

    private NvmeBlockDevice(NvmeController controller, NvmeNamespace ns, NvmeIoQueue[] queues)
    {
        Controller = controller;
        Namespace = ns;
        _queues = queues;
    }

    /// <summary>Creates the block device and its queues.</summary>
    /// <exception cref="ArgumentException">No such namespace.</exception>
    /// <exception cref="InvalidOperationException">No I/O queue is free, or interrupts were asked for without MSI-X.</exception>
    public static NvmeBlockDevice Open(NvmeController controller, NvmeBlockDeviceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(controller);
        options ??= new NvmeBlockDeviceOptions();
        if (options.Queues < 0) { throw new ArgumentOutOfRangeException(nameof(options), options.Queues, "Queues must be 0 (all) or more"); }
        var ns = options.NamespaceId == 0
            ? controller.Namespaces.Count > 0 ? controller.Namespaces[0] : throw new ArgumentException($"{controller.Device.Address} has no active namespace", nameof(controller))
            : controller.GetNamespace(options.NamespaceId);
        int wanted = options.Queues == 0 ? controller.GrantedIoQueues : options.Queues;
        var queueOptions = new NvmeIoQueueOptions
        {
            Entries = options.QueueEntries,
            CompletionMode = options.CompletionMode,
            HybridSpin = options.HybridSpin,
        };
        var queues = new List<NvmeIoQueue>();
        try
        {
            for (int i = 0; i < wanted; i++)
            {
                try
                {
                    queues.Add(controller.CreateIoQueue(queueOptions));
                }
                catch (InvalidOperationException) when (options.Queues == 0 && queues.Count > 0)
                {
                    break;   // "all granted": the others are in use elsewhere
                }
            }
        }
        catch
        {
            foreach (var q in queues) { q.Dispose(); }
            throw;
        }
        return new NvmeBlockDevice(controller, ns, [.. queues]);
    }

    /// <summary>The controller underneath (the caller keeps owning it).</summary>
    public NvmeController Controller { get; }

    /// <summary>The namespace this device reads and writes.</summary>
    public NvmeNamespace Namespace { get; }

    /// <summary>Bytes per logical block.</summary>
    public int BlockSize => Namespace.BlockSize;

    /// <summary>Size in logical blocks.</summary>
    public ulong BlockCount => Namespace.BlockCount;

    /// <summary>Size in bytes.</summary>
    public long Length => (long)Namespace.SizeBytes;

    /// <summary>The I/O queues operations are spread over.</summary>
    public IReadOnlyList<NvmeIoQueue> Queues => _queues;

    /// <summary>Largest transfer one command carries; larger operations are split.</summary>
    public int MaxTransferBytes => Controller.MaxTransferBytes;

    /// <summary>
    /// DMA memory of the device (<paramref name="bytes"/>, page aligned) whose <see cref="DmaBuffer.Memory"/>
    /// the device reads and writes without a copy. Dispose it when no operation uses it any more.
    /// </summary>
    public DmaBuffer AllocateBuffer(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        return Controller.Device.Dma.Allocate((ulong)bytes, new DmaAllocationOptions { Alignment = 4096, Contiguous = false, Name = "nvme block device buffer" });
    }

    // ---------------------------------------------------------------- asynchronous

    /// <summary>Reads <c>destination.Length / BlockSize</c> blocks from <paramref name="lba"/>.</summary>
    /// <exception cref="ArgumentException">The length is not a whole number of blocks.</exception>
    /// <exception cref="NvmeCommandException">The controller failed a command (in the task).</exception>
    /// <exception cref="NvmeCommandAbortedException">A controller reset ended a command in flight (in the task).</exception>
    /// <exception cref="NvmeTimeoutException">A command did not complete in time (in the task); reset the controller.</exception>
    /// <exception cref="DeviceReleasedException">The host took the device back (in the task).</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled (in the task).</exception>
    public ValueTask ReadAsync(ulong lba, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        int blocks = Blocks(destination.Length);
        var q = Pick();
        if (DmaBuffer.TryGetBuffer(destination, out var buffer, out ulong offset))
        {
            return q.ReadAsync(Namespace, lba, blocks, buffer, offset, cancellationToken);
        }
        return destination.Length <= q.BounceBytes
            ? q.ReadBouncedAsync(Namespace, lba, destination, cancellationToken)
            : ReadInPiecesAsync(q, lba, destination, cancellationToken);
    }

    /// <summary>Writes <c>source.Length / BlockSize</c> blocks at <paramref name="lba"/>; see <see cref="ReadAsync(ulong, Memory{byte}, CancellationToken)"/>.</summary>
    public ValueTask WriteAsync(ulong lba, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        int blocks = Blocks(source.Length);
        var q = Pick();
        if (DmaBuffer.TryGetBuffer(source, out var buffer, out ulong offset))
        {
            return q.WriteAsync(Namespace, lba, blocks, buffer, offset, cancellationToken);
        }
        return source.Length <= q.BounceBytes
            ? q.WriteBouncedAsync(Namespace, lba, source, cancellationToken)
            : WriteInPiecesAsync(q, lba, source, cancellationToken);
    }

    /// <summary>Reads <paramref name="blocks"/> blocks into <paramref name="buffer"/> at <paramref name="offset"/> (no copy).</summary>
    public ValueTask ReadAsync(ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().ReadAsync(Namespace, lba, blocks, buffer, offset, cancellationToken);
    }

    /// <summary>Writes <paramref name="blocks"/> blocks from <paramref name="buffer"/> at <paramref name="offset"/> (no copy).</summary>
    public ValueTask WriteAsync(ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().WriteAsync(Namespace, lba, blocks, buffer, offset, cancellationToken);
    }

    /// <summary>
    /// Commits the volatile write cache to media (Flush, NVMe 1.4 §6.8). Data written by operations that completed
    /// before this call is durable when it completes; NVMe orders nothing else, so it is sent on every queue.
    /// </summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return _queues.Length == 1 ? _queues[0].FlushAsync(Namespace, cancellationToken) : FlushAllAsync(cancellationToken);
    }

    /// <summary>Zeroes <paramref name="blocks"/> blocks at <paramref name="lba"/> without moving data (Write Zeroes, NVMe 1.4 §6.16).</summary>
    /// <exception cref="NotSupportedException">The controller lacks Write Zeroes (ONCS).</exception>
    public ValueTask WriteZeroesAsync(ulong lba, int blocks, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().WriteZeroesAsync(Namespace, lba, blocks, cancellationToken);
    }

    /// <summary>Deallocates (trims) <paramref name="blocks"/> blocks at <paramref name="lba"/> (Dataset Management, NVMe 1.4 §6.7).</summary>
    /// <exception cref="NotSupportedException">The controller lacks Dataset Management (ONCS).</exception>
    public ValueTask DeallocateAsync(ulong lba, int blocks, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().DeallocateAsync(Namespace, lba, blocks, cancellationToken);
    }

    // ---------------------------------------------------------------- synchronous

    /// <summary>Reads into <paramref name="destination"/> (whole blocks), polling on the calling thread.</summary>
    public void Read(ulong lba, Span<byte> destination)
    {
        Blocks(destination.Length);
        var q = Pick();
        int piece = q.BounceBytes;
        for (int done = 0; done < destination.Length; done += piece)
        {
            var part = destination.Slice(done, Math.Min(piece, destination.Length - done));
            q.ReadBounced(Namespace, lba + (ulong)(done / BlockSize), part);
        }
    }

    /// <summary>Writes <paramref name="source"/> (whole blocks), polling on the calling thread.</summary>
    public void Write(ulong lba, ReadOnlySpan<byte> source)
    {
        Blocks(source.Length);
        var q = Pick();
        int piece = q.BounceBytes;
        for (int done = 0; done < source.Length; done += piece)
        {
            var part = source.Slice(done, Math.Min(piece, source.Length - done));
            q.WriteBounced(Namespace, lba + (ulong)(done / BlockSize), part);
        }
    }

    /// <summary>Flushes on every queue, polling on the calling thread.</summary>
    public void Flush()
    {
        ThrowIfDisposed();
        foreach (var q in _queues) { q.Flush(Namespace); }
    }

    /// <summary>A <see cref="System.IO.Stream"/> over the whole namespace (seekable; unaligned ranges by read-modify-write).</summary>
    public NvmeBlockStream OpenStream() => new(this);

    // ---------------------------------------------------------------- internals

    private async ValueTask ReadInPiecesAsync(NvmeIoQueue q, ulong lba, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int piece = q.BounceBytes;
        for (int done = 0; done < destination.Length; done += piece)
        {
            var part = destination.Slice(done, Math.Min(piece, destination.Length - done));
            await q.ReadBouncedAsync(Namespace, lba + (ulong)(done / BlockSize), part, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask WriteInPiecesAsync(NvmeIoQueue q, ulong lba, ReadOnlyMemory<byte> source, CancellationToken cancellationToken)
    {
        int piece = q.BounceBytes;
        for (int done = 0; done < source.Length; done += piece)
        {
            var part = source.Slice(done, Math.Min(piece, source.Length - done));
            await q.WriteBouncedAsync(Namespace, lba + (ulong)(done / BlockSize), part, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask FlushAllAsync(CancellationToken cancellationToken)
    {
        foreach (var q in _queues) { await q.FlushAsync(Namespace, cancellationToken).ConfigureAwait(false); }
    }

    private int Blocks(int bytes)
    {
        ThrowIfDisposed();
        if (bytes <= 0 || bytes % BlockSize != 0)
        {
            throw new ArgumentException($"{bytes} bytes is not a whole, non-zero number of {BlockSize}-byte blocks", nameof(bytes));
        }
        return bytes / BlockSize;
    }

    /// <summary>The queue for an operation started on this thread (see the class remarks).</summary>
    private NvmeIoQueue Pick()
    {
        var own = NvmeIoQueue.CurrentPollerQueue;
        if (own is not null)
        {
            foreach (var q in _queues)
            {
                if (ReferenceEquals(q, own)) { return q; }
            }
        }
        if (_queues.Length == 1) { return _queues[0]; }
        var preferred = _queues[(uint)Interlocked.Increment(ref _next) % (uint)_queues.Length];
        if (preferred.HasFreeSlot) { return preferred; }
        var best = preferred;
        foreach (var q in _queues)
        {
            if (q.Outstanding < best.Outstanding) { best = q; }
        }
        return best;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Deletes the device's queues (operations in flight end with <see cref="ObjectDisposedException"/>). The controller stays open.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        foreach (var q in _queues) { q.Dispose(); }
    }
}
