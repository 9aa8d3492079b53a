using Vfio.Linux;

namespace Vfio.Tests.Linux;

/// <summary>The epoll thread and awaitable eventfds, on real eventfds (no device needed).</summary>
public class EventFdTests
{
    private static unsafe void Signal(EventFd s, ulong n)
    {
        bool added = false;
        s.Handle.DangerousAddRef(ref added);
        try
        {
            Assert.Equal(8, (int)Interop.Libc.write(s.Handle.Fd, &n, 8));
        }
        finally
        {
            s.Handle.DangerousRelease();
        }
    }

    [Fact]
    public async Task WaitCompletesWhenTheEventfdIsWritten()
    {
        using var s = new EventFd();
        var wait = s.WaitAsync(CancellationToken.None).AsTask();
        await Task.Delay(50, TestContext.Current.CancellationToken);
        Assert.False(wait.IsCompleted);
        Signal(s, 3);
        var n = await wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(3UL, n);
    }

    [Fact]
    public async Task SignalBeforeWaitIsNotLost()
    {
        using var s = new EventFd();
        Signal(s, 1);
        Signal(s, 1);
        var n = await s.WaitAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(2UL, n);
        Assert.Equal(0UL, s.Poll());
    }

    [Fact]
    public async Task CancelledWaitEnds()
    {
        using var s = new EventFd();
        using var cts = new CancellationTokenSource();
        var wait = s.WaitAsync(cts.Token).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        // The signal still works for the next waiter.
        Signal(s, 1);
        Assert.Equal(1UL, await s.WaitAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task AlreadyCancelledTokenEndsAtOnce()
    {
        using var s = new EventFd();
        var wait = s.WaitAsync(new CancellationToken(true));
        Assert.True(wait.IsCanceled);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task DisposeFailsPendingWaits()
    {
        var s = new EventFd();
        var wait = s.WaitAsync(CancellationToken.None).AsTask();
        s.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.Throws<ObjectDisposedException>(() => s.Poll());
    }

    [Fact]
    public async Task DisposeAfterTheCallerClosedTheHandleStillFailsPendingWaits()
    {
        var s = new EventFd();
        var wait = s.WaitAsync(CancellationToken.None).AsTask();
        s.Handle.Dispose();                                   // the public handle, closed behind the EventFd's back
        s.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        using var other = new EventFd();                      // the poller still serves new eventfds
        other.Signal();
        Assert.Equal(1UL, await other.WaitAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task ManySignalsAcrossManyEventfdsAreAllDelivered()
    {
        var signals = Enumerable.Range(0, 32).Select(_ => new EventFd()).ToArray();
        try
        {
            var waits = signals.Select(s => s.WaitAsync(CancellationToken.None).AsTask()).ToArray();
            foreach (var s in signals) { Signal(s, 1); }
            var results = await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            Assert.All(results, r => Assert.Equal(1UL, r));
        }
        finally
        {
            foreach (var s in signals) { s.Dispose(); }
        }
    }

    [Fact]
    public async Task SignalAddsToTheCounterAWaiterConsumes()
    {
        using var s = new EventFd();
        var wait = s.WaitAsync(CancellationToken.None).AsTask();
        s.Signal();
        s.Signal(4);
        ulong n = await wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        // The poller may wake between the two writes: whatever the first wait missed, Poll has.
        Assert.Equal(5UL, n + s.Poll());
        Assert.Equal(5UL, s.TotalSignals);
    }

    [Fact]
    public void TrySignalWritesAnotherHandleToTheSameEventfd()
    {
        using var s = new EventFd();
        using var dup = s.Handle.Duplicate();
        Assert.True(EventFd.TrySignal(dup, 3));
        Assert.True(SpinWait.SpinUntil(() => s.TotalSignals == 3 || s.Poll() == 3, TimeSpan.FromSeconds(10)));
        Assert.True(EventFd.IsEventFd(dup));
    }

    [Fact]
    public void TrySignalFailsOnADescriptorThatIsNotWritable()
    {
        using var memory = new SharedMemory(4096, "not-an-eventfd");
        Assert.False(EventFd.IsEventFd(memory.Handle));
        using var invalid = new SafeFdHandle();
        Assert.False(EventFd.TrySignal(invalid));
    }

    [Fact]
    public void BadInputAndDisposedObjectsGetTheirDocumentedExceptions()
    {
        var s = new EventFd();
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Signal(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Signal(ulong.MaxValue));
        Assert.Throws<ArgumentNullException>(() => EventFd.TrySignal(null!));
        Assert.Throws<ArgumentNullException>(() => EventFd.IsEventFd(null!));
        var handle = s.Handle;
        s.Dispose();
        s.Dispose();
        Assert.True(handle.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => s.Signal());
        Assert.Throws<ObjectDisposedException>(() => { _ = s.WaitAsync(CancellationToken.None); });
        Assert.Throws<ObjectDisposedException>(() => EventFd.TrySignal(handle));
        Assert.Throws<ObjectDisposedException>(() => EventFd.IsEventFd(handle));
    }
}
