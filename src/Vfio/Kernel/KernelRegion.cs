using Vfio.Devices;
using Vfio.Linux;

namespace Vfio.Kernel;

/// <summary>
/// A region of a VFIO device file. Mapped areas and checks come from <see cref="MappedRegion"/>; everything else
/// goes through pread/pwrite at the region's offset in the device file, which vfio-pci turns into accesses of the
/// same width when they are naturally aligned (vfio_pci_core_do_io_rw).
/// </summary>
internal sealed class KernelRegion : MappedRegion
{
    private readonly SafeFdHandle _device;

    public KernelRegion(SafeFdHandle device, PciAddress address, RegionInfo info, bool map = true)
        : base(info, address, map ? device : null, "region") => _device = device;

    protected override unsafe void ReadUnmapped(ulong offset, Span<byte> buffer)
    {
        bool added = false;
        _device.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = buffer)
            {
                // SAFETY: p points at buffer.Length bytes pinned for the call.
                nint n = Interop.Libc.pread(_device.Fd, p, (nuint)buffer.Length, (long)(Info.Offset + offset));
                if (n < 0) { throw Errno.ToException(Errno.Last, $"pread of region {Info.Index} at 0x{offset:x}", Address); }
                if (n != buffer.Length) { throw new VfioException($"short pread of region {Info.Index} at 0x{offset:x}: {n} of {buffer.Length} bytes", Address); }
            }
        }
        finally
        {
            if (added) { _device.DangerousRelease(); }
        }
    }

    protected override unsafe void WriteUnmapped(ulong offset, ReadOnlySpan<byte> buffer)
    {
        bool added = false;
        _device.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = buffer)
            {
                // SAFETY: p points at buffer.Length bytes pinned for the call.
                nint n = Interop.Libc.pwrite(_device.Fd, p, (nuint)buffer.Length, (long)(Info.Offset + offset));
                if (n < 0) { throw Errno.ToException(Errno.Last, $"pwrite of region {Info.Index} at 0x{offset:x}", Address); }
                if (n != buffer.Length) { throw new VfioException($"short pwrite of region {Info.Index} at 0x{offset:x}: {n} of {buffer.Length} bytes", Address); }
            }
        }
        finally
        {
            if (added) { _device.DangerousRelease(); }
        }
    }
}
