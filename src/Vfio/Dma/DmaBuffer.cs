namespace Vfio.Dma;

/// <summary>
/// Memory a device may read and write by DMA. It never moves while allocated (hugepages or IOMMU-pinned
/// pages), and it cannot be disposed while a device owns it (<see cref="MarkInUse"/>). There is
/// deliberately no finalizer: a buffer that is leaked stays allocated until the process exits, because the
/// device may still be writing it.
/// </summary>
public abstract class DmaBuffer : IDisposable
{
    private int _inUse;
    private int _disposed;
    private string? _owner;
    private int _audit;   // 0: not registered, 1: registered with Registry, 2: left it (disposed)

    /// <summary>Wraps <paramref name="length"/> bytes of pinned memory at <paramref name="pointer"/>.</summary>
    protected DmaBuffer(nint pointer, ulong length, string? name)
        : this(pointer, length, name, null)
    {
    }

    /// <summary>
    /// Wraps <paramref name="length"/> bytes of pinned memory at <paramref name="pointer"/>, in the device address
    /// space that <paramref name="registry"/> tracks for <see cref="DmaAudit"/> (one registry per allocator).
    /// </summary>
    protected DmaBuffer(nint pointer, ulong length, string? name, DmaBufferRegistry? registry)
    {
        Pointer = pointer;
        Length = length;
        Name = name;
        Registry = registry;
        DmaCounters.BufferCreated(length);
    }

    /// <summary>The live buffers of this buffer's device address space, for <see cref="DmaAudit"/>; null when its allocator keeps none.</summary>
    public DmaBufferRegistry? Registry { get; }

    /// <summary>The buffer's address in this process.</summary>
    public nint Pointer { get; }

    /// <summary>Size in bytes.</summary>
    public ulong Length { get; }

    /// <summary>The name given at allocation, for diagnostics.</summary>
    public string? Name { get; }

    /// <summary>The device address of the first byte.</summary>
    public DmaAddress DeviceAddress => GetDeviceAddress(0);

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>True while at least one <see cref="MarkInUse"/> lease is held.</summary>
    public bool IsInUse => Volatile.Read(ref _inUse) > 0;

    /// <summary>The buffer as bytes (the CPU's view; the device's view is <see cref="GetDeviceAddress"/>).</summary>
    public unsafe Span<byte> Span
    {
        get
        {
            ThrowIfDisposed();
            if (Length > int.MaxValue)
            {
                throw new InvalidOperationException($"buffer of {Length} bytes is larger than a Span; use Slice");
            }
            // SAFETY: Pointer..Pointer+Length is mapped and owned by this object until Dispose, checked above.
            return new Span<byte>((void*)Pointer, (int)Length);
        }
    }

    /// <summary>A span over <paramref name="length"/> bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="length"/> is negative, or the range does not lie inside the buffer.
    /// </exception>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public unsafe Span<byte> Slice(ulong offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        CheckRange(offset, (ulong)length);
        // SAFETY: the range was checked against Length, and the memory lives until Dispose.
        return new Span<byte>((byte*)Pointer + offset, length);
    }

    /// <summary>The device address of byte <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Offset past the end.</exception>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public DmaAddress GetDeviceAddress(ulong offset)
    {
        ThrowIfDisposed();
        if (offset >= Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"offset is past the end of a {Length}-byte DMA buffer");
        }
        if (DmaAudit.Enabled && _audit == 0) { JoinRegistry(); }
        return DeviceAddressAt(offset);
    }

    /// <summary>How many bytes from <paramref name="offset"/> on are contiguous in device address space.</summary>
    public ulong GetContiguousLength(ulong offset)
    {
        ThrowIfDisposed();
        if (offset >= Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"offset is past the end of a {Length}-byte DMA buffer");
        }
        if (DmaAudit.Enabled && _audit == 0) { JoinRegistry(); }
        return ContiguousLengthAt(offset);
    }

    /// <summary>
    /// Finds <paramref name="address"/> among this buffer's device addresses: the offset of that byte and how many
    /// bytes from there are contiguous. Walks the buffer's contiguous ranges (the audit's search when there is no
    /// <see cref="Registry"/>).
    /// </summary>
    public bool TryLocate(DmaAddress address, out ulong offset, out ulong contiguous)
    {
        ThrowIfDisposed();
        for (ulong at = 0; at < Length;)
        {
            ulong start = DeviceAddressAt(at).Value, run = ContiguousLengthAt(at);
            if (address.Value >= start && address.Value - start < run)
            {
                offset = at + (address.Value - start);
                contiguous = run - (address.Value - start);
                return true;
            }
            at += run;
        }
        offset = contiguous = 0;
        return false;
    }

    // The audit learns a buffer's device ranges when its first device address is handed out: no driver can have
    // put the buffer in a wire structure before that, and the derived constructor has finished by then.
    private void JoinRegistry()
    {
        if (Registry is null || Interlocked.CompareExchange(ref _audit, 1, 0) != 0) { return; }
        var ranges = new List<(ulong, ulong, ulong)>();
        for (ulong at = 0; at < Length;)
        {
            ulong run = ContiguousLengthAt(at);
            ranges.Add((DeviceAddressAt(at).Value, run, at));
            at += run;
        }
        Registry.Add(this, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ranges));
    }

    /// <summary>
    /// Marks the buffer as owned by a device (a queue holds it, a DMA is in flight). Until every lease is
    /// disposed, <see cref="Dispose()"/> throws instead of freeing memory the device may still write.
    /// </summary>
    public DeviceUseLease MarkInUse(string owner)
    {
        ThrowIfDisposed();
        Interlocked.Increment(ref _inUse);
        _owner = owner;
        return new DeviceUseLease(this);
    }

    internal void EndUse() => Interlocked.Decrement(ref _inUse);

    /// <summary>
    /// Takes a counted claim without an object, for hot paths that pair every call with one
    /// <see cref="ReleaseDeviceUse"/> (a command from submission to completion); the effect on
    /// <see cref="Dispose()"/> is that of <see cref="MarkInUse"/>. <paramref name="owner"/> is kept for the message
    /// <see cref="Dispose()"/> gives while a claim is held, so pass a string that already exists.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public void AddDeviceUse(string owner)
    {
        ThrowIfDisposed();
        Interlocked.Increment(ref _inUse);
        _owner = owner;
    }

    /// <summary>Ends one claim taken with <see cref="AddDeviceUse"/>.</summary>
    /// <exception cref="InvalidOperationException">No claim is held (a release without its <see cref="AddDeviceUse"/>).</exception>
    public void ReleaseDeviceUse()
    {
        if (Interlocked.Decrement(ref _inUse) < 0)
        {
            Interlocked.Increment(ref _inUse);
            throw new InvalidOperationException($"DMA buffer '{Name ?? "unnamed"}' has no device claim to release");
        }
    }

    /// <summary>
    /// The buffer as <see cref="Memory{T}"/>, for APIs that take memory rather than a buffer. Drivers recognise it
    /// (<see cref="TryGetBuffer"/>) and hand the device its addresses directly instead of copying through a bounce
    /// buffer. Valid until the buffer is disposed.
    /// </summary>
    /// <exception cref="InvalidOperationException">The buffer is larger than <see cref="int.MaxValue"/> bytes.</exception>
    /// <exception cref="ObjectDisposedException">The buffer is disposed.</exception>
    public Memory<byte> Memory
    {
        get
        {
            ThrowIfDisposed();
            if (Length > int.MaxValue)
            {
                throw new InvalidOperationException($"buffer of {Length} bytes is larger than a Memory<byte>; use Slice");
            }
            _memoryManager ??= new DmaBufferMemoryManager(this);
            return _memoryManager.Memory;
        }
    }

    private DmaBufferMemoryManager? _memoryManager;

    /// <summary>
    /// Finds the DMA buffer behind <paramref name="memory"/> when it came from <see cref="Memory"/> (sliced or not):
    /// the buffer and the offset of the memory's first byte in it.
    /// </summary>
    public static bool TryGetBuffer(ReadOnlyMemory<byte> memory, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out DmaBuffer? buffer, out ulong offset)
    {
        if (System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager(memory, out DmaBufferMemoryManager? manager, out int start, out _))
        {
            buffer = manager.Buffer;
            offset = (ulong)start;
            return true;
        }
        buffer = null;
        offset = 0;
        return false;
    }

    /// <summary>The device address of byte <paramref name="offset"/> (already range-checked).</summary>
    protected abstract DmaAddress DeviceAddressAt(ulong offset);

    /// <summary>Contiguous bytes from <paramref name="offset"/> (already range-checked).</summary>
    protected abstract ulong ContiguousLengthAt(ulong offset);

    /// <summary>Unmaps and frees the memory. Called once, only when no device owns it.</summary>
    protected abstract void ReleaseMemory();

    /// <summary>Frees the buffer.</summary>
    /// <exception cref="InvalidOperationException">A device still owns the buffer.</exception>
    public void Dispose()
    {
        if (IsInUse)
        {
            throw new InvalidOperationException(
                $"DMA buffer '{Name ?? "unnamed"}' is still owned by {_owner ?? "a device"}; stop the device's DMA " +
                "(dispose the queue or driver that uses it) before freeing its memory");
        }
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        // Leave the audit's registry before the memory can be reused by another buffer.
        if (Interlocked.Exchange(ref _audit, 2) == 1) { Registry!.Remove(this); }
        ReleaseMemory();
        DmaCounters.BufferReleased(Length);
        GC.SuppressFinalize(this);
    }

    /// <summary>Throws when the buffer is disposed.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    private void CheckRange(ulong offset, ulong length)
    {
        ThrowIfDisposed();
        if (offset > Length || length > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"range [{offset}, +{length}) is outside the {Length}-byte DMA buffer");
        }
    }
}

/// <summary>The <see cref="System.Buffers.MemoryManager{T}"/> behind <see cref="DmaBuffer.Memory"/>: the memory is pinned already.</summary>
internal sealed unsafe class DmaBufferMemoryManager(DmaBuffer buffer) : System.Buffers.MemoryManager<byte>
{
    public DmaBuffer Buffer { get; } = buffer;

    public override Span<byte> GetSpan() => Buffer.Span;

    // SAFETY: DMA memory never moves while allocated (its type's contract), so no pinning is needed; the pointer is
    // valid until the buffer is disposed, as is the Memory itself.
    public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) =>
        new((byte*)Buffer.Pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}

/// <summary>A device's claim on a <see cref="DmaBuffer"/>; dispose it once the device can no longer touch the buffer.</summary>
public sealed class DeviceUseLease : IDisposable
{
    private DmaBuffer? _buffer;

    internal DeviceUseLease(DmaBuffer buffer) => _buffer = buffer;

    /// <summary>Ends the claim.</summary>
    public void Dispose() => Interlocked.Exchange(ref _buffer, null)?.EndUse();
}
