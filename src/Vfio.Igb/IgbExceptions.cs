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
