using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

/// <summary>The DMA audit's registry and its check, on heap buffers with invented device addresses page by page.</summary>
public sealed class DmaAuditTests
{
    private readonly DmaBufferRegistry _registry = new("test");

    /// <summary>A buffer of whole 4 KiB pages at the given device addresses (adjacent ones are contiguous).</summary>
    private sealed unsafe class PagedBuffer(ulong[] pages, string name, DmaBufferRegistry? registry)
        : DmaBuffer((nint)NativeMemory.AllocZeroed((nuint)pages.Length * 4096), (ulong)pages.Length * 4096, name, registry)
    {
        protected override DmaAddress DeviceAddressAt(ulong offset) => new(pages[offset / 4096] + offset % 4096);

        protected override ulong ContiguousLengthAt(ulong offset)
        {
            ulong page = offset / 4096, run = 4096 - offset % 4096;
            while (page + 1 < (ulong)pages.Length && pages[page + 1] == pages[page] + 4096) { run += 4096; page++; }
            return run;
        }

        // SAFETY (test): frees what the constructor allocated, once (Dispose calls this once).
        protected override void ReleaseMemory() => NativeMemory.Free((void*)Pointer);
    }

    private PagedBuffer New(string name, params ulong[] pages)
    {
        var b = new PagedBuffer(pages, name, _registry);
        _ = b.DeviceAddress;   // joins the registry, as any driver's first use does
        return b;
    }

    [Fact]
    public void The_audit_is_on_in_the_test_suites()
    {
        // Directory.Build.props sets the Vfio.Dma.Audit runtime option for every test project.
        Assert.True(DmaAudit.Enabled);
    }

    [Fact]
    public void The_registry_finds_a_buffer_by_any_of_its_addresses_and_nothing_between_buffers()
    {
        using var a = New("a", 0x10000, 0x11000, 0x20000);   // two runs: [0x10000, 0x12000) and [0x20000, 0x21000)
        using var b = New("b", 0x30000);
        Assert.Equal(3, _registry.SegmentCount);
        Assert.Same(a, _registry.Find(new DmaAddress(0x10000), out var offset, out var run));
        Assert.Equal((0UL, 0x2000UL), (offset, run));
        Assert.Same(a, _registry.Find(new DmaAddress(0x11fff), out offset, out run));
        Assert.Equal((0x1fffUL, 1UL), (offset, run));
        Assert.Same(a, _registry.Find(new DmaAddress(0x20010), out offset, out _));
        Assert.Equal(0x2010UL, offset);
        Assert.Null(_registry.Find(new DmaAddress(0x12000), out _, out _));
        Assert.Null(_registry.Find(new DmaAddress(0xffff), out _, out _));
        Assert.Same(b, _registry.Find(new DmaAddress(0x30fff), out _, out _));
        Assert.Null(_registry.Find(new DmaAddress(0x31000), out _, out _));
    }

    [Fact]
    public void A_disposed_buffer_leaves_the_registry_and_is_named_as_freed()
    {
        var a = New("gone", 0x10000);
        a.Dispose();
        Assert.Equal(0, _registry.SegmentCount);
        Assert.Null(_registry.Find(new DmaAddress(0x10000), out _, out _));
        Assert.Equal("gone", _registry.FindFreed(new DmaAddress(0x10800)));
        using var other = New("other", 0x40000);
        var problem = DmaAudit.Verify(new DmaAddress(0x10800), 16, DmaWindow.Whole(other), out var buffer);
        Assert.Null(buffer);
        Assert.Contains("'gone', which was freed", problem);
    }

    [Fact]
    public void Two_live_buffers_cannot_claim_one_device_address()
    {
        using var a = New("a", 0x10000, 0x11000);
        using var b = new PagedBuffer([0x11000], "b", _registry);
        var e = Assert.Throws<DmaAuditViolationException>(() => b.DeviceAddress);
        Assert.Equal("a", e.Buffer);
    }

    [Fact]
    public void Verify_passes_an_access_inside_the_window_and_names_each_kind_of_violation()
    {
        using var a = New("a", 0x10000, 0x11000, 0x20000);
        using var b = New("b", 0x30000);
        var window = new DmaWindow(a, 0x1000, 0x1000);   // the second page of a
        Assert.Null(DmaAudit.Verify(new DmaAddress(0x11000), 0x1000, window, out var buffer));
        Assert.Null(buffer);
        Assert.Null(DmaAudit.Verify(new DmaAddress(0x11ffc), 4, window, out _));

        Assert.Contains("no live DMA buffer", DmaAudit.Verify(new DmaAddress(0x50000), 4, window, out buffer));
        Assert.Null(buffer);
        Assert.Contains("not the one leased to this command ('a')", DmaAudit.Verify(new DmaAddress(0x30000), 4, window, out buffer));
        Assert.Equal("b", buffer);
        Assert.Contains("outside the window", DmaAudit.Verify(new DmaAddress(0x10000), 4, window, out buffer));
        Assert.Equal("a", buffer);
        Assert.Contains("runs past the end of the window", DmaAudit.Verify(new DmaAddress(0x11ffc), 8, window, out _));
        // The whole buffer leased, but the access crosses from one contiguous run into a gap of device addresses.
        Assert.Contains("contiguous in device address space for only 0x4 bytes",
            DmaAudit.Verify(new DmaAddress(0x11ffc), 8, DmaWindow.Whole(a), out _));
        Assert.Contains("no DMA buffer is leased to this command", DmaAudit.Verify(new DmaAddress(0x11000), 4, default, out _));
        Assert.Contains("length 0", DmaAudit.Verify(new DmaAddress(0x11000), 0, window, out _));
    }

    [Fact]
    public void Without_a_registry_only_the_leased_buffer_is_searched()
    {
        using var a = new PagedBuffer([0x10000, 0x20000], "solo", registry: null);
        Assert.Null(DmaAudit.Verify(new DmaAddress(0x20004), 8, DmaWindow.Whole(a), out _));
        Assert.Contains("outside 'solo'", DmaAudit.Verify(new DmaAddress(0x30000), 8, DmaWindow.Whole(a), out var buffer));
        Assert.Null(buffer);
    }
}
