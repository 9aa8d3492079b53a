namespace Vfio.Dma;

/// <summary>How a device addresses DMA memory.</summary>
public enum DmaAddressing
{
    /// <summary>No IOMMU: the device is given host physical addresses.</summary>
    Physical,
    /// <summary>An IOMMU translates: the device is given IOVAs the process mapped.</summary>
    Iova,
}

/// <summary>Options for one DMA allocation.</summary>
public sealed record DmaAllocationOptions
{
    /// <summary>Alignment of the buffer's device address, a power of two, at least 4096.</summary>
    public ulong Alignment { get; init; } = 4096;

    /// <summary>
    /// Require the buffer to be contiguous in device address space (one <see cref="DmaBuffer.DeviceAddress"/>
    /// covers it all). In No-IOMMU mode this limits the size to one hugepage.
    /// </summary>
    public bool Contiguous { get; init; } = true;

    /// <summary>A name for logs and diagnostics.</summary>
    public string? Name { get; init; }
}

/// <summary>Allocates memory a device may DMA to, and tells the device address of each byte.</summary>
public interface IDmaAllocator
{
    /// <summary>How the device addresses memory from this allocator.</summary>
    DmaAddressing Addressing { get; }

    /// <summary>Allocates a zeroed buffer of at least <paramref name="size"/> bytes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="size"/> is 0, above <see cref="long.MaxValue"/> or too large to round up to whole pages, or the alignment in
    /// <paramref name="options"/> is not a power of two of at least 4096.
    /// </exception>
    /// <exception cref="VfioResourceException">Not enough memory (hugepages, address or IOVA space, locked-memory limit).</exception>
    /// <exception cref="ObjectDisposedException">The allocator is disposed.</exception>
    DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null);
}
