namespace Vfio.Dma;

/// <summary>A host physical address (what a device DMAs to when there is no IOMMU).</summary>
public readonly record struct PhysicalAddress(ulong Value)
{
    /// <summary>Address plus a byte offset.</summary>
    public static PhysicalAddress operator +(PhysicalAddress a, ulong offset) => new(a.Value + offset);
    /// <inheritdoc />
    public override string ToString() => $"PA 0x{Value:x}";
}

/// <summary>An I/O virtual address in an IOMMU address space (type1 container or iommufd IOAS).</summary>
public readonly record struct Iova(ulong Value)
{
    /// <summary>Address plus a byte offset.</summary>
    public static Iova operator +(Iova a, ulong offset) => new(a.Value + offset);
    /// <inheritdoc />
    public override string ToString() => $"IOVA 0x{Value:x}";
}

/// <summary>
/// The address a device must be given to reach a DMA buffer: a physical address in No-IOMMU mode, an IOVA
/// with an IOMMU. Drivers only ever program this type into device registers and descriptors.
/// </summary>
public readonly record struct DmaAddress(ulong Value)
{
    /// <summary>The bus address of a physical page (No-IOMMU: no translation between device and memory).</summary>
    public static DmaAddress FromPhysical(PhysicalAddress pa) => new(pa.Value);
    /// <summary>The bus address of an IOVA (IOMMU: the device's addresses are IOVAs).</summary>
    public static DmaAddress FromIova(Iova iova) => new(iova.Value);
    /// <summary>Address plus a byte offset.</summary>
    public static DmaAddress operator +(DmaAddress a, ulong offset) => new(a.Value + offset);
    /// <inheritdoc />
    public override string ToString() => $"0x{Value:x}";
}
