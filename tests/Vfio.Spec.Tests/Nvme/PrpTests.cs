using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CsCheck;
using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Spec.Tests.Nvme;

/// <summary>
/// PRP entries and lists against NVMe Base 1.4 §4.3 "Physical Region Page Entry and List", built over fake device
/// addresses (libvfn's approach): no device, no memory. The rules: PRP1 may carry a dword-aligned offset into its
/// page; a transfer that ends in the next page puts that page in PRP2; a longer one puts a PRP list's address in
/// PRP2, one page-aligned entry per further page, and a full list page's last entry points to the next list page.
/// </summary>
public sealed class PrpTests
{
    private const int Shift = 12;
    private const ulong Page = 4096;

    private static DmaAddress A(ulong value) => new(value);

    /// <summary>A buffer whose device address is <c>start + offset</c> (contiguous).</summary>
    private readonly struct Linear(ulong start) : IDeviceAddressMap
    {
        public DmaAddress Translate(ulong offset) => new(start + offset);
    }

    /// <summary>A buffer whose pages sit at scattered device addresses, as behind an IOMMU.</summary>
    private readonly struct Scattered(ulong firstOffset, ulong[] pages) : IDeviceAddressMap
    {
        public DmaAddress Translate(ulong offset)
        {
            ulong absolute = firstOffset + offset;
            return new(pages[absolute / Page] + absolute % Page);
        }
    }

    private static PrpPair Build<T>(T map, ulong length, DmaAddress[] list, ulong listAddress = 0x9000_0000) where T : struct, IDeviceAddressMap =>
        Prp.Build(ref map, length, Shift, list, A(listAddress));

    private static ulong[] Values(ReadOnlySpan<DmaAddress> entries)
    {
        var values = new ulong[entries.Length];
        for (int i = 0; i < entries.Length; i++) { values[i] = entries[i].Value; }
        return values;
    }

    [Fact]
    public void AListEntryIsOneSixtyFourBitAddress()
    {
        // §4.3: a PRP entry is a 64-bit memory address, and a PRP list is a page of them; a DmaAddress view of a list
        // page must therefore be exactly those 8-byte little-endian entries.
        Assert.Equal(8, Unsafe.SizeOf<DmaAddress>());
        var entries = new[] { A(0x1_2345_6000), A(0xFFFF_0000_0000_1000) };
        var bytes = MemoryMarshal.AsBytes(entries.AsSpan());
        Assert.Equal(16, bytes.Length);
        Assert.Equal(0x1_2345_6000UL, BitConverter.ToUInt64(bytes[..8]));
        Assert.Equal(0xFFFF_0000_0000_1000UL, BitConverter.ToUInt64(bytes[8..]));
        Assert.Equal(Page / 8, (ulong)(1 << (Shift - 3)));
    }

    [Fact]
    public void PageArithmeticCountsEveryTouchedPage()
    {
        // §4.3: only PRP1 has an offset; every page the transfer touches after the first is one more entry.
        Assert.Equal(1, Prp.PagesSpanned(0x1000, 4096, Shift));
        Assert.Equal(2, Prp.PagesSpanned(0x1004, 4096, Shift));
        Assert.Equal(2, Prp.PagesSpanned(0x1FFC, 8, Shift));
        Assert.Equal(3, Prp.PagesSpanned(0x1FFC, 4096 + 8, Shift));
        Assert.Equal(0, Prp.ListEntriesNeeded(2, Shift));            // PRP2 is the second page itself
        Assert.Equal(2, Prp.ListEntriesNeeded(3, Shift));            // a list from the third page on holds pages 2 and 3
        Assert.Equal(514, Prp.ListEntriesNeeded(514, Shift));        // 513 data entries and one chain pointer
        Assert.Equal(128, Prp.ListEntriesNeeded(129, 10));           // with 1 KiB pages a list page holds 128 entries
        Assert.Equal(130, Prp.ListEntriesNeeded(130, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => Build(new Linear(0x1000), 0, new DmaAddress[8]));
    }

    [Fact]
    public void OnePageNeedsOnlyPrp1()
    {
        var p = Build(new Linear(0x10_0000), 4096, new DmaAddress[8]);
        Assert.Equal(new PrpPair(A(0x10_0000), default, 0), p);
        var offset = Build(new Linear(0x10_0200), 512, new DmaAddress[8]);
        Assert.Equal(new PrpPair(A(0x10_0200), default, 0), offset);
    }

    [Fact]
    public void TwoPagesPutTheSecondInPrp2()
    {
        Assert.Equal(new PrpPair(A(0x10_0000), A(0x10_1000), 0), Build(new Linear(0x10_0000), 8192, new DmaAddress[8]));
        // An offset start that crosses into the next page is two pages too.
        Assert.Equal(new PrpPair(A(0x10_0E00), A(0x10_1000), 0), Build(new Linear(0x10_0E00), 1024, new DmaAddress[8]));
    }

    [Fact]
    public void MoreThanTwoPagesUseAList()
    {
        var list = new DmaAddress[8];
        var p = Build(new Linear(0x10_0000), 4 * Page, list);
        Assert.Equal(new PrpPair(A(0x10_0000), A(0x9000_0000), 3), p);
        Assert.Equal([0x10_1000UL, 0x10_2000, 0x10_3000], Values(list[..3]));
    }

    [Fact]
    public void ScatteredPagesAreListedOneByOne()
    {
        ulong[] pages = [0xA000, 0x5000, 0xF000, 0x1000];
        var list = new DmaAddress[8];
        var p = Build(new Scattered(0x800, pages), 3 * Page, list);
        Assert.Equal(A(0xA800), p.Prp1);
        Assert.Equal([0x5000UL, 0xF000, 0x1000], Values(list[..p.ListEntries]));
    }

    [Fact]
    public void AFullListPageChainsToTheNext()
    {
        // 514 pages from an aligned start: PRP1 + 513 list entries = 511 in page one, a chain pointer, 2 more.
        int perPage = 512;
        var list = new DmaAddress[2 * perPage];
        var p = Build(new Linear(0x100_0000), 514 * Page, list);
        Assert.Equal(514, p.ListEntries);
        Assert.Equal(Prp.ListEntriesNeeded(514, Shift), p.ListEntries);
        Assert.Equal(0x9000_0000UL + Page, list[perPage - 1].Value);      // chain pointer: next list page
        Assert.Equal(0x100_0000UL + 511 * Page, list[perPage - 2].Value);
        Assert.Equal(0x100_0000UL + 512 * Page, list[perPage].Value);
        Assert.Equal(0x100_0000UL + 513 * Page, list[perPage + 1].Value);
        // Exactly 513 pages fit one list page without chaining.
        Assert.Equal(512, Prp.ListEntriesNeeded(513, Shift));
    }

    [Fact]
    public void MisalignedAddressesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => Build(new Linear(0x10_0002), 16, new DmaAddress[8]));
        // A later page at an offset violates the PRP rules.
        Assert.Throws<ArgumentException>(() => Build(new Scattered(0, [0x1000, 0x2200, 0x4000]), 3 * Page, new DmaAddress[8]));
        Assert.Throws<ArgumentException>(() => Build(new Linear(0), 8 * Page, new DmaAddress[2]));
        Assert.Throws<ArgumentException>(() => Build(new Linear(0), 8 * Page, new DmaAddress[8], listAddress: 0x9000_0010));
    }

    [Fact]
    public void EveryByteIsCoveredExactlyOnceInOrder()
    {
        // Property: walking PRP1, PRP2 and the list the way a controller does yields the buffer's bytes in order.
        Gen.Select(Gen.Int[0, 1023], Gen.Int[1, 700 * 4096], Gen.Bool).Sample(t =>
        {
            var (dwordOffset, length, scattered) = t;
            ulong start = (ulong)dwordOffset * 4;
            int pagesNeeded = Prp.PagesSpanned(start, (ulong)length, Shift);
            var pages = new ulong[pagesNeeded];
            for (int i = 0; i < pages.Length; i++) { pages[i] = scattered ? (ulong)(7919 * i % 100_003 + 1) * Page * 2 : 0x1000_0000 + (ulong)i * Page; }
            var list = new DmaAddress[Prp.ListEntriesNeeded(pagesNeeded, Shift) + 1];
            var map = new Scattered(start, pages);
            var p = Prp.Build(ref map, (ulong)length, Shift, list, A(0x7000_0000));
            var walked = Walk(p, (ulong)length, list, 0x7000_0000);
            if (walked.Count != pagesNeeded) { return false; }
            for (int i = 0; i < walked.Count; i++)
            {
                ulong expected = i == 0 ? pages[0] + start : pages[i];
                if (walked[i] != expected) { return false; }
            }
            return true;
        }, iter: 300);
    }

    /// <summary>The controller's side: the address of each data page, following list chains.</summary>
    private static List<ulong> Walk(PrpPair p, ulong length, DmaAddress[] list, ulong listAddress)
    {
        var result = new List<ulong> { p.Prp1.Value };
        ulong remaining = length - Math.Min(length, Page - (p.Prp1.Value % Page));
        if (remaining == 0) { return result; }
        if (remaining <= Page) { result.Add(p.Prp2.Value); return result; }
        ulong at = p.Prp2.Value;
        while (remaining > 0)
        {
            ulong entry = list[(at - listAddress) / 8].Value;
            if ((at + 8) % Page == 0 && remaining > Page) { at = entry; continue; }
            result.Add(entry);
            remaining -= Math.Min(remaining, Page);
            at += 8;
        }
        return result;
    }
}
