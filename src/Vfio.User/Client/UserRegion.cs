using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// A region of a vfio-user device. Where the server shared the region (or its sparse areas) by descriptor it is mmap'd and accessed
/// with single volatile loads and stores (<see cref="Mmio"/>); otherwise each typed access is one REGION_READ or
/// REGION_WRITE message of exactly that width, so registers with side effects see one access of the right size.
/// </summary>
internal sealed class UserRegion : IDeviceRegion
{
    private readonly VfioUserDevice _device;
    private readonly Mapping[] _mappings;
    private volatile bool _disposed;

    private readonly record struct Mapping(ulong Offset, ulong Size, nint Pointer);

    public UserRegion(VfioUserDevice device, RegionInfo info, SafeFdHandle? fd)
    {
        _device = device;
        Info = info;
        var maps = new List<Mapping>();
        if (fd is not null && !fd.IsInvalid)
        {
            int prot = ((info.Flags & RegionFlags.Read) != 0 ? Interop.Libc.PROT_READ : 0) | ((info.Flags & RegionFlags.Write) != 0 ? Interop.Libc.PROT_WRITE : 0);
            try
            {
                // The whole region, or only its sparse areas: the rest stays behind REGION_READ/REGION_WRITE.
                foreach (var area in info.MappableAreas)
                {
                    if (area.Size == 0) { continue; }
                    nint p = Interop.Libc.mmap(0, (nuint)area.Size, prot, Interop.Libc.MAP_SHARED, fd.Fd, (long)(info.Offset + area.Offset));
                    if (p == Interop.Libc.MAP_FAILED) { throw Errno.ToException(Errno.Last, $"mmap of vfio-user region {info.Index} area [0x{area.Offset:x}, +0x{area.Size:x})"); }
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

    public bool IsMapped(ulong offset) => TryPointer(offset, 1, out _);

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

    public byte Read8(ulong offset)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { return Mmio.Read8(p); }
        Span<byte> b = stackalloc byte[1];
        Transfer(offset, b);
        return b[0];
    }

    public ushort Read16(ulong offset)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { return Mmio.Read16(p); }
        Span<byte> b = stackalloc byte[2];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public uint Read32(ulong offset)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { return Mmio.Read32(p); }
        Span<byte> b = stackalloc byte[4];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ulong Read64(ulong offset)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { return Mmio.Read64(p); }
        Span<byte> b = stackalloc byte[8];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void Write8(ulong offset, byte value)
    {
        Check(offset, 1);
        if (TryPointer(offset, 1, out nint p)) { Mmio.Write8(p, value); return; }
        Send(offset, [value]);
    }

    public void Write16(ulong offset, ushort value)
    {
        Check(offset, 2);
        if (TryPointer(offset, 2, out nint p)) { Mmio.Write16(p, value); return; }
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        Send(offset, b);
    }

    public void Write32(ulong offset, uint value)
    {
        Check(offset, 4);
        if (TryPointer(offset, 4, out nint p)) { Mmio.Write32(p, value); return; }
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Send(offset, b);
    }

    public void Write64(ulong offset, ulong value)
    {
        Check(offset, 8);
        if (TryPointer(offset, 8, out nint p)) { Mmio.Write64(p, value); return; }
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Send(offset, b);
    }

    public unsafe void Read(ulong offset, Span<byte> destination)
    {
        CheckRange(offset, (ulong)destination.Length);
        if (TryPointer(offset, (ulong)destination.Length, out nint p))
        {
            // SAFETY: [p, +Length) lies inside one live mapping (TryPointer), and the region is not disposed (CheckRange).
            new ReadOnlySpan<byte>((void*)p, destination.Length).CopyTo(destination);
            return;
        }
        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(destination.Length - done, _device.MaxTransfer);
            Transfer(offset + (ulong)done, destination.Slice(done, n));
            done += n;
        }
    }

    public unsafe void Write(ulong offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, (ulong)source.Length);
        if (TryPointer(offset, (ulong)source.Length, out nint p))
        {
            // SAFETY: as Read.
            source.CopyTo(new Span<byte>((void*)p, source.Length));
            return;
        }
        for (int done = 0; done < source.Length;)
        {
            int n = Math.Min(source.Length - done, _device.MaxTransfer);
            Send(offset + (ulong)done, source.Slice(done, n));
            done += n;
        }
    }

    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        foreach (var m in _mappings) { Interop.Libc.munmap(m.Pointer, (nuint)m.Size); }
    }

    private void Transfer(ulong offset, Span<byte> destination)
    {
        if ((Info.Flags & RegionFlags.Read) == 0) { throw new InvalidOperationException($"region {Info.Index} is not readable"); }
        Span<byte> body = stackalloc byte[RegionAccess.Length];
        var access = new RegionAccess(offset, (uint)Info.Index, (uint)destination.Length);
        access.Write(body);
        using var reply = _device.Request(Command.RegionRead, body);
        if (reply.Body.Length != RegionAccess.Length + destination.Length || RegionAccess.Read(reply.Body, Command.RegionRead) != access)
        {
            throw new VfioException($"vfio-user REGION_READ of region {Info.Index} at 0x{offset:x}: the reply does not match the request", _device.Address);
        }
        reply.Body.AsSpan(RegionAccess.Length).CopyTo(destination);
    }

    private void Send(ulong offset, ReadOnlySpan<byte> data)
    {
        if ((Info.Flags & RegionFlags.Write) == 0) { throw new InvalidOperationException($"region {Info.Index} is not writable"); }
        var body = new byte[RegionAccess.Length + data.Length];
        new RegionAccess(offset, (uint)Info.Index, (uint)data.Length).Write(body);
        data.CopyTo(body.AsSpan(RegionAccess.Length));
        using var _ = _device.Request(Command.RegionWrite, body);
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
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"access [0x{offset:x}, +{length}) is outside region {Info.Index} (size 0x{Info.Size:x})");
        }
    }
}
