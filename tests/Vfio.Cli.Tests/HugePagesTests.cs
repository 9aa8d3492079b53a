using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

public sealed class HugePagesTests : IDisposable
{
    private readonly FakeSysfs _fs = new();
    private readonly FakeKernel _kernel;

    public HugePagesTests()
    {
        _kernel = new FakeKernel(_fs);
        _fs.HugePagePool(2048, total: 64, free: 60, reserved: 4, surplus: 1).HugePagePool(1048576, total: 0)
            .ProcFile("meminfo", "MemTotal:       2014632 kB\nHugepagesize:       2048 kB\n")
            .ProcFile("mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n" +
                                "none /mnt/huge1g hugetlbfs rw,relatime,pagesize=1024M 0 0\n");
    }

    public void Dispose() => _fs.Dispose();

    private CliRunner Cli => new(_fs) { Writer = _kernel };

    [Fact]
    public void Status_json_has_each_pool_with_its_mounts()
    {
        var r = Cli.Run("hugepages", "status", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var s = Json.Parse(r.Out);
        Assert.Equal(2UL << 20, s.GetProperty("defaultPageSize").GetUInt64());
        var pools = s.GetProperty("pools");
        Assert.Equal(["2M", "1G"], pools.Strings("size"));
        var small = pools[0];
        Assert.Equal(2UL << 20, small.GetProperty("pageSize").GetUInt64());
        Assert.Equal(64, small.GetProperty("total").GetInt64());
        Assert.Equal(60, small.GetProperty("free").GetInt64());
        Assert.Equal(4, small.GetProperty("reserved").GetInt64());
        Assert.Equal(1, small.GetProperty("surplus").GetInt64());
        Assert.Equal(56, small.GetProperty("available").GetInt64());
        Assert.Equal(["/dev/hugepages"], small.GetProperty("mounts").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["/mnt/huge1g"], pools[1].GetProperty("mounts").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["/dev/hugepages", "/mnt/huge1g"], s.GetProperty("mounts").Strings("mountPoint"));
    }

    [Fact]
    public void Status_table_marks_the_default_size()
    {
        var r = Cli.Run("hugepages");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Matches(@"2M \(default\)\s+64\s+60\s+4\s+1\s+56\s+/dev/hugepages", r.Out);
        Assert.Matches(@"1G\s+0\s+0\s+0\s+0\s+0\s+/mnt/huge1g", r.Out);
    }

    [Fact]
    public void Reserve_writes_nr_hugepages_and_reports_what_was_granted()
    {
        var r = Cli.Run("hugepages", "reserve", "128", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal([("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "128")], _kernel.Writes);
        var s = Json.Parse(r.Out);
        Assert.Equal("2M", s.GetProperty("size").GetString());
        Assert.Equal(128, s.GetProperty("requested").GetInt32());
        Assert.Equal(128, s.GetProperty("granted").GetInt64());
        Assert.True(s.GetProperty("complete").GetBoolean());
    }

    [Fact]
    public void Reserve_on_a_node_writes_that_nodes_nr_hugepages_only()
    {
        _fs.NodeHugePages(0, 2048, total: 0, free: 0).NodeHugePages(1, 2048, total: 0, free: 0);

        var r = Cli.Run("hugepages", "reserve", "--node", "1", "32", "--json").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Equal([("devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", "32")], _kernel.Writes);
        var s = Json.Parse(r.Out);
        Assert.Equal(1, s.GetProperty("node").GetInt32());
        Assert.Equal(32, s.GetProperty("granted").GetInt64());
        Assert.Contains("2M hugepages on node 1: asked for 8, the kernel granted 8.",
            Cli.Run("hugepages", "reserve", "8", "--node", "1").AssertNoStackTrace().Out, StringComparison.Ordinal);
        Assert.Equal(JsonValueKindNull, Json.Parse(Cli.Run("hugepages", "reserve", "8", "--json").Out).GetProperty("node").ValueKind);
    }

    private const System.Text.Json.JsonValueKind JsonValueKindNull = System.Text.Json.JsonValueKind.Null;

    [Theory]
    [InlineData("2", "this host has no NUMA node 2", "its nodes: node0, node1")]
    [InlineData("0", "NUMA node 0 has no pool of 1073741824-byte hugepages", "vfio hugepages status")]
    public void Reserve_on_a_node_the_host_lacks_is_one_line_and_exit_2(string node, string message, string hint)
    {
        _fs.NodeHugePages(0, 2048, total: 0, free: 0).NodeHugePages(1, 2048, total: 0, free: 0);

        var r = Cli.Run("hugepages", "reserve", "4", "--node", node, "--size", node == "0" ? "1G" : "2M").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains(message, r.Err, StringComparison.Ordinal);
        Assert.Contains(hint, r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Reserve_on_a_negative_node_is_a_usage_error()
    {
        var r = Cli.Run("hugepages", "reserve", "4", "--node", "-1").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("--node must be 0 or more", r.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Reserve_that_the_kernel_grants_only_in_part_exits_2_and_says_so()
    {
        _kernel.HugePageLimit = 1;

        var r = new CliRunner(_fs) { Writer = _kernel }.Run("hugepages", "reserve", "4", "--size", "1G").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Equal([("kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "4")], _kernel.Writes);
        Assert.Contains("1G hugepages: asked for 4, the kernel granted 1.", r.Out, StringComparison.Ordinal);
        Assert.Contains("vfio: the kernel granted only 1 of 4 1G hugepages", r.Err, StringComparison.Ordinal);
        Assert.Contains("hugepagesz=1G hugepages=4", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("3X")]
    [InlineData("0M")]
    [InlineData("M")]
    public void Reserve_with_a_bad_size_is_a_usage_error(string size)
    {
        var r = Cli.Run("hugepages", "reserve", "4", "--size", size).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("is not a page size", r.Err, StringComparison.Ordinal);
        Assert.Empty(_kernel.Writes);
    }

    [Fact]
    public void Reserve_of_a_size_the_kernel_lacks_lists_the_sizes_it_has()
    {
        var r = Cli.Run("hugepages", "reserve", "4", "--size", "16M").AssertNoStackTrace();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        Assert.Contains("2048 KiB, 1048576 KiB", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("x")]     // not a number: the parser's error, not a validator crash
    public void Reserve_of_a_bad_count_is_a_usage_error(string count)
    {
        var r = Cli.Run("hugepages", "reserve", "--", count).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Empty(_kernel.Writes);
    }

    [Theory]
    [InlineData("2M", 2UL << 20)]
    [InlineData("2MB", 2UL << 20)]
    [InlineData("2MiB", 2UL << 20)]
    [InlineData("1g", 1UL << 30)]
    [InlineData("2048kB", 2UL << 20)]
    public void Page_sizes_are_read_as_the_kernel_writes_them(string text, ulong bytes)
    {
        Assert.Equal(bytes, Commands.Arguments.ParsePageSize(text));
    }
}
