namespace Vfio.Dma;

/// <summary>
/// One 64-bit entry of <c>/proc/PID/pagemap</c>, decoded as Documentation/admin-guide/mm/pagemap.rst
/// describes it: bit 63 present, 62 swapped, 61 file-page or shared-anonymous, 56 exclusively mapped,
/// 55 soft-dirty, bits 0-54 the page frame number when present.
/// </summary>
/// <param name="Raw">The entry as the kernel wrote it (native endianness).</param>
public readonly record struct PagemapEntry(ulong Raw)
{
    /// <summary>Mask of the page frame number, bits 0-54.</summary>
    public const ulong PfnMask = (1UL << 55) - 1;

    private const int SoftDirtyBit = 55;
    private const int ExclusiveBit = 56;
    private const int FileOrSharedBit = 61;
    private const int SwappedBit = 62;
    private const int PresentBit = 63;

    /// <summary>The page is resident in RAM (bit 63).</summary>
    public bool IsPresent => (Raw & (1UL << PresentBit)) != 0;

    /// <summary>The page is in swap (bit 62); bits 0-54 then hold the swap type and offset, not a frame number.</summary>
    public bool IsSwapped => (Raw & (1UL << SwappedBit)) != 0;

    /// <summary>The page is a file page or shared anonymous memory (bit 61). Hugetlb and shmem mappings set it.</summary>
    public bool IsFileOrSharedAnonymous => (Raw & (1UL << FileOrSharedBit)) != 0;

    /// <summary>The page is mapped exclusively by this process (bit 56, Linux 4.2+).</summary>
    public bool IsExclusive => (Raw & (1UL << ExclusiveBit)) != 0;

    /// <summary>The page was written since soft-dirty bits were last cleared (bit 55).</summary>
    public bool IsSoftDirty => (Raw & (1UL << SoftDirtyBit)) != 0;

    /// <summary>
    /// The page frame number (bits 0-54) when <see cref="IsPresent"/>, otherwise 0. Since Linux 4.2 the kernel
    /// writes 0 here for readers without CAP_SYS_ADMIN, so a present page with PFN 0 means "hidden", not
    /// "frame 0".
    /// </summary>
    public ulong Pfn => IsPresent ? Raw & PfnMask : 0;

    /// <inheritdoc />
    public override string ToString() =>
        IsPresent ? $"present pfn=0x{Pfn:x}{Flags()}" : IsSwapped ? $"swapped{Flags()}" : $"not present{Flags()}";

    private string Flags() =>
        (IsFileOrSharedAnonymous ? " file/shared" : "") + (IsExclusive ? " exclusive" : "") + (IsSoftDirty ? " soft-dirty" : "");
}
