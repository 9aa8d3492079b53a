using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Vfio.Kernel;

/// <summary>
/// One epoll thread for the whole process that watches every interrupt eventfd. When an eventfd becomes
/// readable the thread reads its counter and hands it to the owning <see cref="EventFdSignal"/>, which
/// completes awaiting callers. No thread blocks per interrupt and no Task.Run wraps a blocking read.
/// </summary>
internal sealed class EventFdPoller
{
    private static readonly Lazy<EventFdPoller> s_shared = new(() => new EventFdPoller(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly SafeFdHandle _epoll;
    private readonly ConcurrentDictionary<ulong, EventFdSignal> _signals = new();
    private long _nextId;

    /// <summary>The process-wide poller, started on first use.</summary>
    public static EventFdPoller Shared => s_shared.Value;

    private EventFdPoller()
    {
        _epoll = new SafeFdHandle(Errno.Check(Interop.Libc.epoll_create1(Interop.Libc.EPOLL_CLOEXEC), "epoll_create1"));
        var thread = new Thread(Run) { IsBackground = true, Name = "vfio-eventfd-poller" };
        thread.Start();
    }

    /// <summary>Starts watching <paramref name="signal"/>'s eventfd.</summary>
    public unsafe ulong Register(EventFdSignal signal)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        _signals[id] = signal;
        var ev = new Interop.Libc.epoll_event { events = Interop.Libc.EPOLLIN, data = id };
        bool added = false;
        signal.Handle.DangerousAddRef(ref added);
        try
        {
            // SAFETY: ev lives on this stack frame for the duration of the call.
            if (Interop.Libc.epoll_ctl(_epoll.Fd, Interop.Libc.EPOLL_CTL_ADD, signal.Handle.Fd, &ev) < 0)
            {
                _signals.TryRemove(id, out _);
                throw Errno.ToException(Errno.Last, "epoll_ctl(EPOLL_CTL_ADD) for an interrupt eventfd");
            }
        }
        finally
        {
            if (added) { signal.Handle.DangerousRelease(); }
        }
        return id;
    }

    /// <summary>Stops watching; must be called before the eventfd is closed.</summary>
    public unsafe void Unregister(ulong id, SafeFdHandle handle)
    {
        _signals.TryRemove(id, out _);
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
            Interop.Libc.epoll_ctl(_epoll.Fd, Interop.Libc.EPOLL_CTL_DEL, handle.Fd, null);
        }
        finally
        {
            if (added) { handle.DangerousRelease(); }
        }
    }

    private unsafe void Run()
    {
        const int MaxEvents = 64;
        var events = stackalloc Interop.Libc.epoll_event[MaxEvents];
        while (true)
        {
            // SAFETY: events points at MaxEvents stack-allocated entries that outlive the call.
            int n = Interop.Libc.epoll_wait(_epoll.Fd, events, MaxEvents, -1);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) { continue; }
                return; // the epoll fd is gone: nothing left to do in a background thread
            }
            for (int i = 0; i < n; i++)
            {
                if (_signals.TryGetValue(events[i].data, out var signal))
                {
                    signal.OnReadable();
                }
            }
        }
    }
}

/// <summary>
/// An eventfd the kernel signals (an interrupt vector, the request-to-release notification) with awaitable
/// consumption of its counter.
/// </summary>
internal sealed class EventFdSignal : IDisposable
{
    private readonly object _lock = new();
    private readonly Queue<Waiter> _waiters = new();
    private readonly ulong _id;
    private readonly Action? _onSignal;
    private ulong _pending;
    private bool _disposed;

    /// <summary>
    /// Creates the eventfd and starts watching it. With <paramref name="onSignal"/>, every signal is consumed by a
    /// call to it on the poller's thread (no thread-pool hop: for notifications under a deadline, such as the
    /// request to release a device) instead of being kept for waiters.
    /// </summary>
    public EventFdSignal(Action? onSignal = null)
    {
        _onSignal = onSignal;
        Handle = new SafeFdHandle(Errno.Check(
            Interop.Libc.eventfd(0, Interop.Libc.EFD_CLOEXEC | Interop.Libc.EFD_NONBLOCK), "eventfd"));
        try
        {
            _id = EventFdPoller.Shared.Register(this);
        }
        catch
        {
            Handle.Dispose();
            throw;
        }
    }

    /// <summary>The eventfd, to hand to the kernel.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>Total number of signals observed so far (diagnostics).</summary>
    public ulong TotalSignals { get; private set; }

    public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken)
    {
        Waiter waiter;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            DrainLocked();
            if (_pending > 0)
            {
                ulong n = _pending;
                _pending = 0;
                return ValueTask.FromResult(n);
            }
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<ulong>(cancellationToken);
            }
            waiter = new Waiter(this);
            _waiters.Enqueue(waiter);
        }
        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (s, ct) => ((Waiter)s!).Cancel(ct), waiter);
        }
        return new ValueTask<ulong>(waiter.Source.Task);
    }

    /// <summary>Consumes pending signals without waiting.</summary>
    public ulong Poll()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            DrainLocked();
            ulong n = _pending;
            _pending = 0;
            return n;
        }
    }

    /// <summary>Called by the poller thread when the eventfd is readable.</summary>
    public void OnReadable()
    {
        Waiter? toComplete = null;
        ulong count = 0;
        bool notify = false;
        lock (_lock)
        {
            if (_disposed) { return; }
            DrainLocked();
            if (_onSignal is not null)
            {
                notify = _pending > 0;
                _pending = 0;
            }
            while (_pending > 0 && _waiters.Count > 0)
            {
                var w = _waiters.Dequeue();
                if (w.TryClaim())
                {
                    toComplete = w;
                    count = _pending;
                    _pending = 0;
                }
            }
        }
        // Completing outside the lock: continuations run asynchronously anyway, this only keeps the lock short.
        toComplete?.Complete(count);
        if (notify) { _onSignal!(); }
    }

    private unsafe void DrainLocked()
    {
        ulong value = 0;
        bool added = false;
        Handle.DangerousAddRef(ref added);
        try
        {
            // SAFETY: value is an 8-byte local; eventfd read(2) writes exactly 8 bytes or fails with EAGAIN.
            nint r = Interop.Libc.read(Handle.Fd, &value, sizeof(ulong));
            if (r == sizeof(ulong))
            {
                _pending += value;
                TotalSignals += value;
            }
        }
        finally
        {
            if (added) { Handle.DangerousRelease(); }
        }
    }

    private void Remove(Waiter w)
    {
        lock (_lock)
        {
            if (_waiters.Contains(w))
            {
                var rest = _waiters.Where(x => x != w).ToArray();
                _waiters.Clear();
                foreach (var x in rest) { _waiters.Enqueue(x); }
            }
        }
    }

    public void Dispose()
    {
        Waiter[] orphans;
        lock (_lock)
        {
            if (_disposed) { return; }
            _disposed = true;
            orphans = _waiters.ToArray();
            _waiters.Clear();
        }
        EventFdPoller.Shared.Unregister(_id, Handle);
        Handle.Dispose();
        foreach (var w in orphans)
        {
            if (w.TryClaim())
            {
                w.Fail(new ObjectDisposedException(nameof(EventFdSignal), "the interrupt was disabled while a wait was pending"));
            }
        }
    }

    private sealed class Waiter(EventFdSignal owner)
    {
        private int _claimed;
        public TaskCompletionSource<ulong> Source { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public CancellationTokenRegistration Registration { get; set; }

        public bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;

        public void Complete(ulong n)
        {
            Registration.Dispose();
            Source.TrySetResult(n);
        }

        public void Fail(Exception e)
        {
            Registration.Dispose();
            Source.TrySetException(e);
        }

        public void Cancel(CancellationToken ct)
        {
            if (TryClaim())
            {
                owner.Remove(this);
                Source.TrySetCanceled(ct);
            }
        }
    }
}
