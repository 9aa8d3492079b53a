using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Vfio.Dma;
using Vfio.Host;
using Vfio.Kernel;
using Vfio.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// Issue 21, NUMA, on a guest with two nodes (the igb configuration boots with VFIO_LAB_NUMA=1: 1 GiB and one vCPU per
/// node, an nvme behind a PCIe expander bridge whose ACPI proximity is node 1, lab/lab.sh). What is checked is where
/// the pages really are, two ways that do not share code with the library: the kernel's answer for each page
/// (get_mempolicy with MPOL_F_NODE | MPOL_F_ADDR) and the physical address the device is given, against the memory
/// blocks sysfs lists under each node. The test thread is pinned to CPU 0 (node 0), so the kernel's default
/// policy (allocate on the running CPU's node) would put the pages on node 0: only the library's mbind puts them on 1.
/// Trait lab=numa: run by the igb guest; a missing node or device fails, never skips.
/// </summary>
[Trait("lab", "numa")]
[Collection("igb ports")]   // the hugepage pools are changed here: not while the igb tests allocate
public sealed partial class NumaTests
{
    private const string NodeDir = "/sys/devices/system/node";
    private const string Pool = "hugepages/hugepages-2048kB/nr_hugepages";

    private static string NumaNvme => Environment.GetEnvironmentVariable("VFIO_LAB_NVME_NUMA") is { Length: > 0 } bdf
        ? bdf
        : throw new InvalidOperationException("VFIO_LAB_NVME_NUMA is not set: the guest was booted without VFIO_LAB_NUMA=1 (lab/lab.sh)");

    // get_mempolicy(2) has no glibc wrapper (libnuma has one): syscall(2) with asm/unistd_64.h's number (the lab is x86_64).
    private const long __NR_get_mempolicy = 239;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long get_mempolicy(long number, out int mode, nint nodemask, nuint maxnode, nint addr, nuint flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nuint size, ref ulong mask);

    private const nuint MPOL_F_NODE = 1, MPOL_F_ADDR = 2;

    /// <summary>The node holding the page at <paramref name="address"/>, as the kernel says.</summary>
    private static int NodeOfPage(nint address)
    {
        Assert.True(get_mempolicy(__NR_get_mempolicy, out int node, 0, 0, address, MPOL_F_NODE | MPOL_F_ADDR) == 0,
            $"get_mempolicy: errno {Marshal.GetLastPInvokeError()}");
        return node;
    }

    /// <summary>The node whose memory blocks (sysfs memoryN links) hold the physical address <paramref name="pa"/>, or -1.</summary>
    private static int NodeOfPhysical(ulong pa)
    {
        ulong blockSize = ulong.Parse(Lab.ReadTrimmed("/sys/devices/system/memory/block_size_bytes"), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        ulong block = pa / blockSize;
        foreach (var node in Directory.GetDirectories(NodeDir, "node*"))
        {
            if (Directory.Exists(Path.Combine(node, $"memory{block}")))
            {
                return int.Parse(Path.GetFileName(node)["node".Length..], CultureInfo.InvariantCulture);
            }
        }
        return -1;
    }

    private static int PoolOf(int node) => int.Parse(Lab.ReadTrimmed(Path.Combine(NodeDir, $"node{node}", Pool)), CultureInfo.InvariantCulture);

    /// <summary>Runs <paramref name="body"/> on a thread of its own pinned to CPU 0 (node 0).</summary>
    private static void OnCpu0(Action body)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                ulong mask = 1;
                Assert.True(sched_setaffinity(0, sizeof(ulong), ref mask) == 0, $"sched_setaffinity: errno {Marshal.GetLastPInvokeError()}");
                body();
            }
            catch (Exception e) { failure = e; }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) { System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw(); }
    }

    private static PciAddress Bound(string bdf)
    {
        var address = PciAddress.Parse(bdf);
        var host = new PciHost();
        if (host.GetDevice(address).Driver != PciHost.VfioPciDriver) { host.BindToVfio(address); }
        return address;
    }

    /// <summary>Every page of <paramref name="buffer"/>, both ways: the kernel's node for the page and the node of the address the device gets.</summary>
    private static (int[] ByKernel, int[] ByAddress) Nodes(DmaBuffer buffer)
    {
        const ulong Page = 4096;
        var kernel = new List<int>();
        var physical = new List<int>();
        for (ulong offset = 0; offset < buffer.Length; offset += Page)
        {
            kernel.Add(NodeOfPage(buffer.Pointer + (nint)offset));
            physical.Add(NodeOfPhysical(buffer.GetDeviceAddress(offset).Value));
        }
        return ([.. kernel.Distinct()], [.. physical.Distinct()]);
    }

    [Fact]
    public void TheGuestHasTwoNodesAndTheDeviceBehindTheExpanderIsOnNodeOne()
    {
        Lab.RequireConfig(Lab.IgbConfig);
        Assert.Equal("0-1", Lab.ReadTrimmed(Path.Combine(NodeDir, "online")));
        Assert.Equal("1", Lab.ReadTrimmed(Path.Combine(Lab.DeviceDir(NumaNvme), "numa_node")));
        Assert.Equal("-1", Lab.ReadTrimmed(Path.Combine(Lab.DeviceDir(Lab.Edu), "numa_node")));   // the root bus has no proximity
        Assert.Equal(1, new PciHost().GetDevice(PciAddress.Parse(NumaNvme)).NumaNode);
        Assert.Null(new PciHost().GetDevice(Lab.EduAddress).NumaNode);

        Bound(NumaNvme);
        var info = VfioCli.Json("info", NumaNvme, "--unsafe-noiommu");
        Assert.Equal(1, info.GetProperty("numaNode").GetInt32());
        var (code, text) = VfioCli.Run("info", NumaNvme, "--unsafe-noiommu");
        Assert.True(code == 0, text);
        Assert.Contains("node 1 (DMA memory from there: 'vfio hugepages reserve --node 1 N')", text, StringComparison.Ordinal);
        var edu = VfioCli.Json("info", Lab.BoundEdu().ToString(), "--unsafe-noiommu");
        Assert.True(!edu.TryGetProperty("numaNode", out var none) || none.ValueKind == JsonValueKind.Null, edu.ToString());

        // vfio doctor lists the hugepage pools per node.
        var doctor = JsonDocument.Parse(Lab.RunSplit("dotnet", [VfioCli.Dll, "doctor", "--json"]).StdOut).RootElement;
        var hugepages = doctor.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("id").GetString() == "hugepages");
        var detail = hugepages.GetProperty("detail").GetString()!;
        Assert.Contains("node0: ", detail, StringComparison.Ordinal);
        Assert.Contains("node1: ", detail, StringComparison.Ordinal);
    }

    [Fact]
    public void DmaMemoryForADeviceOnNodeOneComesFromNodeOneAndTheDriverRunsOnIt()
    {
        Lab.RequireConfig(Lab.IgbConfig);
        var numa = Bound(NumaNvme);
        var edu = Lab.BoundEdu();
        Assert.True(PoolOf(1) >= 16, $"node 1 has {PoolOf(1)} hugepages: the lab reserves 256 over both nodes");
        // The control: a device with no node gets the default policy, the running CPU's node.
        AssertAHugepageFor(edu, comesFrom: 0);
        OnCpu0(() =>
        {
            using var dev = VfioDevice.Open(numa, new VfioOpenOptions { AllowNoIommu = true });
            using var c = NvmeController.Open(dev);
            Assert.Equal("VFIOLAB0005", c.Identity.SerialNumber);
            var ns = c.GetNamespace(1);
            using var data = dev.Dma.Allocate(256 << 10, new DmaAllocationOptions { Contiguous = false });
            using var back = dev.Dma.Allocate(256 << 10);
            using var q = c.CreateIoQueue();
            foreach (var b in new[] { data, back })
            {
                var (byKernel, byAddress) = Nodes(b);
                Assert.Equal([1], byKernel);
                Assert.Equal([1], byAddress);
            }
            var pattern = new byte[256 << 10];
            new Random(21).NextBytes(pattern);
            pattern.CopyTo(data.Span);
            int blocks = pattern.Length / ns.BlockSize;
            q.Write(ns, 128, blocks, data);
            back.Span.Clear();
            q.Read(ns, 128, blocks, back);
            Assert.True(pattern.AsSpan().SequenceEqual(back.Span[..pattern.Length]), "the data read back differs");
            Lab.Report($"numa: {(pattern.Length >> 10)} KiB written and read back through node-1 DMA memory, pages on node 1 by get_mempolicy and by physical address");
        });
    }

    /// <summary>Opens <paramref name="device"/> on CPU 0 and checks that a fresh 2 MiB DMA buffer for it is on node <paramref name="comesFrom"/>.</summary>
    private static void AssertAHugepageFor(PciAddress device, int comesFrom) => OnCpu0(() =>
    {
        using var dev = VfioDevice.Open(device, new VfioOpenOptions { AllowNoIommu = true });
        using var buffer = dev.Dma.Allocate(2 << 20);
        var (byKernel, byAddress) = Nodes(buffer);
        Assert.Equal([comesFrom], byKernel);
        Assert.Equal([comesFrom], byAddress);
    });

    [Fact]
    public void ANodeWithoutFreeHugepagesFallsBackAndReserveNodeRefillsIt()
    {
        Lab.RequireConfig(Lab.IgbConfig);
        var numa = Bound(NumaNvme);
        int before = PoolOf(1);
        try
        {
            var empty = VfioCli.Json("hugepages", "reserve", "0", "--node", "1");
            Assert.Equal(1, empty.GetProperty("node").GetInt32());
            Assert.Equal("0", Lab.ReadTrimmed(Path.Combine(NodeDir, "node1", "hugepages/hugepages-2048kB/free_hugepages")));
            // MPOL_PREFERRED, not MPOL_BIND: with nothing free on node 1 the memory comes from node 0, and works.
            AssertAHugepageFor(numa, comesFrom: 0);

            var refill = VfioCli.Json("hugepages", "reserve", "32", "--node", "1");
            Assert.Equal(32, refill.GetProperty("granted").GetInt32());
            Assert.True(refill.GetProperty("complete").GetBoolean());
            Assert.Equal(32, PoolOf(1));
            AssertAHugepageFor(numa, comesFrom: 1);
        }
        finally
        {
            File.WriteAllText(Path.Combine(NodeDir, "node1", Pool), before.ToString(CultureInfo.InvariantCulture));
        }
    }
}
