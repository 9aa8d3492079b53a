using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

/// <summary>
/// The No-IOMMU allocator on fake hugepages (heap memory) and invented physical addresses. The real path
/// (hugetlb mmap, /proc/self/pagemap with CAP_SYS_ADMIN) runs in the guest lab.
/// </summary>
public sealed class NoIommuDmaAllocatorTests : IDisposable
{
    private const ulong Huge = 2UL << 20;
    private readonly CallLog _log = new();
    private readonly FakePageMemory _huge;
    private readonly FakePageMemory _small;
    private readonly FakePhysical _physical = new();

    public NoIommuDmaAllocatorTests()
    {
        _huge = new FakePageMemory(Huge, "2 MiB hugepages", _log);
        _small = new FakePageMemory(4096, "locked 4 KiB pages (migratable)", _log, "mmap4k");
    }

    public void Dispose()
    {
        _huge.Dispose();
        _small.Dispose();
    }

    private NoIommuDmaAllocator New(bool allowMigratable = false, IPhysicalAddressResolver? resolver = null) =>
        new(_huge, allowMigratable ? _small : null, resolver ?? _physical, ownsResolver: false, NullLogger.Instance);

    [Fact]
    public void Small_buffers_are_carved_from_one_hugepage_and_addressed_physically()
    {
        using var dma = New();
        _physical.Enqueue(0x4000_0000);
        using var a = dma.Allocate(4096);
        using var b = dma.Allocate(100, new DmaAllocationOptions { Alignment = 0x10000 });
        Assert.Equal(DmaAddressing.Physical, dma.Addressing);
        Assert.Equal(1, _log.Count("mmap"));
        Assert.Equal(1, dma.ChunkCount);
        Assert.Equal(new DmaAddress(0x4000_0000), a.DeviceAddress);
        Assert.Equal(new DmaAddress(0x4001_0000), b.DeviceAddress);
        Assert.Equal(0x10000, b.Pointer - a.Pointer);
        Assert.Equal(new DmaAddress(0x4001_0063), b.GetDeviceAddress(99));
        Assert.Equal(100UL, b.GetContiguousLength(0));
        Assert.Equal(100UL, b.Length);
    }

    [Fact]
    public void A_chunk_is_unmapped_when_its_last_buffer_is_disposed()
    {
        using var dma = New();
        var a = dma.Allocate(4096);
        var b = dma.Allocate(8192);
        a.Dispose();
        Assert.Equal(0, _log.Count("munmap"));
        b.Dispose();
        Assert.Equal(1, _log.Count("munmap"));
        Assert.Equal(0, dma.ChunkCount);
        Assert.Equal(0, _huge.LiveMappings);
    }

    [Fact]
    public void Reused_space_is_zeroed()
    {
        using var dma = New();
        using var keep = dma.Allocate(4096);
        var first = dma.Allocate(4096);
        first.Span.Fill(0xAB);
        var pointer = first.Pointer;
        first.Dispose();
        using var second = dma.Allocate(4096);
        Assert.Equal(pointer, second.Pointer);
        Assert.True(second.Span.IndexOfAnyExcept((byte)0) < 0, "a reused carving was not zeroed");
    }

    [Fact]
    public void A_large_buffer_is_contiguous_only_within_each_hugepage()
    {
        using var dma = New();
        _physical.Enqueue(0x8000_0000, 0x2000_0000, 0x2020_0000);
        using var big = dma.Allocate(5UL << 20, new DmaAllocationOptions { Contiguous = false });
        Assert.Equal(1, _log.Count("mmap"));
        Assert.Equal(0, dma.ChunkCount); // its own hugepages, not a carving chunk
        Assert.Equal(new DmaAddress(0x8000_0000), big.DeviceAddress);
        Assert.Equal(Huge, big.GetContiguousLength(0));
        Assert.Equal(new DmaAddress(0x2000_0005), big.GetDeviceAddress(Huge + 5));
        // The second and third hugepages are adjacent: contiguous from the second to the end of the buffer.
        Assert.Equal((5UL << 20) - Huge, big.GetContiguousLength(Huge));
        Assert.Equal(1UL, big.GetContiguousLength((5UL << 20) - 1));
    }

    [Fact]
    public void Contiguous_across_hugepages_is_refused_unless_they_are_adjacent()
    {
        using var dma = New();
        _physical.Enqueue(0x8000_0000, 0x2000_0000);
        var e = Assert.Throws<ArgumentException>(() => dma.Allocate(3UL << 20));
        Assert.Contains("Contiguous = false", e.Message, StringComparison.Ordinal);
        Assert.Contains("GetContiguousLength", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _huge.LiveMappings);

        _physical.Enqueue(0x6000_0000, 0x6020_0000);
        using var adjacent = dma.Allocate(4UL << 20);
        Assert.Equal(4UL << 20, adjacent.GetContiguousLength(0));
    }

    [Fact]
    public void No_free_hugepages_is_an_error_that_says_how_to_reserve_them()
    {
        using var dma = New();
        _huge.OutOfHugePages = true;
        var e = Assert.Throws<HugePagesUnavailableException>(() => dma.Allocate(4096));
        Assert.Contains("vfio hugepages reserve", e.Message, StringComparison.Ordinal);
        Assert.Contains("0 of 4 hugepages are free", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _log.Count("mmap4k"));
    }

    [Fact]
    public void Migratable_pages_are_used_only_when_allowed_and_hugepages_run_out()
    {
        var small = new FakePhysical();
        using var dma = New(allowMigratable: true, resolver: small);
        _huge.OutOfHugePages = true;
        small.Enqueue(0x7000_0000, 0x9000_0000);
        using var buffer = dma.Allocate(8192, new DmaAllocationOptions { Contiguous = false });
        Assert.Equal(1, _log.Count("mmap4k"));
        Assert.Equal(new DmaAddress(0x7000_0000), buffer.DeviceAddress);
        Assert.Equal(new DmaAddress(0x9000_0010), buffer.GetDeviceAddress(4096 + 16));
        Assert.Equal(4096UL, buffer.GetContiguousLength(0));
        // Contiguous is checked on the real frames, which 4 KiB pages rarely give.
        Assert.Throws<ArgumentException>(() => dma.Allocate(8192));
        // Once hugepages are back, they are preferred again.
        _huge.OutOfHugePages = false;
        using var huge = dma.Allocate(4096);
        Assert.Equal(1, _log.Count("mmap 0x"));
    }

    [Fact]
    public void A_hidden_frame_number_is_a_missing_capability_and_frees_the_memory()
    {
        using var dma = New(resolver: new FakePhysical() { EntryOverride = _ => new PagemapEntry(0x8100000000000000UL) });
        var e = Assert.Throws<MissingCapabilityException>(() => dma.Allocate(4096));
        Assert.Equal("CAP_SYS_ADMIN", e.Capability);
        Assert.Equal(0, _huge.LiveMappings);
        Assert.Equal(0, dma.ChunkCount);
    }

    [Fact]
    public void A_hugepage_that_is_not_physically_aligned_is_refused()
    {
        using var dma = New();
        _physical.Enqueue(0x4000_1000);
        Assert.Throws<VfioException>(() => dma.Allocate(4096));
        Assert.Equal(0, _huge.LiveMappings);
    }

    [Fact]
    public void A_buffer_a_device_owns_cannot_be_freed()
    {
        using var dma = New();
        var buffer = dma.Allocate(4096, new DmaAllocationOptions { Name = "rx ring" });
        var lease = buffer.MarkInUse("nvme queue 1");
        var e = Assert.Throws<InvalidOperationException>(buffer.Dispose);
        Assert.Contains("nvme queue 1", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _log.Count("munmap"));
        lease.Dispose();
        buffer.Dispose();
        Assert.Equal(1, _log.Count("munmap"));
    }

    [Fact]
    public void Bad_requests_are_refused()
    {
        using var dma = New();
        Assert.Throws<ArgumentOutOfRangeException>(() => dma.Allocate(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => dma.Allocate(4096, new DmaAllocationOptions { Alignment = 512 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => dma.Allocate(4096, new DmaAllocationOptions { Alignment = 12288 }));
        Assert.Equal(0, _log.Count("mmap"));
    }

    [Fact]
    public void Alignment_beyond_a_hugepage_is_checked_against_the_real_frame()
    {
        using var dma = New();
        _physical.Enqueue(0x4020_0000);
        Assert.Throws<ArgumentException>(() => dma.Allocate(4096, new DmaAllocationOptions { Alignment = 4UL << 20 }));
        _physical.Enqueue(0x4040_0000);
        using var aligned = dma.Allocate(4096, new DmaAllocationOptions { Alignment = 4UL << 20 });
        Assert.Equal(new DmaAddress(0x4040_0000), aligned.DeviceAddress);
    }

    [Fact]
    public void Buffers_outlive_their_allocator()
    {
        var dma = New();
        var buffer = dma.Allocate(4096);
        dma.Dispose();
        Assert.Throws<ObjectDisposedException>(() => dma.Allocate(4096));
        buffer.Span[0] = 1;
        buffer.Dispose();
        Assert.Equal(0, _huge.LiveMappings);
    }
}
