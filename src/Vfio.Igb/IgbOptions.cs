using Microsoft.Extensions.Logging;
using Vfio.Net;

namespace Vfio.Igb;

/// <summary>How to bring up an 82576.</summary>
public sealed record IgbOptions
{
    /// <summary>Receive/transmit queue pairs, 1 to 16 (82576 datasheet §7.1.2; QEMU's igb models 16).</summary>
    public int QueuePairs { get; init; } = 1;

    /// <summary>Descriptors per ring: a multiple of 8 from 8 to 4096 (RDLEN/TDLEN are multiples of 128 bytes, §8.10.6).</summary>
    public int RingSize { get; init; } = 512;

    /// <summary>
    /// Receive-side scaling key and redirection table. Null with more than one queue pair: the verification key and
    /// a round-robin table over the queues. Ignored with one queue pair.
    /// </summary>
    public IgbRssConfiguration? Rss { get; init; }

    /// <summary>Accept every unicast frame (RCTL.UPE), not only those for the port's MAC address.</summary>
    public bool Promiscuous { get; init; }

    /// <summary>Accept every multicast frame (RCTL.MPE); otherwise only those whose hash is set in the MTA.</summary>
    public bool AllMulticast { get; init; }

    /// <summary>Accept broadcast frames (RCTL.BAM).</summary>
    public bool Broadcast { get; init; } = true;

    /// <summary>Report IPv4 header and TCP/UDP checksum validation per packet (RXCSUM.IPOFLD/TUOFLD).</summary>
    public bool ReceiveChecksumOffload { get; init; } = true;

    /// <summary>
    /// The packet buffers to receive into; their data room must hold 2048 bytes (the receive buffer size programmed
    /// in SRRCTL.BSIZEPACKET, §8.10.2). Null: the device makes its own pool of <see cref="PoolSize"/> buffers.
    /// </summary>
    public PacketPool? Pool { get; init; }

    /// <summary>Buffers of the device's own pool; 0 picks full receive rings plus as many again.</summary>
    public int PoolSize { get; init; }

    /// <summary>How long to wait for the link after restarting auto-negotiation; the port opens with the link down after it.</summary>
    public TimeSpan LinkTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Clock for reset, queue-enable and link waits.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where logs go; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}
