using Vfio.Devices;
using Vfio.Nvme.Tests.Emulation;

namespace Vfio.Nvme.Tests;

/// <summary>
/// The device reports a PCIe error (IPciDevice.ErrorReported; the kernel's error interrupt on real VFIO, raised here
/// through the emulated transport's test hook): an uncorrectable one stops the controller and fails its I/O with
/// NvmeDeviceErrorException until RecoverFromError, after which I/O works; a correctable one is only counted.
/// </summary>
public sealed class DeviceErrorTests
{
    private static readonly NvmeControllerOptions Options = new() { MinimumReadyTimeout = TimeSpan.FromSeconds(1) };

    private static ManualResetEventSlim WatchStop(NvmeController c)
    {
        var stopped = new ManualResetEventSlim();
        c.DeviceErrorStopped += (_, _) => stopped.Set();
        return stopped;
    }

    [Fact]
    public void AnUncorrectableErrorFailsInFlightAndNewIoUntilRecoveryThenIoWorks()
    {
        using var dev = new EmulatedNvme();
        using var c = NvmeController.Open(dev, Options);
        using var stopped = WatchStop(c);
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        buf.Span.Fill(0x5a);
        q.Write(ns, 0, 8, buf);
        dev.Stalled = true;   // the next read stays in flight until the error fails it
        Exception? seen = null;
        var reader = new Thread(() => { try { q.Read(ns, 0, 8, buf); } catch (Exception e) { seen = e; } });
        reader.Start();
        SpinWait.SpinUntil(() => q.Outstanding > 0, TimeSpan.FromSeconds(30));

        dev.RaiseError(PciErrorSeverity.NonFatal);
        // Bounded only so a broken stop fails the test instead of hanging it.
        Assert.True(stopped.Wait(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken), "the controller never stopped for the error");
        Assert.True(reader.Join(TimeSpan.FromSeconds(30)));

        var failed = Assert.IsType<NvmeDeviceErrorException>(seen);
        Assert.NotNull(failed.Command);
        Assert.Equal(PciErrorSeverity.NonFatal, failed.Report.Severity);
        Assert.IsAssignableFrom<VfioException>(failed);
        Assert.False(dev.Enabled);               // disabled, and no DMA either
        Assert.False(dev.Config.BusMaster);
        Assert.False(buf.IsInUse);               // the read's lease was returned
        Assert.NotNull(c.DeviceError);
        Assert.Equal(1, c.UncorrectableErrorCount);
        var later = Assert.Throws<NvmeDeviceErrorException>(() => q.Read(ns, 0, 8, buf));
        Assert.Null(later.Command);
        Assert.Throws<NvmeDeviceErrorException>(() => c.CreateIoQueue());

        dev.Stalled = false;
        c.RecoverFromError();
        Assert.Null(c.DeviceError);
        Assert.True(dev.Enabled);
        Assert.True(dev.Config.BusMaster);
        buf.Span.Clear();
        q.Read(ns, 0, 8, buf);                   // the same queue object works again
        Assert.All(buf.Span.ToArray(), b => Assert.Equal(0x5a, b));
        var second = c.CreateIoQueue();
        second.Flush(ns);
    }

    [Fact]
    public async Task PendingAsynchronousIoOnAnInterruptQueueFailsWithTheNamedException()
    {
        using var dev = new EmulatedNvme { Deferred = true };
        using var c = NvmeController.Open(dev, Options with { EnableMsix = true });
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue(new NvmeIoQueueOptions { UseInterrupts = true });
        using var buf = dev.Dma.Allocate(4096);
        dev.Stalled = true;
        var pending = q.ReadAsync(ns, 0, 8, buf, cancellationToken: TestContext.Current.CancellationToken).AsTask();
        SpinWait.SpinUntil(() => q.Outstanding > 0, TimeSpan.FromSeconds(30));

        dev.RaiseError(PciErrorSeverity.Fatal);
        var e = await Assert.ThrowsAsync<NvmeDeviceErrorException>(() => pending);
        Assert.Equal(PciErrorSeverity.Fatal, e.Report.Severity);

        dev.Stalled = false;
        c.RecoverFromError();
        await q.ReadAsync(ns, 0, 8, buf, cancellationToken: TestContext.Current.CancellationToken);
    }

    [Fact]
    public void ACorrectableErrorIsCountedAndIoGoesOn()
    {
        using var dev = new EmulatedNvme();
        using var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        dev.RaiseError(PciErrorSeverity.Correctable);
        dev.RaiseError(PciErrorSeverity.Correctable);
        Assert.Equal(2, c.CorrectableErrorCount);
        Assert.Equal(0, c.UncorrectableErrorCount);
        Assert.Null(c.DeviceError);
        q.Write(ns, 0, 8, buf);
        q.Read(ns, 0, 8, buf);
        Assert.True(dev.Enabled);
    }

    [Fact]
    public void RecoverWithoutAnErrorIsAPlainResetAndErrorsAfterDisposeAreIgnored()
    {
        using var dev = new EmulatedNvme();
        var c = NvmeController.Open(dev, Options);
        var q = c.CreateIoQueue();
        c.RecoverFromError();
        Assert.Equal(1, c.ResetCount);
        q.Flush(c.Namespaces[0]);
        c.Dispose();
        dev.RaiseError(PciErrorSeverity.NonFatal);   // no subscriber left: nothing happens, nothing throws
        Assert.Equal(0, c.UncorrectableErrorCount);
    }
}
