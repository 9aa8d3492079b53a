using CsCheck;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

public class IovaAllocatorTests
{
    private const ulong Page = 4096;

    // Usable ranges in pages (so shrinking stays readable), then a script of operations: allocate (pages,
    // log2 of alignment in pages) or free the n-th live allocation.
    private static readonly Gen<IovaRange[]> GenRanges =
        Gen.Select(Gen.ULong[0, 400], Gen.ULong[1, 64])
            .Select((start, pages) => new IovaRange(start * Page, (start + pages) * Page - 1))
            .Array[1, 4];

    private static readonly Gen<(bool Free, int Pages, int AlignLog2, int Pick)[]> GenScript =
        Gen.Select(Gen.Bool, Gen.Int[1, 24], Gen.Int[0, 5], Gen.Int[0, 1000]).Array[1, 60];

    [Fact]
    public void Allocations_never_overlap_stay_in_range_respect_alignment_and_coalesce_on_free()
    {
        Gen.Select(GenRanges, GenScript).Sample((ranges, script) =>
        {
            if (ranges.All(r => r.End < IovaAllocator.DefaultLowGuard))
            {
                Assert.Throws<ArgumentException>(() => new IovaAllocator(ranges));
                return;
            }
            var a = new IovaAllocator(ranges);
            var live = new List<(ulong Start, ulong Size)>();
            foreach (var (free, pages, alignLog2, pick) in script)
            {
                if (free && live.Count > 0)
                {
                    var victim = live[pick % live.Count];
                    live.Remove(victim);
                    a.Free(new Iova(victim.Start));
                    continue;
                }
                var size = (ulong)pages * Page - (ulong)(pick % 7); // sizes that are not page multiples too
                var alignment = Page << alignLog2;
                Iova iova;
                try
                {
                    iova = a.Allocate(size, alignment);
                }
                catch (VfioResourceException)
                {
                    // Exhaustion must be real: no free extent of the usable space can hold an aligned range.
                    Assert.False(ModelFits(a.UsableRanges, live, (ulong)pages * Page, alignment),
                        $"allocator reported exhaustion for {pages} pages aligned to 0x{alignment:x} but the model has room");
                    continue;
                }
                var rounded = (ulong)pages * Page;
                Assert.Equal(rounded, a.GetAllocatedSize(iova));
                Assert.Equal(0UL, iova.Value % alignment);
                Assert.True(iova.Value >= IovaAllocator.DefaultLowGuard, $"{iova} is below the low guard");
                Assert.Contains(a.UsableRanges, r => iova.Value >= r.Start && iova.Value + rounded - 1 <= r.End);
                // Overlapping or touching input ranges merge, so check every page against their union.
                for (var page = iova.Value; page < iova.Value + rounded; page += Page)
                {
                    Assert.Contains(ranges, r => page >= r.Start && page + Page - 1 <= r.End);
                }
                Assert.DoesNotContain(live, l => iova.Value < l.Start + l.Size && l.Start < iova.Value + rounded);
                live.Add((iova.Value, rounded));
                Assert.Equal(a.TotalBytes - (ulong)live.Sum(l => (decimal)l.Size), a.FreeBytes);
            }
            foreach (var l in live)
            {
                a.Free(new Iova(l.Start));
            }
            // Everything free again and coalesced: each usable range can be taken whole.
            Assert.Equal(a.TotalBytes, a.FreeBytes);
            foreach (var r in a.UsableRanges)
            {
                Assert.Equal(r.Start, a.Allocate(r.End - r.Start + 1, Page).Value);
            }
        }, iter: 2000);
    }

    [Fact]
    public void Freed_space_is_reused_first_fit()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 16]).Sample((count, pages) =>
        {
            var a = new IovaAllocator([new IovaRange(0, (1UL << 32) - 1)]);
            var all = Enumerable.Range(0, count).Select(_ => a.Allocate((ulong)pages * Page)).ToList();
            var victim = all[count / 2];
            a.Free(victim);
            Assert.Equal(victim, a.Allocate((ulong)pages * Page));
        });
    }

    [Fact]
    public void Exhaustion_is_reported_with_a_clear_resource_error()
    {
        var a = new IovaAllocator([new IovaRange(0x10000, 0x13FFF)]); // four pages
        for (var i = 0; i < 4; i++)
        {
            a.Allocate(Page);
        }
        var e = Assert.Throws<VfioResourceException>(() => a.Allocate(1));
        Assert.Contains("IOVA space exhausted", e.Message, StringComparison.Ordinal);
        Assert.Contains("0 of 16384 bytes", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, e.ErrorNumber);
    }

    [Fact]
    public void Never_hands_out_the_low_guard_even_when_the_iommu_allows_it()
    {
        var a = new IovaAllocator([new IovaRange(0, 0x20FFF)]);
        Assert.Equal(new Iova(0x10000), a.Allocate(Page));
        Assert.Equal([new IovaRange(0x10000, 0x20FFF)], a.UsableRanges);
        Assert.Throws<ArgumentException>(() => new IovaAllocator([new IovaRange(0, 0xFFFF)]));
    }

    [Fact]
    public void Ranges_are_clipped_to_whole_granules_and_merged()
    {
        var a = new IovaAllocator([new IovaRange(0x10800, 0x13FFE), new IovaRange(0x14000, 0x15FFF), new IovaRange(0x14000, 0x14FFF)]);
        // 0x10800 rounds up to 0x11000; 0x13FFE cannot end a whole page, so the first range ends at 0x12FFF and
        // the gap at 0x13000 keeps it apart from the second.
        Assert.Equal([new IovaRange(0x11000, 0x12FFF), new IovaRange(0x14000, 0x15FFF)], a.UsableRanges);
    }

    [Fact]
    public void Handles_the_top_of_the_64_bit_space_without_overflow()
    {
        var a = new IovaAllocator([new IovaRange(0xFFFF_FFFF_FFFF_0000, ulong.MaxValue)]);
        Assert.Equal(0x10000UL, a.TotalBytes);
        var whole = a.Allocate(0x10000);
        Assert.Equal(0xFFFF_FFFF_FFFF_0000, whole.Value);
        Assert.Throws<VfioResourceException>(() => a.Allocate(Page));
        Assert.Throws<VfioResourceException>(() => a.Allocate(ulong.MaxValue));
        a.Free(whole);
        Assert.Equal(0x10000UL, a.FreeBytes);
    }

    [Fact]
    public void Double_free_and_foreign_free_are_refused()
    {
        var a = new IovaAllocator([new IovaRange(0, 0xFFFFF)]);
        var x = a.Allocate(Page);
        a.Free(x);
        Assert.Throws<InvalidOperationException>(() => a.Free(x));
        Assert.Throws<InvalidOperationException>(() => a.Free(new Iova(0x50000)));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var a = new IovaAllocator([new IovaRange(0, 0xFFFFF)]);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Allocate(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.Allocate(Page, 3 * Page));
        Assert.Throws<ArgumentOutOfRangeException>(() => new IovaAllocator([new IovaRange(0, 0xFFFFF)], granularity: 3000));
        Assert.Throws<ArgumentException>(() => new IovaAllocator([new IovaRange(0x20000, 0x10000)]));
    }

    [Fact]
    public void Concurrent_allocations_never_overlap()
    {
        var a = new IovaAllocator([new IovaRange(0, (1UL << 30) - 1)]);
        var live = new List<(ulong Start, ulong Size)>[8];
        Parallel.For(0, 8, worker =>
        {
            var mine = new List<(ulong Start, ulong Size)>();
            for (var i = 0; i < 500; i++)
            {
                var size = (ulong)(i % 5 + 1) * Page;
                mine.Add((a.Allocate(size).Value, size));
                if (i % 3 == 0)
                {
                    a.Free(new Iova(mine[0].Start));
                    mine.RemoveAt(0);
                }
            }
            live[worker] = mine;
        });
        // Everything still allocated was live at the same time, so no two may overlap.
        var all = live.SelectMany(l => l).OrderBy(l => l.Start).ToList();
        for (var i = 1; i < all.Count; i++)
        {
            Assert.True(all[i - 1].Start + all[i - 1].Size <= all[i].Start, $"0x{all[i - 1].Start:x} overlaps 0x{all[i].Start:x}");
        }
        Assert.Equal(a.TotalBytes - all.Aggregate(0UL, (sum, l) => sum + l.Size), a.FreeBytes);
    }

    // A brute-force model: can `size` bytes at `alignment` fit between live allocations in the usable ranges?
    private static bool ModelFits(IReadOnlyList<IovaRange> usable, List<(ulong Start, ulong Size)> live, ulong size, ulong alignment)
    {
        foreach (var r in usable)
        {
            for (var start = (r.Start + alignment - 1) & ~(alignment - 1); start + size - 1 <= r.End; start += alignment)
            {
                if (!live.Any(l => start < l.Start + l.Size && l.Start < start + size))
                {
                    return true;
                }
            }
        }
        return false;
    }
}
