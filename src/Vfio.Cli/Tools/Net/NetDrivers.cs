using Vfio.Igb;
using Vfio.Net;
using Vfio.VirtioNet;

namespace Vfio.Cli.Tools.Net;

/// <summary>
/// The NIC drivers <c>vfio net</c> knows, matched by PCI vendor and device ID (see src/Vfio.Net/README.md). A new
/// driver is one line here: its <see cref="NetDriver"/> registration.
/// </summary>
internal static class NetDrivers
{
    /// <summary>Every driver the command ships with.</summary>
    public static NetDriverRegistry Default { get; } = new()
    {
        VirtioNetDriver.Registration,
        IgbDriver.Registration,
    };
}
