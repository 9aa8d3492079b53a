using System.Diagnostics;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>Asynchronous Event Requests end to end: the model raises, the driver reaps, reads the log and re-arms.</summary>
public sealed class AsyncEventTests
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(5);

    private static NvmeController Open(EmulatedNvme dev, NvmeControllerOptions? options = null) =>
        NvmeController.Open(dev, (options ?? new NvmeControllerOptions()) with { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    private static async Task<NvmeAsyncEvent> NextEvent(NvmeController c)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(Soon);
        await foreach (var e in c.ReadAsyncEvents(cts.Token)) { return e; }
        throw new InvalidOperationException("the event stream ended");
    }

    private static void WaitFor(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.Elapsed < Soon, "condition not met in time");
            Thread.Sleep(5);
        }
    }

    [Theory]
    [InlineData(NvmeTransport.InProcess)]
    [InlineData(NvmeTransport.Socket)]
    public async Task ASmartWarningReachesTheEventAndTheStream(NvmeTransport transport)
    {
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions());
        using var c = Open(dev);
        Assert.Equal(4, dev.Model.OutstandingAsyncEventRequests);
        Assert.Equal(AsyncEventConfiguration.SmartCriticalWarnings | AsyncEventConfiguration.NamespaceAttributeNotices, dev.Model.AsyncEventsEnabled);
        var raised = new TaskCompletionSource<NvmeAsyncEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        c.AsyncEvent += (_, e) => raised.TrySetResult(e);
        var next = NextEvent(c);

        dev.Model.SmartCriticalWarning = (byte)CriticalWarnings.Temperature;

        var fromStream = await next;
        var fromEvent = await raised.Task.WaitAsync(Soon, TestContext.Current.CancellationToken);
        foreach (var e in new[] { fromStream, fromEvent })
        {
            Assert.Equal(AsyncEventType.SmartHealth, e.Type);
            Assert.Equal((byte)SmartHealthEventInfo.TemperatureThreshold, e.Info);
            Assert.Equal((byte)LogPageId.SmartHealth, e.LogPageId);
            Assert.Equal(CriticalWarnings.Temperature, e.SmartLog!.CriticalWarning);
        }
        WaitFor(() => dev.Model.OutstandingAsyncEventRequests == 4);   // re-submitted
    }

    [Fact]
    public async Task ASecondEventBeforeTheLogIsReadIsNotDeliveredTwice()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        // The reaper never polls by itself here: only an admin command finds the AER completion.
        using var c = Open(dev, new NvmeControllerOptions { AsyncEventPollInterval = TimeSpan.FromMinutes(10) });
        int count = 0;
        c.AsyncEvent += (_, _) => Interlocked.Increment(ref count);
        dev.Model.SmartCriticalWarning = 0x01;      // posted, not yet reaped; the SMART type is now masked
        dev.Model.SmartCriticalWarning = 0x03;      // a new bit of the same type: retained, not posted
        Assert.Equal(1, dev.Model.AsyncEventsPosted);

        var next = NextEvent(c);
        c.Identify(IdentifyCns.Controller, 0);      // meets the AER completion and wakes the reaper
        var e = await next;
        Assert.Equal(CriticalWarnings.AvailableSpareLow | CriticalWarnings.Temperature, e.SmartLog!.CriticalWarning);
        WaitFor(() => dev.Model.OutstandingAsyncEventRequests == 4);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        Assert.Equal(1, Volatile.Read(ref count));
        Assert.Equal(1, dev.Model.AsyncEventsPosted);

        dev.Model.SmartCriticalWarning = 0x03;      // no new bit: no event
        Assert.Equal(1, dev.Model.AsyncEventsPosted);
    }

    [Fact]
    public async Task EventsStillArriveAfterReset()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        c.Reset();
        Assert.Equal(4, dev.Model.OutstandingAsyncEventRequests);
        var next = NextEvent(c);
        dev.Model.SmartCriticalWarning = (byte)CriticalWarnings.ReliabilityDegraded;
        var e = await next;
        Assert.Equal((byte)SmartHealthEventInfo.Reliability, e.Info);
    }

    [Fact]
    public async Task DisposeWithAersOutstandingIsPromptAndEndsTheStream()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        var c = Open(dev);
        Assert.Equal(4, dev.Model.OutstandingAsyncEventRequests);
        var reading = Task.Run(async () => { await foreach (var _ in c.ReadAsyncEvents(TestContext.Current.CancellationToken)) { } }, TestContext.Current.CancellationToken);
        var sw = Stopwatch.StartNew();
        c.Dispose();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"Dispose took {sw.Elapsed}");
        await reading.WaitAsync(Soon, TestContext.Current.CancellationToken);
        Assert.Equal(0, dev.Model.OutstandingAsyncEventRequests);   // dropped by the controller reset
    }

    [Fact]
    public async Task AdminCommandsKeepWorkingWhileAersAreOutstanding()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev, new NvmeControllerOptions { AsyncEventPollInterval = TimeSpan.FromMilliseconds(1) });
        var next = NextEvent(c);
        for (int i = 0; i < 300; i++)
        {
            if (i == 150) { dev.Model.SmartCriticalWarning = (byte)CriticalWarnings.ReadOnly; }
            Assert.Equal("EMU-0001", IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0)).SerialNumber);
        }
        Assert.Equal(CriticalWarnings.ReadOnly, (await next).SmartLog!.CriticalWarning);
        Assert.False(c.IsFaulted);
    }

    [Theory]
    [InlineData(NvmeTransport.InProcess)]
    [InlineData(NvmeTransport.Socket)]
    [InlineData(NvmeTransport.SocketMessages)]
    public async Task AnAerCompletedTwiceIsAProtocolViolationNotAHang(NvmeTransport transport)
    {
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions());
        using var c = Open(dev);
        dev.Model.DuplicateNextAsyncEventCompletion = true;
        dev.Model.SmartCriticalWarning = 0x01;
        await Assert.ThrowsAsync<DeviceProtocolViolationException>(() => NextEvent(c).WaitAsync(Soon, TestContext.Current.CancellationToken));
        Assert.True(c.IsFaulted);
        c.Reset();
        Assert.Equal("EMU-0001", IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0)).SerialNumber);
        Assert.Equal(4, dev.Model.OutstandingAsyncEventRequests);
    }

    [Fact]
    public async Task ANamespaceNoticeCarriesTheChangedListAndRefreshesNamespaces()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        var before = c.Namespaces;
        var next = NextEvent(c);
        dev.Model.RaiseNamespaceAttributeChanged(1);
        var e = await next;
        Assert.Equal(AsyncEventType.Notice, e.Type);
        Assert.Equal((byte)NoticeEventInfo.NamespaceAttributeChanged, e.Info);
        Assert.Equal([1u], e.ChangedNamespaces!.Nsids);
        Assert.NotSame(before, c.Namespaces);
        Assert.Single(c.Namespaces);
        Assert.Empty(c.GetChangedNamespaceList().Nsids);    // the driver's read (RAE = 0) cleared it
    }

    [Fact]
    public async Task AThrowingHandlerDoesNotStopTheReaper()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        c.AsyncEvent += (_, _) => throw new InvalidOperationException("handler bug");
        var first = NextEvent(c);
        dev.Model.SmartCriticalWarning = 0x01;
        await first;
        var second = NextEvent(c);
        dev.Model.SmartCriticalWarning = 0x03;
        Assert.Equal((byte)SmartHealthEventInfo.TemperatureThreshold, (await second).Info);
    }

    [Fact]
    public void MoreAersThanTheLimitAreRefusedByTheModel()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        Assert.Equal(4, c.OutstandingAsyncEventRequests);
        var e = Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(NvmeCommand.AsyncEventRequest()));
        Assert.Equal((byte)CommandSpecificStatusCode.AsyncEventRequestLimitExceeded, e.StatusCode);
        Assert.Equal("EMU-0001", IdentifyController.Parse(c.Identify(IdentifyCns.Controller, 0)).SerialNumber);
    }

    [Fact]
    public void ZeroAersTurnsEventsOff()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev, new NvmeControllerOptions { AsyncEventRequests = 0 });
        Assert.Equal(0, dev.Model.OutstandingAsyncEventRequests);
        Assert.Equal(AsyncEventConfiguration.None, dev.Model.AsyncEventsEnabled);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(17)]
    public void BadAerCountsAreRefused(int count)
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        Assert.Throws<ArgumentOutOfRangeException>(() => Open(dev, new NvmeControllerOptions { AsyncEventRequests = count }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Open(dev, new NvmeControllerOptions { AsyncEventPollInterval = TimeSpan.Zero }));
        using var c = Open(dev);
        Assert.Equal(4, c.OutstandingAsyncEventRequests);
    }

    [Fact]
    public async Task AReleaseToTheHostEndsTheStream()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        var c = Open(dev);
        var reading = Task.Run(async () => { await foreach (var _ in c.ReadAsyncEvents(TestContext.Current.CancellationToken)) { } }, TestContext.Current.CancellationToken);
        dev.RequestRelease();
        await reading.WaitAsync(Soon, TestContext.Current.CancellationToken);
        Assert.True(c.IsReleased);
        c.Dispose();
    }

    [Fact]
    public async Task AFullBufferDropsTheOldestEvent()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev, new NvmeControllerOptions { AsyncEventBufferSize = 1 });
        int count = 0;
        c.AsyncEvent += (_, _) => Interlocked.Increment(ref count);
        dev.Model.SmartCriticalWarning = 0x01;
        WaitFor(() => Volatile.Read(ref count) == 1 && dev.Model.OutstandingAsyncEventRequests == 4);
        dev.Model.SmartCriticalWarning = 0x03;
        WaitFor(() => Volatile.Read(ref count) == 2);
        var kept = await NextEvent(c);
        Assert.Equal((byte)SmartHealthEventInfo.TemperatureThreshold, kept.Info);
    }

    [Fact]
    public async Task AnEventPointingAtAnUnknownLogPageStillSurfacesAndTheAerIsReArmed()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        var next = NextEvent(c);
        dev.Model.RaiseAsyncEvent(AsyncEventType.VendorSpecific, 0x12, 0xC0);
        var e = await next;
        Assert.Equal(AsyncEventType.VendorSpecific, e.Type);
        Assert.Equal(0x12, e.Info);
        Assert.Equal(0xC0, e.LogPageId);
        Assert.True(e.LogPage is null, $"log page {e.LogPage?.Length} error {e.LogPageError}");
        Assert.Contains("Invalid Log Page", e.LogPageError);
        WaitFor(() => dev.Model.OutstandingAsyncEventRequests == 4);
        Assert.False(c.IsFaulted);
    }

    [Fact]
    public async Task AnErrorEventCarriesTheErrorLog()
    {
        using var dev = new EmulatedNvme(NvmeTransport.InProcess, new NvmeDeviceOptions());
        using var c = Open(dev);
        Assert.Throws<NvmeCommandException>(() => c.GetLogPage(0x7F, 0, 0, 4));
        var next = NextEvent(c);
        dev.Model.RaiseAsyncEvent(AsyncEventType.Error, 0x00, (byte)LogPageId.ErrorInformation);
        var e = await next;
        Assert.Equal(AsyncEventType.Error, e.Type);
        var entry = Assert.Single(e.ErrorLog!);
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidLogPage, entry.Status.Code);
    }
}
