using Vfio.Tap;
using Vfio.Net;
using System.Net.NetworkInformation;

namespace Vfio.VirtioNet;

/// <summary>Receives up to <c>into.Length</c> packets; returns how many (the caller owns them).</summary>
public delegate int BurstReceive(Span<PacketBuffer> into);

/// <summary>Hands up to <c>packets.Length</c> packets to the port; returns how many it took (the rest stay the caller's).</summary>
public delegate int BurstTransmit(ReadOnlySpan<PacketBuffer> packets);

/// <summary>
/// One queue pair of a userspace NIC port as <see cref="TapBridge"/> and <see cref="PacketCapture"/> see it: burst
/// receive and transmit, the pool to take transmit buffers from, the MAC address and MTU to give the kernel side.
/// </summary>
/// <remarks>
/// A seam of delegates rather than a type of its own so that any port plugs in without the bridge knowing it:
/// <see cref="Of(INetPort, int, int)"/> for any driver's port, <see cref="Of(VirtioNetDevice, int, int)"/> for the
/// virtio driver's own methods.
/// </remarks>
public sealed class PacketPort
{
    /// <summary>The Ethernet MTU a port without a reported MTU gets (IEEE 802.3's 1500-byte payload).</summary>
    public const int DefaultMtu = 1500;

    /// <summary>Creates a port from its burst functions.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mtu"/> plus an Ethernet header does not fit the pool's buffers.</exception>
    public PacketPort(string name, PacketPool pool, BurstReceive receive, BurstTransmit transmit, PhysicalAddress? macAddress,
        int mtu = DefaultMtu, Action? flush = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(receive);
        ArgumentNullException.ThrowIfNull(transmit);
        ArgumentOutOfRangeException.ThrowIfLessThan(mtu, 68);
        if (mtu + TapInterface.EthernetHeaderSize > pool.DataRoom)
        {
            throw new ArgumentOutOfRangeException(nameof(mtu), mtu,
                $"an MTU of {mtu} needs {mtu + TapInterface.EthernetHeaderSize}-byte frames; the pool's buffers hold {pool.DataRoom}");
        }
        Name = name;
        Pool = pool;
        Receive = receive;
        Transmit = transmit;
        MacAddress = macAddress;
        Mtu = mtu;
        Flush = flush ?? (static () => { });
    }

    /// <summary>Queue pair <paramref name="queuePair"/> of a virtio-net port.</summary>
    public static PacketPort Of(VirtioNetDevice device, int queuePair = 0, int mtu = DefaultMtu)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new PacketPort(device.Device.Address.ToString(), device.Pool,
            into => device.Receive(into, queuePair), packets => device.Transmit(packets, queuePair),
            device.MacAddress, mtu, () => device.FlushTransmit(queuePair))
        {
            Offloads = device.Offloads,
            LargePool = device.LargePool,
        };
    }

    /// <summary>Queue pair <paramref name="queuePair"/> of any port (<see cref="INetPort"/>: virtio-net, igb, ...).</summary>
    public static PacketPort Of(INetPort port, int queuePair = 0, int mtu = DefaultMtu)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentOutOfRangeException.ThrowIfNegative(queuePair);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queuePair, port.QueuePairCount);
        return new PacketPort(port.Address.ToString(), port.Pool,
            into => port.RxBurst(queuePair, into), packets => port.TxBurst(queuePair, packets),
            port.MacAddress, mtu, () => port.FlushTx(queuePair))
        {
            Offloads = port.Offloads,
            LargePool = port.LargePool,
        };
    }

    /// <summary>What to call the port in messages (its PCI address).</summary>
    public string Name { get; }

    /// <summary>Where transmit buffers come from.</summary>
    public PacketPool Pool { get; }

    /// <summary>Burst receive.</summary>
    public BurstReceive Receive { get; }

    /// <summary>Burst transmit.</summary>
    public BurstTransmit Transmit { get; }

    /// <summary>Rings any doorbell a batched transmit left pending.</summary>
    public Action Flush { get; }

    /// <summary>The port's MAC address, or null when it has none.</summary>
    public PhysicalAddress? MacAddress { get; }

    /// <summary>The largest IP packet a frame carries, without the Ethernet header.</summary>
    public int Mtu { get; }

    /// <summary>
    /// What the port's device does (<see cref="INetPort.Offloads"/>): with <see cref="NetOffloads.TcpSegmentation"/>
    /// and a <see cref="LargePool"/>, a <see cref="TapBridge"/> hands the kernel's 64 KiB TCP segments to the port whole.
    /// </summary>
    public NetOffloads Offloads { get; init; }

    /// <summary>Buffers for packets larger than <see cref="Pool"/>'s (<see cref="INetPort.LargePool"/>); null when the port has none.</summary>
    public PacketPool? LargePool { get; init; }
}
