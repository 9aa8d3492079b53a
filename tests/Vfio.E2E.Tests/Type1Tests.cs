namespace Vfio.E2E.Tests;

/// <summary>Guest with an emulated Intel IOMMU (q35 + intel-iommu), vfio in its safe mode.</summary>
[Trait("lab", Lab.Type1)]
public class Type1Tests
{
    public Type1Tests() => Lab.RequireConfig(Lab.Type1);

    [Fact]
    public void Unsafe_noiommu_mode_is_off()
    {
        Assert.Equal("N", Lab.ReadTrimmed(Lab.NoIommuParam));
    }

    [Fact]
    public void An_iommu_is_registered()
    {
        Assert.NotEmpty(Directory.EnumerateFileSystemEntries("/sys/class/iommu"));
    }

    [Fact]
    public void Each_edu_device_has_its_own_iommu_group()
    {
        var first = Lab.IommuGroup(Lab.Edu);
        var second = Lab.IommuGroup(Lab.Edu2);
        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.NotEqual(first, second);
    }

    [Fact]
    public void Vfio_container_device_exists()
    {
        Assert.True(File.Exists("/dev/vfio/vfio"));
    }
}
