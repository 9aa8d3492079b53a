using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// A region of a vfio-user device. Where the server shared the region by descriptor it is mmap'd and accessed
/// with single volatile loads and stores (<see cref="Mmio"/>); otherwise each typed access is one REGION_READ or
/// REGION_WRITE message of exactly that width, so registers with side effects see one access of the right size.
/// </summary>
internal sealed class UserRegion : IDeviceRegion
{
    private readonly VfioUserDevice _device;
    private nint _mapping;
    private volatile bool _disposed;

    public UserRegion(VfioUserDevice device, RegionInfo info, SafeFdHandle? fd)
    {
        _device = device;
        Info = info;
        if (fd is not null && !fd.IsInvalid)
        {
            int prot = ((info.Flags & RegionFlags.Read) != 0 ? Interop.Libc.PROT_READ : 0) | ((info.Flags & RegionFlags.Write) != 0 ? Interop.Libc.PROT_WRITE : 0);
            nint p = Interop.Libc.mmap(0, (nuint)info.Size, prot, Interop.Libc.MAP_SHARED, fd.Fd, (long)info.Offset);
            if (p == Interop.Libc.MAP_FAILED) { throw Errno.ToException(Errno.Last, $"mmap of vfio-user region {info.Index} ({info.Size} bytes)"); }
            _mapping = p;
        }
    }

    public RegionInfo Info { get; }

    public ulong Size => Info.Size;

    public bool IsMapped(ulong offset) => _mapping != 0 && offset < Size;

    public byte Read8(ulong offset)
    {
        Check(offset, 1);
        if (_mapping != 0) { return Mmio.Read8(_mapping + (nint)offset); }
        Span<byte> b = stackalloc byte[1];
        Transfer(offset, b);
        return b[0];
    }

    public ushort Read16(ulong offset)
    {
        Check(offset, 2);
        if (_mapping != 0) { return Mmio.Read16(_mapping + (nint)offset); }
        Span<byte> b = stackalloc byte[2];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public uint Read32(ulong offset)
    {
        Check(offset, 4);
        if (_mapping != 0) { return Mmio.Read32(_mapping + (nint)offset); }
        Span<byte> b = stackalloc byte[4];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ulong Read64(ulong offset)
    {
        Check(offset, 8);
        if (_mapping != 0) { return Mmio.Read64(_mapping + (nint)offset); }
        Span<byte> b = stackalloc byte[8];
        Transfer(offset, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void Write8(ulong offset, byte value)
    {
        Check(offset, 1);
        if (_mapping != 0) { Mmio.Write8(_mapping + (nint)offset, value); return; }
        Send(offset, [value]);
    }

    public void Write16(ulong offset, ushort value)
    {
        Check(offset, 2);
        if (_mapping != 0) { Mmio.Write16(_mapping + (nint)offset, value); return; }
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        Send(offset, b);
    }

    public void Write32(ulong offset, uint value)
    {
        Check(offset, 4);
        if (_mapping != 0) { Mmio.Write32(_mapping + (nint)offset, value); return; }
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        Send(offset, b);
    }

    public void Write64(ulong offset, ulong value)
    {
        Check(offset, 8);
        if (_mapping != 0) { Mmio.Write64(_mapping + (nint)offset, value); return; }
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Send(offset, b);
    }

    public unsafe void Read(ulong offset, Span<byte> destination)
    {
        CheckRange(offset, (ulong)destination.Length);
        if (_mapping != 0)
        {
            // SAFETY: the range was checked against the region's size, all of which is mapped until Dispose.
            new ReadOnlySpan<byte>((byte*)_mapping + offset, destination.Length).CopyTo(destination);
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
        if (_mapping != 0)
        {
            // SAFETY: as Read.
            source.CopyTo(new Span<byte>((byte*)_mapping + offset, source.Length));
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
        var p = Interlocked.Exchange(ref _mapping, 0);
        if (p != 0) { Interop.Libc.munmap(p, (nuint)Info.Size); }
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
