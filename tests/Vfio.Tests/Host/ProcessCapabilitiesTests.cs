using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class ProcessCapabilitiesTests
{
    private const string RootStatus = """
        Name:	vfio
        Umask:	0022
        State:	R (running)
        CapInh:	0000000000000000
        CapPrm:	000001ffffffffff
        CapEff:	000001ffffffffff
        CapBnd:	000001ffffffffff
        CapAmb:	0000000000000000
        NoNewPrivs:	0
        """;

    [Theory]
    [InlineData(LinuxCapability.SysAdmin, 21, "CAP_SYS_ADMIN")]
    [InlineData(LinuxCapability.SysRawIo, 17, "CAP_SYS_RAWIO")]
    [InlineData(LinuxCapability.IpcLock, 14, "CAP_IPC_LOCK")]
    [InlineData(LinuxCapability.DacOverride, 1, "CAP_DAC_OVERRIDE")]
    [InlineData(LinuxCapability.CheckpointRestore, 40, "CAP_CHECKPOINT_RESTORE")]
    public void Capabilities_have_the_kernel_numbers_and_names(LinuxCapability capability, int bit, string name)
    {
        Assert.Equal(bit, (int)capability);
        Assert.Equal(name, capability.KernelName());
    }

    [Fact]
    public void Root_has_everything()
    {
        var caps = ProcessCapabilities.Parse(RootStatus);
        Assert.Equal(0x1ff_ffff_ffffUL, caps.Effective);
        Assert.All(Enum.GetValues<LinuxCapability>(), c => Assert.True(caps.HasCapability(c), c.KernelName()));
    }

    [Fact]
    public void CapEff_is_a_hex_bit_mask()
    {
        // Bits 14 (IPC_LOCK) and 17 (SYS_RAWIO): 0x4000 | 0x20000.
        var caps = ProcessCapabilities.Parse("CapPrm:\t0000000000224000\nCapEff:\t0000000000024000\n");

        Assert.True(caps.HasCapability(LinuxCapability.IpcLock));
        Assert.True(caps.HasCapability(LinuxCapability.SysRawIo));
        Assert.False(caps.HasCapability(LinuxCapability.SysAdmin));
        Assert.False(caps.HasCapability(LinuxCapability.DacOverride));
        Assert.Equal(0x224000UL, caps.Permitted);
        Assert.Equal("CAP_IPC_LOCK,CAP_SYS_RAWIO", caps.ToString());
    }

    [Fact]
    public void Require_throws_MissingCapability_with_the_operation_device_and_reason()
    {
        var caps = ProcessCapabilities.Parse("CapEff:\t0000000000004000\n");
        var device = PciAddress.Parse("0000:00:04.0");

        caps.Require(LinuxCapability.IpcLock, "lock DMA memory", null, "pinned pages count against RLIMIT_MEMLOCK");
        var e = Assert.Throws<MissingCapabilityException>(() =>
            caps.Require(LinuxCapability.SysRawIo, "open /dev/vfio/noiommu-0", device, "VFIO requires it for No-IOMMU groups"));

        Assert.Equal("CAP_SYS_RAWIO", e.Capability);
        Assert.Equal(device, e.Device);
        Assert.Contains("open /dev/vfio/noiommu-0", e.Message, StringComparison.Ordinal);
        Assert.Contains("VFIO requires it for No-IOMMU groups", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Name:\tx\n")]
    [InlineData("CapEff:\tnot-hex\n")]
    [InlineData("")]
    public void Status_without_a_valid_CapEff_is_a_FormatException(string text)
    {
        Assert.Throws<FormatException>(() => ProcessCapabilities.Parse(text));
    }

    [Fact]
    public void Read_uses_the_procfs_root()
    {
        using var fs = new FakeSysfs();
        fs.ProcFile("self/status", "CapEff:\t0000000000200000\n");

        var caps = fs.Host().GetCapabilities();

        Assert.True(caps.HasCapability(LinuxCapability.SysAdmin));
        Assert.False(caps.HasCapability(LinuxCapability.SysRawIo));
    }

    [Fact]
    public void Read_without_procfs_says_so()
    {
        using var fs = new FakeSysfs();
        var e = Assert.Throws<VfioException>(() => ProcessCapabilities.Read(fs.Proc));
        Assert.Contains("procfs", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Real_proc_self_status_parses()
    {
        Assert.SkipUnless(File.Exists("/proc/self/status"), "no procfs");
        _ = ProcessCapabilities.Read();
    }
}
