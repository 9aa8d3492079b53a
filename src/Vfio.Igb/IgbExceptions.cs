namespace Vfio.Igb;

/// <summary>An 82576 refused or failed initialisation (not an 82576, no EEPROM answer, a queue that would not enable).</summary>
public sealed class IgbException : VfioException
{
    /// <summary>Creates the exception.</summary>
    public IgbException(PciAddress device, string message, string? hint = null)
        : base(message, device, hint) { }
}

/// <summary>
/// A queue was used after the device broke the descriptor protocol on it (the <see cref="DeviceProtocolViolationException"/>
/// is the <see cref="Exception.InnerException"/>). The queue stays faulted, holding every buffer the device may still
/// write, until the port is reset (<see cref="IgbDevice.Reset"/>) or closed.
/// </summary>
public sealed class IgbQueueFaultedException : VfioException
{
    /// <summary>Creates the exception for <paramref name="queue"/> of <paramref name="device"/>, faulted by <paramref name="cause"/>.</summary>
    public IgbQueueFaultedException(PciAddress device, string queue, DeviceProtocolViolationException cause)
        : base($"{queue} is faulted since the device broke the descriptor protocol ({cause.Where}: {cause.Seen})", device, 0,
            "reset the port (IgbDevice.Reset) or reopen it", cause)
    {
        Queue = queue;
    }

    /// <summary>The queue's name.</summary>
    public string Queue { get; }
}

/// <summary>
/// The port was asked for an interrupt completion mode (<see cref="IgbOptions.CompletionMode"/>) but the device grants
/// fewer MSI-X vectors than one per queue pair plus one for link changes. The driver never falls back to polling on
/// its own: open with fewer queue pairs, or with <see cref="IgbCompletionMode.Polled"/>.
/// </summary>
public sealed class IgbInterruptVectorsException : VfioException
{
    /// <summary>Creates the exception for <paramref name="device"/>, which offers <paramref name="available"/> of the <paramref name="required"/> vectors.</summary>
    public IgbInterruptVectorsException(PciAddress device, int required, int available)
        : base($"MSI-X completion needs {required} vector(s) (one per queue pair and one for link changes); the device grants {available}", device,
            "open fewer queue pairs or use IgbCompletionMode.Polled; an 82576 function, and QEMU's igb, offer 10 MSI-X vectors: 9 queue pairs at most (VFIO_DEVICE_GET_IRQ_INFO reports the count)")
    {
        Required = required;
        Available = available;
    }

    /// <summary>Vectors the options need: queue pairs + 1.</summary>
    public int Required { get; }

    /// <summary>MSI-X vectors the device offers (<see cref="Vfio.Devices.IrqInfo.Count"/>).</summary>
    public int Available { get; }
}
