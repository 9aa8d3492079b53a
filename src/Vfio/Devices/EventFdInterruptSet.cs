using Vfio.Linux;

namespace Vfio.Devices;

/// <summary>
/// The vectors of one IRQ index, each an <see cref="EventFd"/> watched by the process-wide epoll thread: the
/// bookkeeping shared by kernel VFIO (VFIO_DEVICE_SET_IRQS ioctls) and vfio-user (SET_IRQS messages). A backend says
/// only how to wire the eventfds, trigger or unmask one vector, and disable the index; waiting is the same code for
/// both. For implementations of <see cref="IPciDevice"/>; drivers see only <see cref="IInterruptSet"/>.
/// </summary>
public abstract class EventFdInterruptSet : IInterruptSet
{
    private readonly EventFdVector[] _vectors;
    private bool _disposed;

    /// <summary>Declares the set; the backend's constructor calls <see cref="Open"/> once its own fields are set.</summary>
    protected EventFdInterruptSet(IrqIndex index, int count, IrqFlags flags)
    {
        Index = index;
        Flags = flags;
        _vectors = new EventFdVector[count];
    }

    /// <inheritdoc />
    public IrqIndex Index { get; }

    /// <inheritdoc />
    public IrqFlags Flags { get; }

    /// <inheritdoc />
    public int Count => _vectors.Length;

    /// <inheritdoc />
    public IInterruptVector this[int vector]
    {
        get
        {
            ThrowIfDisposed();
            return (uint)vector < (uint)_vectors.Length
                ? _vectors[vector]
                : throw new ArgumentOutOfRangeException(nameof(vector), vector, $"{Index} has vectors 0..{_vectors.Length - 1} enabled");
        }
    }

    /// <summary>
    /// Creates one eventfd per vector and wires them all as triggers; on failure closes them and rethrows.
    /// <paramref name="onSignal"/>, when given, is called on the poller's thread for each signal.
    /// </summary>
    /// <exception cref="VfioException">An eventfd could not be created, or the backend refused the wiring.</exception>
    protected void Open(Action? onSignal = null)
    {
        var signals = new EventFd[_vectors.Length];
        try
        {
            for (int i = 0; i < signals.Length; i++)
            {
                signals[i] = new EventFd(onSignal);
                _vectors[i] = new EventFdVector(this, i, signals[i]);
            }
            WireTriggers(signals);
            InterruptCounters.Track(this);
        }
        catch
        {
            foreach (var s in signals) { s?.Dispose(); }
            throw;
        }
    }

    /// <summary>Wires <paramref name="signals"/> (one per vector, from 0) as the index's trigger eventfds.</summary>
    protected abstract void WireTriggers(EventFd[] signals);

    /// <summary>Fires vector <paramref name="vector"/> from software (ACTION_TRIGGER with DATA_NONE).</summary>
    protected abstract void TriggerVector(int vector);

    /// <summary>Unmasks vector <paramref name="vector"/> of a maskable (level-triggered) index.</summary>
    protected abstract void UnmaskVector(int vector);

    /// <summary>Disables the whole index; returns quietly when the device or connection is already gone.</summary>
    protected abstract void DisableAll();

    /// <summary>Tells the device the set is gone, so the index may be enabled again.</summary>
    protected abstract void OnDisposed();

    /// <summary>Disables the index, closes the eventfds (pending waits fail) and tells the device.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        InterruptCounters.Untrack(this);
        DisableAll();
        foreach (var v in _vectors) { v?.Signal.Dispose(); }
        OnDisposed();
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Signals every vector's eventfd delivered so far (the "vfio.interrupts" instrument, <see cref="InterruptCounters"/>).</summary>
    internal long TotalSignals
    {
        get
        {
            ulong total = 0;
            foreach (var v in _vectors) { total += v?.Signal.TotalSignals ?? 0; }
            return (long)total;
        }
    }

    private sealed class EventFdVector(EventFdInterruptSet owner, int vector, EventFd signal) : IInterruptVector
    {
        public EventFd Signal { get; } = signal;

        public int Vector { get; } = vector;

        public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default) => Signal.WaitAsync(cancellationToken);

        public ulong Poll() => Signal.Poll();

        public ulong Wait(TimeSpan timeout) => Signal.Wait(timeout);

        public void Trigger()
        {
            owner.ThrowIfDisposed();
            owner.TriggerVector(Vector);
        }

        public void Unmask()
        {
            owner.ThrowIfDisposed();
            if ((owner.Flags & IrqFlags.Maskable) == 0) { return; } // edge-triggered vectors (MSI, MSI-X) are never masked
            owner.UnmaskVector(Vector);
        }
    }
}
