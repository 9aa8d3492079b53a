using Vfio.Nvme;

namespace Vfio.Cli.Tools.Nvme;

/// <summary>The access patterns of <c>vfio nvme perf -w</c>, as spdk_nvme_perf and fio name them.</summary>
internal enum PerfWorkload
{
    /// <summary>Reads at uniformly random, I/O-size aligned offsets.</summary>
    RandRead,

    /// <summary>Writes at uniformly random, I/O-size aligned offsets.</summary>
    RandWrite,

    /// <summary>Sequential reads, each queue walking its own region and wrapping.</summary>
    Read,

    /// <summary>Sequential writes, each queue walking its own region and wrapping.</summary>
    Write,

    /// <summary>Random offsets; each I/O a read with the plan's read percentage, else a write.</summary>
    RandRw,
}

/// <summary>Names and properties of <see cref="PerfWorkload"/>.</summary>
internal static class PerfWorkloads
{
    /// <summary>The names <c>-w</c> takes, in the order help lists them.</summary>
    public static readonly string[] Names = ["randread", "randwrite", "read", "write", "randrw"];

    /// <summary>The workload called <paramref name="name"/> (one of <see cref="Names"/>).</summary>
    public static PerfWorkload Parse(string name) => Array.IndexOf(Names, name) is var i and >= 0
        ? (PerfWorkload)i
        : throw new ArgumentOutOfRangeException(nameof(name), name, "not a workload name");

    /// <summary>The name <c>-w</c> gives the workload.</summary>
    public static string Name(this PerfWorkload workload) => Names[(int)workload];

    /// <summary>True for the workloads that pick offsets at random.</summary>
    public static bool IsRandom(this PerfWorkload workload) => workload is PerfWorkload.RandRead or PerfWorkload.RandWrite or PerfWorkload.RandRw;

    /// <summary>The percentage of I/Os that are reads: 100 or 0 for the pure workloads, <paramref name="mixed"/> for randrw.</summary>
    public static int ReadPercent(this PerfWorkload workload, int mixed) => workload switch
    {
        PerfWorkload.RandRead or PerfWorkload.Read => 100,
        PerfWorkload.RandWrite or PerfWorkload.Write => 0,
        _ => mixed,
    };
}

/// <summary>
/// What one <c>vfio nvme perf</c> run does, whatever API carries it out. The namespace's first
/// <see cref="SpanBytes"/> are split into <see cref="Queues"/> regions of <see cref="RegionUnits"/> I/Os each:
/// sequential workloads walk their queue's region, random ones pick from the whole span.
/// </summary>
/// <param name="Namespace">The namespace the I/Os go to.</param>
/// <param name="Workload">The access pattern.</param>
/// <param name="ReadPercent">Reads among the I/Os, 0..100 (100 for the read workloads, 0 for the write ones).</param>
/// <param name="IoBytes">Bytes per I/O, a multiple of the namespace's block size.</param>
/// <param name="QueueDepth">I/Os each queue keeps in flight.</param>
/// <param name="Queues">Queue pairs, one thread each.</param>
/// <param name="RegionUnits">I/O-size units in each queue's region (at least 1).</param>
/// <param name="Ramp">How long the workload runs before the timed window; its I/Os are not counted.</param>
/// <param name="Duration">The timed window.</param>
/// <param name="Verify">Writes carry <see cref="VerifyPattern"/>, reads are checked against it, and the span is
/// written once before a workload with reads starts.</param>
/// <param name="Seed">Seeds the offsets and the data pattern.</param>
internal sealed record PerfPlan(
    NvmeNamespace Namespace,
    PerfWorkload Workload,
    int ReadPercent,
    int IoBytes,
    int QueueDepth,
    int Queues,
    ulong RegionUnits,
    TimeSpan Ramp,
    TimeSpan Duration,
    bool Verify,
    ulong Seed = VerifyPattern.DefaultSeed)
{
    /// <summary>Logical blocks per I/O.</summary>
    public int BlocksPerIo => IoBytes / Namespace.BlockSize;

    /// <summary>I/O-size units in the whole span.</summary>
    public ulong TotalUnits => RegionUnits * (ulong)Queues;

    /// <summary>Bytes of the namespace, from LBA 0, that the workload touches.</summary>
    public ulong SpanBytes => TotalUnits * (ulong)IoBytes;

    /// <summary>True when the span is written before the run: with <see cref="Verify"/>, for a workload that reads.</summary>
    public bool Prefills => Verify && ReadPercent > 0;
}

/// <summary>
/// Chooses each I/O of one queue: its first LBA, and whether it reads or writes. A value type with no references,
/// so that a queue's loop picks without allocating; xorshift64 (Marsaglia 2003) is enough to spread offsets.
/// </summary>
internal struct IoPicker
{
    private readonly bool _random;
    private readonly int _readPercent;
    private readonly ulong _regionStart, _regionUnits, _totalUnits, _blocksPerIo;
    private ulong _cursor;
    private ulong _state;

    /// <summary>The picker of queue <paramref name="queue"/> (0-based) for <paramref name="plan"/>.</summary>
    public IoPicker(PerfPlan plan, int queue)
        : this(plan.Workload.IsRandom(), plan.ReadPercent, plan, queue)
    {
    }

    private IoPicker(bool random, int readPercent, PerfPlan plan, int queue)
    {
        _random = random;
        _readPercent = readPercent;
        _regionUnits = plan.RegionUnits;
        _regionStart = (ulong)queue * plan.RegionUnits;
        _totalUnits = plan.TotalUnits;
        _blocksPerIo = (ulong)plan.BlocksPerIo;
        // Each queue its own non-zero state (xorshift never leaves 0), so queues do not repeat each other's offsets.
        _state = (plan.Seed ^ (0x9E3779B97F4A7C15UL * (ulong)(queue + 1))) | 1;
    }

    /// <summary>Sequential writes over queue <paramref name="queue"/>'s region: the pass that fills it before a verified run.</summary>
    public static IoPicker Prefill(PerfPlan plan, int queue) => new(random: false, readPercent: 0, plan, queue);

    /// <summary>Picks the next I/O: returns true for a write, false for a read, and its first LBA.</summary>
    public bool Next(out ulong lba)
    {
        ulong unit;
        if (_random)
        {
            // The high half of random × n is uniform over 0..n-1 without a division (Lemire 2019).
            unit = Math.BigMul(NextRandom(), _totalUnits, out _);
        }
        else
        {
            unit = _regionStart + _cursor;
            _cursor = _cursor + 1 == _regionUnits ? 0 : _cursor + 1;
        }
        lba = unit * _blocksPerIo;
        return _readPercent switch
        {
            100 => false,
            0 => true,
            _ => (int)Math.BigMul(NextRandom(), 100UL, out _) >= _readPercent,
        };
    }

    private ulong NextRandom()
    {
        ulong x = _state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        _state = x;
        return x;
    }
}
