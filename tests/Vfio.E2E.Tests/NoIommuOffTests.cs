namespace Vfio.E2E.Tests;

/// <summary>Guest without an IOMMU and with No-IOMMU mode off: vfio must refuse devices.</summary>
[Trait("lab", Lab.NoIommuOff)]
public class NoIommuOffTests
{
    public NoIommuOffTests() => Lab.RequireConfig(Lab.NoIommuOff);

    [Fact]
    public void Unsafe_noiommu_mode_is_off()
    {
        Assert.Equal("N", Lab.ReadTrimmed(Lab.NoIommuParam));
    }

    [Fact]
    public void Devices_have_no_iommu_group()
    {
        Assert.Empty(Directory.EnumerateFileSystemEntries("/sys/class/iommu"));
        Assert.Null(Lab.IommuGroup(Lab.Edu));
    }
}
