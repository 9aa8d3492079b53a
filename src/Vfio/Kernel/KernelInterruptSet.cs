using Vfio.Devices;
using Vfio.Linux;
using static Interop.Vfio;

namespace Vfio.Kernel;

/// <summary>Vectors of one interrupt index, each wired to its own eventfd with VFIO_DEVICE_SET_IRQS.</summary>
internal sealed class KernelInterruptSet : EventFdInterruptSet
{
    private readonly VfioDevice _device;

    /// <summary>Enables the vectors; <paramref name="onSignal"/>, when given, is called on the poller's thread for each signal.</summary>
    public KernelInterruptSet(VfioDevice device, IrqIndex index, int count, IrqFlags flags, Action? onSignal = null)
        : base(index, count, flags)
    {
        _device = device;
        Open(onSignal);
    }

    protected override void WireTriggers(EventFd[] signals)
    {
        Span<int> fds = stackalloc int[signals.Length];
        var refs = new bool[signals.Length];
        try
        {
            // The ioctl takes raw fds: hold a reference on each handle so none can close while the kernel reads it.
            for (int i = 0; i < signals.Length; i++)
            {
                signals[i].Handle.DangerousAddRef(ref refs[i]);
                fds[i] = signals[i].Handle.Fd;
            }
            _device.SetIrqs(Index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, (uint)signals.Length, fds);
        }
        finally
        {
            for (int i = 0; i < signals.Length; i++)
            {
                if (refs[i]) { signals[i].Handle.DangerousRelease(); }
            }
        }
    }

    protected override void TriggerVector(int vector) => _device.SetIrqs(Index, VFIO_IRQ_SET_ACTION_TRIGGER, (uint)vector, 1, default);

    protected override void UnmaskVector(int vector) => _device.SetIrqs(Index, VFIO_IRQ_SET_ACTION_UNMASK, (uint)vector, 1, default);

    protected override void DisableAll()
    {
        try
        {
            // DATA_NONE | ACTION_TRIGGER with count 0 disables the whole index (vfio.h, VFIO_DEVICE_SET_IRQS).
            _device.SetIrqs(Index, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, default);
        }
        catch (ObjectDisposedException)
        {
            // The device fd is gone; closing it already tore the interrupts down.
        }
    }

    protected override void OnDisposed() => _device.OnInterruptSetDisposed(this);
}
