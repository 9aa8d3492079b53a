using System.Diagnostics;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>Outcome of a <see cref="RandomReadBenchmark"/> run.</summary>
/// <param name="Ios">Reads completed in the timed window.</param>
/// <param name="Elapsed">Length of the timed window.</param>
/// <param name="P50Microseconds">Median latency (submission to completion seen), in microseconds.</param>
/// <param name="P90Microseconds">90th percentile latency, in microseconds.</param>
/// <param name="P99Microseconds">99th percentile latency, in microseconds.</param>
/// <param name="Errors">Reads the controller completed with an error status.</param>
/// <param name="FirstError">The status of the first failed read, when there was one.</param>
internal sealed record BenchmarkResult(long Ios, TimeSpan Elapsed, double P50Microseconds, double P90Microseconds,
    double P99Microseconds, long Errors, NvmeIoCompletion? FirstError = null)
{
    /// <summary>Completed reads per second.</summary>
    public double Iops => Elapsed > TimeSpan.Zero ? Ios / Elapsed.TotalSeconds : 0;

    /// <summary>Throughput in megabytes (10^6 bytes) per second.</summary>
    public double MegabytesPerSecond => Iops * RandomReadBenchmark.IoBytes / 1e6;
}

/// <summary>How far a run has got, reported to the progress callback of <see cref="RandomReadBenchmark.Run"/>.</summary>
/// <param name="Ios">Reads completed so far.</param>
/// <param name="Elapsed">Time since the timed window began.</param>
/// <param name="Duration">Length of the whole window.</param>
internal readonly record struct BenchmarkProgress(long Ios, TimeSpan Elapsed, TimeSpan Duration);

/// <summary>
/// 4 KiB random reads at a fixed queue depth on one queue: every completion is replaced by a new read, all
/// submissions of one reap round announced with one doorbell write. Latency is completion time minus the
/// submission timestamp the queue recorded, both in <see cref="Stopwatch"/> ticks (the controller must use
/// <see cref="TimeProvider.System"/>). Used by <c>vfio nvme perf</c>.
/// </summary>
internal static class RandomReadBenchmark
{
    /// <summary>Bytes per read.</summary>
    public const int IoBytes = 4096;

    /// <summary>
    /// Runs the workload for <paramref name="duration"/>. <paramref name="buffer"/> holds <paramref name="depth"/>
    /// reads of <see cref="IoBytes"/> each. <paramref name="progress"/>, when given, is called from the loop about
    /// every <paramref name="progressInterval"/> (default 200 ms); it should return quickly.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The depth does not fit the queue or the buffer, or the
    /// namespace's blocks are larger than one read.</exception>
    public static BenchmarkResult Run(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, int depth, TimeSpan duration,
        Action<BenchmarkProgress>? progress = null, TimeSpan? progressInterval = null)
    {
        ArgumentNullException.ThrowIfNull(queue);
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(buffer);
        if (depth < 1 || depth > queue.Depth)
        {
            throw new ArgumentOutOfRangeException(nameof(depth), depth, $"queue depth must be 1..{queue.Depth} (the queue's entries - 1)");
        }
        if ((ulong)depth * IoBytes > buffer.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(depth), depth, $"{depth} reads of {IoBytes} bytes do not fit the {buffer.Length}-byte buffer");
        }
        if (ns.BlockSize > IoBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(ns), ns.BlockSize, $"blocks of {ns.BlockSize} bytes are larger than one {IoBytes}-byte read");
        }
        int blocks = IoBytes / ns.BlockSize;
        ulong span = ns.BlockCount / (ulong)blocks;
        var histogram = new LatencyHistogram();
        var completions = new NvmeIoCompletion[depth];
        ulong rng = 0x9E3779B97F4A7C15;
        long ios = 0, errors = 0;
        NvmeIoCompletion? firstError = null;
        int slot = 0;

        ulong NextLba()
        {
            // xorshift64: cheap, allocation-free, good enough to spread reads over the namespace.
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            return rng % span * (ulong)blocks;
        }

        for (int i = 0; i < depth; i++)
        {
            queue.SubmitRead(ns, NextLba(), blocks, buffer, (ulong)(slot++ % depth) * IoBytes);
        }
        queue.RingDoorbell();
        long start = Stopwatch.GetTimestamp();
        long end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long reportEvery = (long)((progressInterval ?? TimeSpan.FromMilliseconds(200)).TotalSeconds * Stopwatch.Frequency);
        long nextReport = start + reportEvery;
        long now = start;
        while (now < end)
        {
            int n = queue.Reap(completions);
            now = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++)
            {
                ref readonly var c = ref completions[i];
                if (!c.IsSuccess)
                {
                    errors++;
                    firstError ??= c;
                }
                histogram.Record(now - c.SubmittedTimestamp);
                ios++;
                queue.SubmitRead(ns, NextLba(), blocks, buffer, (ulong)(slot++ % depth) * IoBytes);
            }
            if (n > 0) { queue.RingDoorbell(); }
            if (progress is not null && now >= nextReport)
            {
                nextReport = now + reportEvery;
                progress(new BenchmarkProgress(ios, Stopwatch.GetElapsedTime(start, now), duration));
            }
        }
        var elapsed = Stopwatch.GetElapsedTime(start);
        // Drain what is still in flight so the queue can be reused or deleted.
        while (queue.Outstanding > 0) { queue.Reap(completions); }
        progress?.Invoke(new BenchmarkProgress(ios, elapsed, duration));
        return new BenchmarkResult(ios, elapsed, histogram.PercentileMicroseconds(0.50), histogram.PercentileMicroseconds(0.90),
            histogram.PercentileMicroseconds(0.99), errors, firstError);
    }

    /// <summary>Managed bytes the calling thread allocates per synchronous polled 4 KiB read, over <paramref name="count"/> reads.</summary>
    public static double AllocatedBytesPerSyncRead(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, int count)
    {
        ArgumentNullException.ThrowIfNull(queue);
        ArgumentNullException.ThrowIfNull(ns);
        int blocks = IoBytes / ns.BlockSize;
        for (int i = 0; i < 100; i++) { queue.Read(ns, (ulong)i * (ulong)blocks, blocks, buffer); }   // warm up (JIT, tiering)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < count; i++)
        {
            queue.Read(ns, (ulong)(i % 1024) * (ulong)blocks, blocks, buffer);
        }
        long after = GC.GetAllocatedBytesForCurrentThread();
        return (after - before) / (double)count;
    }
}
