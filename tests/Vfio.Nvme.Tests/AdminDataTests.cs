using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>Admin commands with data through the controller's own DMA buffer, and what bad buffers get.</summary>
public sealed class AdminDataTests
{
    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    [Fact]
    public void IdentifyThroughTheDataPathMatchesIdentify()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions { Serial = "ADMIN-DATA" });
        using var ctrl = Open(dev);
        var data = new byte[4096];
        ctrl.ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.Controller, 0, default, default), data, NvmeDataDirection.FromDevice);
        Assert.Equal(ctrl.Identify(IdentifyCns.Controller, 0), data);
        Assert.Equal("ADMIN-DATA", IdentifyController.Parse(data).SerialNumber);
    }

    [Fact]
    public void AShortReadCopiesOnlyWhatWasAskedFor()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var ctrl = Open(dev);
        var full = ctrl.Identify(IdentifyCns.Controller, 0);
        // The model writes 4 KiB; a 64-byte buffer means PRP1 only, the rest lands in the driver's buffer.
        var head = new byte[64];
        ctrl.ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.Controller, 0, default, default), head, NvmeDataDirection.FromDevice);
        Assert.Equal(full.AsSpan(0, 64).ToArray(), head);
    }

    [Theory]
    [InlineData(0, NvmeDataDirection.FromDevice)]
    [InlineData(6, NvmeDataDirection.FromDevice)]
    [InlineData(NvmeController.AdminDataBytes + 4, NvmeDataDirection.ToDevice)]
    [InlineData(4, NvmeDataDirection.None)]
    [InlineData(4, (NvmeDataDirection)7)]
    public void BadBuffersAreRefusedBeforeTheDeviceSeesThem(int length, NvmeDataDirection direction)
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var ctrl = Open(dev);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            ctrl.ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.Controller, 0, default, default), new byte[length], direction));
        Assert.Equal(IdentifyController.Parse(ctrl.Identify(IdentifyCns.Controller, 0)).SerialNumber, ctrl.Identity.SerialNumber);
    }
}
