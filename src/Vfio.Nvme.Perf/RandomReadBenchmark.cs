using System.Diagnostics;
using Vfio.Dma;

namespace Vfio.Nvme.Perf;

/// <summary>Outcome of a run.</summary>
internal sealed record BenchmarkResult(long Ios, TimeSpan Elapsed, double P50Microseconds, double P99Microseconds, long Errors)
{
    public double Iops => Ios / Elapsed.TotalSeconds;
}

/// <summary>
/// 4 KiB random reads at a fixed queue depth on one queue: every completion is replaced by a new read, all
/// submissions of one reap round announced with one doorbell write. Latency is completion time minus the
/// submission timestamp the queue recorded, both in <see cref="Stopwatch"/> ticks (the controller must use
/// <see cref="TimeProvider.System"/>).
/// </summary>
internal static class RandomReadBenchmark
{
    public const int IoBytes = 4096;

    public static BenchmarkResult Run(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, int depth, TimeSpan duration)
    {
        int blocks = IoBytes / ns.BlockSize;
        ulong span = ns.BlockCount / (ulong)blocks;
        var histogram = new LatencyHistogram();
        var completions = new NvmeIoCompletion[depth];
        ulong rng = 0x9E3779B97F4A7C15;
        long ios = 0, errors = 0;
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
        long now = start;
        while (now < end)
        {
            int n = queue.Reap(completions);
            if (n == 0)
            {
                now = Stopwatch.GetTimestamp();
                continue;
            }
            now = Stopwatch.GetTimestamp();
            for (int i = 0; i < n; i++)
            {
                ref readonly var c = ref completions[i];
                if (!c.IsSuccess) { errors++; }
                histogram.Record(now - c.SubmittedTimestamp);
                ios++;
                queue.SubmitRead(ns, NextLba(), blocks, buffer, (ulong)(slot++ % depth) * IoBytes);
            }
            queue.RingDoorbell();
        }
        var elapsed = Stopwatch.GetElapsedTime(start);
        // Drain what is still in flight so the queue can be reused or deleted.
        while (queue.Outstanding > 0) { queue.Reap(completions); }
        return new BenchmarkResult(ios, elapsed, histogram.PercentileMicroseconds(0.50), histogram.PercentileMicroseconds(0.99), errors);
    }

    /// <summary>Managed bytes the calling thread allocates per synchronous polled 4 KiB read, over <paramref name="count"/> reads.</summary>
    public static double AllocatedBytesPerSyncRead(NvmeIoQueue queue, NvmeNamespace ns, DmaBuffer buffer, int count)
    {
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
