using Microsoft.Extensions.Logging;
using Vfio.Devices;

namespace Vfio.Net;

/// <summary>A PCI vendor and device ID (PCI Local Bus 3.0 §6.2.1: config space offsets 0x00 and 0x02).</summary>
/// <param name="VendorId">Vendor ID.</param>
/// <param name="DeviceId">Device ID.</param>
public readonly record struct PciId(ushort VendorId, ushort DeviceId)
{
    /// <summary>The ID of <paramref name="device"/>, read from its configuration space.</summary>
    public static PciId Of(IPciDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new PciId(device.Config.VendorId, device.Config.DeviceId);
    }

    /// <summary>"vvvv:dddd" in hex, as lspci -n prints it.</summary>
    public override string ToString() => $"{VendorId:x4}:{DeviceId:x4}";
}

/// <summary>What every driver's open takes; driver-specific settings stay with the driver's own options.</summary>
public sealed record NetPortOptions
{
    /// <summary>Queue pairs to use, capped at what the device offers.</summary>
    public int QueuePairs { get; init; } = 1;

    /// <summary>Descriptors per queue; 0 lets the driver choose.</summary>
    public int QueueSize { get; init; }

    /// <summary>
    /// The pool to receive into. Ports that forward to each other share one (they must share a DMA address space).
    /// Null: the port makes its own.
    /// </summary>
    public PacketPool? Pool { get; init; }

    /// <summary>
    /// Buffers of the port's own pool when <see cref="Pool"/> is null; 0 lets the driver choose (enough for its
    /// rings). Ports that forward with full rings, or that hold buffers in the application, need more: DPDK sizes
    /// its mempool the same way (testpmd --total-num-mbufs).
    /// </summary>
    public int PoolSize { get; init; }

    /// <summary>
    /// Let the device compute and check TCP/UDP checksums where the driver must ask for it (virtio-net: negotiate
    /// VIRTIO_NET_F_CSUM and GUEST_CSUM). Packets flagged <see cref="PacketFlags.TxL4Checksum"/> leave with a right
    /// checksum either way (the driver computes it when this is off). igb always reports receive checksums and inserts
    /// flagged ones in hardware, so it ignores this. False by default.
    /// </summary>
    public bool ChecksumOffload { get; init; }

    /// <summary>
    /// Let the device cut and join TCP segments (virtio-net: negotiate HOST_TSO4/6 and GUEST_TSO4/6 with MRG_RXBUF;
    /// implies <see cref="ChecksumOffload"/>), so that 64 KiB TCP packets cross the port whole; what was agreed shows
    /// in <see cref="INetPort.Offloads"/>. igb ignores it. False by default.
    /// </summary>
    public bool SegmentationOffload { get; init; }

    /// <summary>Clock for the driver's timeouts.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where logs go; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>
/// One NIC driver as the registry sees it (DPDK's rte_pci_driver: a name, an ID table, a probe function).
/// </summary>
/// <param name="Name">Short name, e.g. "virtio-net".</param>
/// <param name="Ids">The PCI IDs the driver takes.</param>
/// <param name="Open">Brings the device up as a port; throws (a <see cref="VfioException"/>) when it cannot.</param>
public sealed record NetDriver(string Name, IReadOnlyList<PciId> Ids, Func<IPciDevice, NetPortOptions, INetPort> Open)
{
    /// <summary>Whether this driver takes <paramref name="id"/>.</summary>
    public bool Takes(PciId id)
    {
        foreach (var i in Ids)
        {
            if (i == id) { return true; }
        }
        return false;
    }

    /// <summary>The name with the IDs, e.g. "virtio-net (1af4:1041)".</summary>
    public override string ToString() => $"{Name} ({string.Join(", ", Ids)})";
}

/// <summary>
/// The NIC drivers an application knows, matched by PCI vendor and device ID as DPDK matches PMDs: the first
/// registered driver whose table holds the device's ID opens it. Registering is the application's (the CLI's)
/// business: this assembly sits below the drivers and knows none of them.
/// </summary>
public sealed class NetDriverRegistry : IEnumerable<NetDriver>
{
    private readonly List<NetDriver> _drivers = [];

    /// <summary>Adds a driver (collection initialisers call this).</summary>
    /// <exception cref="ArgumentException">Another registered driver already takes one of its IDs.</exception>
    public void Add(NetDriver driver)
    {
        ArgumentNullException.ThrowIfNull(driver);
        foreach (var id in driver.Ids)
        {
            if (Find(id) is { } other)
            {
                throw new ArgumentException($"{driver.Name} and {other.Name} both take {id}", nameof(driver));
            }
        }
        _drivers.Add(driver);
    }

    /// <summary>The registered drivers, in order.</summary>
    public IReadOnlyList<NetDriver> Drivers => _drivers;

    /// <summary>The driver that takes <paramref name="id"/>, or null.</summary>
    public NetDriver? Find(PciId id)
    {
        foreach (var d in _drivers)
        {
            if (d.Takes(id)) { return d; }
        }
        return null;
    }

    /// <summary>Opens <paramref name="device"/> with the driver its ID selects.</summary>
    /// <exception cref="NoNetDriverException">No registered driver takes the device's ID.</exception>
    public INetPort Open(IPciDevice device, NetPortOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var id = PciId.Of(device);
        var driver = Find(id) ?? throw new NoNetDriverException(device.Address, id,
            _drivers.Count == 0 ? "none registered" : string.Join(", ", _drivers));
        return driver.Open(device, options ?? new NetPortOptions());
    }

    /// <inheritdoc />
    public IEnumerator<NetDriver> GetEnumerator() => _drivers.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
