using System.Runtime.InteropServices;
using Vfio.Dma;

namespace Vfio.VirtioNet.Tests.Emulation;

/// <summary>
/// DMA memory for emulated devices: native heap memory, given invented device addresses (far from any pointer) so
/// a driver that programs a pointer instead of a device address is caught: <see cref="Translate"/> throws.
/// </summary>
internal sealed class EmulatedDma : IDmaAllocator
{
    private const ulong Base = 0x7e00_0000_0000;
    private readonly List<EmulatedDmaBuffer> _buffers = [];
    private ulong _next = Base;

    public DmaAddressing Addressing => DmaAddressing.Iova;

    public DmaBufferRegistry Registry { get; } = new("emulated IOVAs");

    public int LiveBuffers { get { lock (_buffers) { return _buffers.Count(b => !b.IsDisposed); } } }

    public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
    {
        ulong alignment = Math.Max(options?.Alignment ?? 4096, 4096);
        ulong length = (size + 4095) & ~4095UL;
        lock (_buffers)
        {
            _next = (_next + alignment - 1) & ~(alignment - 1);
            var buffer = new EmulatedDmaBuffer(length, new DmaAddress(_next), options?.Name, Registry);
            _next += length + 4096; // a guard gap: running off the end does not land in the next buffer
            _buffers.Add(buffer);
            return buffer;
        }
    }

    /// <summary>The CPU pointer of [address, +length), which must lie inside one live buffer.</summary>
    public nint Translate(ulong address, ulong length) =>
        length <= int.MaxValue && TryTranslate(address, (int)length) is var p && p != 0
            ? p
            : throw new InvalidOperationException($"emulated device: DMA to 0x{address:x} (+{length}) hits no allocated DMA buffer");

    /// <summary>As <see cref="Translate"/>, but 0 instead of an exception: the in-process device adapter's translator.</summary>
    public nint TryTranslate(ulong address, int length)
    {
        lock (_buffers)
        {
            foreach (var b in _buffers)
            {
                if (!b.IsDisposed && address >= b.Base.Value && address - b.Base.Value + (ulong)length <= b.Length)
                {
                    return b.Pointer + (nint)(address - b.Base.Value);
                }
            }
        }
        return 0;
    }

    private sealed unsafe class EmulatedDmaBuffer(ulong length, DmaAddress baseAddress, string? name, DmaBufferRegistry registry)
        : DmaBuffer(Alloc(length), length, name, registry)
    {
        public DmaAddress Base { get; } = baseAddress;

        private static nint Alloc(ulong length)
        {
            // SAFETY (test): zeroed, page-aligned native memory, freed in ReleaseMemory.
            var p = NativeMemory.AlignedAlloc((nuint)length, 4096);
            NativeMemory.Clear(p, (nuint)length);
            return (nint)p;
        }

        protected override DmaAddress DeviceAddressAt(ulong offset) => Base + offset;
        protected override ulong ContiguousLengthAt(ulong offset) => Length - offset;
        protected override void ReleaseMemory()
        {
            NativeMemory.Fill((void*)Pointer, (nuint)Length, 0xDD);
            NativeMemory.AlignedFree((void*)Pointer);
        }
    }
}
