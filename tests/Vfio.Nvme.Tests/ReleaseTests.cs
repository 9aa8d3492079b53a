using Vfio.Dma;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// The host asks for the device back (IPciDevice.ReleaseRequested; the kernel's request interrupt on real VFIO)
/// while the driver holds it: I/O waiting on the device and I/O started afterwards fail with DeviceReleasedException,
/// the device is stopped before its memory is freed, and the device is closed without the owner's help.
/// </summary>
public sealed class ReleaseTests
{
    private static readonly NvmeControllerOptions Options = new() { MinimumReadyTimeout = TimeSpan.FromSeconds(1) };

    private static void WaitReleased(NvmeController c)
    {
        // Bounded only so a broken release fails the test instead of hanging it.
        Assert.True(c.Released.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)), "the controller never reported the release");
        SpinWait.SpinUntil(() => c.ReleaseDuration is not null, TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void PendingSynchronousIoFailsAndTheDeviceIsStoppedThenClosed()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Write(ns, 0, 8, buf);
        dev.Stalled = true;   // the next read stays in flight until the release fails it
        Exception? seen = null;
        var reader = new Thread(() => { try { q.Read(ns, 0, 8, buf); } catch (Exception e) { seen = e; } });
        reader.Start();
        SpinWait.SpinUntil(() => q.Outstanding > 0, TimeSpan.FromSeconds(30));
        Assert.Equal(1, q.Outstanding);

        dev.RequestRelease();
        WaitReleased(c);
        Assert.True(reader.Join(TimeSpan.FromSeconds(30)));

        var released = Assert.IsType<DeviceReleasedException>(seen);
        Assert.Equal(dev.Address, released.Device);
        Assert.True(c.IsReleased);
        Assert.True(dev.Closed);
        Assert.False(dev.Enabled);
        Assert.False(dev.Config.BusMaster);
        // Stopped (disabled, bus master off), then closed (what the kernel waits for), then the memory freed.
        var log = dev.Log;
        int disable = log.Events.ToList().LastIndexOf("disable"), busOff = log.IndexOf("bus master off"),
            firstFree = log.IndexOf("free nvme"), closed = log.IndexOf("device closed");
        Assert.True(disable >= 0 && busOff > disable && closed > busOff && firstFree > closed, string.Join(", ", log.Events));
        Assert.Equal(1, dev.Allocator!.LiveBuffers);   // only the test's own buffer
        Assert.NotNull(c.ReleaseDuration);
    }

    [Fact]
    public void EveryOperationAfterTheReleaseThrowsDeviceReleased()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        dev.RequestRelease();
        WaitReleased(c);

        Assert.Throws<DeviceReleasedException>(() => q.Read(ns, 0, 1, buf));
        Assert.Throws<DeviceReleasedException>(() => q.Write(ns, 0, 1, buf));
        Assert.Throws<DeviceReleasedException>(() => q.Flush(ns));
        Assert.Throws<DeviceReleasedException>(() => q.SubmitRead(ns, 0, 1, buf));
        Assert.Throws<DeviceReleasedException>(() => q.RingDoorbell());
        Assert.Throws<DeviceReleasedException>(() => q.Reap(new NvmeIoCompletion[4]));
        Assert.Throws<DeviceReleasedException>(() => c.CreateIoQueue());
        Assert.Throws<DeviceReleasedException>(() => c.Identify(IdentifyCns.Controller, 0));
        Assert.Throws<DeviceReleasedException>(c.Reset);
        // Disposing what is already released is harmless.
        q.Dispose();
        c.Dispose();
        Assert.Equal(1, dev.Allocator!.LiveBuffers);
    }

    [Fact]
    public async Task PendingAsynchronousIoOnAnInterruptQueueFails()
    {
        using var dev = new EmulatedNvme { Deferred = true };
        var c = NvmeController.Open(dev, Options with { EnableMsix = true });
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue(new NvmeIoQueueOptions { UseInterrupts = true });
        using var buf = dev.Dma.Allocate(4096);
        dev.Stalled = true;
        var pending = q.ReadAsync(ns, 0, 8, buf, cancellationToken: TestContext.Current.CancellationToken).AsTask();
        SpinWait.SpinUntil(() => q.Outstanding > 0, TimeSpan.FromSeconds(30));
        Assert.True(buf.IsInUse);   // leased to the command in flight

        dev.RequestRelease();
        await Assert.ThrowsAsync<DeviceReleasedException>(() => pending);
        WaitReleased(c);
        Assert.False(buf.IsInUse);
        Assert.True(dev.Closed);
        Assert.Equal(1, dev.Allocator!.LiveBuffers);
    }

    [Fact]
    public void WithoutDisposeOnRequestTheOwnerKeepsTheDevice()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, Options with { DisposeDeviceOnReleaseRequest = false });
        dev.RequestRelease();
        WaitReleased(c);
        Assert.True(c.IsReleased);
        Assert.False(dev.Enabled);
        Assert.False(dev.Closed);
    }

    [Fact]
    public void ARequestBeforeOpenReleasesRightAfterBringUp()
    {
        using var dev = new EmulatedNvme();
        dev.RequestRelease();
        var c = NvmeController.Open(dev, Options);
        WaitReleased(c);
        Assert.True(dev.Closed);
    }

    [Fact]
    public void DisposingFirstMeansNoReleaseLater()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, Options);
        c.Dispose();
        dev.RequestRelease();
        Assert.False(c.IsReleased);
        Assert.False(dev.Closed);
    }
}
