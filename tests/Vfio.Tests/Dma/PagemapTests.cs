using System.Buffers.Binary;
using System.Runtime.InteropServices;
using CsCheck;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

public class PagemapEntryTests
{
    // Entries recorded from /proc/self/pagemap on Linux 6.18 (x86-64): as root, and as an unprivileged user.
    public static TheoryData<ulong, bool, bool, bool, bool, bool, ulong> Recorded => new()
    {
        // raw,                  present, swapped, file/shared, exclusive, soft-dirty, pfn
        { 0x810000000010ece8UL, true, false, false, true, false, 0x10ece8 },  // touched private anonymous page, root
        { 0xa10000000012b4e3UL, true, false, true, true, false, 0x12b4e3 },   // touched shared anonymous page, root
        { 0xa00000000010350bUL, true, false, true, false, false, 0x10350b },  // libc text (file page), root
        { 0x0000000000000000UL, false, false, false, false, false, 0 },       // mapped but never touched
        { 0x8100000000000000UL, true, false, false, true, false, 0 },         // touched private page, unprivileged: PFN hidden
        { 0x4080000000000c42UL, false, true, false, false, true, 0 },         // swapped (type/offset in low bits), soft-dirty
    };

    [Theory]
    [MemberData(nameof(Recorded))]
    public void Decodes_recorded_entries(ulong raw, bool present, bool swapped, bool fileOrShared, bool exclusive, bool softDirty, ulong pfn)
    {
        var e = new PagemapEntry(raw);
        Assert.Equal(present, e.IsPresent);
        Assert.Equal(swapped, e.IsSwapped);
        Assert.Equal(fileOrShared, e.IsFileOrSharedAnonymous);
        Assert.Equal(exclusive, e.IsExclusive);
        Assert.Equal(softDirty, e.IsSoftDirty);
        Assert.Equal(pfn, e.Pfn);
    }

    [Fact]
    public void Decoding_matches_the_documented_bit_layout_for_every_value()
    {
        Gen.ULong.Sample(raw =>
        {
            var e = new PagemapEntry(raw);
            Assert.Equal(raw >> 63 == 1, e.IsPresent);
            Assert.Equal(((raw >> 62) & 1) == 1, e.IsSwapped);
            Assert.Equal(((raw >> 61) & 1) == 1, e.IsFileOrSharedAnonymous);
            Assert.Equal(((raw >> 56) & 1) == 1, e.IsExclusive);
            Assert.Equal(((raw >> 55) & 1) == 1, e.IsSoftDirty);
            Assert.Equal(e.IsPresent ? raw % (1UL << 55) : 0, e.Pfn);
        });
    }

    [Fact]
    public void Translate_adds_the_offset_within_the_page()
    {
        var pa = Pagemap.Translate(new PagemapEntry(0x810000000010ece8UL), unchecked((nint)0x7f00_1234_5abc), 4096);
        Assert.Equal(new PhysicalAddress(0x10ece8UL * 4096 + 0xabc), pa);
    }

    [Fact]
    public void A_hidden_frame_number_means_missing_CAP_SYS_ADMIN()
    {
        var e = Assert.Throws<MissingCapabilityException>(() => Pagemap.Translate(new PagemapEntry(0x8100000000000000UL), 0x1000, 4096));
        Assert.Equal("CAP_SYS_ADMIN", e.Capability);
        Assert.Contains("pagemap", e.Message, StringComparison.Ordinal);
        Assert.Contains("page frame number 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_page_that_is_not_present_is_a_clear_error()
    {
        var untouched = Assert.Throws<VfioException>(() => Pagemap.Translate(new PagemapEntry(0), 0x2000, 4096));
        Assert.Contains("no physical page", untouched.Message, StringComparison.Ordinal);
        Assert.Contains("never touched", untouched.Message, StringComparison.Ordinal);
        var swapped = Assert.Throws<VfioException>(() => Pagemap.Translate(new PagemapEntry(0x4000000000000c42UL), 0x2000, 4096));
        Assert.Contains("swapped out", swapped.Message, StringComparison.Ordinal);
    }
}

public sealed class PagemapFileTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"vfio-pagemap-{Guid.NewGuid():N}");

    public PagemapFileTests()
    {
        // A fake pagemap for virtual pages 0..7: pages 2 and 3 present at frames 0x500 and 0x501, page 5 present
        // but with its frame hidden, the rest absent.
        var bytes = new byte[8 * 8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(2 * 8), 0x8100000000000500UL);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(3 * 8), 0x8100000000000501UL);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(5 * 8), 0x8100000000000000UL);
        File.WriteAllBytes(_path, bytes);
    }

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void Reads_the_entry_of_the_page_holding_an_address()
    {
        using var pagemap = new Pagemap(_path, 4096);
        Assert.Equal(0x500UL, pagemap.ReadEntry(0x2000).Pfn);
        Assert.Equal(0x500UL, pagemap.ReadEntry(0x2fff).Pfn);
        Assert.Equal(0x501UL, pagemap.ReadEntry(0x3000).Pfn);
        Assert.False(pagemap.ReadEntry(0x4000).IsPresent);
    }

    [Fact]
    public void Reads_runs_of_entries()
    {
        using var pagemap = new Pagemap(_path, 4096);
        var entries = new PagemapEntry[4];
        pagemap.ReadEntries(0x1000, entries);
        Assert.Equal([false, true, true, false], entries.Select(e => e.IsPresent));
    }

    [Fact]
    public void Gives_physical_addresses_and_clear_errors()
    {
        using var pagemap = new Pagemap(_path, 4096);
        Assert.Equal(new PhysicalAddress(0x501_123), pagemap.GetPhysicalAddress(0x3123));
        Assert.Throws<VfioException>(() => pagemap.GetPhysicalAddress(0x4000));
        Assert.Throws<MissingCapabilityException>(() => pagemap.GetPhysicalAddress(0x5000));
        var past = Assert.Throws<VfioException>(() => pagemap.GetPhysicalAddress(0x9000));
        Assert.Contains("end of file before byte 72", past.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_and_use_after_dispose_are_errors()
    {
        var e = Assert.Throws<VfioException>(() => new Pagemap(_path + ".missing"));
        Assert.Equal(Errno.ENOENT, e.ErrorNumber);
        var pagemap = new Pagemap(_path, 4096);
        pagemap.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pagemap.ReadEntry(0x2000));
    }

    [Fact]
    public unsafe void The_real_pagemap_reports_a_touched_page_as_present()
    {
        // Needs no privilege: only the frame number is hidden from unprivileged readers, not the present bit.
        using var pagemap = new Pagemap();
        var memory = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        try
        {
            memory[0] = 1;
            var entry = pagemap.ReadEntry((nint)memory);
            Assert.True(entry.IsPresent, entry.ToString());
        }
        finally
        {
            NativeMemory.AlignedFree(memory);
        }
    }
}

public sealed class HugePageTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"vfio-hugepages-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_root)) { Directory.Delete(_root, recursive: true); }
    }

    [Fact]
    public void The_shortage_message_says_what_is_free_and_how_to_reserve_more()
    {
        var e = new HugePagesUnavailableException(2 << 20, 3, new Vfio.Host.HugePageInfo(2 << 20, 0, 0, 0, 0));
        Assert.IsAssignableFrom<VfioResourceException>(e);
        Assert.Equal(Errno.ENOMEM, e.ErrorNumber);
        Assert.Contains("no 2 MiB hugepages are reserved on this host (nr_hugepages is 0), 3 needed", e.Message, StringComparison.Ordinal);
        Assert.Contains("'vfio hugepages reserve 3'", e.Message, StringComparison.Ordinal);
        Assert.Contains("/proc/sys/vm/nr_hugepages", e.Message, StringComparison.Ordinal);

        var some = new HugePagesUnavailableException(2 << 20, 5, new Vfio.Host.HugePageInfo(2 << 20, 64, 3, 1, 0));
        Assert.Contains("2 of 64 hugepages are free", some.Message, StringComparison.Ordinal);
        Assert.Contains("reserve 67", some.Message, StringComparison.Ordinal);

        var none = new HugePagesUnavailableException(2 << 20, 1, null);
        Assert.Contains("no 2 MiB hugepage pool", none.Message, StringComparison.Ordinal);
    }
}
