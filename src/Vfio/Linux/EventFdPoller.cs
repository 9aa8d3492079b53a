using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Vfio.Linux;

/// <summary>
/// One epoll thread for the whole process that watches every interrupt eventfd. When an eventfd becomes
/// readable the thread reads its counter and hands it to the owning <see cref="EventFd"/>, which
/// completes awaiting callers. No thread blocks per interrupt and no Task.Run wraps a blocking read.
/// </summary>
internal sealed class EventFdPoller
{
    private static readonly Lazy<EventFdPoller> s_shared = new(() => new EventFdPoller(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly SafeFdHandle _epoll;
    private readonly ConcurrentDictionary<ulong, EventFd> _signals = new();
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
    public unsafe ulong Register(EventFd signal)
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

    /// <summary>Forgets a registration whose eventfd is already closed (the kernel removed it from the epoll set).</summary>
    public void Forget(ulong id) => _signals.TryRemove(id, out _);

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
