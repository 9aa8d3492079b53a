using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Vfio.Tests.Shared;

/// <summary>One measurement a <see cref="MetricRecorder"/> saw: the instrument, the value and its tags.</summary>
internal sealed record RecordedMeasurement(string Instrument, string? Unit, double Value, IReadOnlyDictionary<string, object?> Tags)
{
    public object? Tag(string key) => Tags.TryGetValue(key, out var v) ? v : null;
}

/// <summary>
/// A <see cref="MeterListener"/> that enables every instrument of the meters named and keeps what they record
/// (observable ones when <see cref="Collect"/> is called): what dotnet-counters or an exporter would see.
/// </summary>
internal sealed class MetricRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<RecordedMeasurement> _measurements = new();

    public MetricRecorder(params string[] meters)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (meters.Contains(instrument.Meter.Name)) { listener.EnableMeasurementEvents(instrument); }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
        _listener.Start();
    }

    public IReadOnlyList<RecordedMeasurement> Measurements => [.. _measurements];

    /// <summary>The measurements of <paramref name="instrument"/> whose tags include every pair of <paramref name="tags"/>.</summary>
    public IReadOnlyList<RecordedMeasurement> Of(string instrument, params (string Key, object? Value)[] tags) =>
        [.. _measurements.Where(m => m.Instrument == instrument && tags.All(t => Equals(m.Tag(t.Key), t.Value)))];

    /// <summary>The sum of what <see cref="Of"/> finds.</summary>
    public double Sum(string instrument, params (string Key, object? Value)[] tags) => Of(instrument, tags).Sum(m => m.Value);

    /// <summary>Forgets what was recorded so far.</summary>
    public void Clear() => _measurements.Clear();

    /// <summary>Reads every observable instrument once (what an exporter does at each interval).</summary>
    public void Collect() => _listener.RecordObservableInstruments();

    public void Dispose() => _listener.Dispose();

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new Dictionary<string, object?>(tags.Length);
        foreach (var t in tags) { copy[t.Key] = t.Value; }
        _measurements.Enqueue(new RecordedMeasurement(instrument.Name, instrument.Unit, value, copy));
    }
}
