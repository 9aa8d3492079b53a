using Vfio.Devices;
using Vfio.Kernel;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// Vectors of one IRQ index, each an eventfd watched by the core's <see cref="EventFdPoller"/> and passed to the
/// server with SET_IRQS (DATA_EVENTFD | ACTION_TRIGGER). The server signals them by writing the eventfd, exactly
/// as the kernel does for vfio-pci, so waiting is the same code as for a kernel device.
/// </summary>
internal sealed class UserInterruptSet : IInterruptSet
{
    private readonly VfioUserDevice _device;
    private readonly UserVector[] _vectors;
    private bool _disposed;

    public UserInterruptSet(VfioUserDevice device, IrqIndex index, int count, IrqFlags flags)
    {
        _device = device;
        Index = index;
        Flags = flags;
        _vectors = new UserVector[count];
        try
        {
            for (int i = 0; i < count; i++) { _vectors[i] = new UserVector(this, i, new EventFdSignal()); }
            Set(SetIrqsRequest.DataEventFd | SetIrqsRequest.ActionTrigger, 0, (uint)count, [.. _vectors.Select(v => v.Signal.Handle)]);
        }
        catch
        {
            foreach (var v in _vectors) { v?.Signal.Dispose(); }
            throw;
        }
    }

    public IrqIndex Index { get; }

    public IrqFlags Flags { get; }

    public int Count => _vectors.Length;

    public IInterruptVector this[int vector] => (uint)vector < (uint)_vectors.Length
        ? _vectors[vector]
        : throw new ArgumentOutOfRangeException(nameof(vector), vector, $"{Index} has vectors 0..{_vectors.Length - 1} enabled");

    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        try
        {
            // DATA_NONE | ACTION_TRIGGER with count 0 disables the whole index, as for the kernel's VFIO_DEVICE_SET_IRQS.
            Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionTrigger, 0, 0, []);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The connection is gone; the server dropped the eventfds with it.
        }
        foreach (var v in _vectors) { v.Signal.Dispose(); }
        _device.OnInterruptSetDisposed(this);
    }

    private void Set(uint flags, uint start, uint count, SafeFdHandle[] fds)
    {
        var body = new byte[SetIrqsRequest.Length];
        new SetIrqsRequest(flags, (uint)Index, start, count).Write(body);
        using var _ = _device.Request(Command.DeviceSetIrqs, body, fds);
    }

    private sealed class UserVector(UserInterruptSet owner, int vector, EventFdSignal signal) : IInterruptVector
    {
        public EventFdSignal Signal { get; } = signal;

        public int Vector { get; } = vector;

        public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default) => Signal.WaitAsync(cancellationToken);

        public ulong Poll() => Signal.Poll();

        public void Trigger()
        {
            ObjectDisposedException.ThrowIf(owner._disposed, owner);
            owner.Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionTrigger, (uint)Vector, 1, []);
        }

        public void Unmask()
        {
            ObjectDisposedException.ThrowIf(owner._disposed, owner);
            if ((owner.Flags & IrqFlags.Maskable) == 0) { return; } // MSI and MSI-X are never masked by the server
            owner.Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionUnmask, (uint)Vector, 1, []);
        }
    }
}
