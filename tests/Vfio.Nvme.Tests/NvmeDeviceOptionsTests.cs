using Vfio.Emulation.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>The emulated controller refuses a shape it cannot model, naming the option.</summary>
public sealed class NvmeDeviceOptionsTests
{
    public static TheoryData<NvmeDeviceOptions, string> BadOptions => new()
    {
        { new NvmeDeviceOptions { BlockSize = 1024 }, "BlockSize" },
        { new NvmeDeviceOptions { BlockCount = 0 }, "BlockCount" },
        { new NvmeDeviceOptions { BlockSize = 4096, BlockCount = (1UL << 18) + 1 }, "BlockCount" },   // over 1 GiB
        { new NvmeDeviceOptions { DoorbellStride = 5 }, "DoorbellStride" },
        { new NvmeDeviceOptions { Mdts = 9 }, "Mdts" },
        { new NvmeDeviceOptions { MsixVectors = 0 }, "MsixVectors" },
        { new NvmeDeviceOptions { MaxIoQueues = 65 }, "MaxIoQueues" },
        { new NvmeDeviceOptions { Serial = new string('x', 21) }, "Serial" },
        { new NvmeDeviceOptions { Model = "caf\u00e9" }, "Model" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsAreRefusedByName(NvmeDeviceOptions options, string name)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new NvmeDevice(options));
        Assert.Equal(name, e.ParamName);
    }
}
