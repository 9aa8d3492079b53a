using Vfio.Kernel;

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
        Assert.Equal("/dev/vfio/7", plan.GroupPath);
    }

    [Fact]
    public void NoIommuGroupOpensOnlyWithOptIn()
    {
        var plan = VfioOpenPlanner.Decide(Dev, NoIommuBound, OptIn);
        Assert.Equal(VfioMode.NoIommu, plan.Mode);
        Assert.Equal("/dev/vfio/noiommu-0", plan.GroupPath);

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
        Assert.Equal("/tmp/fake-dev/vfio/7", plan.GroupPath);
    }
}
