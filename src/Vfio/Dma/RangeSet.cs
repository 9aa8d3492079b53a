namespace Vfio.Dma;

/// <summary>
/// The free parts of an address space as sorted, disjoint, coalesced extents with inclusive ends (so an
/// extent may reach <see cref="ulong.MaxValue"/> without overflow). First fit, lowest address first. Not
/// thread-safe: <see cref="IovaAllocator"/> and <see cref="CarvingPool{TChunk}"/> lock around it.
/// </summary>
internal sealed class RangeSet
{
    // Sorted by Start; no two extents overlap or touch (touching extents are merged on insert).
    private readonly List<IovaRange> _free = [];

    /// <summary>Creates a set holding <paramref name="ranges"/>, merged where they overlap or touch.</summary>
    public RangeSet(IEnumerable<IovaRange> ranges)
    {
        foreach (var r in ranges.OrderBy(r => r.Start))
        {
            if (r.End < r.Start)
            {
                throw new ArgumentException($"range 0x{r.Start:x}..0x{r.End:x} ends before it starts", nameof(ranges));
            }
            if (_free.Count > 0 && (_free[^1].End == ulong.MaxValue || r.Start <= _free[^1].End + 1))
            {
                var last = _free[^1];
                _free[^1] = last with { End = Math.Max(last.End, r.End) };
            }
            else
            {
                _free.Add(r);
            }
        }
    }

    /// <summary>The free extents, lowest first.</summary>
    public IReadOnlyList<IovaRange> Extents => _free;

    /// <summary>Total free bytes. Cannot overflow: the extents are disjoint and a full 2^64 space is not representable.</summary>
    public ulong FreeBytes
    {
        get
        {
            ulong total = 0;
            foreach (var r in _free)
            {
                total += r.End - r.Start + 1;
            }
            return total;
        }
    }

    /// <summary>
    /// Takes the lowest <paramref name="size"/>-byte extent starting at a multiple of
    /// <paramref name="alignment"/> (a power of two). False when none fits.
    /// </summary>
    public bool TryTake(ulong size, ulong alignment, out ulong start)
    {
        start = 0;
        if (size == 0)
        {
            return false;
        }
        for (var i = 0; i < _free.Count; i++)
        {
            var r = _free[i];
            var aligned = (r.Start + (alignment - 1)) & ~(alignment - 1);
            if (aligned < r.Start || aligned > r.End || size - 1 > r.End - aligned)
            {
                continue; // rounding overflowed, or the aligned remainder is too short
            }
            var last = aligned + (size - 1);
            _free.RemoveAt(i);
            if (last < r.End)
            {
                _free.Insert(i, new IovaRange(last + 1, r.End));
            }
            if (aligned > r.Start)
            {
                _free.Insert(i, new IovaRange(r.Start, aligned - 1));
            }
            start = aligned;
            return true;
        }
        return false;
    }

    /// <summary>Gives back <paramref name="size"/> bytes at <paramref name="start"/>, merging with free neighbours.</summary>
    /// <exception cref="InvalidOperationException">Part of the extent is already free (a double free).</exception>
    public void Give(ulong start, ulong size)
    {
        if (size == 0 || size - 1 > ulong.MaxValue - start)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"extent at 0x{start:x} of {size} bytes is empty or wraps");
        }
        var end = start + (size - 1);
        // Index of the first extent that starts after `start`.
        int lo = 0, hi = _free.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_free[mid].Start <= start) { lo = mid + 1; } else { hi = mid; }
        }
        var index = lo;
        var mergePrev = false;
        var mergeNext = false;
        if (index > 0)
        {
            var prev = _free[index - 1];
            if (prev.End >= start)
            {
                throw new InvalidOperationException($"extent 0x{start:x}..0x{end:x} overlaps free extent 0x{prev.Start:x}..0x{prev.End:x}");
            }
            mergePrev = prev.End + 1 == start;
        }
        if (index < _free.Count)
        {
            var next = _free[index];
            if (next.Start <= end)
            {
                throw new InvalidOperationException($"extent 0x{start:x}..0x{end:x} overlaps free extent 0x{next.Start:x}..0x{next.End:x}");
            }
            mergeNext = end + 1 == next.Start;
        }
        if (mergePrev && mergeNext)
        {
            _free[index - 1] = _free[index - 1] with { End = _free[index].End };
            _free.RemoveAt(index);
        }
        else if (mergePrev)
        {
            _free[index - 1] = _free[index - 1] with { End = end };
        }
        else if (mergeNext)
        {
            _free[index] = _free[index] with { Start = start };
        }
        else
        {
            _free.Insert(index, new IovaRange(start, end));
        }
    }
}
