using System.Diagnostics;
using Vfio.Dma;
using Vfio.Kernel;
using Vfio.Nvme;

namespace Vfio.E2E.Tests;

/// <summary>
/// Hot-unplug through the real kernel: while our NVMe driver holds the device under I/O, another thread writes the
/// device's sysfs <c>remove</c>. vfio-pci raises the VFIO request interrupt and blocks that write until the device
/// is closed; the driver must stop the device, fail the I/O with <see cref="DeviceReleasedException"/> and close it
/// within 1 s, and this process goes on. Each test puts the device back with a bus rescan (it returns bound to the
/// guest's nvme driver; <see cref="Lab.BoundNvme"/> rebinds it for later tests).
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
public sealed class HotUnplugTests
{
    [Fact]
    public void RemovingTheDeviceUnderIoFailsTheIoAndReleasesItWithinOneSecond()
    {
        var address = Lab.BoundNvme();
        try
        {
            var dev = VfioDevice.Open(address, new VfioOpenOptions { AllowNoIommu = true });
            var c = NvmeController.Open(dev);
            var ns = c.GetNamespace(1);
            var q = c.CreateIoQueue();
            var bar = dev.OpenRegion(Devices.PciRegion.Bar0);   // the test's own mapping: the release must unmap it too
            var buf = dev.Dma.Allocate(64 * 1024, new DmaAllocationOptions { Contiguous = false });
            int blocks = (int)(buf.Length / (ulong)ns.BlockSize);

            long completed = 0;
            Exception? ioError = null;
            var io = new Thread(() =>
            {
                try
                {
                    for (ulong i = 0; ; i++)
                    {
                        ulong lba = 8192 + i % 64 * (ulong)blocks;
                        if (i % 2 == 0) { q.Write(ns, lba, blocks, buf); } else { q.Read(ns, lba, blocks, buf); }
                        Interlocked.Increment(ref completed);
                    }
                }
                catch (Exception e) { ioError = e; }
            }) { Name = "nvme I/O under test" };
            io.Start();
            Assert.True(SpinWait.SpinUntil(() => Interlocked.Read(ref completed) >= 20 || ioError is not null, TimeSpan.FromSeconds(60)),
                "no I/O completed");
            Assert.Null(ioError);

            // The write blocks in the kernel until every fd and mapping of the device is gone: that write alone is
            // timed (the file is opened and the write path warmed beforehand, as a shell's echo would be).
            byte[] one = "1"u8.ToArray();
            using (var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Write)) { RandomAccess.Write(devNull, one, 0); }
            using var removeFile = File.OpenHandle(Path.Combine(Lab.DeviceDir(address.ToString()), "remove"), FileMode.Open, FileAccess.Write);
            var removeTime = new Stopwatch();
            var remover = new Thread(() =>
            {
                removeTime.Start();
                RandomAccess.Write(removeFile, one, 0);
                removeTime.Stop();
            }) { Name = "sysfs remove", IsBackground = true };
            remover.Start();
            Assert.True(remover.Join(TimeSpan.FromSeconds(60)), "the sysfs remove never returned: the device was not released");
            Assert.True(io.Join(TimeSpan.FromSeconds(30)));

            SpinWait.SpinUntil(() => c.ReleaseDuration is not null, TimeSpan.FromSeconds(10));   // set just after the close
            Lab.Report($"hot-unplug {Lab.Config}: sysfs remove blocked {removeTime.Elapsed.TotalMilliseconds:F0} ms; driver release " +
                $"{c.ReleaseDuration?.TotalMilliseconds:F0} ms; {completed} I/Os before");
            var error = Assert.IsType<DeviceReleasedException>(ioError);
            Assert.Equal(address, error.Device);
            Assert.True(c.IsReleased);
            Assert.True(removeTime.Elapsed < TimeSpan.FromSeconds(1), $"the removal took {removeTime.Elapsed.TotalMilliseconds:F0} ms");
            Assert.False(Directory.Exists(Lab.DeviceDir(address.ToString())));

            // Released BARs and config space throw instead of faulting; I/O keeps failing with the same exception.
            Assert.Throws<ObjectDisposedException>(() => bar.Read32(0));
            Assert.Throws<ObjectDisposedException>(() => dev.Config.Read16(0));
            Assert.Throws<DeviceReleasedException>(() => q.Read(ns, 0, 1, buf));
            // Buffers outlive the device and free cleanly; the owner's disposals are no-ops.
            buf.Dispose();
            q.Dispose();
            c.Dispose();
            dev.Dispose();
        }
        finally
        {
            Rescan(address);
        }
    }

    /// <summary>
    /// Brings a removed device back (rescan) and waits until it is there again and, with <paramref name="driver"/>,
    /// until a driver has it (the guest has no igb module, so an igb port comes back driverless).
    /// </summary>
    internal static void Rescan(PciAddress address, bool driver = true)
    {
        string dir = Lab.DeviceDir(address.ToString());
        if (Directory.Exists(dir)) { return; }
        File.WriteAllText("/sys/bus/pci/rescan", "1");
        Assert.True(SpinWait.SpinUntil(() => Directory.Exists(dir) && (!driver || Lab.Driver(address.ToString()) is not null), TimeSpan.FromSeconds(60)),
            $"{address} did not come back after a rescan");
    }
}
