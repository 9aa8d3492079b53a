namespace Vfio.VirtioNet;

/// <summary>A virtio-net device refused or failed initialisation, or broke the virtio protocol.</summary>
public sealed class VirtioNetException : VfioException
{
    /// <summary>Creates the exception.</summary>
    public VirtioNetException(PciAddress device, string message)
        : base(message, device, 0, null) { }

    /// <summary>Creates the exception with an inner cause.</summary>
    public VirtioNetException(PciAddress device, string message, Exception inner)
        : base(message, device, 0, null, inner) { }
}

/// <summary>
/// A virtqueue was used after the device broke its protocol on it (a <see cref="DeviceProtocolViolationException"/>,
/// the <see cref="Exception.InnerException"/>). The queue stays faulted, holding every buffer the device may still
/// write, until the device is reset (<see cref="VirtioNetDevice.Reset"/>) or closed.
/// </summary>
public sealed class VirtqueueFaultedException : VfioException
{
    /// <summary>Creates the exception for queue <paramref name="queue"/> of <paramref name="device"/>, faulted by <paramref name="cause"/>.</summary>
    public VirtqueueFaultedException(PciAddress device, string queue, DeviceProtocolViolationException cause)
        : base($"{queue} is faulted since the device broke the virtqueue protocol ({cause.Where}: {cause.Seen})", device, 0,
            "reset the device (VirtioNetDevice.Reset) or reopen it", cause)
    {
        Queue = queue;
    }

    /// <summary>The queue's name.</summary>
    public string Queue { get; }
}
