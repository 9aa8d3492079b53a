using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Kernel;

namespace Vfio.E2E.Tests;

/// <summary>
/// Linux 6.12 guest, q35 + intel-iommu: the device cdev and iommufd. VfioDevice.Open picks the cdev by itself; the IOAS
/// reports the ranges the vIOMMU allows, maps and unmaps, and carries the edu device's DMA.
/// </summary>
[Trait("lab", Lab.K612Iommufd)]
public sealed class IommufdCdevTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public IommufdCdevTests() => Assert.Equal(Lab.K612Iommufd, Lab.Name);

    [Fact]
    public void AutoOpensThroughTheCdevFoundInSysfs()
    {
        var bdf = Lab.BoundEdu();
        var cdevs = Directory.GetFileSystemEntries(Path.Combine(Lab.DeviceDir(Lab.Edu), "vfio-dev"), "vfio*");
        Assert.Single(cdevs);
        Assert.True(File.Exists(Path.Combine("/dev/vfio/devices", Path.GetFileName(cdevs[0]))));
        Assert.True(File.Exists("/dev/iommu"));

        using var dev = VfioDevice.Open(bdf);
        Assert.Equal(VfioMode.Iommufd, dev.Mode);
        Assert.Equal(DeviceBackend.KernelIommufd, dev.Backend);
        Assert.True(dev.IsDmaIsolated);
        Assert.NotNull(dev.Ioas);
        var e = Assert.Throws<InvalidOperationException>(() => dev.Group);
        Assert.Contains("cdev", e.Message);
        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        Assert.Equal(0x010000edu, bar0.Read32(0));
    }

    [Fact]
    public void IoasRangesNarrowOnAttachAndLeaveOutTheMsiWindow()
    {
        using var iommufd = Iommufd.Open();
        using var ioas = iommufd.AllocateIoas();
        // A fresh IOAS allows every IOVA; attaching a device narrows it to what the (v)IOMMU translates.
        Assert.Equal([new IovaRange(0, ulong.MaxValue)], ioas.IovaRanges);

        using var dev = VfioDevice.Open(Lab.BoundEdu(), new VfioOpenOptions { Ioas = ioas });
        Assert.Same(ioas, dev.Ioas);
        var ranges = ioas.IovaRanges;
        Assert.NotEmpty(ranges);
        Assert.True(ranges.Max(r => r.End) < ulong.MaxValue, "the vIOMMU's address width limits the IOAS");
        // VT-d reserves the interrupt address range 0xfee00000-0xfeefffff (VT-d spec 3.13): never mappable.
        Assert.DoesNotContain(ranges, r => r.Start <= 0xfee0_0000 && r.End >= 0xfeef_ffff);
        Assert.Equal(0ul, ioas.PageSizes & (ioas.PageSizes - 1));   // one bit: the mapping granularity
    }

    [Fact]
    public unsafe void MapAndUnmapAreCheckedByTheKernel()
    {
        using var iommufd = Iommufd.Open();
        using var ioas = iommufd.AllocateIoas();
        const ulong Size = 2 << 20;
        void* memory = NativeMemory.AlignedAlloc((nuint)Size, 4096);
        try
        {
            var iova = new Iova(0x4000_0000);
            ioas.MapDma((nint)memory, iova, Size);
            var again = Assert.ThrowsAny<VfioException>(() => ioas.MapDma((nint)memory, iova, Size));
            Assert.Equal(Errno.EEXIST, again.ErrorNumber);
            Assert.Contains("IOMMU_IOAS_MAP", again.Message);
            ioas.UnmapDma(iova, Size);
            var gone = Assert.ThrowsAny<VfioException>(() => ioas.UnmapDma(iova, Size));
            Assert.Equal(Errno.ENOENT, gone.ErrorNumber);
        }
        finally
        {
            NativeMemory.AlignedFree(memory);
        }
    }

    [Fact]
    public void DmaRoundTripThroughEduOnACallerMadeIoas()
    {
        using var iommufd = Iommufd.Open();
        var ioas = iommufd.AllocateIoas();
        using (var dev = VfioDevice.Open(Lab.BoundEdu(), new VfioOpenOptions { Ioas = ioas }))
        {
            using var bar0 = dev.OpenRegion(PciRegion.Bar0);
            var edu = new Edu(bar0);
            dev.Config.BusMaster = true;
            Assert.Same(ioas.GetDmaAllocator(), dev.Dma);
            using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "edu-iommufd" });
            Assert.Contains(ioas.IovaRanges, r => buffer.DeviceAddress.Value >= r.Start && buffer.DeviceAddress.Value + 8191 <= r.End);
            edu.AssertDmaRoundTrip(buffer, 512, 612, Timeout);
            dev.Config.BusMaster = false;
        }
        // The device was not the IOAS's owner: it is still alive, and with the device gone the kernel lets it be destroyed.
        Assert.NotEmpty(ioas.IovaRanges);
        ioas.Dispose();
        var e = Assert.ThrowsAny<VfioException>(() => ioas.IovaRanges);
        Assert.Equal(Errno.ENOENT, e.ErrorNumber);
    }

    [Fact]
    public void TheCdevOpensOncePerDevice()
    {
        var bdf = Lab.BoundEdu();
        int before = Lab.OpenFdCount();
        using (var first = VfioDevice.Open(bdf))
        {
            // The kernel lets only the group path open a device twice (vfio_df_open); the cdev refuses the second bind.
            Assert.ThrowsAny<VfioException>(() => VfioDevice.Open(bdf, new VfioOpenOptions().SharingDmaWith(first)));
            Assert.ThrowsAny<VfioException>(() => VfioDevice.Open(bdf));
        }
        Assert.Equal(before, Lab.OpenFdCount());
    }

    [Fact]
    public void Type1CanStillBeForcedOnACdevKernel()
    {
        using var dev = VfioDevice.Open(Lab.BoundEdu(), new VfioOpenOptions { Mode = VfioMode.Type1 });
        Assert.Equal(VfioMode.Type1, dev.Mode);
        Assert.Null(dev.Ioas);
        Assert.NotEmpty(dev.Container.IovaRanges);
        using var buffer = dev.Dma.Allocate(4096);
        Assert.Equal(DmaAddressing.Iova, dev.Dma.Addressing);
    }
}

/// <summary>Linux 6.12 guest with the vIOMMU, the group path forced through VFIO_DOTNET_MODE=type1 (lab config 612-type1).</summary>
[Trait("lab", Lab.K612Type1)]
public sealed class ForcedType1OnCdevKernelTests
{
    public ForcedType1OnCdevKernelTests() => Assert.Equal(Lab.K612Type1, Lab.Name);

    [Fact]
    public void TheEnvironmentForcesTheGroupThoughTheCdevExists()
    {
        Assert.Equal("type1", Environment.GetEnvironmentVariable("VFIO_DOTNET_MODE"));
        var bdf = Lab.BoundEdu();
        Assert.NotEmpty(Directory.GetFileSystemEntries(Path.Combine(Lab.DeviceDir(Lab.Edu), "vfio-dev"), "vfio*"));
        using var dev = VfioDevice.Open(bdf);
        Assert.Equal(VfioMode.Type1, dev.Mode);
        Assert.Equal($"/dev/vfio/{Lab.IommuGroup(Lab.Edu)}", dev.Group.Path);
    }

    [Fact]
    public void AnExplicitModeBeatsTheEnvironment()
    {
        using var dev = VfioDevice.Open(Lab.BoundEdu(), new VfioOpenOptions { Mode = VfioMode.Iommufd });
        Assert.Equal(VfioMode.Iommufd, dev.Mode);
        Assert.NotNull(dev.Ioas);
    }
}

/// <summary>Linux 6.12 guest without an IOMMU: /dev/iommu exists, but No-IOMMU devices get no cdev there.</summary>
[Trait("lab", Lab.K612NoIommu)]
public sealed class NoIommuOnCdevKernelTests
{
    public NoIommuOnCdevKernelTests() => Assert.Equal(Lab.K612NoIommu, Lab.Name);

    [Fact]
    public void AutoOpensTheNoIommuGroupAndForcedIommufdIsRefused()
    {
        var bdf = Lab.BoundEdu();
        Assert.True(File.Exists("/dev/iommu"));
        var listed = Directory.Exists(Path.Combine(Lab.DeviceDir(Lab.Edu), "vfio-dev"))
            ? Directory.GetFileSystemEntries(Path.Combine(Lab.DeviceDir(Lab.Edu), "vfio-dev"), "vfio*").Select(Path.GetFileName)
            : [];
        Assert.DoesNotContain(listed, name => File.Exists(Path.Combine("/dev/vfio/devices", name!)));

        var e = Assert.ThrowsAny<VfioException>(() =>
            VfioDevice.Open(bdf, new VfioOpenOptions { AllowNoIommu = true, Mode = VfioMode.Iommufd }));
        Assert.Contains("No-IOMMU group", e.Message);

        using var dev = VfioDevice.Open(bdf, new VfioOpenOptions { AllowNoIommu = true });
        Assert.Equal(VfioMode.NoIommu, dev.Mode);
        Assert.StartsWith("noiommu-", dev.Group.Name, StringComparison.Ordinal);
    }
}

/// <summary>
/// Linux 6.12 built with CONFIG_IOMMUFD_VFIO_CONTAINER and without CONFIG_VFIO_CONTAINER (lab config 612-compat, no
/// IOMMU, lab config 612-compat-noiommu): iommufd serves /dev/vfio/vfio and emulates the container ioctls, No-IOMMU
/// groups included (drivers/iommu/iommufd/vfio_compat.c). The legacy group path must work unchanged; the whole
/// noiommu family (edu, NVMe, virtio-net, CLI) runs in this guest as well.
/// </summary>
[Trait("lab", Lab.K612CompatNoIommu)]
public sealed class IommufdContainerCompatTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public IommufdContainerCompatTests() => Assert.Equal(Lab.K612CompatNoIommu, Lab.Name);

    [Fact]
    public void IommufdServesTheContainerAndOffersNoIommu()
    {
        Assert.Equal("Y", Lab.ReadTrimmed(Lab.NoIommuParam));
        using var container = VfioContainer.Open();
        Assert.True(container.ServedByIommufd);
        Assert.True(container.Supports(VfioIommuType.NoIommu));
        // The kernel built without VFIO's container has no type1 backend of its own: only the emulation is left.
        Assert.False(Directory.Exists("/sys/module/vfio_iommu_type1"));
    }

    [Fact]
    public void TheNoIommuGroupPathWorksThroughTheEmulatedContainer()
    {
        var bdf = Lab.BoundEdu();
        // The opt-in is still the caller's to give: the emulation does not change what the library refuses.
        Assert.Throws<NoIommuNotPermittedException>(() => VfioDevice.Open(bdf));

        using var dev = VfioDevice.Open(bdf, new VfioOpenOptions { AllowNoIommu = true });
        Assert.Equal(VfioMode.NoIommu, dev.Mode);
        Assert.StartsWith("noiommu-", dev.Group.Name, StringComparison.Ordinal);
        Assert.True(dev.Container.ServedByIommufd);
        Assert.Equal(VfioIommuType.NoIommu, dev.Container.IommuType);
        // iommufd_vfio_check_extension: once a No-IOMMU group is attached the emulated container stops offering type1.
        Assert.False(dev.Container.Supports(VfioIommuType.Type1v2));

        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        Assert.Equal(3628800u, edu.ComputeFactorial(10, Timeout));
        dev.Config.BusMaster = true;
        Assert.Equal(DmaAddressing.Physical, dev.Dma.Addressing);
        using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "edu-compat" });
        edu.AssertDmaRoundTrip(buffer, 256, 8, Timeout);
        dev.Config.BusMaster = false;
    }

    [Fact]
    public void TwoNoIommuGroupsShareOneEmulatedContainer()
    {
        var edu = Lab.BoundEdu();
        var nvme = Lab.BoundNvme();
        var options = new VfioOpenOptions { AllowNoIommu = true };
        using var first = VfioDevice.Open(edu, options);
        using var second = VfioDevice.Open(nvme, new VfioOpenOptions { AllowNoIommu = true }.SharingDmaWith(first));
        Assert.Same(first.Container, second.Container);
        Assert.Equal(2, first.Container.GroupCount);
        Assert.Same(first.Dma, second.Dma);
        Assert.NotEqual(first.Group.Name, second.Group.Name);
    }
}

/// <summary>
/// The same compat kernel with the vIOMMU (lab config 612-compat-type1), the group path forced by VFIO_DOTNET_MODE=type1:
/// the type1 container ioctls (GET_INFO with its IOVA-range capability, MAP_DMA, UNMAP_DMA) are iommufd's emulation
/// over its compat IOAS. The whole type1 family runs here as well.
/// </summary>
[Trait("lab", Lab.K612CompatType1)]
public sealed class IommufdContainerCompatType1Tests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public IommufdContainerCompatType1Tests() => Assert.Equal(Lab.K612CompatType1, Lab.Name);

    [Fact]
    public void Type1DmaGoesThroughTheEmulatedContainer()
    {
        Assert.Equal("type1", Environment.GetEnvironmentVariable("VFIO_DOTNET_MODE"));
        using var dev = VfioDevice.Open(Lab.BoundEdu());
        Assert.Equal(VfioMode.Type1, dev.Mode);
        Assert.True(dev.Container.ServedByIommufd);
        Assert.Equal(VfioIommuType.Type1v2, dev.Container.IommuType);
        // iommufd_fill_cap_iova reports the compat IOAS's allowed ranges, which the vIOMMU narrowed; VT-d's interrupt
        // window (VT-d spec 3.13) is never among them.
        var ranges = dev.Container.IovaRanges;
        Assert.NotEmpty(ranges);
        Assert.DoesNotContain(ranges, r => r.Start <= 0xfee0_0000 && r.End >= 0xfeef_ffff);
        Assert.NotEqual(0ul, dev.Container.PageSizes);

        using var bar0 = dev.OpenRegion(PciRegion.Bar0);
        var edu = new Edu(bar0);
        dev.Config.BusMaster = true;
        Assert.Equal(DmaAddressing.Iova, dev.Dma.Addressing);
        using var buffer = dev.Dma.Allocate(8192, new DmaAllocationOptions { Name = "edu-compat-type1" });
        Assert.Contains(ranges, r => buffer.DeviceAddress.Value >= r.Start && buffer.DeviceAddress.Value + 8191 <= r.End);
        edu.AssertDmaRoundTrip(buffer, 1024, 1, Timeout);
        dev.Config.BusMaster = false;
    }

    [Fact]
    public unsafe void MapAndUnmapAreCheckedByTheEmulation()
    {
        using var dev = VfioDevice.Open(Lab.BoundEdu());
        var container = dev.Container;
        const ulong Size = 2 << 20;
        void* memory = NativeMemory.AlignedAlloc((nuint)Size, 4096);
        try
        {
            var iova = new Iova(0x7000_0000);
            container.MapDma((nint)memory, iova, Size);
            var again = Assert.ThrowsAny<VfioException>(() => container.MapDma((nint)memory, iova, Size));
            Assert.Contains("VFIO_IOMMU_MAP_DMA", again.Message);
            container.UnmapDma(iova, Size);
            // Nothing left there: the emulation unmaps 0 bytes, which the library reports rather than ignores.
            Assert.ThrowsAny<VfioException>(() => container.UnmapDma(iova, Size));
        }
        finally
        {
            NativeMemory.AlignedFree(memory);
        }
    }
}
