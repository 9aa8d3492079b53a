using Vfio.Devices;
using Vfio.Emulation.Edu;
using Vfio.Linux;
using Vfio.User.Client;
using Vfio.User.Protocol;
using Vfio.User.Server;

namespace Vfio.User.Tests;

/// <summary>Specific hostile or careless requests, each answered with the right errno, and descriptor hygiene.</summary>
public sealed class RobustnessTests : IDisposable
{
    private readonly Harness _harness = new(new EduDevice(), new VfioUserServerOptions { MaxDataTransferSize = 64 * 1024 });

    public void Dispose() => _harness.Dispose();

    [Fact]
    public void AMemfdShorterThanTheMappingIsRefusedSoTheServerCannotFault()
    {
        using var dev = _harness.Connect();
        using var memory = new SharedMemory(4096, "short");
        var body = new byte[DmaMapRequest.Length];
        new DmaMapRequest(DmaMapFlags.Read | DmaMapFlags.Write, 0, 0x100000, 8192).Write(body);
        var e = Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DmaMap, body, [memory.Handle]).Dispose());
        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
    }

    [Fact]
    public void OverlappingAndUnknownDmaRangesAreRefused()
    {
        using var dev = _harness.Connect();
        using var buffer = dev.Dma.Allocate(4096);
        var body = new byte[DmaMapRequest.Length];
        new DmaMapRequest(DmaMapFlags.Read, 0, buffer.DeviceAddress.Value, 4096).Write(body);
        Assert.Equal(Errno.EEXIST, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DmaMap, body).Dispose()).ErrorNumber);
        var unmap = new byte[DmaUnmapRequest.Length];
        new DmaUnmapRequest(0, 0xdead000, 4096).Write(unmap);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DmaUnmap, unmap).Dispose()).ErrorNumber);
        new DmaUnmapRequest(1, buffer.DeviceAddress.Value, 4096).Write(unmap);   // dirty bitmap: not supported
        Assert.Equal(Errno.EOPNOTSUPP, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DmaUnmap, unmap).Dispose()).ErrorNumber);
    }

    [Fact]
    public void TransfersAboveTheNegotiatedSizeAreRefusedAndTheClientSplitsItsOwn()
    {
        using var dev = _harness.Connect();
        Assert.Equal(64 * 1024, dev.ServerCapabilities.MaxDataTransferSize);
        var body = new byte[RegionAccess.Length];
        new RegionAccess(0, PciRegion.Bar0, 64 * 1024 + 4).Write(body);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.RegionRead, body).Dispose()).ErrorNumber);
        // Through the region API a large read is split into messages the server accepts (edu answers accesses that
        // are not 4 or 8 bytes wide with all ones, as QEMU's does).
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var big = new byte[200 * 1024];
        bar0.Read(0, big);
        Assert.All(big, b => Assert.Equal(0xFF, b));
    }

    [Fact]
    public void DescriptorsSentWithTheWrongCommandAreRefused()
    {
        using var dev = _harness.Connect();
        using var memory = new SharedMemory(4096, "stray");
        var e = Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DeviceReset, [], [memory.Handle]).Dispose());
        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
        var set = new byte[SetIrqsRequest.Length];
        new SetIrqsRequest(SetIrqsRequest.DataEventFd | SetIrqsRequest.ActionTrigger, (uint)IrqIndex.Msi, 0, 1).Write(set);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DeviceSetIrqs, set).Dispose()).ErrorNumber);
    }

    [Fact]
    public void OnlyEventfdsAreAcceptedForInterrupts()
    {
        using var dev = _harness.Connect();
        using var memory = new SharedMemory(4096, "not-an-eventfd");
        var set = new byte[SetIrqsRequest.Length];
        new SetIrqsRequest(SetIrqsRequest.DataEventFd | SetIrqsRequest.ActionTrigger, (uint)IrqIndex.Msi, 0, 1).Write(set);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.DeviceSetIrqs, set, [memory.Handle]).Dispose()).ErrorNumber);
    }

    [Fact]
    public void VersionTwiceIsRefused()
    {
        using var dev = _harness.Connect();
        var v = new VersionMessage(0, 1, new VersionCapabilities()).Encode();
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.Version, v).Dispose()).ErrorNumber);
    }
}

/// <summary>Counts this process's descriptors, so it runs alone: other tests open and close descriptors meanwhile.</summary>
[CollectionDefinition(nameof(DescriptorCount), DisableParallelization = true)]
public sealed class DescriptorCountCollection;

[Collection(nameof(DescriptorCount))]
public sealed class DescriptorCount
{
    [Fact]
    public void ConnectingAndUsingEverythingLeaksNoDescriptor()
    {
        using var harness = new Harness(new EduDevice());
        Check(harness);
    }

    internal static void Check(Harness harness)
    {
        void Cycle()
        {
            using var dev = harness.Connect();
            using var bar0 = dev.OpenRegion(PciRegion.Bar0);
            _ = dev.Config.VendorId;
            using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
            using var buffer = dev.Dma.Allocate(8192);
            new Edu(bar0).DmaFromRam(buffer.DeviceAddress.Value, 0, 64, TimeSpan.FromSeconds(10));
        }
        Cycle();                                        // warm up the process-wide epoll thread
        Thread.Sleep(100);
        int before = Directory.GetFiles("/proc/self/fd").Length;
        for (int i = 0; i < 30; i++) { Cycle(); }
        // The server drops a client's descriptors when it notices the disconnect, on its own threads.
        var deadline = DateTime.UtcNow.AddSeconds(5);
        int after;
        while ((after = Directory.GetFiles("/proc/self/fd").Length) > before && DateTime.UtcNow < deadline) { Thread.Sleep(20); }
        Assert.Equal(before, after);
    }
}
