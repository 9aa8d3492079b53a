namespace Vfio.Dma;

/// <summary>
/// A range of I/O virtual addresses, both ends inclusive, as the kernel reports usable IOVA space
/// (<c>VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE</c>, <c>IOMMU_IOAS_IOVA_RANGES</c>).
/// </summary>
/// <param name="Start">First address of the range.</param>
/// <param name="End">Last address of the range (inclusive).</param>
public readonly record struct IovaRange(ulong Start, ulong End);
