using System.Diagnostics.Metrics;

namespace Vfio.Dma;

/// <summary>
/// The core library's meter (<see cref="VfioTelemetry.MeterName"/>) and its DMA figures: bytes in live
/// <see cref="DmaBuffer"/>s, and bytes the allocators hold mapped and pinned for devices, by how the device addresses
/// them. The counts change on allocation and release only (never on a data path); the instruments are observable,
/// read only when a listener collects. The meter is created with the first DMA buffer.
/// </summary>
internal static class DmaCounters
{
    private static long s_bufferBytes, s_pinnedPhysical, s_pinnedIova;

    /// <summary>The "Vfio" meter; other parts of the core add their instruments to it.</summary>
    public static readonly Meter Meter = new(VfioTelemetry.MeterName, VfioTelemetry.VersionOf(typeof(DmaCounters).Assembly));

    static DmaCounters()
    {
        Meter.CreateObservableUpDownCounter("vfio.dma.buffer.usage", static () => BufferBytes, "By",
            "Bytes of DMA buffers allocated and not yet freed, over every allocator of the process");
        Meter.CreateObservableUpDownCounter("vfio.dma.pinned", static () => (IEnumerable<Measurement<long>>)
            [
                new(PinnedBytes(DmaAddressing.Physical), new KeyValuePair<string, object?>(VfioTelemetry.DmaAddressingTag, "physical")),
                new(PinnedBytes(DmaAddressing.Iova), new KeyValuePair<string, object?>(VfioTelemetry.DmaAddressingTag, "iova")),
            ],
            "By", "Bytes the DMA allocators hold mapped and pinned for devices (hugepages, IOMMU mappings), whole chunks included");
    }

    /// <summary>Bytes of every <see cref="DmaBuffer"/> not yet disposed.</summary>
    public static long BufferBytes => Volatile.Read(ref s_bufferBytes);

    /// <summary>Bytes mapped and pinned by allocators, for devices that see physical addresses (No-IOMMU) or IOVAs.</summary>
    public static long PinnedBytes(DmaAddressing addressing) =>
        addressing == DmaAddressing.Physical ? Volatile.Read(ref s_pinnedPhysical) : Volatile.Read(ref s_pinnedIova);

    public static void BufferCreated(ulong length) => Interlocked.Add(ref s_bufferBytes, (long)length);

    public static void BufferReleased(ulong length) => Interlocked.Add(ref s_bufferBytes, -(long)length);

    /// <summary>An allocator pinned (positive) or released (negative) <paramref name="bytes"/>.</summary>
    public static void Pinned(DmaAddressing addressing, long bytes) =>
        Interlocked.Add(ref addressing == DmaAddressing.Physical ? ref s_pinnedPhysical : ref s_pinnedIova, bytes);
}
