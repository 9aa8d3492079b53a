using BenchmarkDotNet.Attributes;
using Vfio.Benchmarks.Harness;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks;

/// <summary>
/// 4 KiB reads from the in-process NVMe model through each front end of one polled queue pair, in nanoseconds per
/// read. The batch interface is the baseline, so the Ratio column is each front end's cost over the bare engine.
/// </summary>
[MemoryDiagnoser]
public class NvmeReadBenchmarks
{
    private const int Qd1Reads = 1024;
    private const int Workers = RawBatch.Size;
    private const int ReadsPerWorker = 64;

    private InProcessNvme _nvme = null!;
    private NvmeIoQueue _queue = null!;
    private NvmeBlockDevice? _blockDevice;
    private DmaBuffer _buffer = null!;
    private readonly Memory<byte>[] _slots = new Memory<byte>[Workers];
    private readonly NvmeIoCompletion[] _completions = new NvmeIoCompletion[RawBatch.Size];
    private readonly Task[] _workers = new Task[Workers];
    private ulong _lba;

    /// <summary>One queue pair of 64 entries, created directly on the controller.</summary>
    [GlobalSetup(Targets = [nameof(Raw), nameof(Sync), nameof(AsyncQd1), nameof(AsyncQd32)])]
    public void SetUpQueue()
    {
        _nvme = new InProcessNvme(queues: 1);
        _queue = _nvme.CreateQueue(entries: 64);
        SetUpBuffer(_nvme.Device.Dma.Allocate(Workers * InProcessNvme.BlockBytes));
    }

    /// <summary>A block device over one queue pair of 64 entries, its buffer from <see cref="NvmeBlockDevice.AllocateBuffer"/> (no copy).</summary>
    [GlobalSetup(Targets = [nameof(BlockDeviceAsyncQd1), nameof(BlockDeviceAsyncQd32)])]
    public void SetUpBlockDevice()
    {
        _nvme = new InProcessNvme(queues: 1);
        _blockDevice = NvmeBlockDevice.Open(_nvme.Controller,
            new NvmeBlockDeviceOptions { Queues = 1, QueueEntries = 64, CompletionMode = NvmeCompletionMode.Polled });
        _queue = _blockDevice.Queues[0];
        SetUpBuffer(_blockDevice.AllocateBuffer(Workers * InProcessNvme.BlockBytes));
    }

    private void SetUpBuffer(DmaBuffer buffer)
    {
        _buffer = buffer;
        for (int i = 0; i < Workers; i++) { _slots[i] = buffer.Memory.Slice(i * InProcessNvme.BlockBytes, InProcessNvme.BlockBytes); }
    }

    /// <summary>Checks the model ran commands and saw no broken rule, then takes it down.</summary>
    [GlobalCleanup]
    public void CleanUp()
    {
        _blockDevice?.Dispose();
        _nvme.Finish(_blockDevice is null ? "NvmeReadBenchmarks (queue)" : "NvmeReadBenchmarks (block device)", _nvme.Model.IoCommands);
    }

    /// <summary>The batch interface: 32 reads placed, one doorbell, all reaped by the caller.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = RawBatch.Size)]
    public void Raw() => RawBatch.Round(_queue, _nvme.Namespace, _buffer, _completions, ref _lba);

    /// <summary>One synchronous <see cref="NvmeIoQueue.Read"/>: submit, ring, and poll for it on the calling thread.</summary>
    [Benchmark]
    public void Sync() => _queue.Read(_nvme.Namespace, NextLba(), 1, _buffer);

    /// <summary>One awaited <see cref="NvmeIoQueue.ReadAsync"/> at a time; the completion thread answers and the next read follows from there.</summary>
    [Benchmark(OperationsPerInvoke = Qd1Reads)]
    public async Task AsyncQd1()
    {
        for (int i = 0; i < Qd1Reads; i++) { await _queue.ReadAsync(_nvme.Namespace, NextLba(), 1, _buffer); }
    }

    /// <summary>32 workers, each awaiting its own <see cref="NvmeIoQueue.ReadAsync"/> in turn: 32 reads in flight.</summary>
    [Benchmark(OperationsPerInvoke = AsyncReaders.Reads)]
    public Task AsyncQd32() => AsyncReaders.Run(_queue, _nvme.Namespace, _buffer, _workers);

    /// <summary>One awaited <see cref="NvmeBlockDevice.ReadAsync(ulong, Memory{byte}, CancellationToken)"/> at a time, into DMA memory.</summary>
    [Benchmark(OperationsPerInvoke = Qd1Reads)]
    public async Task BlockDeviceAsyncQd1()
    {
        for (int i = 0; i < Qd1Reads; i++) { await _blockDevice!.ReadAsync(NextLba(), _slots[0]); }
    }

    /// <summary>32 workers awaiting <see cref="NvmeBlockDevice.ReadAsync(ulong, Memory{byte}, CancellationToken)"/>, each into its own slot of DMA memory.</summary>
    [Benchmark(OperationsPerInvoke = Workers * ReadsPerWorker)]
    public Task BlockDeviceAsyncQd32()
    {
        for (int w = 0; w < Workers; w++) { _workers[w] = BlockDeviceWorker(w); }
        return Task.WhenAll(_workers);
    }

    private async Task BlockDeviceWorker(int slot)
    {
        ulong lba = (ulong)slot;
        for (int i = 0; i < ReadsPerWorker; i++)
        {
            await _blockDevice!.ReadAsync(lba, _slots[slot]);
            lba = (lba + Workers) % InProcessNvme.Blocks;
        }
    }

    private ulong NextLba()
    {
        ulong lba = _lba;
        _lba = lba + 1 == InProcessNvme.Blocks ? 0 : lba + 1;
        return lba;
    }
}
