using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

/// <summary>One ordered log shared by fakes, so tests can check the order of map, unmap and munmap.</summary>
internal sealed class CallLog
{
    private readonly List<string> _calls = [];
    public IReadOnlyList<string> Calls { get { lock (_calls) { return [.. _calls]; } } }
    public void Add(string call) { lock (_calls) { _calls.Add(call); } }
    public int Count(string prefix) => Calls.Count(c => c.StartsWith(prefix, StringComparison.Ordinal));
}

/// <summary>
/// Page memory from the native heap: real, writable, aligned to the page size, filled with garbage on unmap so
/// a use after free shows. Physical addresses are invented by <see cref="FakePhysical"/>.
/// </summary>
internal sealed unsafe class FakePageMemory(ulong pageSize, string description, CallLog log, string tag = "mmap") : IPageMemory, IDisposable
{
    private readonly Dictionary<nint, ulong> _live = [];

    public ulong PageSize { get; } = pageSize;
    public string Description { get; } = description;

    /// <summary>When set, the next maps fail as if the kernel had no free hugepages.</summary>
    public bool OutOfHugePages { get; set; }

    public int LiveMappings { get { lock (_live) { return _live.Count; } } }

    public nint Map(ulong length)
    {
        Assert.True(length > 0 && length % PageSize == 0, $"map length {length} is not a multiple of {PageSize}");
        if (OutOfHugePages)
        {
            throw new HugePagesUnavailableException(PageSize, (long)(length / PageSize), new Vfio.Host.HugePageInfo(PageSize, 4, 0, 0, 0));
        }
        // SAFETY (test): aligned heap memory standing in for an mmap; freed in Unmap.
        var p = (nint)NativeMemory.AlignedAlloc((nuint)length, (nuint)PageSize);
        NativeMemory.Clear((void*)p, (nuint)length);
        lock (_live) { _live.Add(p, length); }
        log.Add($"{tag} 0x{p:x} {length}");
        return p;
    }

    public void Unmap(nint address, ulong length)
    {
        lock (_live)
        {
            Assert.True(_live.Remove(address, out var mapped), $"unmap of 0x{address:x}, which is not mapped");
            Assert.Equal(mapped, length);
        }
        log.Add($"munmap 0x{address:x} {length}");
        NativeMemory.Fill((void*)address, (nuint)length, 0xDD);
        NativeMemory.AlignedFree((void*)address);
    }

    public void Dispose()
    {
        lock (_live)
        {
            foreach (var p in _live.Keys) { NativeMemory.AlignedFree((void*)p); }
            _live.Clear();
        }
    }
}

/// <summary>
/// Invents physical addresses for the pages the allocator asks about (it asks once per page, in order):
/// first the frames a test queued (adjacent or scattered, as the test needs), then frames 4 MiB apart, which
/// are hugepage-aligned and never adjacent.
/// </summary>
internal sealed class FakePhysical : IPhysicalAddressResolver
{
    private readonly Queue<ulong> _next = new();
    private ulong _fresh = 0x1_0000_0000;

    public Func<nint, PagemapEntry>? EntryOverride { get; set; }

    public void Enqueue(params ulong[] pagePhysicalAddresses)
    {
        foreach (var p in pagePhysicalAddresses) { _next.Enqueue(p); }
    }

    public PhysicalAddress GetPhysicalAddress(nint virtualAddress)
    {
        if (EntryOverride is { } entry)
        {
            return Pagemap.Translate(entry(virtualAddress), virtualAddress, 4096, "fake pagemap");
        }
        Assert.Equal(0, virtualAddress % 4096); // the allocator asks about page starts only
        return new PhysicalAddress(_next.Count > 0 ? _next.Dequeue() : (_fresh += 4UL << 20));
    }
}

/// <summary>An IOMMU that only records: map and unmap calls, with overlap and pairing checks.</summary>
internal sealed class FakeIommuMapper(CallLog log, IReadOnlyList<IovaRange> ranges, ulong pageSizes = 0x40201000) : IIommuMapper
{
    private readonly Dictionary<ulong, (nint Vaddr, ulong Size)> _mapped = [];

    public IReadOnlyList<IovaRange> IovaRanges { get; } = ranges;
    public ulong PageSizes { get; } = pageSizes;
    public bool FailNextMap { get; set; }
    public bool FailNextUnmap { get; set; }

    public IReadOnlyDictionary<ulong, (nint Vaddr, ulong Size)> Mapped { get { lock (_mapped) { return new Dictionary<ulong, (nint, ulong)>(_mapped); } } }

    public void MapDma(nint vaddr, Iova iova, ulong size)
    {
        if (FailNextMap)
        {
            FailNextMap = false;
            throw Errno.ToException(Errno.ENOMEM, "VFIO_IOMMU_MAP_DMA");
        }
        var last = iova.Value + size - 1;
        Assert.True(IovaRanges.Any(r => iova.Value >= r.Start && last <= r.End), $"{iova} +{size} is outside the usable ranges");
        Assert.Equal(0UL, iova.Value % 4096);
        Assert.Equal(0UL, size % 4096);
        Assert.Equal(0, vaddr % 4096);
        lock (_mapped)
        {
            foreach (var (start, m) in _mapped)
            {
                Assert.False(iova.Value <= start + m.Size - 1 && start <= last, $"{iova} +{size} overlaps a mapping at 0x{start:x}");
            }
            _mapped.Add(iova.Value, (vaddr, size));
        }
        log.Add($"map 0x{vaddr:x} {iova} {size}");
    }

    public void UnmapDma(Iova iova, ulong size)
    {
        if (FailNextUnmap)
        {
            FailNextUnmap = false;
            throw Errno.ToException(Errno.EINVAL, "VFIO_IOMMU_UNMAP_DMA");
        }
        lock (_mapped)
        {
            Assert.True(_mapped.Remove(iova.Value, out var m), $"unmap of {iova}, which is not mapped");
            Assert.Equal(m.Size, size);
            log.Add($"unmap 0x{m.Vaddr:x} {iova} {size}");
        }
    }
}
