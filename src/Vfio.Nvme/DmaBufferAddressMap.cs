using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>The device addresses of a range of a <see cref="DmaBuffer"/>, starting at <paramref name="start"/>.</summary>
/// <param name="buffer">The buffer.</param>
/// <param name="start">Offset of the transfer's first byte within the buffer.</param>
public readonly struct DmaBufferAddressMap(DmaBuffer buffer, ulong start) : IDeviceAddressMap
{
    /// <inheritdoc />
    public DmaAddress Translate(ulong offset) => buffer.GetDeviceAddress(start + offset);
}
