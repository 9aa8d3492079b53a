using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Linux;
using Vfio.Tests.Dma;
using Vfio.Tests.Shared;

namespace Vfio.Tests;

/// <summary>The core's instruments are process-wide: their tests run with no other test beside them.</summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>
/// The "Vfio" meter: DMA bytes in buffers and pinned by the allocators (on fake memory and invented addresses), and
/// interrupts delivered through eventfds, as a listener collecting the observable instruments sees them.
/// </summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TelemetryTests : IDisposable
{
    private const ulong Huge = 2UL << 20;
    private readonly CallLog _log = new();
    private readonly FakePageMemory _huge;
    private readonly FakePageMemory _pages;
    private readonly MetricRecorder _metrics = new(VfioTelemetry.MeterName);

    public TelemetryTests()
    {
        _huge = new FakePageMemory(Huge, "2 MiB hugepages", _log);
        _pages = new FakePageMemory(4096, "4 KiB pages", _log, "mmap4k");
    }

    public void Dispose()
    {
        _metrics.Dispose();
        _huge.Dispose();
        _pages.Dispose();
    }

    private double Observe(string instrument, params (string, object?)[] tags)
    {
        _metrics.Clear();
        _metrics.Collect();
        return _metrics.Sum(instrument, tags);
    }

    [Fact]
    public void NoIommuBuffersAndTheHugepagesBehindThemAreCountedUntilFreed()
    {
        var physical = (VfioTelemetry.DmaAddressingTag, (object?)"physical");
        using var dma = new NoIommuDmaAllocator(_huge, null, new FakePhysical(), ownsResolver: false, NullLogger.Instance);
        double buffers = Observe("vfio.dma.buffer.usage"), pinned = Observe("vfio.dma.pinned", physical);

        var small = dma.Allocate(4096);
        var large = dma.Allocate(3 * Huge, new DmaAllocationOptions { Contiguous = false });
        Assert.Equal(buffers + 4096 + 3 * Huge, Observe("vfio.dma.buffer.usage"));
        Assert.Equal(pinned + Huge + 3 * Huge, Observe("vfio.dma.pinned", physical));
        Assert.Equal("By", _metrics.Of("vfio.dma.pinned").First().Unit);

        large.Dispose();
        Assert.Equal(pinned + Huge, Observe("vfio.dma.pinned", physical));
        small.Dispose();
        Assert.Equal(buffers, Observe("vfio.dma.buffer.usage"));
    }

    [Fact]
    public void IommuMappingsArePinnedIovaMemory()
    {
        var iova = (VfioTelemetry.DmaAddressingTag, (object?)"iova");
        var mapper = new FakeIommuMapper(_log, [new IovaRange(0, 0xFFFF_FFFF_FFFF)]);
        var dma = new Type1DmaAllocator(mapper, _pages, _huge, null, NullLogger.Instance);
        double pinned = Observe("vfio.dma.pinned", iova);

        using (var buffer = dma.Allocate(8 * 1024 * 1024, new DmaAllocationOptions { Contiguous = false }))
        {
            Assert.Equal(pinned + 8 * 1024 * 1024, Observe("vfio.dma.pinned", iova));
        }
        Assert.Equal(pinned, Observe("vfio.dma.pinned", iova));
    }

    [Fact]
    public async Task InterruptsAreCountedByIndexAndStayCountedAfterTheSetCloses()
    {
        var msix = (VfioTelemetry.IrqIndexTag, (object?)"msix");
        double before = Observe("vfio.interrupts", msix);
        var set = new SilentSet(IrqIndex.Msix, 2);

        set.Signal(0, 2);
        Assert.Equal(2UL, await set[0].WaitAsync(TestContext.Current.CancellationToken));
        set.Signal(1, 1);
        Assert.Equal(1UL, await set[1].WaitAsync(TestContext.Current.CancellationToken));
        Assert.Equal(before + 3, Observe("vfio.interrupts", msix));

        set.Dispose();
        Assert.Equal(before + 3, Observe("vfio.interrupts", msix));
        Assert.Equal("{interrupt}", _metrics.Of("vfio.interrupts").First().Unit);
    }

    /// <summary>An interrupt set whose backend does nothing: its eventfds are written by the test, as the kernel would.</summary>
    private sealed class SilentSet : EventFdInterruptSet
    {
        private EventFd[] _signals = [];

        public SilentSet(IrqIndex index, int count) : base(index, count, IrqFlags.Eventfd) => Open();

        public void Signal(int vector, ulong count) => Assert.True(EventFd.TrySignal(_signals[vector].Handle, count));

        protected override void WireTriggers(EventFd[] signals) => _signals = signals;
        protected override void TriggerVector(int vector) { }
        protected override void UnmaskVector(int vector) { }
        protected override void DisableAll() { }
        protected override void OnDisposed() { }
    }
}
