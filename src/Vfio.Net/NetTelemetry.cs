using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vfio.Net;

/// <summary>
/// The NIC drivers' shared <see cref="Meter"/> and <see cref="ActivitySource"/>, both named "Vfio.Net". Every
/// instrument is observable: it reads the counters a driver keeps for <see cref="INetPort.GetStats"/> when a listener
/// collects, so the data path pays nothing for it. A driver registers each open port with <see cref="Track(INetPort)"/>
/// (or, for a device that is not an <see cref="INetPort"/>, with a function returning its stats) and disposes the
/// registration when it closes. Activities cover bring-up and reset. README "Metrics" lists every instrument and tag.
/// </summary>
public static class NetTelemetry
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "Vfio.Net";

    /// <summary>Tag: the driver's name (<see cref="INetPort.DriverName"/>).</summary>
    public const string DriverTag = "vfio.net.driver";

    /// <summary>Tag: the queue pair, on drivers that count per queue (absent when the driver counts per port).</summary>
    public const string QueueTag = "vfio.net.queue";

    /// <summary>Tag: <c>receive</c> or <c>transmit</c> (OpenTelemetry's <c>network.io.direction</c>).</summary>
    public const string DirectionTag = "network.io.direction";

    private static readonly string? s_version = VfioTelemetry.VersionOf(typeof(NetTelemetry).Assembly);
    private static readonly Meter s_meter = new(Name, s_version);
    private static readonly ActivitySource s_source = new(Name, s_version);
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<object, Port> s_ports = new(ReferenceEqualityComparer.Instance);

    static NetTelemetry()
    {
        s_meter.CreateObservableCounter("vfio.net.packets", () => Observe(static c => c.Packets), "{packet}",
            "Packets received, or taken for transmission, by port, queue and direction");
        s_meter.CreateObservableCounter("vfio.net.io", () => Observe(static c => c.Bytes), "By",
            "Bytes of those packets (frames without FCS or driver header)");
        s_meter.CreateObservableCounter("vfio.net.dropped", () => Observe(static c => c.Drops), "{packet}",
            "Packets the driver or device dropped (no buffer, spanning buffers, too short)");
        s_meter.CreateObservableCounter("vfio.net.errors", () => Observe(static c => c.Errors), "{error}",
            "Packets the device reported in error, where it reports them");
        s_meter.CreateObservableCounter("vfio.net.tx.ring_full", ObserveRingFull, "{packet}",
            "Packets a transmit burst did not take because the transmit ring was full");
    }

    /// <summary>Counts <paramref name="port"/> in the instruments until the registration is disposed. Registering a port twice counts it once.</summary>
    public static IDisposable Track(INetPort port)
    {
        ArgumentNullException.ThrowIfNull(port);
        return Track(port, port.Address, port.DriverName, port.GetStats);
    }

    /// <summary>
    /// Counts a device that is not an <see cref="INetPort"/> (or counts it as <paramref name="owner"/>): <paramref name="stats"/>
    /// is called when a listener collects, from the listener's thread, and must only read counters.
    /// </summary>
    public static IDisposable Track(object owner, PciAddress address, string driver, Func<NetPortStats> stats)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentNullException.ThrowIfNull(driver);
        ArgumentNullException.ThrowIfNull(stats);
        lock (s_lock)
        {
            if (s_ports.ContainsKey(owner)) { return new Registration(null); }
            s_ports.Add(owner, new Port(address.ToString(), driver, stats));
            return new Registration(owner);
        }
    }

    /// <summary>
    /// Starts activity <paramref name="name"/> (bring-up, reset) on the device at <paramref name="address"/>, or returns
    /// null when no one listens. The caller disposes it, after <see cref="VfioTelemetry.Fail"/> when the work threw.
    /// </summary>
    public static Activity? StartActivity(string name, PciAddress address) => VfioTelemetry.StartActivity(s_source, name, address);

    private static List<(Port Port, NetPortStats Stats)> Snapshot()
    {
        Port[] ports;
        lock (s_lock) { ports = [.. s_ports.Values]; }
        var result = new List<(Port, NetPortStats)>(ports.Length);
        foreach (var p in ports)
        {
            try
            {
                result.Add((p, p.Stats()));
            }
            catch (ObjectDisposedException)
            {
                // Closed between the snapshot and the read: its registration goes with it.
            }
        }
        return result;
    }

    private static List<Measurement<long>> Observe(Func<NetCounters, long> field)
    {
        var measurements = new List<Measurement<long>>();
        foreach (var (port, stats) in Snapshot())
        {
            if (stats.Queues.Count == 0)
            {
                Add(measurements, port, null, stats.Rx, stats.Tx, field);
                continue;
            }
            foreach (var q in stats.Queues) { Add(measurements, port, q.Queue, q.Rx, q.Tx, field); }
        }
        return measurements;
    }

    private static void Add(List<Measurement<long>> into, Port port, int? queue, NetCounters rx, NetCounters tx, Func<NetCounters, long> field)
    {
        into.Add(new(field(rx), port.Tags(queue, "receive")));
        into.Add(new(field(tx), port.Tags(queue, "transmit")));
    }

    private static List<Measurement<long>> ObserveRingFull()
    {
        var measurements = new List<Measurement<long>>();
        foreach (var (port, stats) in Snapshot()) { measurements.Add(new(stats.TxRingFull, port.Tags(null, null))); }
        return measurements;
    }

    private sealed record Port(string Address, string Driver, Func<NetPortStats> Stats)
    {
        public KeyValuePair<string, object?>[] Tags(int? queue, string? direction)
        {
            var tags = new List<KeyValuePair<string, object?>>(4)
            {
                new(VfioTelemetry.PciAddressTag, Address),
                new(DriverTag, Driver),
            };
            if (queue is { } q) { tags.Add(new(QueueTag, q)); }
            if (direction is not null) { tags.Add(new(DirectionTag, direction)); }
            return [.. tags];
        }
    }

    private sealed class Registration(object? owner) : IDisposable
    {
        private object? _owner = owner;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _owner, null) is { } owner)
            {
                lock (s_lock) { s_ports.Remove(owner); }
            }
        }
    }
}
