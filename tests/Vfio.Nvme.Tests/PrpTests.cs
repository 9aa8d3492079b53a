using CsCheck;
using Vfio.Nvme.Protocol;

namespace Vfio.Nvme.Tests;

/// <summary>PRP construction with fake device addresses (libvfn's approach): no device, no memory.</summary>
public sealed class PrpTests
{
    private const int Shift = 12;
    private const ulong Page = 4096;

    /// <summary>A buffer whose device address is <c>start + offset</c> (contiguous).</summary>
    private readonly struct Linear(ulong start) : IDeviceAddressMap
    {
        public ulong Translate(ulong offset) => start + offset;
    }

    /// <summary>A buffer whose pages sit at scattered device addresses, as behind an IOMMU.</summary>
    private readonly struct Scattered(ulong firstOffset, ulong[] pages) : IDeviceAddressMap
    {
        public ulong Translate(ulong offset)
        {
            ulong absolute = firstOffset + offset;
            return pages[absolute / Page] + absolute % Page;
        }
    }

    private static PrpPair Build<T>(T map, ulong length, ulong[] list, ulong listAddress = 0x9000_0000) where T : struct, IDeviceAddressMap =>
        Prp.Build(ref map, length, Shift, list, listAddress);

    [Fact]
    public void OnePageNeedsOnlyPrp1()
    {
        var p = Build(new Linear(0x10_0000), 4096, new ulong[8]);
        Assert.Equal(new PrpPair(0x10_0000, 0, 0), p);
        var offset = Build(new Linear(0x10_0200), 512, new ulong[8]);
        Assert.Equal(new PrpPair(0x10_0200, 0, 0), offset);
    }

    [Fact]
    public void TwoPagesPutTheSecondInPrp2()
    {
        Assert.Equal(new PrpPair(0x10_0000, 0x10_1000, 0), Build(new Linear(0x10_0000), 8192, new ulong[8]));
        // An offset start that crosses into the next page is two pages too.
        Assert.Equal(new PrpPair(0x10_0E00, 0x10_1000, 0), Build(new Linear(0x10_0E00), 1024, new ulong[8]));
    }

    [Fact]
    public void MoreThanTwoPagesUseAList()
    {
        var list = new ulong[8];
        var p = Build(new Linear(0x10_0000), 4 * Page, list);
        Assert.Equal(new PrpPair(0x10_0000, 0x9000_0000, 3), p);
        Assert.Equal([0x10_1000UL, 0x10_2000, 0x10_3000], list[..3]);
    }

    [Fact]
    public void ScatteredPagesAreListedOneByOne()
    {
        ulong[] pages = [0xA000, 0x5000, 0xF000, 0x1000];
        var list = new ulong[8];
        var p = Build(new Scattered(0x800, pages), 3 * Page, list);
        Assert.Equal(0xA800UL, p.Prp1);
        Assert.Equal([0x5000UL, 0xF000, 0x1000], list[..p.ListEntries]);
    }

    [Fact]
    public void AFullListPageChainsToTheNext()
    {
        // 514 pages from an aligned start: PRP1 + 513 list entries = 511 in page one, a chain pointer, 2 more.
        int perPage = 512;
        var list = new ulong[2 * perPage];
        var p = Build(new Linear(0x100_0000), 514 * Page, list);
        Assert.Equal(514, p.ListEntries);
        Assert.Equal(Prp.ListEntriesNeeded(514, Shift), p.ListEntries);
        Assert.Equal(0x9000_0000UL + Page, list[perPage - 1]);            // chain pointer: next list page
        Assert.Equal(0x100_0000UL + 511 * Page, list[perPage - 2]);
        Assert.Equal(0x100_0000UL + 512 * Page, list[perPage]);
        Assert.Equal(0x100_0000UL + 513 * Page, list[perPage + 1]);
        // Exactly 513 pages fit one list page without chaining.
        Assert.Equal(512, Prp.ListEntriesNeeded(513, Shift));
    }

    [Fact]
    public void MisalignedAddressesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => Build(new Linear(0x10_0002), 16, new ulong[8]));
        // A later page at an offset violates the PRP rules.
        Assert.Throws<ArgumentException>(() => Build(new Scattered(0, [0x1000, 0x2200, 0x4000]), 3 * Page, new ulong[8]));
        Assert.Throws<ArgumentException>(() => Build(new Linear(0), 8 * Page, new ulong[2]));
        Assert.Throws<ArgumentException>(() => Build(new Linear(0), 8 * Page, new ulong[8], listAddress: 0x9000_0010));
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
            var list = new ulong[Prp.ListEntriesNeeded(pagesNeeded, Shift) + 1];
            var map = new Scattered(start, pages);
            var p = Prp.Build(ref map, (ulong)length, Shift, list, 0x7000_0000);
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
    private static List<ulong> Walk(PrpPair p, ulong length, ulong[] list, ulong listAddress)
    {
        var result = new List<ulong> { p.Prp1 };
        ulong remaining = length - Math.Min(length, Page - (p.Prp1 % Page));
        if (remaining == 0) { return result; }
        if (remaining <= Page) { result.Add(p.Prp2); return result; }
        ulong at = p.Prp2;
        while (remaining > 0)
        {
            ulong entry = list[(at - listAddress) / 8];
            if ((at + 8) % Page == 0 && remaining > Page) { at = entry; continue; }
            result.Add(entry);
            remaining -= Math.Min(remaining, Page);
            at += 8;
        }
        return result;
    }
}
