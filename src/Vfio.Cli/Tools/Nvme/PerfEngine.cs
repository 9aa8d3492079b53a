using System.Diagnostics;
using HdrHistogram;
using Vfio.Nvme;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>
/// One way of carrying out a <see cref="PerfPlan"/> (<c>vfio nvme perf --api</c>): the raw batch calls of
/// <see cref="NvmeIoQueue"/> (<see cref="RawBatchEngine"/>), or another API. An engine only moves data; the
/// <see cref="PerfRunner"/> owns the threads, the timed window and the measurements, and
/// <see cref="QueueStats"/> the counting and the checks, so a new engine is one file: this interface and a worker.
/// </summary>
internal interface IPerfEngine
{
    /// <summary>Creates the worker of queue <paramref name="queue"/> (0-based): its queue pair, its DMA buffers.
    /// Called on the runner's thread, once per queue, before any worker runs.</summary>
    IPerfWorker CreateWorker(int queue);

    /// <summary>The controller's PCI address: the runner reads the run's totals from the driver's meter by it (<see cref="PerfMeter"/>).</summary>
    PciAddress Device { get; }
}

/// <summary>One queue's share of a run; each runs on a thread of its own.</summary>
internal interface IPerfWorker : IDisposable
{
    /// <summary>The NVMe queue (QID) the worker submits to.</summary>
    int QueueId { get; }

    /// <summary>
    /// Writes the pattern over the queue's region (<see cref="IoPicker.Prefill"/>, <see cref="VerifyPattern"/>)
    /// with the plan's depth in flight, and returns when all of it completed. Called only when
    /// <see cref="PerfPlan.Prefills"/>. A failed write must throw: the verified run would report it as corruption.
    /// </summary>
    void Prefill();

    /// <summary>
    /// Keeps the plan's depth in flight, replacing every completion with the next I/O of the queue's
    /// <see cref="IoPicker"/>, until <paramref name="window"/> ends or stops; then waits for what is in flight.
    /// Every completion goes to <paramref name="stats"/> (<see cref="QueueStats.Failed"/> or
    /// <see cref="QueueStats.Succeeded"/>, counted when seen inside the window). Must not allocate per I/O.
    /// </summary>
    void Run(PerfWindow window, QueueStats stats);
}

/// <summary>
/// The timed window of a run, in <see cref="Stopwatch"/> timestamps: I/Os completed at or after
/// <see cref="Start"/> and before <see cref="End"/> are counted, those before (the ramp) are not, and workers stop
/// at <see cref="End"/> or as soon as the run is <see cref="Stop">stopped</see>.
/// </summary>
internal sealed class PerfWindow(long start, long end)
{
    private volatile bool _stopped;

    /// <summary>A window that never opens or ends: for passes that run to a count, like the prefill.</summary>
    public static PerfWindow Never { get; } = new(long.MaxValue, long.MaxValue);

    /// <summary>When counting starts (the ramp's end).</summary>
    public long Start { get; } = start;

    /// <summary>When the run ends.</summary>
    public long End { get; } = end;

    /// <summary>True once <see cref="Stop"/> was called: a worker failed, the others give up early.</summary>
    public bool Stopped => _stopped;

    /// <summary>Asks every worker to end now.</summary>
    public void Stop() => _stopped = true;

    /// <summary>True when a worker seeing <paramref name="now"/> should submit no more.</summary>
    public bool IsOver(long now) => now >= End || _stopped;
}

/// <summary>
/// What one queue saw: counts, latencies (an HdrHistogram in nanoseconds) and the first error and mismatch.
/// Written by the queue's thread only; the runner reads <see cref="ProgressIos"/> while it runs and the rest after.
/// </summary>
internal sealed class QueueStats
{
    /// <summary>Longest latency recorded as itself, in nanoseconds (100 s); longer ones are recorded as this.</summary>
    public const long MaxLatencyNanoseconds = 100_000_000_000;

    private static readonly double NanosecondsPerTick = 1e9 / Stopwatch.Frequency;
    private readonly PerfPlan _plan;
    private long _progressIos;

    /// <summary>Stats for queue <paramref name="queue"/> of <paramref name="plan"/>.</summary>
    public QueueStats(PerfPlan plan, int queue)
    {
        _plan = plan;
        Queue = queue;
    }

    /// <summary>The queue (0-based).</summary>
    public int Queue { get; }

    /// <summary>Latency of each counted I/O, submission to completion seen, in nanoseconds (3 significant digits).</summary>
    public LongHistogram Latency { get; } = new(1, MaxLatencyNanoseconds, 3);

    /// <summary>Successful I/Os completed inside the window.</summary>
    public long Ios { get; private set; }

    /// <summary>Of <see cref="Ios"/>, the reads.</summary>
    public long Reads { get; private set; }

    /// <summary>Of <see cref="Ios"/>, the writes.</summary>
    public long Writes { get; private set; }

    /// <summary>I/Os that completed with an error status, ramp included.</summary>
    public long Errors { get; private set; }

    /// <summary>Blocks that read back other than their pattern (with verify), ramp included.</summary>
    public long Mismatches { get; private set; }

    /// <summary>The first failed command and its status.</summary>
    public string? FirstError { get; private set; }

    /// <summary>The first block that did not hold its pattern.</summary>
    public PatternMismatch? FirstMismatch { get; private set; }

    /// <summary>SQ tail doorbell writes inside the window, when the engine counts them (<see cref="OpenWindow"/>).</summary>
    public long? SubmissionDoorbells { get; private set; }

    /// <summary>CQ head doorbell writes inside the window, when the engine counts them.</summary>
    public long? CompletionDoorbells { get; private set; }

    /// <summary>
    /// Managed bytes the queue's thread allocated inside the window, when one thread does all of the queue's work
    /// (<see cref="OpenWindow"/>): unlike the process-wide figure, nothing else running in the process is counted.
    /// </summary>
    public long? ThreadAllocatedBytes { get; private set; }

    private long _sqAtOpen, _cqAtOpen, _allocatedAtOpen;

    /// <summary>
    /// For an engine whose queue runs on one thread and counts its doorbell writes: call on that thread when it
    /// first sees the window open, with the cumulative doorbell counts, and <see cref="CloseWindow"/> when it sees
    /// the window over.
    /// </summary>
    public void OpenWindow(long submissionDoorbells, long completionDoorbells)
    {
        _sqAtOpen = submissionDoorbells;
        _cqAtOpen = completionDoorbells;
        _allocatedAtOpen = GC.GetAllocatedBytesForCurrentThread();
    }

    /// <summary>Takes the deltas since <see cref="OpenWindow"/>; on the same thread.</summary>
    public void CloseWindow(long submissionDoorbells, long completionDoorbells)
    {
        ThreadAllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - _allocatedAtOpen;
        SubmissionDoorbells = submissionDoorbells - _sqAtOpen;
        CompletionDoorbells = completionDoorbells - _cqAtOpen;
    }

    /// <summary><see cref="Ios"/> as of the last <see cref="Publish"/>; safe to read from another thread.</summary>
    public long ProgressIos => Volatile.Read(ref _progressIos);

    /// <summary>
    /// A command that succeeded: a read is checked against the pattern with verify (<paramref name="data"/>: the
    /// bytes it read, already ordered after the completion by the queue's reap), and the I/O is counted when
    /// <paramref name="counted"/>, with its latency in <see cref="Stopwatch"/> ticks.
    /// </summary>
    public void Succeeded(bool write, ulong lba, ReadOnlySpan<byte> data, long latencyTicks, bool counted)
    {
        if (!write && _plan.Verify)
        {
            int bad = VerifyPattern.Check(data, lba, _plan.Namespace.BlockSize, _plan.Seed, out var first);
            if (bad > 0)
            {
                Mismatches += bad;
                FirstMismatch ??= first;
            }
        }
        if (!counted) { return; }
        Ios++;
        if (write) { Writes++; } else { Reads++; }
        long ns = (long)(latencyTicks * NanosecondsPerTick);
        Latency.RecordValue(Math.Clamp(ns, 1, MaxLatencyNanoseconds));
    }

    /// <summary>A command that completed with an error status (the message is built for the first one only).</summary>
    public void Failed(in NvmeCommandInfo command, NvmeStatus status)
    {
        Errors++;
        FirstError ??= $"{command} failed: {status}";
    }

    /// <summary>Makes <see cref="Ios"/> visible to the progress display; once per round is enough.</summary>
    public void Publish() => Volatile.Write(ref _progressIos, Ios);
}

/// <summary>How far a run has got, for the progress display.</summary>
/// <param name="Ios">I/Os counted so far, all queues.</param>
/// <param name="Elapsed">Time since the timed window began.</param>
/// <param name="Duration">Length of the window.</param>
internal readonly record struct PerfProgress(long Ios, TimeSpan Elapsed, TimeSpan Duration);

/// <summary>The merged outcome of a run.</summary>
/// <param name="Elapsed">The timed window.</param>
/// <param name="Queues">Each queue's stats.</param>
/// <param name="Counts">The totals and latencies, from the driver's meter (<see cref="PerfMeter"/>).</param>
/// <param name="AllocatedBytes">Managed bytes the process allocated during the window (all threads).</param>
/// <param name="CpuTime">Processor time the process used during the window (all threads).</param>
internal sealed record PerfResult(TimeSpan Elapsed, IReadOnlyList<QueueStats> Queues, PerfCounts Counts, long AllocatedBytes, TimeSpan CpuTime)
{
    /// <summary>Successful I/Os in the window.</summary>
    public long Ios => Counts.Ios;

    /// <summary>Of <see cref="Ios"/>, the reads.</summary>
    public long Reads => Counts.Reads;

    /// <summary>Of <see cref="Ios"/>, the writes.</summary>
    public long Writes => Counts.Writes;

    /// <summary>Failed I/Os.</summary>
    public long Errors => Counts.Errors;

    /// <summary>Successful I/Os in the window, per queue.</summary>
    public IReadOnlyList<long> QueueIos => Counts.QueueIos;

    /// <summary>All queues' latencies, in nanoseconds.</summary>
    public LongHistogram Latency => Counts.Latency;

    /// <summary>Blocks that did not read back as written.</summary>
    public long Mismatches => Queues.Sum(q => q.Mismatches);

    /// <summary>The first failure of the lowest-numbered queue that had one.</summary>
    public string? FirstError => Queues.Select(q => q.FirstError).FirstOrDefault(e => e is not null);

    /// <summary>The first mismatch of the lowest-numbered queue that had one.</summary>
    public PatternMismatch? FirstMismatch => Queues.Select(q => q.FirstMismatch).FirstOrDefault(m => m is not null);

    /// <summary>SQ doorbell writes in the window, or null when the API does not count them.</summary>
    public long? SubmissionDoorbells => Queues.All(q => q.SubmissionDoorbells is not null) ? Queues.Sum(q => q.SubmissionDoorbells!.Value) : null;

    /// <summary>CQ doorbell writes in the window, or null when the API does not count them.</summary>
    public long? CompletionDoorbells => Queues.All(q => q.CompletionDoorbells is not null) ? Queues.Sum(q => q.CompletionDoorbells!.Value) : null;

    /// <summary>Managed bytes the queues' own threads allocated in the window, or null when the engine does not tell.</summary>
    public long? ThreadAllocatedBytes => Queues.All(q => q.ThreadAllocatedBytes is not null) ? Queues.Sum(q => q.ThreadAllocatedBytes!.Value) : null;

    /// <summary>Successful I/Os per second.</summary>
    public double Iops => Elapsed > TimeSpan.Zero ? Ios / Elapsed.TotalSeconds : 0;

    /// <summary>The latency below which <paramref name="percentile"/> % of I/Os completed, in microseconds; NaN without I/Os.</summary>
    public double PercentileMicroseconds(double percentile) =>
        Latency.TotalCount == 0 ? double.NaN : Latency.GetValueAtPercentile(percentile) / 1000.0;

    /// <summary>The longest latency, in microseconds; NaN without I/Os.</summary>
    public double MaxMicroseconds => Latency.TotalCount == 0 ? double.NaN : Latency.GetMaxValue() / 1000.0;
}
