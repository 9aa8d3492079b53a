using System.Runtime.CompilerServices;
using Vfio.Dma;

namespace Vfio.VirtioNet;

/// <summary>
/// A fixed set of equal-sized packet buffers in DMA memory with a free list, like DPDK's mbuf pool: after
/// construction, allocating, freeing, receiving and transmitting allocate nothing on the managed heap.
/// Each buffer is <see cref="BufferSize"/> bytes: <see cref="Headroom"/> bytes for headers a driver prepends
/// (the virtio-net header sits just before the data), then the data room.
/// </summary>
/// <remarks>
/// Not thread-safe: one thread allocates and frees (run-to-completion, as DPDK's per-lcore cache). Several
/// devices may share a pool when they share a DMA address space (one VFIO container, or No-IOMMU mode).
/// Dispose the devices that use the pool before the pool.
/// </remarks>
public sealed unsafe class PacketPool : IDisposable
{
    /// <summary>Bytes reserved before each packet's data.</summary>
    public const int Headroom = 128;

    private readonly List<DmaBuffer> _chunks = [];
    private readonly nint[] _pointers;
    private readonly ulong[] _deviceAddresses;
    private readonly int[] _lengths;
    private readonly int[] _free;
    private readonly bool[] _allocated;
    private int _freeCount;
    private bool _disposed;

    /// <summary>
    /// Allocates <paramref name="capacity"/> buffers of <paramref name="bufferSize"/> bytes from
    /// <paramref name="dma"/>, in chunks of at most 2 MiB so each chunk is contiguous for the device even in
    /// No-IOMMU mode, where contiguity ends at a hugepage.
    /// </summary>
    public PacketPool(IDmaAllocator dma, int capacity, int bufferSize = 2048, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(dma);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (bufferSize < Headroom + 64 || bufferSize % 64 != 0 || bufferSize > 65536)
        {
            throw new ArgumentOutOfRangeException(nameof(bufferSize), bufferSize, $"buffer size must be a multiple of 64 from {Headroom + 64} to 65536");
        }
        Capacity = capacity;
        BufferSize = bufferSize;
        Name = name ?? "packets";
        _pointers = new nint[capacity];
        _deviceAddresses = new ulong[capacity];
        _lengths = new int[capacity];
        _free = new int[capacity];
        _allocated = new bool[capacity];
        const int ChunkBytes = 2 << 20;
        int perChunk = ChunkBytes / bufferSize;
        try
        {
            for (int first = 0; first < capacity; first += perChunk)
            {
                int n = Math.Min(perChunk, capacity - first);
                var chunk = dma.Allocate((ulong)(n * bufferSize), new DmaAllocationOptions { Name = $"{Name} {first}..{first + n - 1}", Contiguous = true });
                _chunks.Add(chunk);
                var baseAddress = chunk.DeviceAddress;
                for (int i = 0; i < n; i++)
                {
                    _pointers[first + i] = chunk.Pointer + i * bufferSize;
                    _deviceAddresses[first + i] = (baseAddress + (ulong)(i * bufferSize)).Value;
                }
            }
        }
        catch
        {
            foreach (var c in _chunks) { c.Dispose(); }
            throw;
        }
        for (int i = 0; i < capacity; i++) { _free[i] = capacity - 1 - i; }
        _freeCount = capacity;
    }

    /// <summary>Name for diagnostics.</summary>
    public string Name { get; }
    /// <summary>Number of buffers.</summary>
    public int Capacity { get; }
    /// <summary>Bytes per buffer, headroom included.</summary>
    public int BufferSize { get; }
    /// <summary>The most data one buffer holds.</summary>
    public int DataRoom => BufferSize - Headroom;
    /// <summary>Buffers on the free list.</summary>
    public int FreeCount => _freeCount;
    /// <summary>Buffers allocated (held by the application or by a device queue).</summary>
    public int InUseCount => Capacity - _freeCount;

    /// <summary>Takes a buffer off the free list, with length 0. False when the pool is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAllocate(out PacketBuffer packet)
    {
        if (_freeCount == 0) { packet = default; return false; }
        int index = _free[--_freeCount];
        _allocated[index] = true;
        _lengths[index] = 0;
        packet = new PacketBuffer(this, index);
        return true;
    }

    /// <summary>Fills <paramref name="into"/> with buffers as far as the pool allows; returns how many.</summary>
    public int Allocate(Span<PacketBuffer> into)
    {
        int n = 0;
        while (n < into.Length && TryAllocate(out into[n])) { n++; }
        return n;
    }

    /// <summary>Returns a buffer to the free list.</summary>
    /// <exception cref="InvalidOperationException">The buffer is already free (double free) or belongs to another pool.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(PacketBuffer packet)
    {
        if (packet.Pool != this) { ThrowForeign(); }
        FreeIndex(packet.Index);
    }

    /// <summary>Returns buffers to their pools.</summary>
    public static void Free(ReadOnlySpan<PacketBuffer> packets)
    {
        foreach (var p in packets) { p.Pool.FreeIndex(p.Index); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void FreeIndex(int index)
    {
        if (!_allocated[index]) { ThrowDoubleFree(index); }
        _allocated[index] = false;
        _free[_freeCount++] = index;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nint PointerOf(int index) => _pointers[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ulong DeviceAddressOf(int index) => _deviceAddresses[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int LengthOf(int index) => _lengths[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void SetLength(int index, int length) => _lengths[index] = length;

    internal bool IsAllocated(int index) => _allocated[index];

    private void ThrowDoubleFree(int index) =>
        throw new InvalidOperationException($"packet buffer {index} of pool '{Name}' is already free (double free)");

    private void ThrowForeign() => throw new InvalidOperationException($"packet buffer does not belong to pool '{Name}'");

    /// <summary>Frees the DMA memory. Devices using the pool must be disposed first.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        foreach (var c in _chunks) { c.Dispose(); }
        _chunks.Clear();
    }
}

/// <summary>
/// A handle on one buffer of a <see cref="PacketPool"/>: a pool reference and an index, copied freely, never
/// allocated. Its length and contents live in the pool; copies of the handle see the same packet.
/// </summary>
public readonly unsafe struct PacketBuffer : IEquatable<PacketBuffer>
{
    internal PacketBuffer(PacketPool pool, int index)
    {
        Pool = pool;
        Index = index;
    }

    /// <summary>The pool the buffer belongs to (null for a default handle).</summary>
    public PacketPool Pool { get; }

    /// <summary>The buffer's number in its pool.</summary>
    public int Index { get; }

    /// <summary>True for a handle on a buffer (false for <c>default</c>).</summary>
    public bool IsValid => Pool is not null;

    /// <summary>Bytes of packet data.</summary>
    public int Length
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Pool.LengthOf(Index);
        set
        {
            if ((uint)value > (uint)Pool.DataRoom)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, $"a packet holds 0..{Pool.DataRoom} bytes");
            }
            Pool.SetLength(Index, value);
        }
    }

    /// <summary>The packet's data (<see cref="Length"/> bytes).</summary>
    public Span<byte> Data
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        // SAFETY: the pool keeps Headroom + DataRoom bytes mapped per buffer until it is disposed; Length <= DataRoom.
        get => new((byte*)Pool.PointerOf(Index) + PacketPool.Headroom, Pool.LengthOf(Index));
    }

    /// <summary>The whole data room (<see cref="PacketPool.DataRoom"/> bytes), to build a packet before setting <see cref="Length"/>.</summary>
    // SAFETY: as Data.
    public Span<byte> Room => new((byte*)Pool.PointerOf(Index) + PacketPool.Headroom, Pool.DataRoom);

    /// <summary>The device address of the first data byte.</summary>
    public DmaAddress DeviceAddress => new(Pool.DeviceAddressOf(Index) + PacketPool.Headroom);

    /// <summary>Returns the buffer to its pool.</summary>
    public void Free() => Pool.Free(this);

    /// <inheritdoc />
    public bool Equals(PacketBuffer other) => ReferenceEquals(Pool, other.Pool) && Index == other.Index;
    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is PacketBuffer p && Equals(p);
    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Pool, Index);
    /// <summary>Same buffer.</summary>
    public static bool operator ==(PacketBuffer left, PacketBuffer right) => left.Equals(right);
    /// <summary>Different buffers.</summary>
    public static bool operator !=(PacketBuffer left, PacketBuffer right) => !left.Equals(right);
    /// <inheritdoc />
    public override string ToString() => IsValid ? $"{Pool.Name}[{Index}] {Length} bytes" : "(none)";
}
