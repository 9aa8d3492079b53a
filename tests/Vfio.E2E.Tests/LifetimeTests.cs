using System.Diagnostics;
using System.Globalization;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// DMA lifetime against the real kernel: after the NVMe driver is disposed, the device, read from outside the
/// driver (sysfs config space, and BAR0 through the still-open VFIO device), has bus mastering off and the
/// controller disabled, so nothing it could still write is freed under it.
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
public sealed class DmaLifetimeTests
{
    [Fact]
    public void AfterTheDriverIsDisposedTheDeviceNoLongerMastersTheBusAndIsDisabled()
    {
        var address = Lab.BoundNvme();
        using var dev = VfioDevice.Open(address, new VfioOpenOptions { AllowNoIommu = true });
        using var bar = dev.OpenRegion(Devices.PciRegion.Bar0);
        var c = NvmeController.Open(dev);
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Write(c.GetNamespace(1), 100, 1, buf);
        Assert.True(SysfsCommand(address) is var before && (before & BusMaster) != 0, "bus master is on while the driver runs");
        Assert.Equal(ControllerConfiguration.Enable, bar.Read32(ControllerRegister.Cc) & ControllerConfiguration.Enable);

        c.Dispose();

        // The config space as the kernel's sysfs shows it, not through our own accessors.
        Assert.Equal(0, SysfsCommand(address) & BusMaster);
        Assert.Equal(0u, bar.Read32(ControllerRegister.Cc) & ControllerConfiguration.Enable);
        Assert.False(ControllerConfiguration.IsReady(bar.Read32(ControllerRegister.Csts)));
        Assert.Throws<ObjectDisposedException>(() => q.Read(c.GetNamespace(1), 100, 1, buf));
    }

    private const int BusMaster = 1 << 2;   // PCI Local Bus 3.0 §6.2.2, Command register bit 2

    private static int SysfsCommand(PciAddress address)
    {
        var config = File.ReadAllBytes(Path.Combine(Lab.DeviceDir(address.ToString()), "config"));
        return config[4] | config[5] << 8;
    }
}

/// <summary>
/// Leaks, in the type1 guest where a VFIO open costs ~20 ms (No-IOMMU opens in the i440fx guest cost far more):
/// 1,000 open/close cycles of a device and 1,000 create/delete cycles of an NVMe I/O queue leave the descriptor
/// count, locked memory (VmLck) and free hugepages where they started.
/// </summary>
[Trait("lab", Lab.Type1)]
[Trait("cost", "long")]   // 6.1 guests only (lab.sh e2e)
public sealed class LeakTests
{
    private const int Cycles = 1000;

    private readonly record struct Usage(int Fds, long LockedKb, long FreeHugePages)
    {
        public static Usage Now()
        {
            long locked = File.ReadLines("/proc/self/status").Where(l => l.StartsWith("VmLck:", StringComparison.Ordinal))
                .Select(l => long.Parse(l.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture)).Single();
            long free = long.Parse(Lab.ReadTrimmed("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), CultureInfo.InvariantCulture);
            return new Usage(Lab.OpenFdCount(), locked, free);
        }
    }

    [Fact]
    public void ThousandDeviceOpenCloseCyclesLeakNothing()
    {
        Lab.RequireConfig(Lab.Type1);
        var address = Lab.BoundEdu();
        var options = new VfioOpenOptions();
        AssertNoLeak("device open/close", Cycle);

        void Cycle()
        {
            using var dev = VfioDevice.Open(address, options);
            using var bar = dev.OpenRegion(Devices.PciRegion.Bar0);
            using var irq = dev.EnableInterrupts(Devices.IrqIndex.Msi, 1);
            using var buf = dev.Dma.Allocate(4096);
            Assert.Equal(0xedu, bar.Read32(0) & 0xFF);   // edu identification register: 0x010000ed
        }
    }

    [Fact]
    public void ThousandIoQueueCreateDeleteCyclesLeakNothing()
    {
        Lab.RequireConfig(Lab.Type1);
        using var dev = VfioDevice.Open(Lab.BoundNvme(), new VfioOpenOptions());
        using var c = NvmeController.Open(dev);
        var ns = c.GetNamespace(1);
        using var buf = dev.Dma.Allocate(4096);
        AssertNoLeak("I/O queue create/delete", Cycle);

        void Cycle()
        {
            using var q = c.CreateIoQueue();
            q.Read(ns, 0, 1, buf);
        }
    }

    /// <summary>
    /// Runs <paramref name="cycle"/> once to warm up (process-wide state such as the eventfd poller's epoll fd, the
    /// DMA allocator's first chunk), then <see cref="Cycles"/> times, and compares usage before and after.
    /// </summary>
    private static void AssertNoLeak(string what, Action cycle)
    {
        cycle();
        var start = Usage.Now();
        var time = Stopwatch.StartNew();
        for (int i = 0; i < Cycles; i++) { cycle(); }
        time.Stop();
        var end = Usage.Now();
        Lab.Report($"leaks {Lab.Config}: {Cycles} {what} cycles in {time.Elapsed.TotalSeconds:F1} s; start {start}, end {end}");
        Assert.Equal(start, end);
    }
}
