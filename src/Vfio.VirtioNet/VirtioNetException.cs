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
