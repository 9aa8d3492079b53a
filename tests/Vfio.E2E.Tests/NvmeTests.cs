using Vfio.Dma;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// The NVMe driver against QEMU's nvme device through real kernel VFIO, in both configurations. The namespace is
/// backed by a raw file on the host (lab.sh: 256 MiB, serial VFIOLAB0001), so data written is data read back.
/// Each test opens the device and brings the controller up itself; LBA ranges differ per test.
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
public sealed class NvmeTests
{
    private static VfioDevice OpenDevice() => VfioDevice.Open(Lab.BoundNvme(), new VfioOpenOptions { AllowNoIommu = true });

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void IdentifyShowsQemusModelSerialAndNamespace()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        Assert.Equal("QEMU NVMe Ctrl", c.Identity.ModelNumber);
        Assert.Equal("VFIOLAB0001", c.Identity.SerialNumber);
        Assert.Equal(0x1b36, c.Identity.VendorId);
        Assert.True(c.Version.Major >= 1);
        var ns = c.GetNamespace(1);
        Assert.Equal(256UL << 20, ns.SizeBytes);
        Assert.Contains(ns.BlockSize, new[] { 512, 4096 });
        Assert.True(c.GrantedIoQueues >= 1);
        Assert.True(dev.Config.BusMaster);
    }

    [Theory]
    [InlineData(1, 0)]                   // one block
    [InlineData(8192, 0)]                // two pages: PRP1 + PRP2
    [InlineData(12288, 512)]             // three pages from a mid-page offset: a PRP list
    [InlineData(1 << 20, 0)]             // 1 MiB: more than QEMU's MDTS, split into several commands
    public void WrittenPatternsReadBack(int bytes, int bufferOffset)
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        int blocks = Math.Max(1, bytes / ns.BlockSize);
        int length = blocks * ns.BlockSize;
        ulong lba = (ulong)(bytes + bufferOffset) % 100_000 + 4096;
        using var q = c.CreateIoQueue();
        using var data = dev.Dma.Allocate((ulong)(length + bufferOffset), new DmaAllocationOptions { Contiguous = false });
        using var back = dev.Dma.Allocate((ulong)(length + bufferOffset), new DmaAllocationOptions { Contiguous = false });
        var pattern = Pattern(length, bytes);
        pattern.CopyTo(data.Span[bufferOffset..]);
        q.Write(ns, lba, blocks, data, (ulong)bufferOffset);
        q.Flush(ns);
        q.Read(ns, lba, blocks, back, (ulong)bufferOffset);
        Assert.Equal(pattern, back.Span.Slice(bufferOffset, length).ToArray());
    }

    [Fact]
    public void DataSurvivesClosingAndReopeningTheController()
    {
        var pattern = Pattern(4096, 77);
        ulong lba = 300_000;
        using (var dev = OpenDevice())
        using (var c = NvmeController.Open(dev))
        using (var q = c.CreateIoQueue())
        using (var buf = dev.Dma.Allocate(4096))
        {
            var ns = c.GetNamespace(1);
            pattern.CopyTo(buf.Span);
            q.Write(ns, lba, 4096 / ns.BlockSize, buf);
            q.Flush(ns);
        }
        using (var dev = OpenDevice())
        using (var c = NvmeController.Open(dev))
        using (var q = c.CreateIoQueue())
        using (var buf = dev.Dma.Allocate(4096))
        {
            var ns = c.GetNamespace(1);
            q.Read(ns, lba, 4096 / ns.BlockSize, buf);
            Assert.Equal(pattern, buf.Span[..4096].ToArray());
        }
    }

    [Fact]
    public void OutOfRangeLbaIsAnNvmeErrorNotACrash()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        var e = Assert.Throws<NvmeCommandException>(() => q.Read(ns, ns.BlockCount - 1, 2, buf));
        Assert.Equal(StatusCodeType.Generic, e.StatusCodeType);
        Assert.Equal(0x80, e.StatusCode);                    // LBA Out of Range
        Assert.True(e.DoNotRetry);
        Assert.Equal(ns.BlockCount - 1, e.Command.StartingLba);
        q.Read(ns, 0, 1, buf);                               // the queue goes on
    }

    [Fact]
    public void ResetReinitialisesAndIoContinues()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(8192);
        var pattern = Pattern(8192, 5);
        pattern.CopyTo(buf.Span);
        int blocks = 8192 / ns.BlockSize;
        q.Write(ns, 200_000, blocks, buf);
        c.Reset();
        Assert.Equal(1, c.ResetCount);
        buf.Span.Clear();
        q.Read(ns, 200_000, blocks, buf);
        Assert.Equal(pattern, buf.Span[..8192].ToArray());
    }

    [Fact]
    public async Task MsixAndPollingQueuesBothCompleteIo()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev, new NvmeControllerOptions { EnableMsix = true });
        var ns = c.GetNamespace(1);
        using var irq = c.CreateIoQueue(new NvmeIoQueueOptions { UseInterrupts = true });
        using var polled = c.CreateIoQueue();
        Assert.True(irq.UsesInterrupts);
        Assert.False(polled.UsesInterrupts);
        using var buf = dev.Dma.Allocate(16384, new DmaAllocationOptions { Contiguous = false });
        var pattern = Pattern(16384, 9);
        pattern.CopyTo(buf.Span);
        int blocks = 16384 / ns.BlockSize;
        var ct = TestContext.Current.CancellationToken;
        await irq.WriteAsync(ns, 250_000, blocks, buf, cancellationToken: ct);
        buf.Span.Clear();
        polled.Read(ns, 250_000, blocks, buf);
        Assert.Equal(pattern, buf.Span[..16384].ToArray());
        buf.Span.Clear();
        await irq.ReadAsync(ns, 250_000, blocks, buf, cancellationToken: ct);
        Assert.Equal(pattern, buf.Span[..16384].ToArray());
    }

    [Fact]
    public void WriteZeroesOrDeallocateWhereSupported()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        int blocks = 4096 / ns.BlockSize;
        Pattern(4096, 3).CopyTo(buf.Span);
        q.Write(ns, 310_000, blocks, buf);
        Assert.True(c.Identity.OptionalCommands.HasFlag(OptionalNvmCommands.WriteZeroes));
        q.WriteZeroes(ns, 310_000, blocks);
        q.Read(ns, 310_000, blocks, buf);
        Assert.All(buf.Span[..4096].ToArray(), b => Assert.Equal(0, b));
        if (c.Identity.OptionalCommands.HasFlag(OptionalNvmCommands.DatasetManagement))
        {
            q.Deallocate(ns, 310_000, blocks);
        }
    }

    [Fact]
    public void SynchronousPolledReadsAllocateNothing()
    {
        using var dev = OpenDevice();
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        int blocks = 4096 / ns.BlockSize;
        for (int i = 0; i < 200; i++) { q.Read(ns, (ulong)i * (ulong)blocks, blocks, buf); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
        {
            q.Read(ns, (ulong)(i % 4096) * (ulong)blocks, blocks, buf);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void DisposeShutsTheControllerDownAndStopsDma()
    {
        using var dev = OpenDevice();
        var c = NvmeController.Open(dev);
        using (var q = c.CreateIoQueue())
        using (var buf = dev.Dma.Allocate(4096))
        {
            q.Read(c.GetNamespace(1), 0, 1, buf);
        }
        c.Dispose();
        Assert.False(dev.Config.BusMaster);
        using var bar = dev.OpenRegion(0);
        uint csts = bar.Read32(ControllerRegister.Csts);
        Assert.False(ControllerConfiguration.IsReady(csts));
        Assert.Equal(0u, bar.Read32(ControllerRegister.Cc) & ControllerConfiguration.Enable);
    }
}
