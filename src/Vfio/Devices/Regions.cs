namespace Vfio.Devices;

/// <summary>Region flags (<c>VFIO_REGION_INFO_FLAG_*</c>).</summary>
[Flags]
public enum RegionFlags : uint
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Region can be read.</summary>
    Read = 1 << 0,
    /// <summary>Region can be written.</summary>
    Write = 1 << 1,
    /// <summary>Region (or its sparse areas) can be mmap'd.</summary>
    Mmap = 1 << 2,
    /// <summary>Region info has a capability chain.</summary>
    Caps = 1 << 3,
}

/// <summary>Well-known region indexes of a vfio-pci device (<c>VFIO_PCI_*_REGION_INDEX</c>).</summary>
public static class PciRegion
{
    /// <summary>BAR0; BARs 1-5 follow.</summary>
    public const int Bar0 = 0;
    /// <summary>Expansion ROM.</summary>
    public const int Rom = 6;
    /// <summary>Configuration space.</summary>
    public const int Config = 7;
    /// <summary>Legacy VGA.</summary>
    public const int Vga = 8;
    /// <summary>Index of BAR <paramref name="n"/>.</summary>
    public static int Bar(int n) => (uint)n <= 5 ? n : throw new ArgumentOutOfRangeException(nameof(n), n, "a PCI function has BARs 0-5");
}

/// <summary>A part of a region that can be mmap'd (<c>VFIO_REGION_INFO_CAP_SPARSE_MMAP</c>), relative to the region.</summary>
/// <param name="Offset">Offset of the area within the region.</param>
/// <param name="Size">Size of the area in bytes.</param>
public readonly record struct SparseArea(ulong Offset, ulong Size);

/// <summary>A device-specific region's type (<c>VFIO_REGION_INFO_CAP_TYPE</c>).</summary>
/// <param name="Type">Type (vendor or class).</param>
/// <param name="Subtype">Subtype.</param>
public readonly record struct RegionType(uint Type, uint Subtype);

/// <summary>Everything <c>VFIO_DEVICE_GET_REGION_INFO</c> tells about a region, capabilities parsed.</summary>
public sealed record RegionInfo
{
    /// <summary>Region index.</summary>
    public required int Index { get; init; }
    /// <summary>Flags.</summary>
    public required RegionFlags Flags { get; init; }
    /// <summary>Size in bytes (0: the region is absent, e.g. an unimplemented BAR).</summary>
    public required ulong Size { get; init; }
    /// <summary>Offset of the region within the device file, for pread/pwrite/mmap.</summary>
    public required ulong Offset { get; init; }
    /// <summary>
    /// The parts that can be mmap'd when the region has a sparse-mmap capability; null when the whole region
    /// is mappable (if <see cref="RegionFlags.Mmap"/> is set) or nothing is.
    /// </summary>
    public IReadOnlyList<SparseArea>? SparseAreas { get; init; }
    /// <summary>The region's type, for device-specific regions.</summary>
    public RegionType? Type { get; init; }
    /// <summary>The MSI-X table in this BAR may be mmap'd (<c>VFIO_REGION_INFO_CAP_MSIX_MAPPABLE</c>).</summary>
    public bool MsixMappable { get; init; }

    /// <summary>True when the region exists.</summary>
    public bool Exists => Size != 0;

    /// <summary>The areas that can be mmap'd, whole region or sparse areas.</summary>
    public IReadOnlyList<SparseArea> MappableAreas =>
        (Flags & RegionFlags.Mmap) == 0 ? [] : SparseAreas ?? [new SparseArea(0, Size)];
}

/// <summary>
/// Access to one device region. Reads and writes are exactly as wide as their type (one bus transaction:
/// registers often have side effects), checked for bounds and natural alignment.
/// </summary>
public interface IDeviceRegion : IDisposable
{
    /// <summary>The region's description.</summary>
    RegionInfo Info { get; }
    /// <summary>The region's size in bytes.</summary>
    ulong Size { get; }
    /// <summary>True when <paramref name="offset"/> lies in an mmap'd area (fast path).</summary>
    bool IsMapped(ulong offset);
    /// <summary>Reads 8 bits.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    byte Read8(ulong offset);
    /// <summary>Reads 16 bits (offset 2-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    ushort Read16(ulong offset);
    /// <summary>Reads 32 bits (offset 4-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    uint Read32(ulong offset);
    /// <summary>Reads 64 bits (offset 8-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    ulong Read64(ulong offset);
    /// <summary>Writes 8 bits.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Write8(ulong offset, byte value);
    /// <summary>Writes 16 bits (offset 2-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Write16(ulong offset, ushort value);
    /// <summary>Writes 32 bits (offset 4-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Write32(ulong offset, uint value);
    /// <summary>Writes 64 bits (offset 8-aligned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The access does not lie wholly inside the region.</exception>
    /// <exception cref="ArgumentException">The offset is not aligned to the access width.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Write64(ulong offset, ulong value);
    /// <summary>Copies bytes out of the region (no width guarantee; for memory-like regions).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie wholly inside the region.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Read(ulong offset, Span<byte> destination);
    /// <summary>Copies bytes into the region (no width guarantee; for memory-like regions).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie wholly inside the region.</exception>
    /// <exception cref="ObjectDisposedException">The region (or its device) is disposed.</exception>
    void Write(ulong offset, ReadOnlySpan<byte> source);
}
