using BenchmarkDotNet.Attributes;
using Vfio.Benchmarks.Harness;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks;

/// <summary>
/// Does a second queue pair add throughput? One thread per queue, each driving its own queue with the batch
/// interface (rounds of 32 reads of 4 KiB), against one in-process model, in nanoseconds per read over all
/// queues. One queue is the baseline, so the Ratio of <see cref="TwoQueues"/> is the inverse of the IOPS gain
/// (0.5 would be twice the IOPS, as much as two CPUs can give).
/// <para>Ten measured iterations rather than five: with two threads on two CPUs, anything else the machine runs
/// lands on this figure first.</para>
/// </summary>
[MemoryDiagnoser]
[IterationCount(10)]
public class QueueScalingBenchmarks
{
    private const int Rounds = 256;
    private const int ReadsPerQueue = Rounds * RawBatch.Size;

    private InProcessNvme _nvme = null!;
    private readonly Lane[] _lanes = new Lane[2];
    private Thread _helper = null!;
    private readonly SemaphoreSlim _go = new(0);
    private readonly SemaphoreSlim _done = new(0);
    private volatile bool _stop;
    private Exception? _helperFailure;

    /// <summary>One queue's thread state: its queue, its buffer and completions, where it reads next.</summary>
    private sealed class Lane(NvmeIoQueue queue, DmaBuffer buffer, ulong firstLba)
    {
        public NvmeIoQueue Queue { get; } = queue;
        public DmaBuffer Buffer { get; } = buffer;
        public NvmeIoCompletion[] Completions { get; } = new NvmeIoCompletion[RawBatch.Size];
        public ulong Lba = firstLba;
    }

    /// <summary>Two queue pairs of 64 entries with a buffer each, and the helper thread that drives the second.</summary>
    [GlobalSetup]
    public void SetUp()
    {
        _nvme = new InProcessNvme(queues: 2);
        for (int i = 0; i < _lanes.Length; i++)
        {
            _lanes[i] = new Lane(_nvme.CreateQueue(entries: 64), _nvme.Device.Dma.Allocate(RawBatch.Size * InProcessNvme.BlockBytes),
                firstLba: (ulong)(i * InProcessNvme.Blocks / 2));
        }
        _helper = new Thread(HelperMain) { IsBackground = true, Name = "queue 2 driver" };
        _helper.Start();
    }

    /// <summary>Stops the helper, checks the model ran commands and saw no broken rule, then takes it down.</summary>
    [GlobalCleanup]
    public void CleanUp()
    {
        _stop = true;
        _go.Release();
        _helper.Join();
        _nvme.Finish(nameof(QueueScalingBenchmarks), _nvme.Model.IoCommands);
    }

    /// <summary>This thread drives one queue.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = ReadsPerQueue)]
    public void OneQueue() => Drive(_lanes[0]);

    /// <summary>This thread drives one queue and the helper thread the other, at the same time.</summary>
    [Benchmark(OperationsPerInvoke = 2 * ReadsPerQueue)]
    public void TwoQueues()
    {
        _go.Release();
        Drive(_lanes[0]);
        _done.Wait();
        if (_helperFailure is { } e) { throw new InvalidOperationException("the second queue's thread failed", e); }
    }

    private void HelperMain()
    {
        while (true)
        {
            _go.Wait();
            if (_stop) { return; }
            try { Drive(_lanes[1]); }
            catch (Exception e) { _helperFailure = e; }
            _done.Release();
        }
    }

    private void Drive(Lane lane)
    {
        for (int r = 0; r < Rounds; r++) { RawBatch.Round(lane.Queue, _nvme.Namespace, lane.Buffer, lane.Completions, ref lane.Lba); }
    }
}
