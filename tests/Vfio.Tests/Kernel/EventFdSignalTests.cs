using Vfio.Kernel;

namespace Vfio.Tests.Kernel;

/// <summary>The epoll thread and awaitable eventfds, on real eventfds (no device needed).</summary>
public class EventFdSignalTests
{
    private static unsafe void Signal(EventFdSignal s, ulong n)
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
        using var s = new EventFdSignal();
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
        using var s = new EventFdSignal();
        Signal(s, 1);
        Signal(s, 1);
        var n = await s.WaitAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal(2UL, n);
        Assert.Equal(0UL, s.Poll());
    }

    [Fact]
    public async Task CancelledWaitEnds()
    {
        using var s = new EventFdSignal();
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
        using var s = new EventFdSignal();
        var wait = s.WaitAsync(new CancellationToken(true));
        Assert.True(wait.IsCanceled);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task DisposeFailsPendingWaits()
    {
        var s = new EventFdSignal();
        var wait = s.WaitAsync(CancellationToken.None).AsTask();
        s.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => wait.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.Throws<ObjectDisposedException>(() => s.Poll());
    }

    [Fact]
    public async Task ManySignalsAcrossManyEventfdsAreAllDelivered()
    {
        var signals = Enumerable.Range(0, 32).Select(_ => new EventFdSignal()).ToArray();
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
}
