using Vfio.Dma;

namespace Vfio.Spec.Nvme;

/// <summary>
/// Tells the device address of each byte of a transfer. A struct constraint keeps PRP construction free of
/// allocations and virtual calls; the driver maps a DMA buffer, tests pass fake maps.
/// </summary>
public interface IDeviceAddressMap
{
    /// <summary>The device address of byte <paramref name="offset"/> of the transfer.</summary>
    DmaAddress Translate(ulong offset);
}

/// <summary>The two data pointer fields of a command and how many PRP list entries were written.</summary>
/// <param name="Prp1">PRP entry 1.</param>
/// <param name="Prp2">PRP entry 2 (0, the second page, or the list's address).</param>
/// <param name="ListEntries">Entries written to the PRP list (chain pointers included); 0 when no list is used.</param>
public readonly record struct PrpPair(DmaAddress Prp1, DmaAddress Prp2, int ListEntries);

/// <summary>
/// Builds PRP entries and lists (NVMe 1.4 §4.3, "Physical Region Page Entry and List"):
/// <list type="bullet">
/// <item>PRP1 addresses the first byte; it may have an offset into its memory page, dword aligned.</item>
/// <item>If the transfer ends within that page, PRP2 is unused (0).</item>
/// <item>If it ends within the next page, PRP2 is that page's address (offset 0).</item>
/// <item>Otherwise PRP2 points to a PRP list: one page-aligned entry per further page. When a list page is
/// full and more pages remain, its last entry points to the next list page instead (§4.3: "the last entry
/// ... shall contain a pointer to the next PRP List").</item>
/// </list>
/// </summary>
public static class Prp
{
    /// <summary>Memory pages a transfer touches, given its first byte's offset into a page.</summary>
    public static int PagesSpanned(ulong firstAddress, ulong length, int pageShift)
    {
        ulong page = 1UL << pageShift;
        ulong first = firstAddress & (page - 1);
        return (int)((first + length + page - 1) >> pageShift);
    }

    /// <summary>PRP list entries (chain pointers included) a transfer of <paramref name="pages"/> pages needs.</summary>
    public static int ListEntriesNeeded(int pages, int pageShift)
    {
        if (pages <= 2) { return 0; }
        int perPage = 1 << (pageShift - 3);
        int data = pages - 1;            // PRP1 covers the first page
        if (data <= perPage) { return data; }
        // Every list page but the last gives one slot to the chain pointer.
        int listPages = 1 + (data - perPage + (perPage - 2)) / (perPage - 1);
        return data + listPages - 1;
    }

    /// <summary>
    /// Fills PRP1/PRP2 and, when needed, the list in <paramref name="list"/>, whose first entry the device sees at
    /// <paramref name="listAddress"/> (page aligned; the list pages are contiguous in device address space). A list
    /// entry is one 64-bit address (§4.3), so <paramref name="list"/> may be a view of the list page itself.
    /// </summary>
    /// <exception cref="ArgumentException">The first byte is not dword aligned, a later page is not page aligned in
    /// device address space, or the list is too small.</exception>
    public static PrpPair Build<TMap>(ref TMap data, ulong length, int pageShift, Span<DmaAddress> list, DmaAddress listAddress)
        where TMap : struct, IDeviceAddressMap
    {
        if (length == 0) { throw new ArgumentOutOfRangeException(nameof(length), "a transfer moves at least one byte"); }
        ulong page = 1UL << pageShift, mask = page - 1;
        DmaAddress prp1 = data.Translate(0);
        if ((prp1.Value & 3) != 0)
        {
            throw new ArgumentException($"data starts at device address {prp1}; PRP1 must be dword aligned (NVMe 1.4 §4.3)", nameof(data));
        }
        ulong firstChunk = page - (prp1.Value & mask);
        if (length <= firstChunk)
        {
            return new PrpPair(prp1, default, 0);
        }
        int pages = PagesSpanned(prp1.Value, length, pageShift);
        if (pages == 2)
        {
            return new PrpPair(prp1, PageEntry(ref data, firstChunk, mask), 0);
        }
        if ((listAddress.Value & mask) != 0)
        {
            throw new ArgumentException($"PRP list at {listAddress} is not page aligned", nameof(listAddress));
        }
        int needed = ListEntriesNeeded(pages, pageShift);
        if (list.Length < needed)
        {
            throw new ArgumentException($"a {length}-byte transfer needs {needed} PRP list entries; {list.Length} available", nameof(list));
        }
        int perPage = (int)(page >> 3);
        int slot = 0;
        ulong offset = firstChunk;
        for (int remaining = pages - 1; remaining > 0; remaining--)
        {
            if (slot % perPage == perPage - 1 && remaining > 1)
            {
                // Last slot of a full list page, more to come: chain to the next list page.
                list[slot] = listAddress + (ulong)(slot + 1) * 8;
                slot++;
            }
            list[slot++] = PageEntry(ref data, offset, mask);
            offset += page;
        }
        return new PrpPair(prp1, listAddress, slot);
    }

    private static DmaAddress PageEntry<TMap>(ref TMap data, ulong offset, ulong mask) where TMap : struct, IDeviceAddressMap
    {
        DmaAddress address = data.Translate(offset);
        if ((address.Value & mask) != 0)
        {
            throw new ArgumentException(
                $"byte {offset} of the transfer is at device address {address}, not at a page start: the buffer is not " +
                "page aligned in device address space, which PRP entries after the first require (NVMe 1.4 §4.3)", nameof(data));
        }
        return address;
    }
}
