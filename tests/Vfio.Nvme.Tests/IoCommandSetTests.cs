using System.Buffers.Binary;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>The I/O command set structures: NVM command set Identify Controller (CNS 06h) and the combinations (CNS 1Ch).</summary>
public sealed class IoCommandSetTests
{
    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    [Fact]
    public void TheNvmCommandSetStructureCarriesTheModelsLimits()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions { Mdts = 4 });
        using var ctrl = Open(dev);
        Assert.True(ctrl.Capabilities.SupportsIoCommandSets);
        var nvm = ctrl.IdentifyNvmCommandSet();
        Assert.NotNull(nvm);
        Assert.Equal(4, nvm.WriteZeroesSizeLimit);
        Assert.Equal(255, nvm.DatasetManagementRangesLimit);
        Assert.Equal(uint.MaxValue, nvm.DatasetManagementRangeSizeLimit);
        Assert.Equal(["vsl", "wzsl", "wusl", "dmrl", "dmrsl", "dmsl"], nvm.NvmeCliFields().Select(f => f.JsonName));
    }

    [Fact]
    public void TheOnlyCombinationIsTheNvmCommandSetAlone()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var ctrl = Open(dev);
        var combos = ctrl.GetIoCommandSetCombinations();
        Assert.Equal([(0, 1UL)], combos);
    }

    [Fact]
    public void AnotherCommandSetIsInvalidFieldAndTheControllerGoesOn()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var ctrl = Open(dev);
        var e = Assert.Throws<NvmeCommandException>(() => ctrl.ExecuteAdmin(
            NvmeCommand.Identify(IdentifyCns.IoCommandSetController, 0, CommandSetIdentifier.Zoned, default, default), new byte[4096], NvmeDataDirection.FromDevice));
        Assert.Equal((byte)GenericStatusCode.InvalidField, e.Status.Code);
        Assert.Equal("EMU-0001", ctrl.Identity.SerialNumber);
        Assert.NotNull(ctrl.IdentifyNvmCommandSet());
    }

    [Fact]
    public void TheCommandSetIdentifierGoesInDword11()
    {
        var c = NvmeCommand.Identify(IdentifyCns.IoCommandSetController, 0, CommandSetIdentifier.Zoned, default, default);
        Assert.Equal(0x06u, c.Cdw10);
        Assert.Equal(2u << 24, c.Cdw11);
    }

    [Fact]
    public void ShortOrZeroStructuresAreRefusedOrEmpty()
    {
        Assert.Throws<FormatException>(() => NvmIdentifyController.Parse(new byte[8]));
        Assert.Throws<FormatException>(() => IoCommandSetCombinations.Parse(new byte[100]));
        var data = new byte[4096];
        Assert.Empty(IoCommandSetCombinations.Parse(data));
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(8 * 511), 5);
        Assert.Equal([(511, 5UL)], IoCommandSetCombinations.Parse(data));
    }
}
