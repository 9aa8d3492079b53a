using Vfio.Devices;
using static Interop.Vfio;

namespace Vfio.Kernel;

/// <summary>Vectors of one interrupt index, each wired to its own eventfd with VFIO_DEVICE_SET_IRQS.</summary>
internal sealed class KernelInterruptSet : IInterruptSet
{
    private readonly VfioDevice _device;
    private readonly InterruptVector[] _vectors;
    private bool _disposed;

    /// <summary>Enables the vectors; <paramref name="onSignal"/>, when given, is called on the poller's thread for each signal.</summary>
    public KernelInterruptSet(VfioDevice device, IrqIndex index, int count, IrqFlags flags, Action? onSignal = null)
    {
        _device = device;
        Index = index;
        Flags = flags;
        _vectors = new InterruptVector[count];
        try
        {
            for (int i = 0; i < count; i++)
            {
                _vectors[i] = new InterruptVector(this, i, new EventFdSignal(onSignal));
            }
            Span<int> fds = stackalloc int[count];
            var refs = new bool[count];
            try
            {
                for (int i = 0; i < count; i++)
                {
                    _vectors[i].Signal.Handle.DangerousAddRef(ref refs[i]);
                    fds[i] = _vectors[i].Signal.Handle.Fd;
                }
                device.SetIrqs(index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, (uint)count, fds);
            }
            finally
            {
                for (int i = 0; i < count; i++)
                {
                    if (refs[i]) { _vectors[i].Signal.Handle.DangerousRelease(); }
                }
            }
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

    public IInterruptVector this[int vector]
    {
        get
        {
            if ((uint)vector >= (uint)_vectors.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(vector), vector, $"{Index} has vectors 0..{_vectors.Length - 1} enabled");
            }
            return _vectors[vector];
        }
    }

    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        try
        {
            // DATA_NONE | ACTION_TRIGGER with count 0 disables the whole index (vfio.h, VFIO_DEVICE_SET_IRQS).
            _device.SetIrqs(Index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, default);
        }
        catch (ObjectDisposedException)
        {
            // The device fd is gone; closing it already tore the interrupts down.
        }
        foreach (var v in _vectors) { v.Signal.Dispose(); }
        _device.OnInterruptSetDisposed(this);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private sealed class InterruptVector(KernelInterruptSet owner, int vector, EventFdSignal signal) : IInterruptVector
    {
        public EventFdSignal Signal { get; } = signal;

        public int Vector { get; } = vector;

        public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default) => Signal.WaitAsync(cancellationToken);

        public ulong Poll() => Signal.Poll();

        public void Trigger()
        {
            owner.ThrowIfDisposed();
            owner._device.SetIrqs(owner.Index, VFIO_IRQ_SET_ACTION_TRIGGER, (uint)Vector, 1, default);
        }

        public void Unmask()
        {
            owner.ThrowIfDisposed();
            if ((owner.Flags & IrqFlags.Maskable) == 0)
            {
                return; // edge-triggered vectors (MSI, MSI-X) are never masked by VFIO
            }
            owner._device.SetIrqs(owner.Index, VFIO_IRQ_SET_ACTION_UNMASK, (uint)Vector, 1, default);
        }
    }
}
