using BenchmarkDotNet.Attributes;
using Vfio.Benchmarks.Harness;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks;

/// <summary>
/// The cost of the DMA audit on the NVMe submit path: rounds of 32 batch reads against the in-process model, of one
/// page (PRP1 only) and of four (PRP1 and a three-entry PRP list), in nanoseconds per read. The audit is read once per
/// process, so <c>./run bench micro</c> runs this class a second time with VFIO_DMA_AUDIT=1; the Audit column says
/// which run a row comes from.
/// </summary>
[MemoryDiagnoser]
public class DmaAuditBenchmarks
{
    private const int Size = RawBatch.Size;
    private const int ListPages = 4;

    private InProcessNvme _nvme = null!;
    private NvmeIoQueue _queue = null!;
    private DmaBuffer _buffer = null!;
    private readonly NvmeIoCompletion[] _completions = new NvmeIoCompletion[Size];
    private ulong _lba;

    /// <summary>Whether this process audits (VFIO_DMA_AUDIT=1): one value per run.</summary>
    public static IEnumerable<bool> AuditStates => [DmaAudit.Enabled];

    /// <summary>Shown in the table, so the two runs' rows are told apart.</summary>
    [ParamsSource(nameof(AuditStates))]
    public bool Audit { get; set; }

    /// <summary>One polled queue pair of 64 entries and a buffer for 32 four-page reads.</summary>
    [GlobalSetup]
    public void SetUp()
    {
        _nvme = new InProcessNvme(queues: 1);
        _queue = _nvme.CreateQueue(entries: 64);
        _buffer = _nvme.Device.Dma.Allocate(Size * ListPages * InProcessNvme.BlockBytes);
    }

    /// <summary>Checks the model ran commands and saw no broken rule, then takes it down.</summary>
    [GlobalCleanup]
    public void CleanUp() => _nvme.Finish($"DmaAuditBenchmarks (audit {(DmaAudit.Enabled ? "on" : "off")})", _nvme.Model.IoCommands);

    /// <summary>32 one-page reads, one doorbell, all reaped: the audit checks PRP1 of each.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Size)]
    public void SubmitOnePage() => RawBatch.Round(_queue, _nvme.Namespace, _buffer, _completions, ref _lba);

    /// <summary>32 four-page reads: the audit checks PRP1, the list pointer and three list entries of each.</summary>
    [Benchmark(OperationsPerInvoke = Size)]
    public void SubmitFourPages()
    {
        var ns = _nvme.Namespace;
        for (int i = 0; i < Size; i++)
        {
            _queue.SubmitRead(ns, _lba, ListPages, _buffer, (ulong)(i * ListPages * InProcessNvme.BlockBytes));
            _lba = (_lba + ListPages) % (ns.BlockCount - ListPages);
        }
        _queue.RingDoorbell();
        int reaped = 0;
        while (reaped < Size) { reaped += _queue.Reap(_completions.AsSpan(reaped)); }
        foreach (ref readonly var c in _completions.AsSpan()) { _queue.EnsureSuccess(c); }
    }
}
