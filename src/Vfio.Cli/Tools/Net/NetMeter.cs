using System.Diagnostics.Metrics;
using Vfio.Net;

namespace Vfio.Cli.Tools.Net;

/// <summary>
/// Reads the "Vfio.Net" meter's packet counters (<see cref="NetTelemetry"/>) with a <see cref="MeterListener"/>, as
/// dotnet-counters or an exporter would: <c>vfio net fwd</c> takes a reading before and after its loop, and prints
/// the difference, so what it reports is what the meter counted. Every port the command opens is registered with
/// <see cref="NetTelemetry.Track(INetPort)"/> (a driver's own registration counts it once).
/// </summary>
internal sealed class NetMeter : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Address, string Direction), long> _reading = [];

    public NetMeter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == NetTelemetry.Name && instrument.Name == "vfio.net.packets") { listener.EnableMeasurementEvents(instrument); }
        };
        _listener.SetMeasurementEventCallback<long>(OnMeasurement);
        _listener.Start();
    }

    /// <summary>Packets per port and direction (<c>receive</c>, <c>transmit</c>), summed over queues, as of now.</summary>
    public NetReading Read()
    {
        lock (_lock)
        {
            _reading.Clear();
            _listener.RecordObservableInstruments();
            return new NetReading(new Dictionary<(string, string), long>(_reading));
        }
    }

    public void Dispose() => _listener.Dispose();

    private void OnMeasurement(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        string? address = null, direction = null;
        foreach (var t in tags)
        {
            if (t.Key == VfioTelemetry.PciAddressTag) { address = t.Value as string; }
            else if (t.Key == NetTelemetry.DirectionTag) { direction = t.Value as string; }
        }
        if (address is null || direction is null) { return; }
        // Called from Read, under its lock, on its thread.
        _reading[(address, direction)] = _reading.GetValueOrDefault((address, direction)) + value;
    }
}

/// <summary>One reading of <see cref="NetMeter"/>.</summary>
internal sealed class NetReading(IReadOnlyDictionary<(string Address, string Direction), long> packets)
{
    /// <summary>Packets <paramref name="port"/> transmitted (taken by TxBurst) as of the reading.</summary>
    public long Transmitted(INetPort port) => packets.GetValueOrDefault((port.Address.ToString(), "transmit"));

    /// <summary>Packets <paramref name="port"/> received as of the reading.</summary>
    public long Received(INetPort port) => packets.GetValueOrDefault((port.Address.ToString(), "receive"));
}
