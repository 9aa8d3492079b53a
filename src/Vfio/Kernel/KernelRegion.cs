using System.Buffers.Binary;
using Vfio.Devices;

namespace Vfio.Kernel;

/// <summary>
/// A region of a VFIO device file. The areas the kernel lets us mmap (the whole region, or the sparse areas
/// around an MSI-X table) are mapped once; accesses there are single volatile loads and stores of the exact
/// width. Everything else goes through pread/pwrite at the region's offset in the device file, which vfio-pci
/// turns into accesses of the same width when they are naturally aligned (vfio_pci_core_do_io_rw).
/// After <see cref="Dispose"/>, every access throws <see cref="ObjectDisposedException"/> instead of faulting.
/// </summary>
internal sealed class KernelRegion : IDeviceRegion
{
    private readonly SafeFdHandle _device;
    private readonly PciAddress _address;
    private readonly Mapping[] _mappings;
    private volatile bool _disposed;

    private readonly record struct Mapping(ulong Offset, ulong Size, nint Pointer);

    public KernelRegion(SafeFdHandle device, PciAddress address, RegionInfo info, bool map = true)
    {
        _device = device;
        _address = address;
        Info = info;
        var maps = new List<Mapping>();
        if (map && (info.Flags & RegionFlags.Mmap) != 0)
        {
            int prot = ((info.Flags & RegionFlags.Read) != 0 ? Interop.Libc.PROT_READ : 0)
                     | ((info.Flags & RegionFlags.Write) != 0 ? Interop.Libc.PROT_WRITE : 0);
            try
            {
                foreach (var area in info.MappableAreas)
                {
                    if (area.Size == 0) { continue; }
                    nint p = Interop.Libc.mmap(0, (nuint)area.Size, prot, Interop.Libc.MAP_SHARED, DeviceFd(), (long)(info.Offset + area.Offset));
                    if (p == Interop.Libc.MAP_FAILED)
                    {
                        throw Errno.ToException(Errno.Last, $"mmap of region {info.Index} area [0x{area.Offset:x}, +0x{area.Size:x})", address);
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

    public RegionInfo Info { get; }

    public ulong Size => Info.Size;

    /// <summary>Mapped areas, for diagnostics.</summary>
    public int MappedAreaCount => _mappings.Length;

    public bool IsMapped(ulong offset) => TryPointer(offset, 1, out _);

    public byte Read8(ulong offset)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { return Mmio.Read8(p); }
        Span<byte> b = stackalloc byte[1];
        PRead(offset, b);
        return b[0];
    }

    public ushort Read16(ulong offset)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { return Mmio.Read16(p); }
        Span<byte> b = stackalloc byte[2];
        PRead(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public uint Read32(ulong offset)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { return Mmio.Read32(p); }
        Span<byte> b = stackalloc byte[4];
        PRead(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ulong Read64(ulong offset)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { return Mmio.Read64(p); }
        Span<byte> b = stackalloc byte[8];
        PRead(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void Write8(ulong offset, byte value)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { Mmio.Write8(p, value); return; }
        PWrite(offset, [value]);
    }

    public void Write16(ulong offset, ushort value)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { Mmio.Write16(p, value); return; }
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        PWrite(offset, b);
    }

    public void Write32(ulong offset, uint value)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { Mmio.Write32(p, value); return; }
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        PWrite(offset, b);
    }

    public void Write64(ulong offset, ulong value)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { Mmio.Write64(p, value); return; }
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        PWrite(offset, b);
    }

    public unsafe void Read(ulong offset, Span<byte> destination)
    {
        CheckRange(offset, (ulong)destination.Length);
        if (TryPointer(offset, (ulong)destination.Length, out nint p))
        {
            // SAFETY: [p, p+len) lies inside one live mapping (TryPointer), and the region is not disposed (CheckRange).
            new ReadOnlySpan<byte>((void*)p, destination.Length).CopyTo(destination);
            return;
        }
        PRead(offset, destination);
    }

    public unsafe void Write(ulong offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, (ulong)source.Length);
        if (TryPointer(offset, (ulong)source.Length, out nint p))
        {
            // SAFETY: [p, p+len) lies inside one live mapping (TryPointer), and the region is not disposed (CheckRange).
            source.CopyTo(new Span<byte>((void*)p, source.Length));
            return;
        }
        PWrite(offset, source);
    }

    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        foreach (var m in _mappings)
        {
            Interop.Libc.munmap(m.Pointer, (nuint)m.Size);
        }
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
            throw new ArgumentException(
                $"{width * 8}-bit access at 0x{offset:x} of region {Info.Index} is not {width}-byte aligned", nameof(offset));
        }
    }

    private void CheckRange(ulong offset, ulong length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset > Info.Size || length > Info.Size - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset,
                $"access [0x{offset:x}, +{length}) is outside region {Info.Index} of {_address} (size 0x{Info.Size:x})");
        }
    }

    private int DeviceFd() => _device.IsClosed ? throw new ObjectDisposedException("device") : _device.Fd;

    private unsafe void PRead(ulong offset, Span<byte> buffer)
    {
        if ((Info.Flags & RegionFlags.Read) == 0)
        {
            throw new InvalidOperationException($"region {Info.Index} of {_address} is not readable");
        }
        bool added = false;
        _device.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = buffer)
            {
                // SAFETY: p points at buffer.Length bytes pinned for the call.
                nint n = Interop.Libc.pread(_device.Fd, p, (nuint)buffer.Length, (long)(Info.Offset + offset));
                if (n < 0) { throw Errno.ToException(Errno.Last, $"pread of region {Info.Index} at 0x{offset:x}", _address); }
                if (n != buffer.Length) { throw new VfioException($"short pread of region {Info.Index} at 0x{offset:x}: {n} of {buffer.Length} bytes", _address); }
            }
        }
        finally
        {
            if (added) { _device.DangerousRelease(); }
        }
    }

    private unsafe void PWrite(ulong offset, ReadOnlySpan<byte> buffer)
    {
        if ((Info.Flags & RegionFlags.Write) == 0)
        {
            throw new InvalidOperationException($"region {Info.Index} of {_address} is not writable");
        }
        bool added = false;
        _device.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = buffer)
            {
                // SAFETY: p points at buffer.Length bytes pinned for the call.
                nint n = Interop.Libc.pwrite(_device.Fd, p, (nuint)buffer.Length, (long)(Info.Offset + offset));
                if (n < 0) { throw Errno.ToException(Errno.Last, $"pwrite of region {Info.Index} at 0x{offset:x}", _address); }
                if (n != buffer.Length) { throw new VfioException($"short pwrite of region {Info.Index} at 0x{offset:x}: {n} of {buffer.Length} bytes", _address); }
            }
        }
        finally
        {
            if (added) { _device.DangerousRelease(); }
        }
    }
}
