using System.Net.NetworkInformation;
using Vfio.Net;

namespace Vfio.Cli.Tests;

/// <summary>
/// An in-process NIC port with no device behind it: what <see cref="TxBurst"/> takes lands in the peer's receive
/// queue of the same number (a wire per queue pair), up to <see cref="WireCapacity"/> packets waiting, so a full
/// peer refuses the rest as a full ring would. It shows that code written against <see cref="INetPort"/> needs no
/// particular driver, and it counts per queue like a driver that knows its queues.
/// </summary>
internal sealed class FakeNetPort : INetPort
{
    public const string Driver = "fake";
    private readonly Queue<PacketBuffer>[] _rx;
    private readonly NetCounters[] _rxCounters, _txCounters;
    private byte[] _rssKey = [];
    private ushort[] _rssTable = [];

    public FakeNetPort(PciAddress address, PacketPool pool, int queues = 1, int wireCapacity = 256, byte last = 1)
    {
        Address = address;
        Pool = pool;
        WireCapacity = wireCapacity;
        MacAddress = new PhysicalAddress([0x02, 0, 0, 0, 0, last]);
        _rx = [.. Enumerable.Range(0, queues).Select(_ => new Queue<PacketBuffer>())];
        _rxCounters = new NetCounters[queues];
        _txCounters = new NetCounters[queues];
    }

    /// <summary>Two ports wired to each other, receiving into one pool.</summary>
    public static (FakeNetPort A, FakeNetPort B) CreatePair(PacketPool pool, int queues = 1, int wireCapacity = 256)
    {
        var a = new FakeNetPort(PciAddress.Parse("0000:00:0a.0"), pool, queues, wireCapacity, 1);
        var b = new FakeNetPort(PciAddress.Parse("0000:00:0b.0"), pool, queues, wireCapacity, 2);
        a.Peer = b;
        b.Peer = a;
        return (a, b);
    }

    public FakeNetPort? Peer { get; set; }
    public int WireCapacity { get; }
    public bool IsDisposed { get; private set; }
    public PciAddress Address { get; }
    public string DriverName => Driver;
    public PacketPool Pool { get; }
    public int QueuePairCount => _rx.Length;
    public PhysicalAddress? MacAddress { get; }
    public NetLinkState Link => new(Peer is not null, 1000, true);
    public NetRssCapability Rss { get; } = new(true, 40, 128, "toeplitz");
    public ReadOnlySpan<byte> RssKey => _rssKey;
    public ReadOnlySpan<ushort> RssTable => _rssTable;

    /// <summary>Packets waiting in receive queue <paramref name="queue"/>.</summary>
    public IReadOnlyCollection<PacketBuffer> Waiting(int queue) => _rx[queue];

    public int RxBurst(int queue, Span<PacketBuffer> packets)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var rx = _rx[queue];
        int n = 0;
        long bytes = 0;
        while (n < packets.Length && rx.TryDequeue(out var p))
        {
            bytes += p.Length;
            packets[n++] = p;
        }
        var c = _rxCounters[queue];
        _rxCounters[queue] = c with { Packets = c.Packets + n, Bytes = c.Bytes + bytes };
        return n;
    }

    public int TxBurst(int queue, ReadOnlySpan<PacketBuffer> packets)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (Peer is not { IsDisposed: false } peer) { return 0; }
        var wire = peer._rx[queue];
        int n = Math.Min(packets.Length, WireCapacity - wire.Count);
        long bytes = 0;
        for (int i = 0; i < n; i++)
        {
            bytes += packets[i].Length;
            wire.Enqueue(packets[i]);
        }
        var c = _txCounters[queue];
        _txCounters[queue] = c with { Packets = c.Packets + n, Bytes = c.Bytes + bytes };
        return n;
    }

    public void FlushTx(int queue) { }

    public int TxInFlight(int queue) => 0;

    public NetPortStats GetStats() =>
        NetPortStats.FromQueues([.. Enumerable.Range(0, _rx.Length).Select(q => new NetQueueStats(q, _rxCounters[q], _txCounters[q]))]);

    public NetRssResult ConfigureRss(ReadOnlySpan<byte> key, ReadOnlySpan<ushort> redirectionTable)
    {
        var result = Rss.Validate(key, redirectionTable, QueuePairCount);
        if (result == NetRssResult.Applied)
        {
            _rssKey = key.ToArray();
            _rssTable = redirectionTable.ToArray();
        }
        return result;
    }

    /// <summary>Frees what waits in the receive queues: the port owned it, as a ring owns its buffers.</summary>
    public void Dispose()
    {
        if (IsDisposed) { return; }
        IsDisposed = true;
        foreach (var rx in _rx)
        {
            while (rx.TryDequeue(out var p)) { p.Free(); }
        }
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
