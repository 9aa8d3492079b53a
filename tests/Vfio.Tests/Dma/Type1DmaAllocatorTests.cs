using CsCheck;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

/// <summary>The type1 allocator against a recording IOMMU; memory is fake (heap) or, in one test, real mmap.</summary>
public sealed class Type1DmaAllocatorTests : IDisposable
{
    private const ulong Chunk = 2UL << 20;

    // What x86 IOMMUs report: everything below the MSI window, and above it up to the address width.
    private static readonly IovaRange[] X86Ranges = [new(0, 0xFEDF_FFFF), new(0xFEF0_0000, 0xFFFF_FFFF_FFFF)];

    private readonly CallLog _log = new();
    private readonly FakePageMemory _pages;
    private readonly FakePageMemory _huge;

    public Type1DmaAllocatorTests()
    {
        _pages = new FakePageMemory(4096, "4 KiB pages", _log);
        _huge = new FakePageMemory(Chunk, "2 MiB hugepages", _log, "mmap2m");
    }

    public void Dispose()
    {
        _pages.Dispose();
        _huge.Dispose();
    }

    private (Type1DmaAllocator Dma, FakeIommuMapper Mapper) New(IReadOnlyList<IovaRange>? ranges = null, bool huge = false, ulong pageSizes = 0x40201000)
    {
        var mapper = new FakeIommuMapper(_log, ranges ?? X86Ranges, pageSizes);
        return (new Type1DmaAllocator(mapper, _pages, huge ? _huge : null, null, NullLogger.Instance), mapper);
    }

    [Fact]
    public void Small_buffers_share_one_chunk_mapped_once_at_an_aligned_iova()
    {
        var (dma, mapper) = New();
        using var a = dma.Allocate(4096);
        using var b = dma.Allocate(64, new DmaAllocationOptions { Alignment = 0x10000 });
        Assert.Equal(DmaAddressing.Iova, dma.Addressing);
        Assert.Equal(1, _log.Count("map "));
        var (start, (vaddr, size)) = Assert.Single(mapper.Mapped);
        Assert.Equal(Chunk, size);
        Assert.Equal(0UL, start % Chunk);
        Assert.True(start >= IovaAllocator.DefaultLowGuard);
        Assert.Equal(new DmaAddress(start), a.DeviceAddress);
        Assert.Equal(vaddr, a.Pointer);
        Assert.Equal(new DmaAddress(start + 0x10000), b.DeviceAddress);
        Assert.Equal(vaddr + 0x10000, b.Pointer);
        Assert.Equal(64UL, b.GetContiguousLength(0));
        Assert.Equal(new DmaAddress(start + 0x10000 + 63), b.GetDeviceAddress(63));
    }

    [Fact]
    public void A_large_buffer_gets_its_own_mapping_contiguous_in_iova_space()
    {
        var (dma, mapper) = New();
        using var big = dma.Allocate((5UL << 20) + 1, new DmaAllocationOptions { Alignment = 1UL << 20 });
        var (start, (_, size)) = Assert.Single(mapper.Mapped);
        Assert.Equal((5UL << 20) + 4096, size);
        Assert.Equal(0UL, start % (1UL << 20));
        Assert.Equal((5UL << 20) + 1, big.GetContiguousLength(0));
        Assert.Equal(0, dma.ChunkCount);
    }

    [Fact]
    public void Dispose_unmaps_from_the_iommu_before_unmapping_the_memory()
    {
        var (dma, mapper) = New();
        var small = dma.Allocate(4096);
        var big = dma.Allocate(3UL << 20);
        big.Dispose();
        small.Dispose();
        Assert.Empty(mapper.Mapped);
        Assert.Equal(0, _pages.LiveMappings);
        var calls = _log.Calls.Where(c => c.StartsWith("unmap", StringComparison.Ordinal) || c.StartsWith("munmap", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, calls.Count);
        foreach (var pair in calls.Chunk(2))
        {
            Assert.StartsWith("unmap ", pair[0], StringComparison.Ordinal);
            Assert.StartsWith("munmap ", pair[1], StringComparison.Ordinal);
            Assert.Equal(pair[0].Split(' ')[1], pair[1].Split(' ')[1]); // same virtual address
        }
        Assert.Equal(dma.Iovas.TotalBytes, dma.Iovas.FreeBytes);
    }

    [Fact]
    public void A_buffer_a_device_owns_cannot_be_freed()
    {
        var (dma, mapper) = New();
        var buffer = dma.Allocate(4096);
        var lease = buffer.MarkInUse("virtio-net rx queue");
        Assert.Throws<InvalidOperationException>(buffer.Dispose);
        Assert.Single(mapper.Mapped);
        Assert.Equal(0, _log.Count("unmap"));
        lease.Dispose();
        buffer.Dispose();
        Assert.Empty(mapper.Mapped);
    }

    [Fact]
    public void Iovas_always_lie_in_the_usable_ranges_and_are_released()
    {
        // Tight ranges: a small space below the MSI-like hole and a little above it, so allocations cross over.
        var ranges = new IovaRange[] { new(0, 0x7F_FFFF), new(0x100_0000, 0x1FF_FFFF) };
        var script = Gen.Select(Gen.Bool, Gen.ULong[1, 3UL << 20], Gen.Int[12, 22], Gen.Int[0, 1000]).Array[1, 40];
        script.Sample(ops =>
        {
            var log = new CallLog();
            using var pages = new FakePageMemory(4096, "4 KiB pages", log);
            var mapper = new FakeIommuMapper(log, ranges); // asserts containment, alignment and no overlap
            var dma = new Type1DmaAllocator(mapper, pages, null, null, NullLogger.Instance);
            var live = new List<DmaBuffer>();
            foreach (var (free, size, alignLog2, pick) in ops)
            {
                if (free && live.Count > 0)
                {
                    var victim = live[pick % live.Count];
                    live.Remove(victim);
                    victim.Dispose();
                    continue;
                }
                var alignment = 1UL << alignLog2;
                try
                {
                    var buffer = dma.Allocate(size, new DmaAllocationOptions { Alignment = alignment });
                    Assert.Equal(0UL, buffer.DeviceAddress.Value % alignment);
                    var first = buffer.DeviceAddress.Value;
                    var last = first + size - 1;
                    Assert.True(first >= IovaAllocator.DefaultLowGuard);
                    Assert.Contains(ranges, r => first >= r.Start && last <= r.End);
                    Assert.DoesNotContain(live, l => first <= l.DeviceAddress.Value + l.Length - 1 && l.DeviceAddress.Value <= last);
                    live.Add(buffer);
                }
                catch (VfioResourceException)
                {
                    // The IOVA space is small: exhaustion is expected, and must leave nothing behind.
                }
                Assert.Equal(pages.LiveMappings, mapper.Mapped.Count);
            }
            foreach (var b in live)
            {
                b.Dispose();
            }
            Assert.Empty(mapper.Mapped);
            Assert.Equal(0, pages.LiveMappings);
            Assert.Equal(dma.Iovas.TotalBytes, dma.Iovas.FreeBytes);
        }, iter: 300);
    }

    [Fact]
    public void Exhausted_iova_space_is_a_resource_error_and_leaks_nothing()
    {
        var (dma, mapper) = New(ranges: [new IovaRange(0, 0x40_0000 - 1)]); // room for one 2 MiB chunk above the guard
        using var a = dma.Allocate(Chunk);
        var e = Assert.Throws<VfioResourceException>(() => dma.Allocate(4096));
        Assert.Contains("IOVA space exhausted", e.Message, StringComparison.Ordinal);
        Assert.Single(mapper.Mapped);
        Assert.Equal(1, _pages.LiveMappings);
    }

    [Fact]
    public void A_failed_map_frees_the_iova_and_the_memory()
    {
        var (dma, mapper) = New();
        mapper.FailNextMap = true;
        Assert.Throws<VfioResourceException>(() => dma.Allocate(4096));
        Assert.Equal(0, _pages.LiveMappings);
        Assert.Equal(dma.Iovas.TotalBytes, dma.Iovas.FreeBytes);
        Assert.Equal(0, dma.ChunkCount);
        using var retry = dma.Allocate(4096);
        Assert.Single(mapper.Mapped);
    }

    [Fact]
    public void A_failed_unmap_keeps_the_memory_and_the_iova()
    {
        var (dma, mapper) = New();
        var buffer = dma.Allocate(3UL << 20);
        mapper.FailNextUnmap = true;
        Assert.Throws<VfioException>(buffer.Dispose);
        Assert.Equal(1, _pages.LiveMappings);
        Assert.True(dma.Iovas.FreeBytes < dma.Iovas.TotalBytes);
    }

    [Fact]
    public void Hugepages_are_used_when_preferred_and_available_and_4k_pages_otherwise()
    {
        var (dma, mapper) = New(huge: true);
        using (var a = dma.Allocate(4096))
        {
            Assert.Equal(1, _log.Count("mmap2m"));
        }
        using var big = dma.Allocate(3UL << 20);
        Assert.Equal(2, _log.Count("mmap2m"));
        Assert.Equal(4UL << 20, Assert.Single(mapper.Mapped).Value.Size); // two whole hugepages
        Assert.Equal(0UL, Assert.Single(mapper.Mapped).Key % Chunk);
        _huge.OutOfHugePages = true;
        using var fallback = dma.Allocate(4096);
        Assert.Equal(1, _log.Count("mmap 0x"));
    }

    [Fact]
    public void The_iommu_page_size_sets_the_granularity()
    {
        var (dma, mapper) = New(pageSizes: 0x40210000); // smallest IOMMU page 64 KiB
        using var big = dma.Allocate((2UL << 20) + 1);
        var (start, (_, size)) = Assert.Single(mapper.Mapped);
        Assert.Equal((2UL << 20) + 0x10000, size);
        Assert.Equal(0UL, start % 0x10000);
        Assert.Equal(0x10000UL, dma.Iovas.Granularity);
    }

    [Fact]
    public void A_shared_iova_allocator_is_used()
    {
        var shared = new IovaAllocator(X86Ranges);
        var reserved = shared.Allocate(Chunk, Chunk); // someone else's mapping
        var mapper = new FakeIommuMapper(_log, X86Ranges);
        var dma = new Type1DmaAllocator(mapper, _pages, null, shared, NullLogger.Instance);
        using var buffer = dma.Allocate(4096);
        Assert.Same(shared, dma.Iovas);
        Assert.NotEqual(reserved.Value, buffer.DeviceAddress.Value);
        Assert.Equal(2 * Chunk, shared.TotalBytes - shared.FreeBytes);
    }

    [Fact]
    public void Concurrent_allocation_and_disposal_leave_nothing_behind()
    {
        var (dma, mapper) = New();
        Parallel.For(0, 8, worker =>
        {
            var mine = new List<DmaBuffer>();
            for (var i = 0; i < 200; i++)
            {
                mine.Add(dma.Allocate((ulong)(i % 7 + 1) * 3000 + (i % 50 == 0 ? Chunk : 0)));
                mine[^1].Span[0] = (byte)worker;
                if (i % 2 == 0)
                {
                    mine[0].Dispose();
                    mine.RemoveAt(0);
                }
            }
            foreach (var b in mine)
            {
                Assert.Equal((byte)worker, b.Span[0]); // nobody else was handed the same bytes
                b.Dispose();
            }
        });
        Assert.Empty(mapper.Mapped);
        Assert.Equal(0, _pages.LiveMappings);
        Assert.Equal(0, dma.ChunkCount);
        Assert.Equal(dma.Iovas.TotalBytes, dma.Iovas.FreeBytes);
    }

    [Fact]
    public void A_mapper_without_page_sizes_is_refused()
    {
        var mapper = new FakeIommuMapper(_log, X86Ranges, pageSizes: 0);
        Assert.Throws<ArgumentException>(() => new Type1DmaAllocator(mapper));
    }

    [Fact]
    public void Real_memory_is_zeroed_writable_and_returned()
    {
        // The public constructor: real anonymous mmap/munmap (no privilege needed), recording IOMMU.
        var mapper = new FakeIommuMapper(_log, X86Ranges);
        var dma = new Type1DmaAllocator(mapper);
        var buffers = new[] { dma.Allocate(100), dma.Allocate(4096), dma.Allocate(3UL << 20, new DmaAllocationOptions { Contiguous = true }) };
        foreach (var b in buffers)
        {
            var span = b.Length > int.MaxValue ? default : b.Span;
            Assert.True(span.IndexOfAnyExcept((byte)0) < 0);
            span.Fill(0x5A);
        }
        var pointer = buffers[0].Pointer;
        buffers[0].Dispose();
        using var again = dma.Allocate(100);
        Assert.Equal(pointer, again.Pointer);
        Assert.True(again.Span.IndexOfAnyExcept((byte)0) < 0, "a reused carving was not zeroed");
        buffers[1].Dispose();
        buffers[2].Dispose();
        Assert.Single(mapper.Mapped); // the chunk `again` lives in
    }
}
