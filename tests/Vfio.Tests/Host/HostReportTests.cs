using Vfio.Host;

namespace Vfio.Tests.Host;

/// <summary><see cref="HostReport"/> on fake trees: a ready host, and each way a host falls short.</summary>
public sealed class HostReportTests : IDisposable
{
    private const string Bdf = "0000:00:04.0", Nic = "0000:00:05.0";
    private static readonly MemoryLockLimit Unlimited = new(ulong.MaxValue, ulong.MaxValue);
    private static readonly ProcessCapabilities Root = ProcessCapabilities.Parse("CapEff:\t000001ffffffffff\n");
    private static readonly ProcessCapabilities NoCapabilities = ProcessCapabilities.Parse("CapEff:\t0000000000000000\n");
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    /// <summary>What a host with an IOMMU that is ready for VFIO holds.</summary>
    private FakeSysfs ReadyIommuHost() =>
        _fs.IommuUnit("dmar0").VfioModule("N").Module("vfio_iommu_type1").Driver("vfio-pci")
            .Device(Bdf, driver: "vfio-pci", group: 3)
            .DevNode("vfio/vfio").DevNode("vfio/3").DevNode("iommu").DevNode("vfio/devices/vfio0")
            .NodeHugePages(0, 2048, total: 64, free: 64)
            .ProcFile("cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 intel_iommu=on iommu=pt\n")
            .ProcFile("sys/kernel/osrelease", "6.12.0-test\n");

    /// <summary>What a host without an IOMMU, in No-IOMMU mode, that is ready holds.</summary>
    private FakeSysfs ReadyNoIommuHost() =>
        _fs.VfioModule("Y").Driver("vfio-pci").Device(Bdf, driver: "vfio-pci").SetGroup(Bdf, 0, noIommu: true)
            .DevNode("vfio/vfio").DevNode("vfio/noiommu-0").NodeHugePages(0, 2048, total: 64, free: 60);

    private HostReport Report(MemoryLockLimit? memlock = null, ProcessCapabilities? capabilities = null) =>
        HostReport.Collect(_fs.Host(), memlock ?? Unlimited, capabilities ?? Root);

    private static HostCheck Check(HostReport report, string id) => Assert.Single(report.Checks, c => c.Id == id);

    [Fact]
    public void A_ready_iommu_host_passes_every_check_in_a_fixed_order()
    {
        ReadyIommuHost();

        var report = Report();

        Assert.Equal(["iommu", "noiommu", "modules", "dev-vfio", "hugepages", "memlock", "capabilities", "devices", "iommufd", "vfio-cdev"],
            report.Checks.Select(c => c.Id));
        Assert.All(report.Checks, c => Assert.Equal(CheckStatus.Ok, c.Status));
        Assert.All(report.Checks, c => Assert.Null(c.Fix));
        Assert.True(report.IsReady);
        Assert.Contains("dmar0", Check(report, "iommu").Detail, StringComparison.Ordinal);
        Assert.Contains("intel_iommu=on iommu=pt", Check(report, "iommu").Detail, StringComparison.Ordinal);
        Assert.Equal("node0: 64 x 2 MiB (64 free)", Check(report, "hugepages").Detail);
        Assert.Equal($"{Bdf} (group 3, viable)", Check(report, "devices").Detail);
        Assert.Contains("kernel 6.12.0-test", Check(report, "vfio-cdev").Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_no_iommu_host_with_the_mode_on_is_ready_with_warnings()
    {
        ReadyNoIommuHost();

        var report = Report();

        Assert.True(report.IsReady);
        Assert.Equal(CheckStatus.Warning, Check(report, "iommu").Status);
        Assert.Equal(CheckStatus.Warning, Check(report, "noiommu").Status);
        Assert.Equal($"{Bdf} (group noiommu-0, viable)", Check(report, "devices").Detail);
        Assert.Equal(CheckStatus.Ok, Check(report, "hugepages").Status);
    }

    [Fact]
    public void No_iommu_and_a_kernel_without_no_iommu_mode_fails_and_says_why()
    {
        _fs.VfioModule(null).Driver("vfio-pci").DevNode("vfio/vfio").NodeHugePages(0, 2048, 64, 64);

        var report = Report();

        Assert.False(report.IsReady);
        var check = Check(report, "noiommu");
        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Contains("CONFIG_VFIO_NOIOMMU", check.Fix, StringComparison.Ordinal);
        Assert.Contains("intel_iommu=on", Check(report, "iommu").Fix, StringComparison.Ordinal);
    }

    [Fact]
    public void No_iommu_with_the_mode_off_fails_with_the_command_that_enables_it()
    {
        _fs.VfioModule("N").Driver("vfio-pci").DevNode("vfio/vfio").NodeHugePages(0, 2048, 64, 64);

        var check = Check(Report(), "noiommu");

        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Contains("vfio noiommu enable --unsafe", check.Fix, StringComparison.Ordinal);
    }

    [Fact]
    public void No_hugepages_fails_in_no_iommu_mode_and_only_warns_with_an_iommu()
    {
        _fs.VfioModule("Y").Driver("vfio-pci").DevNode("vfio/vfio").NodeHugePages(0, 2048, 0, 0).NodeHugePages(1, 2048, 0, 0);

        var check = Check(Report(), "hugepages");
        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Equal("node0: none; node1: none: No-IOMMU DMA memory comes from hugepages", check.Detail);
        Assert.Contains("vfio hugepages reserve", check.Fix, StringComparison.Ordinal);

        _fs.IommuUnit("dmar0");
        Assert.Equal(CheckStatus.Warning, Check(Report(), "hugepages").Status);
    }

    [Fact]
    public void Hugepages_are_reported_per_numa_node()
    {
        ReadyIommuHost().NodeHugePages(1, 1048576, total: 2, free: 1);

        Assert.Equal("node0: 64 x 2 MiB (64 free); node1: 2 x 1 GiB (1 free)", Check(Report(), "hugepages").Detail);
    }

    [Fact]
    public void A_low_memlock_limit_fails_unless_the_process_has_CAP_IPC_LOCK()
    {
        ReadyIommuHost();
        var eight = new MemoryLockLimit(8UL << 20, 8UL << 20);

        var check = Check(Report(eight, NoCapabilities), "memlock");
        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Contains("8 MiB", check.Detail, StringComparison.Ordinal);
        Assert.Contains("ulimit -l unlimited", check.Fix, StringComparison.Ordinal);
        Assert.False(Report(eight, NoCapabilities).IsReady);

        Assert.Equal(CheckStatus.Ok, Check(Report(eight, ProcessCapabilities.Parse("CapEff:\t0000000000004000\n")), "memlock").Status);
    }

    [Fact]
    public void Missing_capabilities_fail_without_an_iommu_and_only_warn_with_one()
    {
        ReadyNoIommuHost();
        var check = Check(Report(capabilities: NoCapabilities), "capabilities");
        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Contains("No-IOMMU mode needs CAP_SYS_RAWIO and CAP_SYS_ADMIN", check.Detail, StringComparison.Ordinal);
        Assert.Contains("setcap cap_sys_rawio,cap_sys_admin,cap_ipc_lock+ep", check.Fix, StringComparison.Ordinal);

        _fs.IommuUnit("dmar0");
        Assert.Equal(CheckStatus.Warning, Check(Report(capabilities: NoCapabilities), "capabilities").Status);
    }

    [Fact]
    public void Missing_modules_and_nodes_fail()
    {
        _fs.IommuUnit("dmar0");

        var report = Report();

        Assert.Equal(CheckStatus.Failed, Check(report, "modules").Status);
        Assert.Equal("vfio and vfio-pci not loaded", Check(report, "modules").Detail);
        Assert.Equal(CheckStatus.Failed, Check(report, "dev-vfio").Status);
        Assert.Equal(CheckStatus.Warning, Check(report, "iommufd").Status);
        Assert.Equal(CheckStatus.Warning, Check(report, "vfio-cdev").Status);
    }

    [Fact]
    public void A_group_node_closed_to_others_warns_a_caller_that_is_not_root()
    {
        ReadyIommuHost();
        File.SetUnixFileMode(Path.Combine(_fs.Dev, "vfio", "3"), UnixFileMode.UserRead | UnixFileMode.UserWrite);

        Assert.Equal(CheckStatus.Ok, Check(Report(), "dev-vfio").Status);
        var check = Check(Report(capabilities: NoCapabilities), "dev-vfio");
        Assert.Equal(CheckStatus.Warning, check.Status);
        Assert.EndsWith("not open to others: 3", check.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bound_device_in_a_group_that_is_not_viable_fails_naming_the_other_device()
    {
        ReadyIommuHost().Driver("e1000e").Device(Nic, driver: "e1000e");
        _fs.SetGroup(Nic, 3);

        var check = Check(Report(), "devices");

        Assert.Equal(CheckStatus.Failed, check.Status);
        Assert.Equal($"not viable: {Bdf} (group 3 also holds {Nic} on e1000e)", check.Detail);
    }
}
