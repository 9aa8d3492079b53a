using Vfio.Devices;
using Vfio.Linux;
using Vfio.User.Protocol;

namespace Vfio.User.Client;

/// <summary>
/// Vectors of one IRQ index, each an eventfd passed to the server with SET_IRQS (DATA_EVENTFD | ACTION_TRIGGER).
/// The server signals them by writing the eventfd, exactly as the kernel does for vfio-pci, so waiting is the same
/// code as for a kernel device (<see cref="EventFdInterruptSet"/>).
/// </summary>
internal sealed class UserInterruptSet : EventFdInterruptSet
{
    private readonly VfioUserDevice _device;

    public UserInterruptSet(VfioUserDevice device, IrqIndex index, int count, IrqFlags flags)
        : base(index, count, flags)
    {
        _device = device;
        Open();
    }

    protected override void WireTriggers(EventFd[] signals) =>
        Set(SetIrqsRequest.DataEventFd | SetIrqsRequest.ActionTrigger, 0, (uint)signals.Length, [.. signals.Select(s => s.Handle)]);

    protected override void TriggerVector(int vector) => Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionTrigger, (uint)vector, 1, []);

    protected override void UnmaskVector(int vector) => Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionUnmask, (uint)vector, 1, []);

    protected override void DisableAll()
    {
        try
        {
            // DATA_NONE | ACTION_TRIGGER with count 0 disables the whole index, as for the kernel's VFIO_DEVICE_SET_IRQS.
            Set(SetIrqsRequest.DataNone | SetIrqsRequest.ActionTrigger, 0, 0, []);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The connection is gone; the server dropped the eventfds with it.
        }
    }

    protected override void OnDisposed() => _device.OnInterruptSetDisposed(this);

    private void Set(uint flags, uint start, uint count, SafeFdHandle[] fds)
    {
        var body = new byte[SetIrqsRequest.Length];
        new SetIrqsRequest(flags, (uint)Index, start, count).Write(body);
        using var _ = _device.Request(Command.DeviceSetIrqs, body, fds);
    }
}
