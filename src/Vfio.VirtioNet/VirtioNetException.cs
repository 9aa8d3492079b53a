namespace Vfio.VirtioNet;

/// <summary>A virtio-net device refused or failed initialisation, or broke the virtio protocol.</summary>
public sealed class VirtioNetException : Exception
{
    /// <summary>Creates the exception.</summary>
    public VirtioNetException(PciAddress device, string message)
        : base($"{device}: {message}") => Device = device;

    /// <summary>Creates the exception with an inner cause.</summary>
    public VirtioNetException(PciAddress device, string message, Exception inner)
        : base($"{device}: {message}", inner) => Device = device;

    /// <summary>The device.</summary>
    public PciAddress Device { get; }
}
