using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Nvme.Tests.Emulation;

/// <summary>
/// DMA memory from the native heap with invented device addresses, far from the pointers so a driver that hands
/// the device a pointer is caught. With <see cref="Scatter"/>, buffers allocated with Contiguous = false get one
/// non-adjacent device address per 4 KiB page, as with an IOMMU mapping of scattered pages.
/// </summary>
internal sealed unsafe class FakeDmaAllocator(EventLog log) : IDmaAllocator
{
    public const ulong Page = 4096;
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, nint> _pages = [];
    private ulong _next = 0x40_0000_0000;

    public DmaAddressing Addressing => DmaAddressing.Iova;
    public DmaBufferRegistry Registry { get; } = new("fake IOVAs");
    public bool Scatter { get; set; }
    public int LiveBuffers { get; private set; }
    public EventLog Log => log;

    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        options ??= new DmaAllocationOptions();
        ulong length = (size + Page - 1) & ~(Page - 1);
        // SAFETY (test): page-aligned heap memory standing in for pinned DMA memory; freed in Release.
        var pointer = (nint)NativeMemory.AlignedAlloc((nuint)length, (nuint)Page);
        NativeMemory.Clear((void*)pointer, (nuint)length);
        var addresses = new ulong[length / Page];
        lock (_lock)
        {
            bool scatter = Scatter && !options.Contiguous;
            for (int i = 0; i < addresses.Length; i++)
            {
                addresses[i] = _next;
                _next += scatter ? 3 * Page : Page;
                _pages.Add(addresses[i], pointer + (nint)((ulong)i * Page));
            }
            _next += 16 * Page;
            LiveBuffers++;
        }
        return new FakeDmaBuffer(this, pointer, length, addresses, options.Name);
    }

    /// <summary>The host pointer behind device address <paramref name="address"/>, or 0 when nothing is mapped there.</summary>
    public nint Translate(ulong address)
    {
        lock (_lock)
        {
            return _pages.TryGetValue(address & ~(Page - 1), out var p) ? p + (nint)(address & (Page - 1)) : 0;
        }
    }

    internal void Release(FakeDmaBuffer buffer, nint pointer, ulong length, ulong[] addresses)
    {
        lock (_lock)
        {
            foreach (var a in addresses) { _pages.Remove(a); }
            LiveBuffers--;
        }
        log.Add($"free {buffer.Name}");
        NativeMemory.Fill((void*)pointer, (nuint)length, 0xDD);
        NativeMemory.AlignedFree((void*)pointer);
    }
}

internal sealed class FakeDmaBuffer(FakeDmaAllocator owner, nint pointer, ulong length, ulong[] addresses, string? name)
    : DmaBuffer(pointer, length, name, owner.Registry)
{
    protected override DmaAddress DeviceAddressAt(ulong offset) =>
        new(addresses[offset / FakeDmaAllocator.Page] + offset % FakeDmaAllocator.Page);

    protected override ulong ContiguousLengthAt(ulong offset)
    {
        ulong page = offset / FakeDmaAllocator.Page;
        ulong run = FakeDmaAllocator.Page - offset % FakeDmaAllocator.Page;
        while (page + 1 < (ulong)addresses.Length && addresses[page + 1] == addresses[page] + FakeDmaAllocator.Page)
        {
            run += FakeDmaAllocator.Page;
            page++;
        }
        return Math.Min(run, Length - offset);
    }

    protected override void ReleaseMemory() => owner.Release(this, Pointer, Length, addresses);
}

/// <summary>An ordered log of what the emulated device and its memory saw.</summary>
internal sealed class EventLog
{
    private readonly List<string> _events = [];
    public void Add(string e) { lock (_events) { _events.Add(e); } }
    public IReadOnlyList<string> Events { get { lock (_events) { return [.. _events]; } } }
    public int IndexOf(string prefix)
    {
        var events = Events;
        for (int i = 0; i < events.Count; i++)
        {
            if (events[i].StartsWith(prefix, StringComparison.Ordinal)) { return i; }
        }
        return -1;
    }
}
