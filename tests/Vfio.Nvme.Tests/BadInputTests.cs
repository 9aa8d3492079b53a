using Vfio.Dma;
using Vfio.Nvme.Tests.Emulation;

namespace Vfio.Nvme.Tests;

/// <summary>
/// Table-driven bad input to the NVMe queue's entry points (block counts, LBA ranges, buffers and offsets,
/// disposed objects): each call answers with its documented exception, and the queue then still works.
/// </summary>
public sealed class BadInputTests
{
    public static TheoryData<string> Cases => new(Calls.Keys);

    private static readonly Dictionary<string, (Type Expected, Action<NvmeIoQueue, NvmeNamespace, DmaBuffer, DmaBuffer> Call)> Calls = new()
    {
        ["zero blocks"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.Read(ns, 0, 0, b)),
        ["negative blocks"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.Write(ns, 0, -1, b)),
        ["more blocks than the buffer holds"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.Read(ns, 0, 9, b)),
        ["offset past the buffer"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.Write(ns, 0, 1, b, 4097)),
        ["offset leaving too little room"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.Read(ns, 0, 8, b, 512)),
        ["null namespace"] = (typeof(ArgumentNullException), (q, _, b, _) => q.Read(null!, 0, 1, b)),
        ["null buffer"] = (typeof(ArgumentNullException), (q, ns, _, _) => q.Write(ns, 0, 1, null!)),
        ["LBA past the namespace"] = (typeof(NvmeCommandException), (q, ns, b, _) => q.Read(ns, ns.BlockCount, 1, b)),
        ["LBA range wrapping past the end"] = (typeof(NvmeCommandException), (q, ns, b, _) => q.Write(ns, ns.BlockCount - 1, 2, b)),
        ["batch transfer over MaxTransferBytes"] = (typeof(ArgumentOutOfRangeException), (q, ns, b, _) => q.SubmitRead(ns, 0, q.MaxTransferBytes / ns.BlockSize + 1, b)),
        ["write zeroes of zero blocks"] = (typeof(ArgumentOutOfRangeException), (q, ns, _, _) => q.WriteZeroes(ns, 0, 0)),
        ["deallocate of negative blocks"] = (typeof(ArgumentOutOfRangeException), (q, ns, _, _) => q.Deallocate(ns, 0, -5)),
        ["disposed buffer"] = (typeof(ObjectDisposedException), (q, ns, _, disposed) => q.Read(ns, 0, 1, disposed)),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BadInputGetsItsDocumentedExceptionAndTheQueueStaysUsable(string name)
    {
        using var dev = new EmulatedNvme();
        using var c = NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        var disposed = dev.Dma.Allocate(4096);
        disposed.Dispose();
        var (expected, call) = Calls[name];

        var e = Record.Exception(() => call(q, ns, buf, disposed));
        Assert.NotNull(e);
        Assert.IsType(expected, e);

        buf.Span.Fill(0x3C);
        q.Write(ns, 3, 8, buf);
        buf.Span.Clear();
        q.Read(ns, 3, 8, buf);
        Assert.Equal(0x3C, buf.Span[4095]);
        Assert.Equal(0, q.Outstanding);
    }

    [Fact]
    public void ADisposedQueueAndControllerRefuseWork()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Dispose();
        Assert.Throws<ObjectDisposedException>(() => q.Read(ns, 0, 1, buf));
        using (var again = c.CreateIoQueue()) { again.Read(ns, 0, 1, buf); }   // the controller is still usable
        c.Dispose();
        Assert.Throws<ObjectDisposedException>(() => c.CreateIoQueue());
    }
}
