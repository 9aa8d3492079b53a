namespace Vfio.E2E.Tests;

/// <summary>Guest without an IOMMU, vfio loaded with enable_unsafe_noiommu_mode=1.</summary>
[Trait("lab", Lab.NoIommu)]
public class NoIommuTests
{
    public NoIommuTests() => Lab.RequireConfig(Lab.NoIommu);

    [Fact]
    public void Unsafe_noiommu_mode_is_on()
    {
        Assert.Equal("Y", Lab.ReadTrimmed(Lab.NoIommuParam));
    }

    [Fact]
    public void Vfio_container_device_exists()
    {
        Assert.True(File.Exists("/dev/vfio/vfio"));
    }

    [Fact]
    public void There_is_no_hardware_iommu()
    {
        Assert.Empty(Directory.EnumerateFileSystemEntries("/sys/class/iommu"));
        Assert.Null(Lab.IommuGroup(Lab.Edu2)); // never bound: vfio-pci gives a noiommu group only at bind
    }
}
