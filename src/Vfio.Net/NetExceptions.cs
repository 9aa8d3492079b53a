namespace Vfio.Net;

/// <summary>
/// A packet buffer was returned to its <see cref="PacketPool"/> while already free: a double free, which would hand
/// one buffer to two owners. The pool is unchanged.
/// </summary>
public sealed class PacketPoolDoubleFreeException : VfioException
{
    /// <summary>Creates the exception for buffer <paramref name="index"/> of pool <paramref name="pool"/>.</summary>
    public PacketPoolDoubleFreeException(string pool, int index)
        : base($"packet buffer {index} of pool '{pool}' is already free (double free)")
    {
        Pool = pool;
        Index = index;
    }

    /// <summary>The pool's name.</summary>
    public string Pool { get; }

    /// <summary>The buffer's index in the pool.</summary>
    public int Index { get; }
}

/// <summary>
/// No registered NIC driver takes the device's PCI vendor and device ID (<see cref="NetDriverRegistry.Open"/>), as
/// DPDK reports a device no PMD claims.
/// </summary>
public sealed class NoNetDriverException : VfioException
{
    /// <summary>Creates the exception for <paramref name="device"/> with ID <paramref name="id"/>; <paramref name="known"/> lists the drivers asked.</summary>
    public NoNetDriverException(PciAddress device, PciId id, string known)
        : base($"no NIC driver for PCI ID {id} (drivers: {known})", device,
            "bind a NIC one of the drivers takes, or add a driver (src/Vfio.Net/README.md)")
    {
        Id = id;
    }

    /// <summary>The device's vendor and device ID.</summary>
    public PciId Id { get; }
}
