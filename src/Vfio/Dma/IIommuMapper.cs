namespace Vfio.Dma;

/// <summary>
/// An IOMMU address space the process can map its memory into: a VFIO type1 container
/// (<c>VFIO_IOMMU_MAP_DMA</c>/<c>VFIO_IOMMU_UNMAP_DMA</c>) or an iommufd IOAS (<c>IOMMU_IOAS_MAP</c>/<c>IOMMU_IOAS_UNMAP</c>).
/// <see cref="Type1DmaAllocator"/> builds DMA buffers on it.
/// </summary>
public interface IIommuMapper
{
    /// <summary>
    /// Maps <paramref name="size"/> bytes of this process's memory at <paramref name="vaddr"/> to
    /// <paramref name="iova"/>, readable and writable by the device. The kernel pins the pages for as long as the
    /// mapping exists (and charges them to RLIMIT_MEMLOCK). All three values are multiples of the smallest page
    /// size in <see cref="PageSizes"/>.
    /// </summary>
    /// <exception cref="VfioException">The kernel refused (range not in <see cref="IovaRanges"/>, already mapped, memory limit).</exception>
    void MapDma(nint vaddr, Iova iova, ulong size);

    /// <summary>Removes a mapping made by <see cref="MapDma"/>, with the same <paramref name="iova"/> and <paramref name="size"/>.</summary>
    /// <exception cref="VfioException">The kernel refused.</exception>
    void UnmapDma(Iova iova, ulong size);

    /// <summary>The IOVA ranges the IOMMU accepts, ends inclusive (<c>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE</c>).</summary>
    IReadOnlyList<IovaRange> IovaRanges { get; }

    /// <summary>
    /// The page sizes the IOMMU supports, as a bitmap: bit n set means 2^n-byte pages
    /// (<c>vfio_iommu_type1_info.iova_pgsizes</c>). The lowest set bit is the mapping granularity.
    /// </summary>
    ulong PageSizes { get; }
}
