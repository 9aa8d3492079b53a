using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class HugePagesTests : IDisposable
{
    private const ulong TwoMiB = 2UL << 20, OneGiB = 1UL << 30;
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    [Fact]
    public void Pools_are_read_per_page_size_smallest_first()
    {
        _fs.HugePagePool(1048576, total: 2, free: 1).HugePagePool(2048, total: 512, free: 500, reserved: 20, surplus: 3);

        var pools = _fs.Host().HugePages.GetPools();

        Assert.Equal(
        [
            new HugePageInfo(TwoMiB, Total: 512, Free: 500, Reserved: 20, Surplus: 3),
            new HugePageInfo(OneGiB, Total: 2, Free: 1, Reserved: 0, Surplus: 0),
        ], pools);
        Assert.Equal(480, pools[0].Available);
        Assert.Equal(pools[1], _fs.Host().HugePages.GetPool(OneGiB));
        Assert.Null(_fs.Host().HugePages.GetPool(16UL << 20));
    }

    [Fact]
    public void No_hugetlb_means_no_pools()
    {
        Assert.Empty(_fs.Host().HugePages.GetPools());
    }

    [Fact]
    public void Hugetlbfs_mounts_and_their_page_sizes_come_from_proc_mounts()
    {
        _fs.ProcFile("meminfo", "MemTotal:       2014632 kB\nHugepagesize:       2048 kB\nHugetlb:               0 kB\n")
            .ProcFile("mounts", """
                sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
                hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
                none /mnt/huge\0401G hugetlbfs rw,relatime,pagesize=1024M 0 0
                nodefault /mnt/huge-default hugetlbfs rw,relatime 0 0
                tmpfs /run tmpfs rw,nosuid,nodev,size=402928k,mode=755 0 0

                """);

        var mounts = _fs.Host().HugePages.GetMounts();

        Assert.Equal(
        [
            new HugetlbfsMount("/dev/hugepages", TwoMiB),
            new HugetlbfsMount("/mnt/huge 1G", OneGiB),
            new HugetlbfsMount("/mnt/huge-default", TwoMiB),
        ], mounts);
    }

    [Theory]
    [InlineData("2M", 2UL << 20)]
    [InlineData("1024M", 1UL << 30)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("2048k", 2UL << 20)]
    [InlineData("2097152", 2UL << 20)]
    public void Page_size_options_parse(string text, ulong bytes)
    {
        Assert.Equal(bytes, HugePages.ParseSize(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("M")]
    [InlineData("x2M")]
    public void Bad_page_size_options_are_ignored(string text)
    {
        Assert.Null(HugePages.ParseSize(text));
    }

    [Fact]
    public void Reserve_writes_nr_hugepages_and_reports_what_the_kernel_gave()
    {
        _fs.HugePagePool(2048, total: 0);
        var kernel = new FakeKernel(_fs) { HugePageLimit = 100 };
        var hugePages = _fs.Host(kernel).HugePages;

        var r = hugePages.Reserve(TwoMiB, 512);

        Assert.Equal([("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512")], kernel.Writes);
        Assert.Equal(new HugePageReservation(TwoMiB, Requested: 512, Granted: 100), r);
        Assert.False(r.IsComplete);
        Assert.True(hugePages.Reserve(TwoMiB, 64).IsComplete);
    }

    [Fact]
    public void Reserve_of_an_unknown_page_size_names_the_sizes_there_are()
    {
        _fs.HugePagePool(2048, total: 0);
        var kernel = new FakeKernel(_fs);
        var e = Assert.Throws<VfioUnavailableException>(() => _fs.Host(kernel).HugePages.Reserve(OneGiB, 1));
        Assert.Contains("2048 KiB", e.Message, StringComparison.Ordinal);
        Assert.Empty(kernel.Writes);
    }

    [Fact]
    public void Reserve_rejects_a_negative_count()
    {
        _fs.HugePagePool(2048, total: 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => _fs.Host(new FakeKernel(_fs)).HugePages.Reserve(TwoMiB, -1));
    }
}
