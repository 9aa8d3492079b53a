using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Net;

/// <summary>
/// A fixed set of equal-sized packet buffers in DMA memory with a free list, like DPDK's mbuf pool: after
/// construction, allocating, freeing, receiving and transmitting allocate nothing on the managed heap.
/// Each buffer is <see cref="BufferSize"/> bytes: <see cref="Headroom"/> bytes for headers a driver prepends
/// (the virtio-net header sits just before the data), then the data room. Every NIC driver on <see cref="INetPort"/>
/// receives into and transmits from these pools, so one pool serves ports of different drivers; drivers reach the
/// per-buffer state through <see cref="PacketPoolMarshal"/>.
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
    /// <summary>The most buffers one pool holds (a <see cref="PacketBuffer"/> keeps the index in 24 bits).</summary>
    public const int MaxCapacity = 1 << 24;
    /// <summary>The most pools alive at once (a <see cref="PacketBuffer"/> keeps the pool's number in 8 bits).</summary>
    public const int MaxPools = 255;
    /// <summary>
    /// The largest buffer: headroom and 64 KiB of data and more, enough for a TCP packet of the most an IP
    /// length field holds (65,535 bytes) behind an Ethernet header with one VLAN tag.
    /// </summary>
    public const int MaxBufferSize = 65536 + 256;

    // Live pools by number (1..255): a PacketBuffer is a plain integer, so handles hold no GC reference and
    // storing them (into spans, rings' token arrays) costs no GC write barrier.
    private static readonly PacketPool?[] s_pools = new PacketPool?[MaxPools + 1];

    private readonly List<DmaBuffer> _chunks = [];
    private readonly nint[] _pointers;
    private readonly DmaAddress[] _deviceAddresses;
    private readonly int[] _lengths;
    private readonly PacketFlags[] _flags;
    private readonly uint[] _rssHashes;
    private readonly ushort[] _segmentSizes;
    private readonly int[] _free;
    private readonly bool[] _allocated;
    private int _freeCount;
    private readonly int _perChunk;
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
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, MaxCapacity);
        if (bufferSize < Headroom + 64 || bufferSize % 64 != 0 || bufferSize > MaxBufferSize)
        {
            throw new ArgumentOutOfRangeException(nameof(bufferSize), bufferSize, $"buffer size must be a multiple of 64 from {Headroom + 64} to {MaxBufferSize}");
        }
        Capacity = capacity;
        BufferSize = bufferSize;
        Name = name ?? "packets";
        _pointers = new nint[capacity];
        _deviceAddresses = new DmaAddress[capacity];
        _lengths = new int[capacity];
        _flags = new PacketFlags[capacity];
        _rssHashes = new uint[capacity];
        _segmentSizes = new ushort[capacity];
        _free = new int[capacity];
        _allocated = new bool[capacity];
        const int ChunkBytes = 2 << 20;
        int perChunk = ChunkBytes / bufferSize;
        _perChunk = perChunk;
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
                    _deviceAddresses[first + i] = baseAddress + (ulong)(i * bufferSize);
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
        lock (s_pools)
        {
            int id = Array.IndexOf(s_pools, null, 1);
            if (id < 0)
            {
                foreach (var c in _chunks) { c.Dispose(); }
                throw new InvalidOperationException($"more than {MaxPools} packet pools are alive; dispose some first");
            }
            Id = id;
            s_pools[id] = this;
        }
    }

    /// <summary>The pool's number, 1..255, while it is alive.</summary>
    public int Id { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static PacketPool FromId(int id) => s_pools[id] ?? ThrowDeadPool(id);

    private static PacketPool ThrowDeadPool(int id) =>
        throw new ObjectDisposedException(nameof(PacketPool), $"packet pool {id} was disposed while a buffer handle still named it");

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

    /// <summary>Takes a buffer off the free list, with length 0, no <see cref="PacketFlags"/> and no segment size. False when the pool is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAllocate(out PacketBuffer packet)
    {
        if (_freeCount == 0) { packet = default; return false; }
        int index = _free[--_freeCount];
        _allocated[index] = true;
        _lengths[index] = 0;
        _flags[index] = PacketFlags.None;
        _segmentSizes[index] = 0;
        packet = new PacketBuffer(Id, index);
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
    /// <exception cref="PacketPoolDoubleFreeException">The buffer is already free (double free).</exception>
    /// <exception cref="InvalidOperationException">The buffer belongs to another pool.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(PacketBuffer packet)
    {
        if (packet.PoolId != Id) { ThrowForeign(); }
        FreeIndex(packet.Index);
    }

    /// <summary>Returns buffers to their pools.</summary>
    public static void Free(ReadOnlySpan<PacketBuffer> packets)
    {
        foreach (var p in packets) { FromId(p.PoolId).FreeIndex(p.Index); }
    }

    /// <summary>Returns buffer <paramref name="index"/>; a buffer already free is a double free, and the pool asserts it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void FreeIndex(int index)
    {
        ref bool allocated = ref _allocated[index];
        if (!allocated) { ThrowDoubleFree(index); }
        allocated = false;
        _free[_freeCount++] = index;
    }

    /// <summary>Frees the buffer a handle names, whatever pool it belongs to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void FreeHandle(int handle) => FromId(handle >>> 24).FreeIndex(handle & (MaxCapacity - 1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    // SAFETY (these six): callers pass indexes taken from handles this pool made, so 0 <= index < Capacity;
    // skipping the bounds check matters per packet under emulation.
    internal nint PointerOf(int index) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_pointers), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal DmaAddress DeviceAddressOf(int index) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_deviceAddresses), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int LengthOf(int index) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_lengths), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void SetLength(int index, int length) => Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_lengths), index) = length;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref PacketFlags FlagsOf(int index) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_flags), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref uint RssHashOf(int index) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_rssHashes), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref ushort SegmentSizeOf(int index) => ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_segmentSizes), index);

    internal bool IsAllocated(int index) => _allocated[index];

    /// <summary>
    /// The DMA audit's view of buffer <paramref name="index"/>: its <see cref="BufferSize"/> bytes in their chunk while
    /// it is allocated (a queue or the application holds it), no buffer once it is back on the free list.
    /// </summary>
    internal DmaWindow WindowOf(int index) =>
        !_disposed && (uint)index < (uint)Capacity && _allocated[index]
            ? new DmaWindow(_chunks[index / _perChunk], (ulong)(index % _perChunk * BufferSize), (ulong)BufferSize)
            : default;

    /// <summary>As <see cref="WindowOf"/> for a handle, whatever pool it names (none when that pool is gone).</summary>
    internal static DmaWindow WindowOfHandle(int handle) =>
        s_pools[handle >>> 24] is { } pool ? pool.WindowOf(handle & (MaxCapacity - 1)) : default;

    private void ThrowDoubleFree(int index) => throw new PacketPoolDoubleFreeException(Name, index);

    private void ThrowForeign() => throw new InvalidOperationException($"packet buffer does not belong to pool '{Name}'");

    /// <summary>Frees the DMA memory. Devices using the pool must be disposed first.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        lock (s_pools)
        {
            if (s_pools[Id] == this) { s_pools[Id] = null; }
        }
        foreach (var c in _chunks) { c.Dispose(); }
        _chunks.Clear();
    }
}

/// <summary>
/// A handle on one buffer of a <see cref="PacketPool"/>: the pool's number and the buffer's index in one integer,
/// copied freely, never allocated, holding no GC reference (like an mbuf pointer). Its length and contents live
/// in the pool; copies of the handle see the same packet.
/// </summary>
public readonly unsafe struct PacketBuffer : IEquatable<PacketBuffer>
{
    private readonly int _handle;

    internal PacketBuffer(int poolId, int index) => _handle = (poolId << 24) | index;

    private PacketBuffer(int handle) => _handle = handle;

    internal static PacketBuffer FromHandle(int handle) => new(handle);

    /// <summary>The raw handle (pool number in bits 24-31, index in bits 0-23).</summary>
    internal int Handle => _handle;

    internal int PoolId => _handle >>> 24;

    /// <summary>The pool the buffer belongs to.</summary>
    /// <exception cref="ObjectDisposedException">The handle is <c>default</c> or its pool was disposed.</exception>
    public PacketPool Pool => PacketPool.FromId(PoolId);

    /// <summary>The buffer's number in its pool.</summary>
    public int Index => _handle & (PacketPool.MaxCapacity - 1);

    /// <summary>True for a handle on a buffer (false for <c>default</c>).</summary>
    public bool IsValid => _handle != 0;

    /// <summary>Bytes of packet data.</summary>
    public int Length
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Pool.LengthOf(Index);
        set
        {
            var pool = Pool;
            if ((uint)value > (uint)pool.DataRoom)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, $"a packet holds 0..{pool.DataRoom} bytes");
            }
            pool.SetLength(Index, value);
        }
    }

    /// <summary>
    /// Offload results the receiving driver reported (checksums checked, RSS hash present) or offloads asked of the
    /// transmitting one; <see cref="PacketFlags.None"/> on a freshly allocated buffer and from drivers that offload nothing.
    /// </summary>
    public PacketFlags Flags
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Pool.FlagsOf(Index);
        set => Pool.FlagsOf(Index) = value;
    }

    /// <summary>The RSS hash the device computed on receive; meaningful only with <see cref="PacketFlags.RssHash"/>.</summary>
    public uint RssHash => Pool.RssHashOf(Index);

    /// <summary>
    /// Payload bytes per TCP segment: on transmit with <see cref="PacketFlags.TxTcpSegmentation"/>, the MSS to cut
    /// at (1..65535); on receive with <see cref="PacketFlags.TcpSegments"/>, the MSS of the segments joined. 0 on a
    /// freshly allocated buffer.
    /// </summary>
    public int SegmentSize
    {
        get => Pool.SegmentSizeOf(Index);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 0);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, ushort.MaxValue);
            Pool.SegmentSizeOf(Index) = (ushort)value;
        }
    }

    /// <summary>The packet's data (<see cref="Length"/> bytes).</summary>
    public Span<byte> Data
    {
        get
        {
            var pool = Pool;
            // SAFETY: the pool keeps Headroom + DataRoom bytes mapped per buffer until it is disposed; Length <= DataRoom.
            return new((byte*)pool.PointerOf(Index) + PacketPool.Headroom, pool.LengthOf(Index));
        }
    }

    /// <summary>The whole data room (<see cref="PacketPool.DataRoom"/> bytes), to build a packet before setting <see cref="Length"/>.</summary>
    public Span<byte> Room
    {
        get
        {
            var pool = Pool;
            // SAFETY: as Data.
            return new((byte*)pool.PointerOf(Index) + PacketPool.Headroom, pool.DataRoom);
        }
    }

    /// <summary>The device address of the first data byte.</summary>
    public DmaAddress DeviceAddress => Pool.DeviceAddressOf(Index) + PacketPool.Headroom;

    /// <summary>Returns the buffer to its pool.</summary>
    public void Free() => Pool.Free(this);

    /// <inheritdoc />
    public bool Equals(PacketBuffer other) => _handle == other._handle;
    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is PacketBuffer p && Equals(p);
    /// <inheritdoc />
    public override int GetHashCode() => _handle;
    /// <summary>Same buffer.</summary>
    public static bool operator ==(PacketBuffer left, PacketBuffer right) => left.Equals(right);
    /// <summary>Different buffers.</summary>
    public static bool operator !=(PacketBuffer left, PacketBuffer right) => !left.Equals(right);
    /// <inheritdoc />
    public override string ToString() => IsValid ? $"pool {PoolId}[{Index}]" : "(none)";
}
