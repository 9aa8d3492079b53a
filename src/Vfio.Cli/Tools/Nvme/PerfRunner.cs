using System.Diagnostics;
using System.Runtime.ExceptionServices;
using HdrHistogram;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// Runs a <see cref="PerfPlan"/> with an engine, as spdk_nvme_perf runs its workers: one thread per queue, each
/// prefilling its region when the plan verifies reads, then all starting together; the ramp, then the timed
/// window. This thread only watches: it takes the process's allocation and CPU counters at the window's edges
/// and reports progress. Used by <c>vfio nvme perf</c>.
/// </summary>
internal static class PerfRunner
{
    /// <summary>
    /// Runs the plan. <paramref name="progress"/>, when given, is called on this thread about every
    /// <paramref name="progressInterval"/> during the window (not during the ramp); what it allocates is counted
    /// in <see cref="PerfResult.AllocatedBytes"/>, so runs that measure allocation pass none.
    /// </summary>
    /// <exception cref="Exception">Whatever a worker threw (the first one); the other workers are stopped.</exception>
    public static PerfResult Run(IPerfEngine engine, PerfPlan plan, Action<PerfProgress>? progress = null, TimeSpan? progressInterval = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(plan);
        var workers = new List<IPerfWorker>(plan.Queues);
        using var meter = new PerfMeter(engine.Device);
        try
        {
            for (int q = 0; q < plan.Queues; q++) { workers.Add(engine.CreateWorker(q)); }
            meter.Watch(workers.Select(w => w.QueueId));
            return Run(workers, plan, meter, progress, progressInterval ?? TimeSpan.FromSeconds(1));
        }
        finally
        {
            // Queues go in reverse order of creation, as everything else is released.
            for (int i = workers.Count - 1; i >= 0; i--) { workers[i].Dispose(); }
        }
    }

    private static PerfResult Run(List<IPerfWorker> workers, PerfPlan plan, PerfMeter meter, Action<PerfProgress>? progress, TimeSpan interval)
    {
        int n = workers.Count;
        var stats = new QueueStats[n];
        var failures = new Exception?[n];
        using var ready = new CountdownEvent(n);
        using var go = new ManualResetEventSlim();
        using var measured = new ManualResetEventSlim();
        PerfWindow? window = null;
        var threads = new Thread[n];
        for (int q = 0; q < n; q++)
        {
            stats[q] = new QueueStats(plan, q);
            int queue = q;
            threads[q] = new Thread(() =>
            {
                bool signalled = false;
                try
                {
                    if (plan.Prefills) { workers[queue].Prefill(); }
                    ready.Signal();
                    signalled = true;
                    go.Wait();
                    workers[queue].Run(Volatile.Read(ref window)!, stats[queue]);
                }
                catch (Exception e)
                {
                    failures[queue] = e;
                    Volatile.Read(ref window)?.Stop();
                    if (!signalled) { ready.Signal(); }
                }
                // Nothing of this thread runs between the window's end and the runner's last reading.
                measured.Wait();
            })
            {
                IsBackground = true,
                Name = $"vfio perf Q{queue + 1}",
            };
            threads[q].Start();
        }

        long allocated = 0;
        TimeSpan cpu = TimeSpan.Zero;
        try
        {
            ready.Wait();
            long now = Stopwatch.GetTimestamp();
            long start = now + Ticks(plan.Ramp);
            var w = new PerfWindow(start, start + Ticks(plan.Duration));
            if (Array.Exists(failures, f => f is not null)) { w.Stop(); }
            meter.Open(w);
            Volatile.Write(ref window, w);
            go.Set();

            SleepUntil(w, w.Start);
            // CPU first and allocation last at the start, the other way round at the end: the Process object the
            // CPU reading allocates falls outside the window.
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            long intervalTicks = Ticks(interval);
            for (long next = w.Start + intervalTicks; progress is not null && !w.IsOver(Stopwatch.GetTimestamp()); next += intervalTicks)
            {
                SleepUntil(w, Math.Min(next, w.End));
                now = Stopwatch.GetTimestamp();
                if (now < w.End && !w.Stopped)
                {
                    progress(new PerfProgress(stats.Sum(s => s.ProgressIos), Stopwatch.GetElapsedTime(w.Start, now), plan.Duration));
                }
            }
            SleepUntil(w, w.End);
            allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
        }
        finally
        {
            measured.Set();
            foreach (var t in threads) { t.Join(); }
        }
        if (Array.Find(failures, f => f is not null) is { } failure) { ExceptionDispatchInfo.Throw(failure); }

        // The totals are the driver's meter's (the workers' own counts drive the progress display only).
        var counts = meter.Totals();
        progress?.Invoke(new PerfProgress(counts.Ios, plan.Duration, plan.Duration));
        return new PerfResult(plan.Duration, stats, counts, allocated, cpu);
    }

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);

    /// <summary>Sleeps until <paramref name="timestamp"/>, or until the window is stopped (checked every 50 ms).</summary>
    private static void SleepUntil(PerfWindow window, long timestamp)
    {
        while (!window.Stopped)
        {
            var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), timestamp);
            if (left <= TimeSpan.Zero) { return; }
            Thread.Sleep(left < TimeSpan.FromMilliseconds(50) ? left : TimeSpan.FromMilliseconds(50));
        }
    }
}
