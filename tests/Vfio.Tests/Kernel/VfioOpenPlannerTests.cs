using Vfio.Host;
using Vfio.Kernel;
using Vfio.Tests.Host;

namespace Vfio.Tests.Kernel;

/// <summary>Every branch of the mode decision: which device opens how, and each refusal's own exception.</summary>
public class VfioOpenPlannerTests
{
    private static readonly PciAddress Dev = PciAddress.Parse("0000:00:04.0");

    private static readonly OpenFacts NoIommuBound = new(
        DeviceExists: true, Driver: "vfio-pci", Group: "0", GroupIsNoIommu: true,
        VfioLoaded: true, NoIommuParameterPresent: true, NoIommuParameterOn: true, HasCapSysRawio: true);

    private static readonly OpenFacts Type1Bound = NoIommuBound with { Group = "7", GroupIsNoIommu = false, NoIommuParameterOn = false };

    private static readonly VfioOpenOptions OptIn = new() { AllowNoIommu = true };

    [Fact]
    public void Type1GroupOpensInType1WithoutOptIn()
    {
        var plan = VfioOpenPlanner.Decide(Dev, Type1Bound, new VfioOpenOptions());
        Assert.Equal(VfioMode.Type1, plan.Mode);
        Assert.Equal("/dev/vfio/7", plan.NodePath);
    }

    [Fact]
    public void NoIommuGroupOpensOnlyWithOptIn()
    {
        var plan = VfioOpenPlanner.Decide(Dev, NoIommuBound, OptIn);
        Assert.Equal(VfioMode.NoIommu, plan.Mode);
        Assert.Equal("/dev/vfio/noiommu-0", plan.NodePath);

        var e = Assert.Throws<NoIommuNotPermittedException>(() => VfioOpenPlanner.Decide(Dev, NoIommuBound, new VfioOpenOptions()));
        Assert.Contains("AllowNoIommu", e.Message);
        Assert.Equal("noiommu-0", e.Group);
        Assert.Equal(Dev, e.Device);
    }

    [Fact]
    public void OptInDoesNotForceNoIommuOnADeviceWithAnIommu()
    {
        Assert.Equal(VfioMode.Type1, VfioOpenPlanner.Decide(Dev, Type1Bound, OptIn).Mode);
    }

    [Fact]
    public void NoIommuWithoutRawioNamesTheCapability()
    {
        var e = Assert.Throws<MissingCapabilityException>(() =>
            VfioOpenPlanner.Decide(Dev, NoIommuBound with { HasCapSysRawio = false }, OptIn));
        Assert.Equal("CAP_SYS_RAWIO", e.Capability);
        Assert.Contains("CAP_SYS_RAWIO", e.Message);
    }

    [Fact]
    public void NoGroupAndParameterOffSaysHowToOptIn()
    {
        var facts = Type1Bound with { Group = null, Driver = null };
        var e = Assert.Throws<NoIommuModeDisabledException>(() => VfioOpenPlanner.Decide(Dev, facts, OptIn));
        Assert.Contains("enable_unsafe_noiommu_mode", e.Message);
    }

    [Fact]
    public void NoGroupAndNoParameterSaysTheKernelLacksSupport()
    {
        var facts = Type1Bound with { Group = null, NoIommuParameterPresent = false };
        var e = Assert.Throws<NoIommuModeDisabledException>(() => VfioOpenPlanner.Decide(Dev, facts, OptIn));
        Assert.Contains("CONFIG_VFIO_NOIOMMU", e.Message);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("nvme")]
    public void UnboundDeviceIsRefused(string? driver)
    {
        var e = Assert.Throws<DeviceNotBoundException>(() => VfioOpenPlanner.Decide(Dev, Type1Bound with { Driver = driver }, OptIn));
        Assert.Equal(driver, e.CurrentDriver);
        Assert.Contains("vfio bind 0000:00:04.0", e.Message);
    }

    [Fact]
    public void UnboundDeviceWithoutGroupWhileNoIommuIsOnIsNotBound()
    {
        var facts = NoIommuBound with { Group = null, Driver = null };
        Assert.Throws<DeviceNotBoundException>(() => VfioOpenPlanner.Decide(Dev, facts, OptIn));
    }

    [Fact]
    public void MissingDeviceIsNotFound()
    {
        Assert.Throws<DeviceNotFoundException>(() => VfioOpenPlanner.Decide(Dev, default, OptIn));
    }

    [Fact]
    public void ForcedModesThatContradictTheHostAreRefused()
    {
        Assert.Throws<VfioException>(() => VfioOpenPlanner.Decide(Dev, NoIommuBound, OptIn with { Mode = VfioMode.Type1 }));
        Assert.Throws<VfioException>(() => VfioOpenPlanner.Decide(Dev, Type1Bound, OptIn with { Mode = VfioMode.NoIommu }));
        Assert.Equal(VfioMode.NoIommu, VfioOpenPlanner.Decide(Dev, NoIommuBound, OptIn with { Mode = VfioMode.NoIommu }).Mode);
    }

    [Fact]
    public void DevRootIsHonoured()
    {
        var plan = VfioOpenPlanner.Decide(Dev, Type1Bound, new VfioOpenOptions { DevRoot = "/tmp/fake-dev" });
        Assert.Equal("/tmp/fake-dev/vfio/7", plan.NodePath);
    }

    // ---- the device cdev + iommufd (Linux 6.6+) ----

    private static readonly OpenFacts CdevBound = Type1Bound with { Cdev = "vfio0", IommufdPresent = true };

    [Fact]
    public void AutoPicksTheCdevWhereTheKernelOffersCdevAndIommufd()
    {
        var plan = VfioOpenPlanner.Decide(Dev, CdevBound, new VfioOpenOptions());
        Assert.Equal(VfioMode.Iommufd, plan.Mode);
        Assert.Equal("/dev/vfio/devices/vfio0", plan.NodePath);
    }

    [Theory]
    [InlineData(null, true)]      // no vfio-dev/vfioN: kernel without CONFIG_VFIO_DEVICE_CDEV
    [InlineData("vfio0", false)]  // no /dev/iommu: kernel without CONFIG_IOMMUFD
    public void AutoFallsBackToTheGroupWithoutCdevOrIommufd(string? cdev, bool iommufd)
    {
        var plan = VfioOpenPlanner.Decide(Dev, Type1Bound with { Cdev = cdev, IommufdPresent = iommufd }, new VfioOpenOptions());
        Assert.Equal(VfioMode.Type1, plan.Mode);
        Assert.Equal("/dev/vfio/7", plan.NodePath);
    }

    [Fact]
    public void Type1ForcesTheGroupEvenWhereTheCdevExists()
    {
        var plan = VfioOpenPlanner.Decide(Dev, CdevBound, new VfioOpenOptions { Mode = VfioMode.Type1 });
        Assert.Equal(VfioMode.Type1, plan.Mode);
        Assert.Equal("/dev/vfio/7", plan.NodePath);
    }

    [Fact]
    public void ForcedIommufdWithoutCdevNamesTheKernelOption()
    {
        var e = Assert.Throws<VfioUnavailableException>(() =>
            VfioOpenPlanner.Decide(Dev, Type1Bound with { IommufdPresent = true }, new VfioOpenOptions { Mode = VfioMode.Iommufd }));
        Assert.Contains("CONFIG_VFIO_DEVICE_CDEV", e.Message);
    }

    [Fact]
    public void ForcedIommufdWithoutDevIommuNamesTheKernelOption()
    {
        var e = Assert.Throws<VfioUnavailableException>(() =>
            VfioOpenPlanner.Decide(Dev, CdevBound with { IommufdPresent = false }, new VfioOpenOptions { Mode = VfioMode.Iommufd }));
        Assert.Contains("CONFIG_IOMMUFD", e.Message);
    }

    [Fact]
    public void ForcedIommufdOnANoIommuDeviceSaysTheCdevDoesNotServeIt()
    {
        var e = Assert.Throws<VfioException>(() =>
            VfioOpenPlanner.Decide(Dev, NoIommuBound with { IommufdPresent = true }, OptIn with { Mode = VfioMode.Iommufd }));
        Assert.Contains("No-IOMMU group", e.Message);
        Assert.Contains("cdev does not serve No-IOMMU", e.Message);
    }

    [Fact]
    public void NoIommuDeviceStillOpensThroughItsGroupOnACdevKernel()
    {
        // 6.12 has /dev/iommu but gives No-IOMMU devices no cdev: Auto must land on the noiommu group.
        var plan = VfioOpenPlanner.Decide(Dev, NoIommuBound with { IommufdPresent = true }, OptIn);
        Assert.Equal(VfioMode.NoIommu, plan.Mode);
        Assert.Equal("/dev/vfio/noiommu-0", plan.NodePath);
    }

    [Fact]
    public void ASharedContainerKeepsTheGroupPath()
    {
        var plan = VfioOpenPlanner.Decide(Dev, CdevBound, new VfioOpenOptions { Container = FakeContainer() });
        Assert.Equal(VfioMode.Type1, plan.Mode);
    }

    [Fact]
    public void ContainerWithForcedIommufdIsRefused()
    {
        Assert.Throws<ArgumentException>(() =>
            VfioOpenPlanner.Decide(Dev, CdevBound, new VfioOpenOptions { Container = FakeContainer(), Mode = VfioMode.Iommufd }));
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("auto", null)]
    [InlineData("iommufd", VfioMode.Iommufd)]
    [InlineData(" CDEV ", VfioMode.Iommufd)]
    [InlineData("type1", VfioMode.Type1)]
    [InlineData("group", VfioMode.Type1)]
    [InlineData("noiommu", VfioMode.NoIommu)]
    public void ModeVariableParses(string? value, VfioMode? expected)
    {
        Assert.Equal(expected, VfioOpenPlanner.ParseMode(value));
    }

    [Fact]
    public void ModeVariableRejectsUnknownValues()
    {
        var e = Assert.Throws<ArgumentException>(() => VfioOpenPlanner.ParseMode("vfio"));
        Assert.Contains("VFIO_DOTNET_MODE", e.Message);
    }

    // ---- what Gather reads for the cdev: sysfs vfio-dev/vfioN, its /dev/vfio/devices node, /dev/iommu ----

    private static FakeSysfs CdevHost(bool devNode, bool iommu)
    {
        var fs = new FakeSysfs()
            .Device("0000:00:04.0", driver: "vfio-pci", group: 7, vfioDev: "vfio3")
            .VfioModule("N")
            .ProcFile("self/status", "CapEff:\t000001ffffffffff\n");
        if (devNode) { fs.DevNode("vfio/devices/vfio3"); }
        if (iommu) { fs.DevNode("iommu"); }
        return fs;
    }

    [Fact]
    public void GatherFindsTheCdevAndIommufdAndAutoOpensThere()
    {
        using var fs = CdevHost(devNode: true, iommu: true);
        var options = new VfioOpenOptions { SysfsRoot = fs.Sys, ProcRoot = fs.Proc, DevRoot = fs.Dev };
        var facts = VfioOpenPlanner.Gather(new PciHost(fs.Sys, fs.Proc, fs.Dev), Dev);
        Assert.Equal("vfio3", facts.Cdev);
        Assert.True(facts.IommufdPresent);
        var plan = VfioOpenPlanner.Decide(Dev, facts, options);
        Assert.Equal(VfioMode.Iommufd, plan.Mode);
        Assert.Equal(Path.Combine(fs.Dev, "vfio", "devices", "vfio3"), plan.NodePath);
    }

    [Fact]
    public void GatherIgnoresACdevSysfsListsWithoutADevNode()
    {
        // Linux 6.12 lists No-IOMMU devices under vfio-dev but gives them no /dev/vfio/devices node.
        using var fs = CdevHost(devNode: false, iommu: true);
        var facts = VfioOpenPlanner.Gather(new PciHost(fs.Sys, fs.Proc, fs.Dev), Dev);
        Assert.Null(facts.Cdev);
        Assert.Equal(VfioMode.Type1, VfioOpenPlanner.Decide(Dev, facts, new VfioOpenOptions { DevRoot = fs.Dev }).Mode);
    }

    [Fact]
    public void IommufdOpenWithoutDevIommuSaysWhichKernelOption()
    {
        using var fs = CdevHost(devNode: true, iommu: false);
        Assert.False(Iommufd.IsAvailable(fs.Dev));
        var e = Assert.Throws<VfioUnavailableException>(() => Iommufd.Open(fs.Dev));
        Assert.Contains("CONFIG_IOMMUFD", e.Message);
    }

    // Only its non-null-ness matters to Decide; never used as a container.
    private static VfioContainer FakeContainer() =>
        (VfioContainer)System.Runtime.CompilerServices.RuntimeHelpers.GetUninitializedObject(typeof(VfioContainer));
}
