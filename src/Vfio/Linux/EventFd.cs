namespace Vfio.Linux;

/// <summary>
/// An eventfd (<c>eventfd(2)</c>, non-blocking, close-on-exec) that this process waits on: the kernel or a peer adds
/// to its counter (an interrupt vector, the VFIO request-to-release notification, a vfio-user server's interrupt) and
/// the process-wide epoll thread consumes the counter and completes awaiting callers, so no thread blocks per eventfd.
/// </summary>
/// <remarks>
/// Hand <see cref="Handle"/> to whoever signals it (VFIO_DEVICE_SET_IRQS, a vfio-user SET_IRQS message). To signal an
/// eventfd this process did not create (one a peer passed), use <see cref="TrySignal(SafeFdHandle, ulong)"/>.
/// </remarks>
public sealed class EventFd : IDisposable
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
    /// <exception cref="VfioException">The kernel refused the eventfd or the epoll registration (EMFILE, ENOMEM).</exception>
    public EventFd(Action? onSignal = null)
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

    /// <summary>The eventfd, to hand to the kernel or to a peer. Closed by <see cref="Dispose"/>.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>Total number of signals observed so far (diagnostics).</summary>
    public ulong TotalSignals { get; private set; }

    /// <summary>
    /// Waits until the counter is non-zero and consumes it: the result is the number of signals since the last
    /// consumption (at least 1). Signals that came before the call are not lost.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The eventfd is disposed, or is disposed while the wait is pending.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken)
    {
        Waiter waiter;
        lock (_lock)
        {
            if (TakeLocked() is ulong n and > 0) { return ValueTask.FromResult(n); }
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

    /// <summary>
    /// Blocks until the counter is non-zero and consumes it, or until <paramref name="timeout"/> passes (0 then).
    /// Allocates nothing. The poller thread wakes the blocked caller when it sees the eventfd readable, so a signal
    /// between the caller's check and its sleep is not lost.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The eventfd is disposed, before or during the wait.</exception>
    public ulong Wait(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
        lock (_lock)
        {
            _blockedWaiters++;
            try
            {
                while (true)
                {
                    if (TakeLocked() is ulong n and > 0) { return n; }
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0) { return 0; }
                    Monitor.Wait(_lock, (int)Math.Min(left, int.MaxValue));
                }
            }
            finally
            {
                _blockedWaiters--;
            }
        }
    }

    private int _blockedWaiters;

    /// <summary>Reads the eventfd and takes every pending signal (0 when none). Under the lock.</summary>
    private ulong TakeLocked()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        DrainLocked();
        ulong n = _pending;
        _pending = 0;
        return n;
    }

    /// <summary>Consumes pending signals without waiting; 0 when there were none.</summary>
    /// <exception cref="ObjectDisposedException">The eventfd is disposed.</exception>
    public ulong Poll()
    {
        lock (_lock) { return TakeLocked(); }
    }

    /// <summary>Adds <paramref name="count"/> to the counter, as the kernel or a peer does when it signals.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is 0 or the eventfd maximum (2^64 - 1).</exception>
    /// <exception cref="ObjectDisposedException">The eventfd is disposed.</exception>
    /// <exception cref="VfioException">The write failed (EAGAIN: the counter would overflow).</exception>
    public void Signal(ulong count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfZero(count);
        ArgumentOutOfRangeException.ThrowIfEqual(count, ulong.MaxValue);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!TrySignal(Handle, count)) { throw Errno.ToException(Errno.Last, "write to an eventfd"); }
    }

    /// <summary>
    /// Adds <paramref name="count"/> to the counter of the eventfd <paramref name="eventFd"/> (8-byte <c>write(2)</c>),
    /// for eventfds a peer passed; false when the write failed (the counter would overflow a non-blocking eventfd, or
    /// the descriptor is not writable). Never blocks on an eventfd; check <see cref="IsEventFd"/> first for a
    /// descriptor from an untrusted peer, since a write to a full pipe or a socket could.
    /// </summary>
    /// <exception cref="ObjectDisposedException"><paramref name="eventFd"/> is closed.</exception>
    public static unsafe bool TrySignal(SafeFdHandle eventFd, ulong count = 1)
    {
        ArgumentNullException.ThrowIfNull(eventFd);
        bool added = false;
        eventFd.DangerousAddRef(ref added);
        try
        {
            // SAFETY: count is an 8-byte local; writing 8 bytes adds it to the eventfd counter.
            return Interop.Libc.write(eventFd.Fd, &count, sizeof(ulong)) == sizeof(ulong);
        }
        finally
        {
            if (added) { eventFd.DangerousRelease(); }
        }
    }

    /// <summary>Whether <paramref name="fd"/> is an eventfd (its <c>/proc/self/fd</c> link is <c>anon_inode:[eventfd]</c>).</summary>
    /// <exception cref="ObjectDisposedException"><paramref name="fd"/> is closed.</exception>
    public static bool IsEventFd(SafeFdHandle fd)
    {
        ArgumentNullException.ThrowIfNull(fd);
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            return new FileInfo($"/proc/self/fd/{fd.Fd}").LinkTarget == "anon_inode:[eventfd]";
        }
        finally
        {
            if (added) { fd.DangerousRelease(); }
        }
    }

    /// <summary>Called by the poller thread when the eventfd is readable.</summary>
    internal void OnReadable()
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
            if (_pending > 0 && _blockedWaiters > 0)
            {
                Monitor.PulseAll(_lock);
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

    /// <summary>Stops watching and closes the eventfd; pending waits fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        Waiter[] orphans;
        lock (_lock)
        {
            if (_disposed) { return; }
            _disposed = true;
            Monitor.PulseAll(_lock);   // blocked Wait callers see the flag and throw
            orphans = _waiters.ToArray();
            _waiters.Clear();
        }
        try
        {
            // A Handle the caller closed itself has already left epoll (the kernel drops a closed fd from every
            // epoll set); only the poller's table entry, which Unregister removes first, is left to forget.
            if (!Handle.IsClosed) { EventFdPoller.Shared.Unregister(_id, Handle); }
            else { EventFdPoller.Shared.Forget(_id); }
            Handle.Dispose();
        }
        finally
        {
            // Pending waits fail whatever happened above: a waiter left pending would hang its caller for good.
            foreach (var w in orphans)
            {
                if (w.TryClaim())
                {
                    w.Fail(new ObjectDisposedException(nameof(EventFd), "the interrupt was disabled while a wait was pending"));
                }
            }
        }
    }

    private sealed class Waiter(EventFd owner)
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
