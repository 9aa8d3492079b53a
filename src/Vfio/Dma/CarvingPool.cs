namespace Vfio.Dma;

/// <summary>
/// Carves small buffers out of large chunks (a 2 MiB hugepage, a 2 MiB IOMMU mapping) so that a 4 KiB
/// queue does not cost a whole chunk. Chunks are created on demand through a callback and released through
/// another as soon as their last carving is returned. Offsets are aligned within the chunk, so a carving's
/// device address is aligned as long as the chunk's own device address is aligned to the chunk size.
/// Thread-safe; the callbacks run under the pool's lock.
/// </summary>
/// <typeparam name="TChunk">Whatever backs a chunk (a mapping, a hugepage).</typeparam>
internal sealed class CarvingPool<TChunk> where TChunk : class
{
    private readonly Lock _lock = new();
    private readonly List<Chunk> _chunks = [];
    private readonly Func<TChunk> _create;
    private readonly Action<TChunk> _release;

    /// <summary>Creates an empty pool.</summary>
    /// <param name="chunkSize">Bytes per chunk.</param>
    /// <param name="granule">Sizes are rounded up to this power of two.</param>
    /// <param name="create">Makes a new chunk of <paramref name="chunkSize"/> bytes.</param>
    /// <param name="release">Frees a chunk once nothing is carved from it.</param>
    public CarvingPool(ulong chunkSize, ulong granule, Func<TChunk> create, Action<TChunk> release)
    {
        if (!ulong.IsPow2(granule) || chunkSize == 0 || chunkSize % granule != 0)
        {
            throw new ArgumentException($"chunk size {chunkSize} must be a non-zero multiple of the power-of-two granule {granule}");
        }
        ChunkSize = chunkSize;
        Granule = granule;
        _create = create;
        _release = release;
    }

    /// <summary>Bytes per chunk.</summary>
    public ulong ChunkSize { get; }

    /// <summary>Sizes are rounded up to this.</summary>
    public ulong Granule { get; }

    /// <summary>Chunks currently held.</summary>
    public int ChunkCount
    {
        get
        {
            lock (_lock)
            {
                return _chunks.Count;
            }
        }
    }

    /// <summary>True when a request of this size and alignment can be carved (otherwise it needs its own mapping).</summary>
    public bool Fits(ulong size, ulong alignment) => size != 0 && size <= ChunkSize && alignment <= ChunkSize;

    /// <summary>
    /// Carves <paramref name="size"/> bytes (rounded up to <see cref="Granule"/>) at an offset that is a multiple
    /// of <paramref name="alignment"/>, from the first chunk with room, creating a chunk when none has.
    /// </summary>
    public Chunk Carve(ulong size, ulong alignment, out ulong offset)
    {
        if (!Fits(size, alignment) || !ulong.IsPow2(alignment))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"cannot carve {size} bytes aligned to {alignment} from {ChunkSize}-byte chunks");
        }
        var rounded = (size + (Granule - 1)) & ~(Granule - 1);
        alignment = Math.Max(alignment, Granule);
        lock (_lock)
        {
            foreach (var chunk in _chunks)
            {
                if (chunk.Free.TryTake(rounded, alignment, out offset))
                {
                    chunk.Live.Add(offset, rounded);
                    return chunk;
                }
            }
            // No room anywhere: a new chunk. If creating it throws, the pool is unchanged.
            var fresh = new Chunk(_create(), ChunkSize);
            if (!fresh.Free.TryTake(rounded, alignment, out offset))
            {
                throw new InvalidOperationException("a fresh chunk cannot hold a carving that fits a chunk"); // unreachable
            }
            fresh.Live.Add(offset, rounded);
            _chunks.Add(fresh);
            return fresh;
        }
    }

    /// <summary>Returns a carving; releases its chunk when it was the chunk's last.</summary>
    /// <returns>True when the chunk was released.</returns>
    public bool Return(Chunk chunk, ulong offset)
    {
        lock (_lock)
        {
            if (!chunk.Live.Remove(offset, out var size))
            {
                throw new InvalidOperationException($"offset 0x{offset:x} is not carved from this chunk, or was returned twice");
            }
            chunk.Free.Give(offset, size);
            if (chunk.Live.Count != 0)
            {
                return false;
            }
            _chunks.Remove(chunk);
            _release(chunk.Value);
            return true;
        }
    }

    /// <summary>One chunk and its free space.</summary>
    internal sealed class Chunk
    {
        internal Chunk(TChunk value, ulong size)
        {
            Value = value;
            Free = new RangeSet([new IovaRange(0, size - 1)]);
        }

        /// <summary>What backs the chunk.</summary>
        public TChunk Value { get; }

        /// <summary>Carvings in use: offset to rounded size.</summary>
        internal Dictionary<ulong, ulong> Live { get; } = [];

        /// <summary>Free offsets.</summary>
        internal RangeSet Free { get; }

        /// <summary>Number of carvings in use.</summary>
        public int LiveCount => Live.Count;
    }
}
