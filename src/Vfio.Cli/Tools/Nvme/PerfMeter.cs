using System.Diagnostics;
using System.Diagnostics.Metrics;
using HdrHistogram;
using Vfio.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// What <c>vfio nvme perf</c> reports, taken from the driver's "Vfio.Nvme" meter (<see cref="NvmeTelemetry"/>) with a
/// <see cref="MeterListener"/>: the I/Os, reads, writes and errors the driver counted on the run's queues, and the
/// latencies it recorded, so the printed totals are what dotnet-counters or an exporter would show for the same run.
/// An I/O is in the timed window when the driver retired it inside <see cref="PerfWindow"/>; errors count for the
/// whole run, ramp included. Only reads and writes are the workload: other commands (a Flush) are left out. The driver's latency runs from placing the command in the submission queue to retiring
/// its completion, on the controller's clock (<see cref="TimeProvider.System"/> here).
/// </summary>
/// <remarks>
/// The callbacks run on whichever thread retires a command, under that queue's lock, so each queue's counts have one
/// writer at a time; they allocate nothing (the queues are watched before the run starts).
/// </remarks>
internal sealed class PerfMeter : IDisposable
{
    private static readonly double NanosecondsPerSecond = 1e9;
    private readonly string _address;
    private readonly MeterListener _listener = new();
    private readonly Dictionary<int, Counts> _byQueue = [];
    private Counts?[] _queues = [];
    private int[] _order = [];
    private long _start = long.MaxValue, _end = long.MaxValue;

    /// <summary>Listens to the driver's per-I/O instruments of the controller at <paramref name="device"/>.</summary>
    public PerfMeter(PciAddress device)
    {
        _address = device.ToString();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == NvmeTelemetry.Name && instrument.Name is "vfio.nvme.io.operations" or "vfio.nvme.io.duration")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>(OnOperation);
        _listener.SetMeasurementEventCallback<double>(OnDuration);
    }

    /// <summary>Counts the queues <paramref name="queueIds"/> (the workers' queues), in the order given; starts listening.</summary>
    public void Watch(IEnumerable<int> queueIds)
    {
        foreach (int qid in queueIds) { _byQueue.Add(qid, new Counts()); }
        var byId = new Counts?[_byQueue.Count == 0 ? 0 : _byQueue.Keys.Max() + 1];
        foreach (var (qid, counts) in _byQueue) { byId[qid] = counts; }
        _queues = byId;
        _order = [.. queueIds];
        _listener.Start();
    }

    /// <summary>From now on, I/Os retired inside <paramref name="window"/> are counted.</summary>
    /// <remarks>
    /// The callbacks test the window on the coarse millisecond clock (<see cref="Environment.TickCount64"/>, the
    /// kernel's cached time): a precise clock read per I/O would cost more than the I/O under TCG, whose guest clock
    /// is the HPET (about 2 us a read). The window's ends move by a millisecond at most.
    /// </remarks>
    public void Open(PerfWindow window)
    {
        long ticks = Stopwatch.GetTimestamp(), ms = Environment.TickCount64;
        Volatile.Write(ref _end, ToMilliseconds(window.End, ticks, ms));
        Volatile.Write(ref _start, ToMilliseconds(window.Start, ticks, ms));
    }

    private static long ToMilliseconds(long timestamp, long nowTicks, long nowMs) =>
        timestamp == long.MaxValue ? long.MaxValue : nowMs + (long)((timestamp - nowTicks) * 1000.0 / Stopwatch.Frequency);

    /// <summary>The totals, per queue in the order <see cref="Watch"/> was given. Call once the workers are done.</summary>
    public PerfCounts Totals()
    {
        _listener.Dispose();
        var latency = new LongHistogram(1, QueueStats.MaxLatencyNanoseconds, 3);
        long reads = 0, writes = 0, errors = 0;
        var perQueue = new long[_order.Length];
        for (int i = 0; i < _order.Length; i++)
        {
            var c = _byQueue[_order[i]];
            perQueue[i] = c.Reads + c.Writes;
            reads += c.Reads;
            writes += c.Writes;
            errors += c.Errors;
            latency.Add(c.Latency);
        }
        return new PerfCounts(perQueue.Sum(), reads, writes, errors, perQueue, latency);
    }

    public void Dispose() => _listener.Dispose();

    private Counts? Find(ReadOnlySpan<KeyValuePair<string, object?>> tags, out bool ok, out string? operation)
    {
        ok = false;
        operation = null;
        Counts? counts = null;
        bool device = false;
        foreach (var t in tags)
        {
            switch (t.Key)
            {
                case VfioTelemetry.PciAddressTag: device = t.Value as string == _address; break;
                case NvmeTelemetry.QueueIdTag:
                    if (t.Value is int qid && (uint)qid < (uint)_queues.Length) { counts = _queues[qid]; }
                    break;
                case NvmeTelemetry.OutcomeTag: ok = t.Value as string == "ok"; break;
                case NvmeTelemetry.OperationTag: operation = t.Value as string; break;
            }
        }
        return device ? counts : null;
    }

    private void OnOperation(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        if (Find(tags, out bool ok, out string? operation) is not { } c) { return; }
        if (!ok)
        {
            c.Errors += value;
            c.InWindow = false;
            return;
        }
        long now = Environment.TickCount64;
        // The duration of the same command is recorded next, on this thread: it follows this decision.
        c.InWindow = now >= Volatile.Read(ref _start) && now < Volatile.Read(ref _end);
        if (!c.InWindow) { return; }
        if (operation == "read") { c.Reads += value; }
        else if (operation == "write") { c.Writes += value; }
        else { c.InWindow = false; }
    }

    private void OnDuration(Instrument instrument, double seconds, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        if (Find(tags, out bool ok, out _) is not { } c || !ok || !c.InWindow) { return; }
        c.Latency.RecordValue(Math.Clamp((long)(seconds * NanosecondsPerSecond), 1, QueueStats.MaxLatencyNanoseconds));
    }

    private sealed class Counts
    {
        public long Reads, Writes, Errors;
        public bool InWindow;
        public LongHistogram Latency { get; } = new(1, QueueStats.MaxLatencyNanoseconds, 3);
    }
}

/// <summary>The meter's view of a run (<see cref="PerfMeter.Totals"/>).</summary>
/// <param name="Ios">Successful I/Os retired in the window.</param>
/// <param name="Reads">Of those, the reads.</param>
/// <param name="Writes">Of those, the writes.</param>
/// <param name="Errors">I/Os that failed, over the whole run.</param>
/// <param name="QueueIos">Successful I/Os in the window, per worker queue.</param>
/// <param name="Latency">Their latencies, in nanoseconds.</param>
internal sealed record PerfCounts(long Ios, long Reads, long Writes, long Errors, IReadOnlyList<long> QueueIos, LongHistogram Latency);
