namespace Vfio.Tests;

/// <summary>The one errno-to-exception place: right type, operation, device, errno text and hint.</summary>
public class ErrnoTests
{
    private static readonly PciAddress Dev = PciAddress.Parse("0000:00:04.0");

    [Theory]
    [InlineData(Errno.EPERM, typeof(VfioPermissionException))]
    [InlineData(Errno.EACCES, typeof(VfioPermissionException))]
    [InlineData(Errno.ENOMEM, typeof(VfioResourceException))]
    [InlineData(Errno.ENOSPC, typeof(VfioResourceException))]
    [InlineData(Errno.EINVAL, typeof(VfioException))]
    [InlineData(Errno.EBUSY, typeof(VfioException))]
    public void ErrnoMapsToItsExceptionType(int errno, Type expected)
    {
        var e = Errno.ToException(errno, "VFIO_GROUP_GET_DEVICE_FD", Dev);
        Assert.IsType(expected, e);
        Assert.Equal(errno, e.ErrorNumber);
        Assert.Equal(Dev, e.Device);
        Assert.StartsWith("0000:00:04.0: VFIO_GROUP_GET_DEVICE_FD failed (" + Errno.Name(errno) + ":", e.Message);
    }

    [Fact]
    public void KnownCausesCarryAHint()
    {
        Assert.Contains("CAP_SYS_RAWIO", Errno.ToException(Errno.EPERM, "open /dev/vfio/noiommu-0").Message);
        Assert.Contains("RLIMIT_MEMLOCK", Errno.ToException(Errno.ENOMEM, "VFIO_IOMMU_MAP_DMA").Message);
        Assert.Contains("another process", Errno.ToException(Errno.EBUSY, "open /dev/vfio/3").Message);
        Assert.Null(Errno.ToException(Errno.EINVAL, "x").Hint);
        Assert.Equal("custom", Errno.ToException(Errno.EINVAL, "x", hint: "custom").Hint);
    }

    [Fact]
    public void ErrnoTextComesFromTheCLibrary()
    {
        Assert.Equal("ENOENT: No such file or directory", Errno.Describe(Errno.ENOENT));
        Assert.Equal("errno 200", Errno.Name(200));
    }

    [Fact]
    public void CheckPassesSuccessAndThrowsOnFailure()
    {
        Assert.Equal(5, Errno.Check(5, "x"));
        // close(-1) fails with EBADF and sets errno.
        var e = Assert.Throws<VfioException>(() => Errno.Check(Interop.Libc.close(-1), "close"));
        Assert.Equal(Errno.EBADF, e.ErrorNumber);
    }

    [Fact]
    public void RefusalsExplainHowToProceed()
    {
        Assert.Contains("vfio bind 0000:00:04.0", new DeviceNotBoundException(Dev, "nvme").Message);
        Assert.Contains("'nvme'", new DeviceNotBoundException(Dev, "nvme").Message);
        Assert.Contains("enable_unsafe_noiommu_mode", new NoIommuModeDisabledException(Dev, "x").Message);
        Assert.Contains("AllowNoIommu", new NoIommuNotPermittedException(Dev, "noiommu-0").Message);
        var g = new GroupNotViableException(Dev, "5", [PciAddress.Parse("0000:00:05.0")]);
        Assert.Contains("0000:00:05.0 is bound", g.Message);
        Assert.Contains("setcap", new MissingCapabilityException("CAP_SYS_RAWIO", "open", Dev, "why").Message);
    }
}
