using System.Numerics;

namespace Vfio.Dma;

/// <summary>
/// Hands out aligned ranges of I/O virtual address space from the ranges an IOMMU reports as usable
/// (<c>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE</c>, or <c>IOMMU_IOAS_IOVA_RANGES</c> for iommufd), and takes
/// them back. First fit, lowest address first, so devices with a narrow DMA mask are served from the bottom
/// of the space for as long as possible. Freed ranges coalesce with their free neighbours. Thread-safe.
/// </summary>
/// <remarks>
/// Addresses below <see cref="LowGuard"/> are never handed out, even when the IOMMU reports them usable: a
/// device that DMAs to IOVA 0 almost always does so because a driver forgot to program an address, and
/// such a write must fault rather than land in a live buffer (libvfn keeps the same 0x10000 default floor).
/// </remarks>
public sealed class IovaAllocator
{
    /// <summary>The default lowest address ever handed out: 64 KiB.</summary>
    public const ulong DefaultLowGuard = 0x10000;

    private readonly Lock _lock = new();
    private readonly RangeSet _free;
    private readonly Dictionary<ulong, ulong> _allocated = [];
    private readonly ulong _totalBytes;

    /// <summary>Creates an allocator over <paramref name="usableRanges"/> (ends inclusive; overlapping ranges are merged).</summary>
    /// <param name="usableRanges">The IOVA ranges the IOMMU accepts.</param>
    /// <param name="granularity">
    /// The smallest unit handed out, a power of two: sizes are rounded up to it and every range starts on it.
    /// Use the IOMMU's smallest page size (lowest bit of <see cref="IIommuMapper.PageSizes"/>) or the host
    /// page size, whichever is larger.
    /// </param>
    /// <param name="lowGuard">Addresses below this are never handed out.</param>
    /// <exception cref="ArgumentException">No usable space remains above <paramref name="lowGuard"/>, or a range is malformed.</exception>
    public IovaAllocator(IEnumerable<IovaRange> usableRanges, ulong granularity = 4096, ulong lowGuard = DefaultLowGuard)
    {
        ArgumentNullException.ThrowIfNull(usableRanges);
        if (!BitOperations.IsPow2(granularity))
        {
            throw new ArgumentOutOfRangeException(nameof(granularity), granularity, "granularity must be a power of two");
        }
        Granularity = granularity;
        LowGuard = lowGuard;

        // Clip every range to whole granules at or above the guard; a partial granule cannot be handed out.
        var clipped = new List<IovaRange>();
        foreach (var r in usableRanges)
        {
            if (r.End < r.Start)
            {
                throw new ArgumentException($"IOVA range 0x{r.Start:x}..0x{r.End:x} ends before it starts", nameof(usableRanges));
            }
            var start = Math.Max(r.Start, lowGuard);
            var alignedStart = (start + (granularity - 1)) & ~(granularity - 1);
            if (alignedStart < start || r.End < alignedStart)
            {
                continue;
            }
            // Round the inclusive end down to the last byte of a whole granule.
            var end = r.End - ((r.End - alignedStart + 1) & (granularity - 1));
            if (end < alignedStart || end - alignedStart + 1 < granularity)
            {
                continue;
            }
            clipped.Add(new IovaRange(alignedStart, end));
        }
        _free = new RangeSet(clipped);
        if (_free.Extents.Count == 0)
        {
            throw new ArgumentException(
                $"no usable IOVA space at or above 0x{lowGuard:x} in {Describe(usableRanges)}", nameof(usableRanges));
        }
        UsableRanges = [.. _free.Extents];
        _totalBytes = _free.FreeBytes;
    }

    /// <summary>The space this allocator hands out: the IOMMU's ranges clipped to the guard and to whole granules.</summary>
    public IReadOnlyList<IovaRange> UsableRanges { get; }

    /// <summary>The smallest unit handed out; sizes are rounded up to it.</summary>
    public ulong Granularity { get; }

    /// <summary>Addresses below this are never handed out.</summary>
    public ulong LowGuard { get; }

    /// <summary>Bytes not currently allocated.</summary>
    public ulong FreeBytes
    {
        get
        {
            lock (_lock)
            {
                return _free.FreeBytes;
            }
        }
    }

    /// <summary>Bytes in <see cref="UsableRanges"/>.</summary>
    public ulong TotalBytes => _totalBytes;

    /// <summary>
    /// Reserves <paramref name="size"/> bytes (rounded up to <see cref="Granularity"/>) starting at a
    /// multiple of <paramref name="alignment"/>.
    /// </summary>
    /// <param name="size">Bytes needed; the reservation covers the size rounded up to <see cref="Granularity"/>.</param>
    /// <param name="alignment">A power of two; values below <see cref="Granularity"/> mean <see cref="Granularity"/>.</param>
    /// <returns>The first address of the reserved range.</returns>
    /// <exception cref="VfioResourceException">No free range of that size and alignment is left.</exception>
    public Iova Allocate(ulong size, ulong alignment = 0)
    {
        if (size == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "cannot allocate an empty IOVA range");
        }
        if (alignment != 0 && !BitOperations.IsPow2(alignment))
        {
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "alignment must be a power of two");
        }
        alignment = Math.Max(alignment, Granularity);
        var rounded = RoundUp(size, Granularity);
        lock (_lock)
        {
            if (rounded != 0 && _free.TryTake(rounded, alignment, out var start))
            {
                _allocated.Add(start, rounded);
                return new Iova(start);
            }
            throw new VfioResourceException(
                $"allocating {size} bytes of IOVA space aligned to 0x{alignment:x}: IOVA space exhausted", null, 0,
                $"{_free.FreeBytes} of {_totalBytes} bytes in {Describe(UsableRanges)} are free, but no free extent " +
                "fits; free DMA buffers that are no longer needed, or allocate smaller buffers");
        }
    }

    /// <summary>Returns the range that <see cref="Allocate"/> reserved at <paramref name="start"/>.</summary>
    /// <exception cref="InvalidOperationException"><paramref name="start"/> is not the start of a reserved range (never allocated, or freed twice).</exception>
    public void Free(Iova start)
    {
        lock (_lock)
        {
            if (!_allocated.Remove(start.Value, out var size))
            {
                throw new InvalidOperationException($"{start} was not allocated by this IOVA allocator, or was already freed");
            }
            _free.Give(start.Value, size);
        }
    }

    /// <summary>The size reserved at <paramref name="start"/>, or null when nothing is.</summary>
    public ulong? GetAllocatedSize(Iova start)
    {
        lock (_lock)
        {
            return _allocated.TryGetValue(start.Value, out var size) ? size : null;
        }
    }

    private static ulong RoundUp(ulong value, ulong granule)
    {
        var rounded = (value + (granule - 1)) & ~(granule - 1);
        return rounded < value ? 0 : rounded; // 0: overflow, which no range can satisfy
    }

    private static string Describe(IEnumerable<IovaRange> ranges) =>
        "[" + string.Join(", ", ranges.Select(r => $"0x{r.Start:x}..0x{r.End:x}")) + "]";
}
