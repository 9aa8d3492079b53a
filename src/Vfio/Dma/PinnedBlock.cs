namespace Vfio.Dma;

/// <summary>
/// Pinned memory whose physical address is known page by page (No-IOMMU mode). Each page is physically
/// contiguous in itself; neighbouring pages are contiguous only when their frames happen to be adjacent.
/// </summary>
/// <param name="Address">Virtual address of the first byte.</param>
/// <param name="Length">Bytes mapped, a multiple of <paramref name="PageSize"/>.</param>
/// <param name="PageSize">Bytes per page (2 MiB hugepages, or 4 KiB).</param>
/// <param name="Pages">The physical address of every page, in virtual order.</param>
internal sealed record PinnedBlock(nint Address, ulong Length, ulong PageSize, PhysicalAddress[] Pages)
{
    /// <summary>The physical address of byte <paramref name="offset"/> of the block.</summary>
    public PhysicalAddress PhysicalAddressAt(ulong offset) => Pages[offset / PageSize] + (offset % PageSize);

    /// <summary>
    /// How many bytes from <paramref name="offset"/> on are physically contiguous, walking across pages whose
    /// frames are adjacent, but never more than <paramref name="limit"/>.
    /// </summary>
    public ulong ContiguousLength(ulong offset, ulong limit)
    {
        var index = offset / PageSize;
        var length = PageSize - (offset % PageSize);
        while (length < limit && index + 1 < (ulong)Pages.Length && Pages[index + 1].Value == Pages[index].Value + PageSize)
        {
            length += PageSize;
            index++;
        }
        return Math.Min(length, limit);
    }
}

/// <summary>A DMA buffer in No-IOMMU mode: a slice of a <see cref="PinnedBlock"/>, addressed physically.</summary>
internal sealed class PhysicalDmaBuffer : DmaBuffer
{
    private readonly PinnedBlock _block;
    private readonly ulong _offset;
    private readonly Action _release;

    public PhysicalDmaBuffer(PinnedBlock block, ulong offset, ulong length, string? name, Action release, DmaBufferRegistry? registry = null)
        : base(block.Address + (nint)offset, length, name, registry)
    {
        _block = block;
        _offset = offset;
        _release = release;
    }

    protected override DmaAddress DeviceAddressAt(ulong offset) => DmaAddress.FromPhysical(_block.PhysicalAddressAt(_offset + offset));

    protected override ulong ContiguousLengthAt(ulong offset) => _block.ContiguousLength(_offset + offset, Length - offset);

    protected override void ReleaseMemory() => _release();
}

/// <summary>A DMA buffer behind an IOMMU: one IOVA-contiguous range.</summary>
internal sealed class IovaDmaBuffer : DmaBuffer
{
    private readonly Iova _iova;
    private readonly Action _release;

    public IovaDmaBuffer(nint pointer, ulong length, Iova iova, string? name, Action release, DmaBufferRegistry? registry = null)
        : base(pointer, length, name, registry)
    {
        _iova = iova;
        _release = release;
    }

    protected override DmaAddress DeviceAddressAt(ulong offset) => DmaAddress.FromIova(_iova + offset);

    protected override ulong ContiguousLengthAt(ulong offset) => Length - offset;

    protected override void ReleaseMemory() => _release();
}
