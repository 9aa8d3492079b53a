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

    /// <summary>
    /// How a queue's consumer learns that descriptors completed. <see cref="IgbCompletionMode.Polled"/> (the
    /// default) keeps every interrupt masked. <see cref="IgbCompletionMode.Interrupt"/> and
    /// <see cref="IgbCompletionMode.Hybrid"/> enable MSI-X: one vector per queue pair plus one for link changes, so
    /// <see cref="IgbDevice.WaitForReceive"/> can sleep; the device must grant <see cref="QueuePairs"/> + 1 vectors
    /// or <see cref="IgbDevice.Open"/> throws <see cref="IgbInterruptVectorsException"/>.
    /// </summary>
    public IgbCompletionMode CompletionMode { get; init; } = IgbCompletionMode.Polled;

    /// <summary>
    /// The least time between two interrupts of one queue pair's vector (EITR interval, §8.8, whole microseconds, 0 to
    /// 8191 µs; 0 turns moderation off). The first interrupt after a quiet spell is not delayed. 50 µs by default
    /// (about 20 000 interrupts a second at most). Used in the interrupt modes only.
    /// </summary>
    public TimeSpan InterruptThrottle { get; init; } = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// In <see cref="IgbCompletionMode.Hybrid"/>, how many times a wait looks at the receive ring before it re-arms the
    /// vector and sleeps. Ignored in the other modes.
    /// </summary>
    public int HybridSpinPolls { get; init; } = 64;

    /// <summary>Clock for reset, queue-enable and link waits.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where logs go; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>How the consumers of an 82576's queues wait for completed descriptors.</summary>
public enum IgbCompletionMode
{
    /// <summary>Interrupts stay masked; the consumer polls <see cref="IgbDevice.Receive(System.Span{PacketBuffer}, int)"/>.</summary>
    Polled,

    /// <summary>MSI-X per queue pair: <see cref="IgbDevice.WaitForReceive"/> re-arms the queue's vector and sleeps on it.</summary>
    Interrupt,

    /// <summary>As <see cref="Interrupt"/>, but a wait first polls the ring <see cref="IgbOptions.HybridSpinPolls"/> times.</summary>
    Hybrid,
}
