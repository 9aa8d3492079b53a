using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.Benchmarks.Harness;

/// <summary>
/// DMA memory for the benchmarks: one native arena handed out front to back, each buffer's device address its
/// offset in the arena plus a base far from any pointer. The model's translation (<see cref="Translate"/>) is
/// then a bounds check and an add, with no lock: a real IOMMU costs the CPU nothing per DMA, and the driver tests'
/// allocator (a dictionary behind one lock, looked up for every page the model touches) would be measured as
/// device time and would make two queues contend on it. Memory is not reused: the benchmarks allocate at setup.
/// </summary>
internal sealed unsafe class ArenaDmaAllocator : IDmaAllocator, IDisposable
{
    private const ulong Page = 4096;
    private const ulong IovaBase = 0x40_0000_0000;
    private readonly Lock _lock = new();
    private readonly nint _arena;
    private readonly ulong _size;
    private ulong _next;

    public ArenaDmaAllocator(ulong size)
    {
        _size = (size + Page - 1) & ~(Page - 1);
        // SAFETY: page-aligned native memory that lives until Dispose, after the device and the driver are gone.
        _arena = (nint)NativeMemory.AlignedAlloc((nuint)_size, (nuint)Page);
    }

    public DmaAddressing Addressing => DmaAddressing.Iova;

    /// <summary>The arena's live buffers, for the DMA audit when a run turns it on (VFIO_DMA_AUDIT=1).</summary>
    public DmaBufferRegistry Registry { get; } = new("benchmark arena");

    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        options ??= new DmaAllocationOptions();
        ArgumentOutOfRangeException.ThrowIfZero(size);
        ulong alignment = Math.Max(options.Alignment, Page);
        ulong length = (size + Page - 1) & ~(Page - 1);
        ulong offset;
        lock (_lock)
        {
            offset = (_next + alignment - 1) & ~(alignment - 1);
            if (offset + length > _size)
            {
                throw new InvalidOperationException($"the benchmark DMA arena ({_size} bytes) cannot fit {length} more bytes");
            }
            _next = offset + length;
        }
        var pointer = _arena + (nint)offset;
        // SAFETY: [pointer, +length) lies inside the arena and belongs to this buffer alone.
        NativeMemory.Clear((void*)pointer, (nuint)length);
        return new ArenaBuffer(pointer, length, new DmaAddress(IovaBase + offset), options.Name, Registry);
    }

    /// <summary>The host pointer behind [<paramref name="address"/>, +<paramref name="length"/>), or 0 outside the arena.</summary>
    public nint Translate(ulong address, int length) =>
        address >= IovaBase && address - IovaBase <= _size && (ulong)length <= _size - (address - IovaBase)
            ? _arena + (nint)(address - IovaBase)
            : 0;

    public void Dispose() => NativeMemory.AlignedFree((void*)_arena);

    private sealed class ArenaBuffer(nint pointer, ulong length, DmaAddress start, string? name, DmaBufferRegistry registry)
        : DmaBuffer(pointer, length, name, registry)
    {
        protected override DmaAddress DeviceAddressAt(ulong offset) => start + offset;

        protected override ulong ContiguousLengthAt(ulong offset) => Length - offset;

        protected override void ReleaseMemory() { }
    }
}
