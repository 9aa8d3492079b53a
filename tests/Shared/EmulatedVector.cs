using Vfio.Devices;

namespace Vfio.Testing;

/// <summary>
/// One interrupt vector of a test device: a counter with one awaiter, like an eventfd. <see cref="Close"/> is what
/// disabling the interrupt does to its eventfd: a wait pending fails with <see cref="ObjectDisposedException"/>, and
/// so does every later wait or poll; signals after it are lost. Shared by the in-process PCI device and the fake
/// 82576 (linked, not copied); thrown rather than asserted so the benchmarks can link it without xunit.
/// </summary>
internal sealed class EmulatedVector(int vector) : IInterruptVector
{
    private readonly object _lock = new();
    private int _blocked;
    private ulong _pending;
    private bool _closed;
    private long _signals;
    private TaskCompletionSource<ulong>? _waiter;

    public int Vector => vector;

    /// <summary>Signals sent to the vector while it was open.</summary>
    public long Signals { get { lock (_lock) { return _signals; } } }

    /// <summary>A wait (blocking or not) is pending.</summary>
    public bool HasWaiter { get { lock (_lock) { return _blocked > 0 || _waiter is not null; } } }

    public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_pending > 0)
            {
                var n = _pending;
                _pending = 0;
                return new ValueTask<ulong>(n);
            }
            // One reader at a time, as on an eventfd.
            if (_waiter is not null) { throw new InvalidOperationException($"vector {vector} already has an awaiter"); }
            var tcs = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiter = tcs;
            cancellationToken.Register(() =>
            {
                lock (_lock) { if (_waiter == tcs) { _waiter = null; } }
                tcs.TrySetCanceled(cancellationToken);
            });
            return new ValueTask<ulong>(tcs.Task);
        }
    }

    public ulong Poll()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            var n = _pending;
            _pending = 0;
            return n;
        }
    }

    public ulong Wait(TimeSpan timeout)
    {
        long deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
        lock (_lock)
        {
            _blocked++;
            try
            {
                while (true)
                {
                    ObjectDisposedException.ThrowIf(_closed, this);
                    if (_pending > 0)
                    {
                        var n = _pending;
                        _pending = 0;
                        return n;
                    }
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0) { return 0; }
                    Monitor.Wait(_lock, (int)Math.Min(left, int.MaxValue));
                }
            }
            finally { _blocked--; }
        }
    }

    public void Trigger()
    {
        TaskCompletionSource<ulong>? waiter;
        lock (_lock)
        {
            if (_closed) { return; }
            _signals++;
            waiter = _waiter;
            _waiter = null;
            if (waiter is null)
            {
                _pending++;
                if (_blocked > 0) { Monitor.PulseAll(_lock); }
            }
        }
        waiter?.TrySetResult(1);
    }

    /// <summary>Disables the vector: the pending wait and every later one fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Close()
    {
        TaskCompletionSource<ulong>? waiter;
        lock (_lock)
        {
            _closed = true;
            waiter = _waiter;
            _waiter = null;
            Monitor.PulseAll(_lock);
        }
        waiter?.TrySetException(new ObjectDisposedException(nameof(EmulatedVector), "the interrupt was disabled while a wait was pending"));
    }

    public void Unmask() { }
}
