using System.Diagnostics;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// Latencies in 100 ns buckets up to 100 ms (one overflow bucket above), preallocated so that recording
/// allocates nothing and costs one increment.
/// </summary>
internal sealed class LatencyHistogram
{
    private const long BucketNanoseconds = 100;
    private readonly long[] _buckets = new long[1_000_001];
    private readonly double _nanosecondsPerTick = 1e9 / Stopwatch.Frequency;

    /// <summary>Samples recorded.</summary>
    public long Count { get; private set; }

    /// <summary>Records one latency given in <see cref="Stopwatch"/> ticks.</summary>
    public void Record(long ticks)
    {
        long bucket = (long)(ticks * _nanosecondsPerTick) / BucketNanoseconds;
        _buckets[Math.Clamp(bucket, 0, _buckets.Length - 1)]++;
        Count++;
    }

    /// <summary>
    /// The latency below which <paramref name="fraction"/> of samples lie, in microseconds (bucket upper bound);
    /// NaN when nothing was recorded.
    /// </summary>
    public double PercentileMicroseconds(double fraction)
    {
        if (Count == 0) { return double.NaN; }
        long target = (long)Math.Ceiling(fraction * Count);
        long seen = 0;
        for (int i = 0; i < _buckets.Length; i++)
        {
            seen += _buckets[i];
            if (seen >= Math.Max(target, 1)) { return (i + 1) * BucketNanoseconds / 1000.0; }
        }
        return double.PositiveInfinity;
    }
}
