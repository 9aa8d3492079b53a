using System.Buffers.Binary;
using Vfio.Linux;

namespace Vfio.Devices;

/// <summary>
/// The part every region backend shares: the areas that can be mmap'd are mapped once and reached with single
/// volatile loads and stores of the exact width; everything else goes to the backend's slow path (pread/pwrite on a
/// kernel device fd, REGION_READ/REGION_WRITE messages for vfio-user). Accesses are checked for bounds and natural
/// alignment, and after <see cref="Dispose"/> every access throws <see cref="ObjectDisposedException"/> instead of
/// faulting. For implementations of <see cref="IPciDevice"/> (a transport's regions); drivers see only
/// <see cref="IDeviceRegion"/>.
/// </summary>
public abstract class MappedRegion : IDeviceRegion
{
    private readonly Mapping[] _mappings;
    private volatile bool _disposed;

    private readonly record struct Mapping(ulong Offset, ulong Size, nint Pointer);

    /// <summary>
    /// Maps <paramref name="info"/>'s mappable areas from <paramref name="mapFrom"/> (none when null), at the region's
    /// offset in that file. <paramref name="what"/> names the region kind in messages.
    /// </summary>
    /// <exception cref="ObjectDisposedException"><paramref name="mapFrom"/> is closed.</exception>
    /// <exception cref="VfioException">mmap of an area failed; the areas mapped before it are unmapped.</exception>
    protected MappedRegion(RegionInfo info, PciAddress? address, SafeFdHandle? mapFrom, string what)
    {
        Info = info;
        Address = address;
        var maps = new List<Mapping>();
        if (mapFrom is not null && !mapFrom.IsInvalid)
        {
            int prot = ((info.Flags & RegionFlags.Read) != 0 ? Interop.Libc.PROT_READ : 0)
                     | ((info.Flags & RegionFlags.Write) != 0 ? Interop.Libc.PROT_WRITE : 0);
            try
            {
                // The whole region, or only its sparse areas: the rest stays behind the slow path.
                foreach (var area in info.MappableAreas)
                {
                    if (area.Size == 0) { continue; }
                    ObjectDisposedException.ThrowIf(mapFrom.IsClosed, mapFrom);
                    nint p = Interop.Libc.mmap(0, (nuint)area.Size, prot, Interop.Libc.MAP_SHARED, mapFrom.Fd, (long)(info.Offset + area.Offset));
                    if (p == Interop.Libc.MAP_FAILED)
                    {
                        throw Errno.ToException(Errno.Last, $"mmap of {what} {info.Index} area [0x{area.Offset:x}, +0x{area.Size:x})", address);
                    }
                    maps.Add(new Mapping(area.Offset, area.Size, p));
                }
            }
            catch
            {
                foreach (var m in maps) { Interop.Libc.munmap(m.Pointer, (nuint)m.Size); }
                throw;
            }
        }
        _mappings = [.. maps];
    }

    /// <inheritdoc />
    public RegionInfo Info { get; }

    /// <inheritdoc />
    public ulong Size => Info.Size;

    /// <summary>The device, for messages (null when unknown).</summary>
    protected PciAddress? Address { get; }

    /// <summary>Mapped areas, for diagnostics.</summary>
    public int MappedAreaCount => _mappings.Length;

    /// <inheritdoc />
    public bool IsMapped(ulong offset) => TryPointer(offset, 1, out _);

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/> outside the mapped areas.</summary>
    protected abstract void ReadUnmapped(ulong offset, Span<byte> destination);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/> outside the mapped areas.</summary>
    protected abstract void WriteUnmapped(ulong offset, ReadOnlySpan<byte> source);

    /// <inheritdoc />
    public byte Read8(ulong offset)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { return Mmio.Read8(p); }
        Span<byte> b = stackalloc byte[1];
        SlowRead(offset, b);
        return b[0];
    }

    /// <inheritdoc />
    public ushort Read16(ulong offset)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { return Mmio.Read16(p); }
        Span<byte> b = stackalloc byte[2];
        SlowRead(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    /// <inheritdoc />
    public uint Read32(ulong offset)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { return Mmio.Read32(p); }
        Span<byte> b = stackalloc byte[4];
        SlowRead(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    /// <inheritdoc />
    public ulong Read64(ulong offset)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { return Mmio.Read64(p); }
        Span<byte> b = stackalloc byte[8];
        SlowRead(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <inheritdoc />
    public void Write8(ulong offset, byte value)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { Mmio.Write8(p, value); return; }
        SlowWrite(offset, [value]);
    }

    /// <inheritdoc />
    public void Write16(ulong offset, ushort value)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { Mmio.Write16(p, value); return; }
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        SlowWrite(offset, b);
    }

    /// <inheritdoc />
    public void Write32(ulong offset, uint value)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { Mmio.Write32(p, value); return; }
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        SlowWrite(offset, b);
    }

    /// <inheritdoc />
    public void Write64(ulong offset, ulong value)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { Mmio.Write64(p, value); return; }
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        SlowWrite(offset, b);
    }

    /// <inheritdoc />
    public unsafe void Read(ulong offset, Span<byte> destination)
    {
        CheckRange(offset, (ulong)destination.Length);
        if (TryPointer(offset, (ulong)destination.Length, out nint p))
        {
            // SAFETY: [p, p+len) lies inside one live mapping (TryPointer), and the region is not disposed (CheckRange).
            new ReadOnlySpan<byte>((void*)p, destination.Length).CopyTo(destination);
            return;
        }
        SlowRead(offset, destination);
    }

    /// <inheritdoc />
    public unsafe void Write(ulong offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, (ulong)source.Length);
        if (TryPointer(offset, (ulong)source.Length, out nint p))
        {
            // SAFETY: [p, p+len) lies inside one live mapping (TryPointer), and the region is not disposed (CheckRange).
            source.CopyTo(new Span<byte>((void*)p, source.Length));
            return;
        }
        SlowWrite(offset, source);
    }

    /// <summary>Unmaps the mapped areas; every access afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        foreach (var m in _mappings)
        {
            Interop.Libc.munmap(m.Pointer, (nuint)m.Size);
        }
    }

    private string Where => Address is { } a ? $"region {Info.Index} of {a}" : $"region {Info.Index}";

    private void SlowRead(ulong offset, Span<byte> destination)
    {
        if ((Info.Flags & RegionFlags.Read) == 0) { throw new InvalidOperationException($"{Where} is not readable"); }
        ReadUnmapped(offset, destination);
    }

    private void SlowWrite(ulong offset, ReadOnlySpan<byte> source)
    {
        if ((Info.Flags & RegionFlags.Write) == 0) { throw new InvalidOperationException($"{Where} is not writable"); }
        WriteUnmapped(offset, source);
    }

    private bool TryPointer(ulong offset, ulong width, out nint pointer)
    {
        foreach (var m in _mappings)
        {
            if (offset >= m.Offset && offset - m.Offset + width <= m.Size)
            {
                pointer = m.Pointer + (nint)(offset - m.Offset);
                return true;
            }
        }
        pointer = 0;
        return false;
    }

    private void Check(ulong offset, int width)
    {
        CheckRange(offset, (ulong)width);
        if ((offset & (ulong)(width - 1)) != 0)
        {
            throw new ArgumentException($"{width * 8}-bit access at 0x{offset:x} of region {Info.Index} is not {width}-byte aligned", nameof(offset));
        }
    }

    private void CheckRange(ulong offset, ulong length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset > Info.Size || length > Info.Size - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset,
                $"access [0x{offset:x}, +{length}) is outside {Where} (size 0x{Info.Size:x})");
        }
    }
}
