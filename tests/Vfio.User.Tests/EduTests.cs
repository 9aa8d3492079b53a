using Vfio.Devices;
using Vfio.Dma;
using Vfio.Emulation.Edu;
using Vfio.User.Client;
using Vfio.User.Protocol;

namespace Vfio.User.Tests;

/// <summary>The edu E2E tests' checks, against the emulated edu over a real vfio-user socket: no root, no VM.</summary>
public sealed class EduTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly EduDevice _edu = new();
    private readonly Harness _harness;

    public EduTests() => _harness = new Harness(_edu);

    public void Dispose() => _harness.Dispose();

    [Fact]
    public void DeviceDescribesItselfLikeAPciFunction()
    {
        using var dev = _harness.Connect();
        Assert.Equal(DeviceBackend.VfioUser, dev.Backend);
        Assert.True(dev.IsDmaIsolated);
        Assert.True(dev.Info.CanReset);
        Assert.Equal(9, dev.Info.RegionCount);
        Assert.Equal(5, dev.Info.IrqCount);
        Assert.Equal(0x1234, dev.Config.VendorId);
        Assert.Equal(0x11e8, dev.Config.DeviceId);
        Assert.Equal(0x00ff00u, dev.Config.ClassCode);
        Assert.NotNull(dev.Config.FindCapability(PciCapabilityId.Msi));
        var bar0 = dev.GetRegionInfo(PciRegion.Bar0);
        Assert.Equal(1UL << 20, bar0.Size);
        Assert.False(dev.GetRegionInfo(1).Exists);
        Assert.Equal(256UL, dev.GetRegionInfo(PciRegion.Config).Size);
        Assert.Equal(1, dev.GetIrqInfo(IrqIndex.Intx).Count);
        Assert.True((dev.GetIrqInfo(IrqIndex.Intx).Flags & IrqFlags.AutoMasked) != 0);
        Assert.Equal(1, dev.GetIrqInfo(IrqIndex.Msi).Count);
        Assert.Equal(0, dev.GetIrqInfo(IrqIndex.Msix).Count);
    }

    [Fact]
    public void BarSizingProbeReportsTheSize()
    {
        using var dev = _harness.Connect();
        dev.Config.Write32(0x10, 0xFFFF_FFFF);
        Assert.Equal(0xFFF0_0000u, dev.Config.Read32(0x10)); // 1 MiB, 32-bit, non-prefetchable memory BAR
        dev.Config.Write16(0x00, 0xBEEF);                      // read-only: ignored
        Assert.Equal(0x1234, dev.Config.VendorId);
        dev.Config.BusMaster = true;
        Assert.True(dev.Config.BusMaster);
    }

    [Fact]
    public void IdentificationAndLiveness()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.False(bar0.IsMapped(0));
        Assert.Equal(0x010000edu, bar0.Read32(EduDevice.Identification));
        foreach (uint v in new uint[] { 0, 1, 0x12345678, 0xFFFFFFFF })
        {
            bar0.Write32(EduDevice.Liveness, v);
            Assert.Equal(~v, bar0.Read32(EduDevice.Liveness));
        }
        Assert.Equal(0xFFFF_FFFFu, bar0.Read32(0x100));        // an unimplemented register reads as all ones
    }

    [Theory]
    [InlineData(0u, 1u)]
    [InlineData(5u, 120u)]
    [InlineData(12u, 479001600u)]
    public void Factorial(uint n, uint expected)
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Equal(expected, new Edu(bar0).ComputeFactorial(n, Timeout));
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(true, 4096)]
    [InlineData(false, 100)]
    [InlineData(false, 4096)]
    public void DmaRoundTripThroughTheDeviceEngine(bool shareMemory, int count)
    {
        using var dev = _harness.Connect(new VfioUserClientOptions { ShareDmaMemory = shareMemory });
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.BusMaster = true;
        Assert.Equal(DmaAddressing.Iova, dev.Dma.Addressing);
        using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "edu-dma" });
        var pattern = new byte[count];
        new Random(count).NextBytes(pattern);
        pattern.CopyTo(buffer.Span);
        using (buffer.MarkInUse("edu DMA engine"))
        {
            edu.DmaFromRam(buffer.DeviceAddress.Value, 0, (uint)count, Timeout);
            edu.DmaToRamAt(0, buffer.GetDeviceAddress(4096).Value, (uint)count, Timeout);
        }
        Assert.Equal(pattern, buffer.Span.Slice(4096, count).ToArray());
    }

    [Fact]
    public void WithoutBusMasteringTheEngineMovesNothing()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        using var buffer = dev.Dma.Allocate(4096);
        buffer.Span.Fill(0xAB);
        dev.Config.BusMaster = true;
        edu.DmaFromRam(buffer.DeviceAddress.Value, 0, 64, Timeout);
        dev.Config.BusMaster = false;
        buffer.Span.Clear();
        edu.DmaToRamAt(0, buffer.DeviceAddress.Value, 64, Timeout);
        Assert.All(buffer.Span[..64].ToArray(), b => Assert.Equal(0, b));
        dev.Config.BusMaster = true;
        edu.DmaToRamAt(0, buffer.DeviceAddress.Value, 64, Timeout);
        Assert.All(buffer.Span[..64].ToArray(), b => Assert.Equal(0xAB, b));
    }

    [Fact]
    public void DmaToUnmappedMemoryFaultsWithoutHurtingTheServer()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        edu.DmaToRamAt(0, 0x0F00_0000, 64, Timeout);           // nothing mapped there: the engine finishes, nothing is written
        Assert.Equal(0x010000edu, bar0.Read32(EduDevice.Identification));
    }

    [Fact]
    public async Task MsiRaisedByTheDeviceIsAwaited()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.BusMaster = true;
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        for (uint i = 1; i <= 3; i++)
        {
            var wait = msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
            edu.RaiseInterrupt(i);
            ulong n = await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken);
            Assert.True(n >= 1);
            Assert.Equal(i, bar0.Read32(EduDevice.IrqStatus) & i);
            edu.AcknowledgeInterrupt(i);
        }
        Assert.Equal(0u, bar0.Read32(EduDevice.IrqStatus));
    }

    [Fact]
    public async Task FactorialInterruptArrivesWhenAsked()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        bar0.Write32(EduDevice.Status, 0x80);
        var wait = msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
        bar0.Write32(EduDevice.Factorial, 6);
        await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.Equal(720u, bar0.Read32(EduDevice.Factorial));
        Assert.Equal(EduDevice.FactorialIrq, bar0.Read32(EduDevice.IrqStatus));
    }

    [Fact]
    public async Task IntxRaisedByTheDeviceIsAwaitedAndUnmasked()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.IntxDisabled = false;
        using var intx = dev.EnableInterrupts(IrqIndex.Intx, 1);
        for (uint i = 0; i < 3; i++)
        {
            var wait = intx[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
            edu.RaiseInterrupt(0x10);
            Assert.True(await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken) >= 1);
            edu.RaiseInterrupt(0x20);                            // auto-masked: this one is not delivered
            edu.AcknowledgeInterrupt(0x30);
            Assert.Equal(0UL, intx[0].Poll());
            intx[0].Unmask();
        }
    }

    [Fact]
    public async Task SoftwareTriggeredVectorIsAwaited()
    {
        using var dev = _harness.Connect();
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        var wait = msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
        msi[0].Trigger();
        Assert.Equal(1UL, await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken));
    }

    [Fact]
    public void BadInterruptRequestsAreRefused()
    {
        using var dev = _harness.Connect();
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msi, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msi, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msix, 1));
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        Assert.Throws<InvalidOperationException>(() => dev.EnableInterrupts(IrqIndex.Msi, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => msi[1]);
    }

    [Fact]
    public void ServerRefusesOutOfRangeAccessesWithAnErrorReply()
    {
        using var dev = _harness.Connect();
        var body = new byte[RegionAccess.Length];
        new RegionAccess((1UL << 20) - 2, 0, 4).Write(body);
        var e = Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.RegionRead, body).Dispose());
        Assert.Equal(Errno.EINVAL, e.ErrorNumber);
        new RegionAccess(0, 42, 4).Write(body);
        Assert.Equal(Errno.EINVAL, Assert.Throws<VfioUserCommandException>(() => dev.Request(Command.RegionRead, body).Dispose()).ErrorNumber);
        Assert.Equal(Errno.EOPNOTSUPP, Assert.Throws<VfioUserCommandException>(() => dev.Request((Command)99, []).Dispose()).ErrorNumber);
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Equal(EduDevice.Id, bar0.Read32(0));             // still served
    }

    [Fact]
    public void ResetReturnsThePowerOnState()
    {
        using var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        bar0.Write32(EduDevice.Liveness, 0);
        Assert.Equal(0xFFFF_FFFFu, bar0.Read32(EduDevice.Liveness));
        dev.Reset();
        Assert.Equal(0u, bar0.Read32(EduDevice.Liveness));
        Assert.Equal(EduDevice.Id, bar0.Read32(EduDevice.Identification));
    }

    [Fact]
    public void ClientsComeAndGoOneAfterTheOther()
    {
        for (int i = 0; i < 20; i++)
        {
            using var dev = _harness.Connect();
            using var bar0 = dev.OpenRegion(PciRegion.Bar0);
            Assert.Equal(EduDevice.Id, bar0.Read32(0));
            using var buffer = dev.Dma.Allocate(4096);
            using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        }
        Assert.True(_harness.Server.ConnectionCount >= 20);
    }

    [Fact]
    public async Task AClosedServerFailsRequestsInsteadOfHanging()
    {
        var dev = _harness.Connect();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        _harness.Server.Dispose();
        await dev.Disconnected.WaitAsync(Timeout, TestContext.Current.CancellationToken);
        Assert.ThrowsAny<IOException>(() => bar0.Read32(0));
        dev.Dispose();
    }
}
