using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vfio.Nvme;

/// <summary>
/// The NVMe driver's <see cref="Meter"/> and <see cref="ActivitySource"/>, both named "Vfio.Nvme". Per-I/O
/// instruments (operations, bytes, errors, latency) are recorded at the one place a command is retired, and only
/// while a listener has enabled one of them: with nobody listening the completion path pays one predictable branch.
/// The queue-depth gauge reads <see cref="NvmeIoQueue.Outstanding"/> when collected. Activities cover the slow admin
/// work: controller bring-up, reset and I/O queue creation. README "Metrics" lists every instrument and tag.
/// </summary>
public static class NvmeTelemetry
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "Vfio.Nvme";

    /// <summary>Tag: the I/O queue's identifier (QID, from 1).</summary>
    public const string QueueIdTag = "vfio.nvme.queue.id";

    /// <summary>Tag: <c>read</c>, <c>write</c> or <c>other</c> (Flush, Write Zeroes, Dataset Management, ...).</summary>
    public const string OperationTag = "vfio.nvme.operation";

    /// <summary>Tag: <c>ok</c>, or <c>error</c> for a command that completed with an error status or was aborted.</summary>
    public const string OutcomeTag = "vfio.nvme.outcome";

    /// <summary>Tag on errors: the completion status as <c>SCT/SC</c> in hex (NVMe 1.4 §4.6.1.2), e.g. <c>2/81</c>.</summary>
    public const string ErrorTypeTag = "error.type";

    private static readonly string? s_version = VfioTelemetry.VersionOf(typeof(NvmeTelemetry).Assembly);

    internal static readonly Meter Meter = new(Name, s_version);

    internal static readonly ActivitySource Source = new(Name, s_version);

    internal static readonly Counter<long> Operations = Meter.CreateCounter<long>("vfio.nvme.io.operations", "{io}",
        "NVMe I/O commands completed, by queue, operation and outcome");

    internal static readonly Counter<long> Bytes = Meter.CreateCounter<long>("vfio.nvme.io.bytes", "By",
        "Bytes moved by NVMe reads and writes that succeeded");

    internal static readonly Counter<long> Errors = Meter.CreateCounter<long>("vfio.nvme.io.errors", "{error}",
        "NVMe I/O commands that completed with an error status or were aborted");

    internal static readonly Histogram<double> Duration = Meter.CreateHistogram("vfio.nvme.io.duration", "s",
        "NVMe I/O command latency, from placing the command in the submission queue to retiring its completion",
        advice: new InstrumentAdvice<double>
        {
            // Microseconds to seconds: flash reads take tens of microseconds, a model in memory a few.
            HistogramBucketBoundaries = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
        });

    private static readonly ConcurrentDictionary<NvmeIoQueue, byte> s_queues = new();

    static NvmeTelemetry()
    {
        Meter.CreateObservableGauge("vfio.nvme.queue.outstanding", ObserveOutstanding, "{command}",
            "NVMe I/O commands in flight on a queue (submission slots in use)");
    }

    /// <summary>True while a listener has enabled a per-I/O instrument: the completion path's one branch.</summary>
    internal static bool Recording => Operations.Enabled | Duration.Enabled | Bytes.Enabled | Errors.Enabled;

    /// <summary>The queue exists in the controller: observed by the queue-depth gauge until <see cref="Untrack"/>.</summary>
    internal static void Track(NvmeIoQueue queue) => s_queues.TryAdd(queue, 0);

    internal static void Untrack(NvmeIoQueue queue) => s_queues.TryRemove(queue, out _);

    /// <summary>Runs <paramref name="work"/> inside activity <paramref name="name"/> (when someone listens), failed if it throws.</summary>
    internal static T Traced<T>(string name, PciAddress device, Func<T> work)
    {
        using var activity = VfioTelemetry.StartActivity(Source, name, device);
        try
        {
            return work();
        }
        catch (Exception e)
        {
            VfioTelemetry.Fail(activity, e);
            throw;
        }
    }

    /// <summary>Tags the current activity when it is one of this source's (never a caller's own).</summary>
    internal static void TagCurrent(string key, object? value)
    {
        if (Activity.Current is { } activity && ReferenceEquals(activity.Source, Source)) { activity.SetTag(key, value); }
    }

    private static IEnumerable<Measurement<int>> ObserveOutstanding()
    {
        var measurements = new List<Measurement<int>>(s_queues.Count);
        foreach (var q in s_queues.Keys)
        {
            if (!q.IsDisposed) { measurements.Add(new(q.Outstanding, q.MetricTags)); }
        }
        return measurements;
    }
}
