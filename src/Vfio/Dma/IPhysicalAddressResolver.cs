namespace Vfio.Dma;

/// <summary>Finds the physical address behind a virtual address of this process (the seam tests replace).</summary>
internal interface IPhysicalAddressResolver
{
    /// <summary>The physical address of the byte at <paramref name="virtualAddress"/>; the page must be resident.</summary>
    PhysicalAddress GetPhysicalAddress(nint virtualAddress);
}
