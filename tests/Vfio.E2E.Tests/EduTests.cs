using System.Text.RegularExpressions;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Host;
using Vfio.Kernel;

namespace Vfio.E2E.Tests;

/// <summary>
/// The core library against the real kernel, with QEMU's edu device, in both guest configurations:
/// No-IOMMU (i440fx, vfio with enable_unsafe_noiommu_mode=1) and type1 (q35 + intel-iommu).
/// </summary>
[Trait("lab", "noiommu")]
[Trait("lab", "type1")]
public sealed class EduTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly VfioOpenOptions OptIn = new() { AllowNoIommu = true };

    private static VfioDevice OpenEdu() => VfioDevice.Open(Lab.BoundEdu(), OptIn);

    private static VfioMode ExpectedMode => Lab.ExpectedMode;

    [Fact]
    public void OpenPicksTheModeTheHostOffers()
    {
        using var dev = OpenEdu();
        Assert.Equal(ExpectedMode, dev.Mode);
        Assert.Equal(ExpectedMode != VfioMode.NoIommu, dev.IsDmaIsolated);
        Assert.Equal(ExpectedMode switch { VfioMode.NoIommu => DeviceBackend.KernelNoIommu, VfioMode.Iommufd => DeviceBackend.KernelIommufd, _ => DeviceBackend.KernelType1 }, dev.Backend);
        Assert.Equal(ExpectedMode == VfioMode.NoIommu, ExpectedMode != VfioMode.Iommufd && dev.Group.Name.StartsWith("noiommu-", StringComparison.Ordinal));
        Assert.True(dev.Info.RegionCount >= 8);
        Assert.True(dev.Info.IrqCount >= 3);
        // The iommufd probe of the container answers false on VFIO's own container (6.1, and 6.12 built with it),
        // true where iommufd serves /dev/vfio/vfio (612-compat).
        if (ExpectedMode != VfioMode.Iommufd)
        {
            Assert.Equal(Lab.ExpectedContainer == "iommufd", dev.Container.ServedByIommufd);
        }
    }

    [Fact]
    public void Bar0IdentifiesLivesAndComputes()
    {
        using var dev = OpenEdu();
        var info = dev.GetRegionInfo(PciRegion.Bar0);
        Assert.Equal(1UL << 20, info.Size);
        Assert.True((info.Flags & RegionFlags.Mmap) != 0);
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.True(bar0.IsMapped(0));
        var edu = new Edu(bar0);
        Assert.Equal(0x010000edu, edu.Id);
        foreach (uint v in new uint[] { 0, 0x12345678, 0xFFFFFFFF, 0xA5A5A5A5 })
        {
            bar0.Write32(Edu.Liveness, v);
            Assert.Equal(~v, bar0.Read32(Edu.Liveness));
        }
        Assert.Equal(120u, edu.ComputeFactorial(5, Timeout));
        Assert.Equal(3628800u, edu.ComputeFactorial(10, Timeout));
    }

    [Fact]
    public void BadRegionAccessesThrowAndLeaveTheDeviceUsable()
    {
        using var dev = OpenEdu();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Throws<ArgumentOutOfRangeException>(() => bar0.Read32(1UL << 20));
        Assert.Throws<ArgumentException>(() => bar0.Read32(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.GetRegionInfo(99));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.GetIrqInfo((IrqIndex)42));
        Assert.Throws<ArgumentException>(() => dev.OpenRegion(PciRegion.Bar(5)));   // edu has only BAR0
        Assert.Equal(0x010000edu, bar0.Read32(Edu.Identification));
        bar0.Dispose();
        Assert.Throws<ObjectDisposedException>(() => bar0.Read32(0));
    }

    [Fact]
    public void ConfigSpaceMatchesSysfsAndFindsMsi()
    {
        using var dev = OpenEdu();
        var sysfs = new PciHost().GetDevice(dev.Address);
        Assert.Equal(sysfs.VendorId, dev.Config.VendorId);
        Assert.Equal(sysfs.DeviceId, dev.Config.DeviceId);
        Assert.Equal(0x1234, dev.Config.VendorId);
        Assert.Equal(0x11e8, dev.Config.DeviceId);
        Assert.NotNull(dev.Config.FindCapability(PciCapabilityId.Msi));

        dev.Config.BusMaster = true;
        Assert.True(dev.Config.BusMaster);
        dev.Config.BusMaster = false;
        Assert.False(dev.Config.BusMaster);
        Assert.True(dev.Config.MemorySpace);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(100)]
    [InlineData(2048)]
    public void DmaRoundTripThroughTheDeviceEngine(int count)
    {
        using var dev = OpenEdu();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.BusMaster = true;
        Assert.Equal(ExpectedMode == VfioMode.NoIommu ? DmaAddressing.Physical : DmaAddressing.Iova, dev.Dma.Addressing);

        using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "edu-dma" });
        edu.AssertDmaRoundTrip(buffer, count, count, Timeout);
        dev.Config.BusMaster = false;
    }

    [Fact]
    public void ABufferTheDeviceOwnsCannotBeFreed()
    {
        using var dev = OpenEdu();
        var buffer = dev.Dma.Allocate(4096);
        var lease = buffer.MarkInUse("test queue");
        var e = Assert.Throws<InvalidOperationException>(buffer.Dispose);
        Assert.Contains("test queue", e.Message);
        lease.Dispose();
        buffer.Dispose();
    }

    [Fact]
    public async Task MsiRaisedByTheDeviceIsAwaited()
    {
        using var dev = OpenEdu();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.BusMaster = true;                         // MSI is a memory write: it needs bus mastering
        var info = dev.GetIrqInfo(IrqIndex.Msi);
        Assert.True(info.Count >= 1);
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        for (uint i = 1; i <= 3; i++)
        {
            var wait = msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
            edu.RaiseInterrupt(i);
            ulong n = await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken);
            Assert.True(n >= 1);
            Assert.Equal(i, bar0.Read32(Edu.IrqStatus) & i);
            edu.AcknowledgeInterrupt(i);
        }
    }

    [Fact]
    public async Task IntxRaisedByTheDeviceIsAwaitedAndUnmasked()
    {
        using var dev = OpenEdu();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        var info = dev.GetIrqInfo(IrqIndex.Intx);
        Assert.Equal(1, info.Count);
        Assert.True((info.Flags & IrqFlags.AutoMasked) != 0);
        dev.Config.IntxDisabled = false;
        using var intx = dev.EnableInterrupts(IrqIndex.Intx, 1);
        for (uint i = 0; i < 3; i++)
        {
            var wait = intx[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
            edu.RaiseInterrupt(0x10);
            Assert.True(await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken) >= 1);
            edu.AcknowledgeInterrupt(0x10);                  // lower the line first, then unmask (level-triggered)
            intx[0].Unmask();
        }
    }

    [Fact]
    public async Task SoftwareTriggeredVectorIsAwaited()
    {
        using var dev = OpenEdu();
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        var wait = msi[0].WaitAsync(TestContext.Current.CancellationToken).AsTask();
        msi[0].Trigger();
        Assert.Equal(1UL, await wait.WaitAsync(Timeout, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task AWaitWithACancelledTokenEnds()
    {
        using var dev = OpenEdu();
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        using var cts = new CancellationTokenSource();
        var wait = msi[0].WaitAsync(cts.Token).AsTask();
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.False(wait.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.WaitAsync(Timeout, TestContext.Current.CancellationToken));
    }

    [Fact]
    public void BadInterruptRequestsAreRefused()
    {
        using var dev = OpenEdu();
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msi, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msi, 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => dev.EnableInterrupts(IrqIndex.Msix, 1)); // edu has no MSI-X
        using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        Assert.Throws<InvalidOperationException>(() => dev.EnableInterrupts(IrqIndex.Msi, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => msi[1]);
    }

    [Fact]
    public void ResetWorksOrSaysTheDeviceHasNone()
    {
        using var dev = OpenEdu();
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        if (dev.Info.CanReset)
        {
            dev.Reset();
        }
        else
        {
            var e = Assert.Throws<ResetNotSupportedException>(dev.Reset);
            Assert.Contains("does not support reset", e.Message);
        }
        Assert.Equal(0x010000edu, bar0.Read32(Edu.Identification));
    }

    [Fact]
    [Trait("cost", "long")]   // 6.1 guests only (lab.sh e2e); LeakTests does 1,000 cycles in type1
    public void OpenCloseTwoHundredTimesLeaksNoDescriptor()
    {
        var bdf = Lab.BoundEdu();
        using (OpenEdu()) { }   // warm up lazily created process-wide descriptors (epoll thread)
        int before = Lab.OpenFdCount();
        for (int i = 0; i < 200; i++)
        {
            using var dev = VfioDevice.Open(bdf, OptIn);
            using var bar0 = dev.OpenRegion(0);
            Assert.Equal(0x010000edu, bar0.Read32(0));
            using var msi = dev.EnableInterrupts(IrqIndex.Msi, 1);
        }
        Assert.Equal(before, Lab.OpenFdCount());
        using (OpenEdu())
        {
            // Group path: container, group and device fds; cdev path: /dev/iommu and the device fd.
            Assert.True(Lab.OpenFdCount() >= before + (ExpectedMode == VfioMode.Iommufd ? 2 : 3), "the open's fds are counted");
        }
    }

    [Fact]
    public void NonexistentDeviceIsNotFound()
    {
        int before = Lab.OpenFdCount();
        var e = Assert.Throws<DeviceNotFoundException>(() => VfioDevice.Open(PciAddress.Parse("0000:00:1f.7"), OptIn));
        Assert.Contains("0000:00:1f.7", e.Message);
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void DeviceNotBoundToVfioIsRefused()
    {
        var edu2 = Lab.UnboundEdu2();
        int before = Lab.OpenFdCount();
        var e = Assert.Throws<DeviceNotBoundException>(() => VfioDevice.Open(edu2, OptIn));
        Assert.Contains("vfio bind", e.Message);
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void ForcingTheOtherModeIsRefused()
    {
        Lab.BoundEdu();
        var other = ExpectedMode == VfioMode.NoIommu ? VfioMode.Type1 : VfioMode.NoIommu;
        int before = Lab.OpenFdCount();
        var e = Assert.Throws<VfioException>(() => VfioDevice.Open(Lab.EduAddress, OptIn with { Mode = other }));
        Assert.Contains(other == VfioMode.Type1 ? "No-IOMMU group" : "IOMMU group", e.Message);
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void TwoDevicesCanShareOneContainer()
    {
        using var first = OpenEdu();
        // Opening the same device again in the same container is refused by the kernel (one open per device).
        var e = Assert.ThrowsAny<VfioException>(() => VfioDevice.Open(Lab.EduAddress, OptIn.SharingDmaWith(first)));
        Assert.NotNull(e.Message);
        // The first device still works.
        using var bar0 = first.OpenRegion(0);
        Assert.Equal(0x010000edu, bar0.Read32(0));
    }
}

/// <summary>No-IOMMU only: the opt-in, the capability, and the kernel's own evidence.</summary>
[Trait("lab", "noiommu")]
public sealed class NoIommuModeTests
{
    [Fact]
    public void WithoutTheCallersOptInTheDeviceIsRefused()
    {
        var bdf = Lab.BoundEdu();
        int before = Lab.OpenFdCount();
        var e = Assert.Throws<NoIommuNotPermittedException>(() => VfioDevice.Open(bdf));
        Assert.Contains("AllowNoIommu", e.Message);
        Assert.StartsWith("noiommu-", e.Group, StringComparison.Ordinal);
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void TheKernelLogsTheTaintAtBindAndTheOpenNamingThisProcess()
    {
        var bdf = Lab.BoundEdu();
        Assert.Contains($"vfio-pci {bdf}: Adding kernel taint for vfio-noiommu group on device", Lab.Dmesg());

        int tid = Lab.GetTid();
        string comm = File.ReadAllText($"/proc/self/task/{tid}/comm").Trim();
        using (VfioDevice.Open(bdf, new VfioOpenOptions { AllowNoIommu = true }))
        {
        }
        // vfio_main.c logs current->comm and task_pid_nr(current): the opening thread's name and id.
        string expected = $"vfio-pci {bdf}: vfio-noiommu device opened by user ({comm}:{tid})";
        Assert.Contains(expected, Lab.Dmesg());
        Assert.NotEqual("0", File.ReadAllText("/proc/sys/kernel/tainted").Trim());
    }

    [Fact]
    public void ANonRootProcessWithoutRawioIsToldWhichCapabilityIsMissing()
    {
        var bdf = Lab.BoundEdu();
        var (code, output) = Lab.Run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp",
            "dotnet", Lab.ProbeDll, "open", bdf.ToString(), "--allow-noiommu");
        Assert.Equal(3, code);
        Assert.Contains("MissingCapabilityException", output);
        Assert.Contains("CAP_SYS_RAWIO", output);
    }

    [Fact]
    public void DmaMemoryIsHugepageBackedWithPhysicalAddresses()
    {
        using var dev = VfioDevice.Open(Lab.BoundEdu(), new VfioOpenOptions { AllowNoIommu = true });
        using var buffer = dev.Dma.Allocate(4096);
        Assert.Equal(DmaAddressing.Physical, dev.Dma.Addressing);
        Assert.NotEqual(0UL, buffer.DeviceAddress.Value);
        Assert.Equal(0UL, buffer.DeviceAddress.Value % 4096);
        // The physical address is what /proc/self/pagemap reports for the buffer's page.
        using var pagemap = new Pagemap();
        var pa = pagemap.GetPhysicalAddress(buffer.Pointer);
        Assert.Equal(pa.Value, buffer.DeviceAddress.Value);
    }
}

/// <summary>type1 only: DMA goes through IOVAs the library mapped.</summary>
[Trait("lab", "type1")]
public sealed class Type1ModeTests
{
    [Fact]
    public void DeviceOpensWithoutAnyOptInAndDmaUsesMappedIovas()
    {
        using var dev = VfioDevice.Open(Lab.BoundEdu());
        Assert.Equal(Lab.ExpectedMode, dev.Mode);
        Assert.True(dev.IsDmaIsolated);
        var ranges = dev.Ioas?.IovaRanges ?? dev.Container.IovaRanges;
        Assert.NotEmpty(ranges);
        using var buffer = dev.Dma.Allocate(4096);
        Assert.Equal(DmaAddressing.Iova, dev.Dma.Addressing);
        var iova = buffer.DeviceAddress.Value;
        Assert.Contains(ranges, r => iova >= r.Start && iova + 4095 <= r.End);
        Assert.NotEqual((ulong)buffer.Pointer, iova);      // the allocator chose the IOVA, not the virtual address
    }
}

/// <summary>No-IOMMU parameter off: the device cannot be used, and the library says why and how to opt in.</summary>
[Trait("lab", "noiommu-off")]
public sealed class NoIommuOffRefusalTests
{
    [Fact]
    public void ParameterIsOffAndReportedSo()
    {
        var state = new PciHost().GetNoIommuState();
        Assert.True(state.VfioModuleLoaded);
        Assert.True(state.ParameterPresent);
        Assert.False(state.IsEnabled);
    }

    [Fact]
    public void BindingOrOpeningSaysNoIommuModeIsOff()
    {
        var host = new PciHost();
        var bind = Record.Exception(() => host.BindToVfio(Lab.EduAddress));
        Assert.IsType<NoIommuModeDisabledException>(bind);
        Assert.Contains("enable_unsafe_noiommu_mode", bind.Message);

        int before = Lab.OpenFdCount();
        var open = Assert.ThrowsAny<VfioException>(() => VfioDevice.Open(Lab.EduAddress, new VfioOpenOptions { AllowNoIommu = true }));
        Assert.True(open is NoIommuModeDisabledException or DeviceNotBoundException, open.GetType().Name);
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void EnablingRequiresTheUnsafeAcknowledgement()
    {
        var host = new PciHost();
        Assert.ThrowsAny<Exception>(() => host.EnableNoIommuMode(acknowledgeUnsafe: false));
        Assert.False(host.GetNoIommuState().IsEnabled);
    }
}
