using Vfio.Devices;
using Vfio.Linux;

namespace Vfio.Benchmarks.Harness;

/// <summary>
/// A <see cref="MappedRegion"/> whose one area is ordinary shared memory (a memfd) rather than a device BAR: the
/// accessor a kernel VFIO or vfio-user region gives drivers, checks and all, with nothing on the other side of the
/// store, so its cost can be set against a bare pointer store.
/// </summary>
internal sealed class MemoryBar : IDisposable
{
    private readonly SharedMemory _memory;

    public MemoryBar(ulong size)
    {
        _memory = new SharedMemory(size, "benchmark BAR");
        var info = new RegionInfo { Index = PciRegion.Bar0, Flags = RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, Size = _memory.Length, Offset = 0 };
        Region = new Accessor(info, _memory.Handle);
    }

    /// <summary>The accessor, as a driver holds it.</summary>
    public IDeviceRegion Region { get; }

    /// <summary>The same memory through this process's own mapping of the memfd.</summary>
    public nint Pointer => _memory.Pointer;

    public void Dispose()
    {
        Region.Dispose();
        _memory.Dispose();
    }

    private sealed class Accessor(RegionInfo info, SafeFdHandle fd) : MappedRegion(info, null, fd, "benchmark BAR")
    {
        // The whole region is mapped: the slow path is never taken.
        protected override void ReadUnmapped(ulong offset, Span<byte> destination) => throw new InvalidOperationException("unmapped read");

        protected override void WriteUnmapped(ulong offset, ReadOnlySpan<byte> source) => throw new InvalidOperationException("unmapped write");
    }
}
