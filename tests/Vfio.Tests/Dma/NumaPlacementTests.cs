using Vfio.Dma;
using Vfio.Tests.Host;

namespace Vfio.Tests.Dma;

/// <summary>
/// Which NUMA node DMA memory prefers, decided from sysfs alone: the device's node on a host with several, no policy
/// otherwise. The mbind(2) call itself is the kernel's business and is not run here (this host has one node).
/// </summary>
public sealed class NumaPlacementTests
{
    [Theory]
    [InlineData(1L, "0-1", 1)]
    [InlineData(0L, "0-3", 0)]
    [InlineData(2L, "0,2-3", 2)]
    [InlineData(1L, "0", null)]          // one node: nothing to choose
    [InlineData(-1L, "0-1", null)]       // the firmware names no node for the device
    [InlineData(null, "0-1", null)]      // no numa_node attribute (vfio-user, an old kernel)
    [InlineData(2L, "0-1", null)]        // a node that is not online
    [InlineData(1L, null, null)]         // no node list
    [InlineData(1L, "garbage", null)]
    public void The_device_node_is_preferred_only_on_a_host_with_several_nodes(long? deviceNode, string? online, int? expected) =>
        Assert.Equal(expected, NumaPlacement.Choose(deviceNode, online));

    [Theory]
    [InlineData("0\n", new[] { 0 })]
    [InlineData("0-3", new[] { 0, 1, 2, 3 })]
    [InlineData("0,2-3,5", new[] { 0, 2, 3, 5 })]
    public void Kernel_node_lists_parse(string text, int[] nodes) =>
        Assert.Equal(nodes, NumaPlacement.ParseNodeList(text)!.Order());

    [Theory]
    [InlineData("")]
    [InlineData("3-1")]
    [InlineData("a")]
    [InlineData("1-2-3")]
    public void What_is_not_a_node_list_is_none(string text) => Assert.Null(NumaPlacement.ParseNodeList(text));

    [Fact]
    public void The_choice_for_a_device_reads_its_numa_node_and_the_online_nodes_from_sysfs()
    {
        using var fs = new FakeSysfs();
        fs.Device("0000:00:04.0", numaNode: 1).Device("0000:00:05.0", numaNode: -1);
        Directory.CreateDirectory(Path.Combine(fs.Sys, "devices", "system", "node"));
        File.WriteAllText(Path.Combine(fs.Sys, "devices", "system", "node", "online"), "0-1\n");

        Assert.Equal(1, NumaPlacement.ForDevice(fs.Sys, PciAddress.Parse("0000:00:04.0")));
        Assert.Null(NumaPlacement.ForDevice(fs.Sys, PciAddress.Parse("0000:00:05.0")));
        Assert.Null(NumaPlacement.ForDevice(fs.Sys, PciAddress.Parse("0000:00:06.0")));
        File.WriteAllText(Path.Combine(fs.Sys, "devices", "system", "node", "online"), "0\n");
        Assert.Null(NumaPlacement.ForDevice(fs.Sys, PciAddress.Parse("0000:00:04.0")));
    }

    [Fact]
    public void The_allocators_keep_the_node_they_are_given()
    {
        var memory = AnonymousPageMemory.NoIommuHugePages();
        Assert.Null(memory.PreferredNode);
        Assert.Same(memory, memory.OnNode(null));
        var onNode = memory.OnNode(1);
        Assert.Equal(1, onNode.PreferredNode);
        Assert.Equal(memory.PageSize, onNode.PageSize);
        Assert.Equal(memory.Description, onNode.Description);
    }

    [Fact]
    public unsafe void Memory_mapped_for_a_node_is_populated_and_usable_whatever_the_kernel_made_of_the_policy()
    {
        // Node 0 exists on every Linux host; mbind may still be refused (a seccomp filter), which the mapping survives.
        foreach (var memory in new[] { AnonymousPageMemory.IommuPages().OnNode(0), AnonymousPageMemory.NoIommuMigratablePages().OnNode(0) })
        {
            ulong length = 4 * memory.PageSize;
            nint address = memory.Map(length);
            try
            {
                // SAFETY: address..address+length was just mapped readable and writable, and is unmapped below.
                var bytes = new Span<byte>((void*)address, (int)length);
                Assert.All(bytes.ToArray(), b => Assert.Equal(0, b));
                bytes.Fill(0x5a);
                Assert.Equal(0x5a, bytes[^1]);
            }
            finally
            {
                memory.Unmap(address, length);
            }
        }
    }
}
