using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using Vfio.Benchmarks.Harness;
using Vfio.Dma;
using Vfio.Nvme;

namespace Vfio.Benchmarks;

/// <summary>
/// What the "Vfio.Nvme" meter costs per 4 KiB read (issue 21: zero cost when nobody listens): the batch interface
/// and 32 awaited reads in flight, each with nobody listening and with a <see cref="MeterListener"/> that enables
/// every instrument of the "Vfio" and "Vfio.Nvme" meters and adds up what it is given, as an exporter would. The
/// unobserved pair is the same code as <see cref="NvmeReadBenchmarks"/>'s Raw and AsyncQd32: the figure that matters
/// is observed over unobserved, and the unobserved one against NvmeReadBenchmarks (the one branch per retirement).
/// </summary>
[MemoryDiagnoser]
public class TelemetryBenchmarks
{
    private InProcessNvme _nvme = null!;
    private NvmeIoQueue _queue = null!;
    private DmaBuffer _buffer = null!;
    private readonly NvmeIoCompletion[] _completions = new NvmeIoCompletion[RawBatch.Size];
    private readonly Task[] _workers = new Task[AsyncReaders.Workers];
    private MeterListener? _listener;
    private long _measurements;
    private long _sum;
    private double _seconds;
    private ulong _lba;

    /// <summary>One queue pair of 64 entries and nobody listening.</summary>
    [GlobalSetup(Targets = [nameof(RawUnobserved), nameof(AsyncQd32Unobserved)])]
    public void SetUpUnobserved() => SetUpQueue();

    /// <summary>One queue pair of 64 entries and a listener on every instrument of the "Vfio" and "Vfio.Nvme" meters.</summary>
    [GlobalSetup(Targets = [nameof(RawObserved), nameof(AsyncQd32Observed)])]
    public void SetUpObserved()
    {
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name is NvmeTelemetry.Name or VfioTelemetry.MeterName) { listener.EnableMeasurementEvents(instrument); }
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => { _measurements++; _sum += value; });
        _listener.SetMeasurementEventCallback<int>((_, value, _, _) => { _measurements++; _sum += value; });
        _listener.SetMeasurementEventCallback<double>((_, value, _, _) => { _measurements++; _seconds += value; });
        _listener.Start();
        SetUpQueue();
    }

    private void SetUpQueue()
    {
        _nvme = new InProcessNvme(queues: 1);
        _queue = _nvme.CreateQueue(entries: 64);
        _buffer = _nvme.Device.Dma.Allocate(AsyncReaders.Workers * InProcessNvme.BlockBytes);
    }

    /// <summary>
    /// Checks the model ran commands and, when observed, that the listener was given measurements (a benchmark that
    /// listened to nothing would measure nothing); then takes both down, so no listener outlives its benchmark.
    /// </summary>
    [GlobalCleanup]
    public void CleanUp()
    {
        bool observed = _listener is not null;
        _listener?.Dispose();
        _listener = null;
        if (observed && _measurements == 0) { Ledger.Fail("TelemetryBenchmarks (observed): the listener received no measurement"); }
        _nvme.Finish(observed ? "TelemetryBenchmarks (observed)" : "TelemetryBenchmarks (unobserved)", _nvme.Model.IoCommands);
        _measurements = 0;
    }

    /// <summary>The batch interface, nobody listening: 32 reads placed, one doorbell, all reaped by the caller.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = RawBatch.Size)]
    public void RawUnobserved() => RawBatch.Round(_queue, _nvme.Namespace, _buffer, _completions, ref _lba);

    /// <summary>The batch interface with every instrument listened to.</summary>
    [Benchmark(OperationsPerInvoke = RawBatch.Size)]
    public void RawObserved() => RawBatch.Round(_queue, _nvme.Namespace, _buffer, _completions, ref _lba);

    /// <summary>32 workers awaiting <see cref="NvmeIoQueue.ReadAsync"/> in turn, nobody listening.</summary>
    [Benchmark(OperationsPerInvoke = AsyncReaders.Reads)]
    public Task AsyncQd32Unobserved() => AsyncReaders.Run(_queue, _nvme.Namespace, _buffer, _workers);

    /// <summary>32 workers awaiting <see cref="NvmeIoQueue.ReadAsync"/> in turn, every instrument listened to.</summary>
    [Benchmark(OperationsPerInvoke = AsyncReaders.Reads)]
    public Task AsyncQd32Observed() => AsyncReaders.Run(_queue, _nvme.Namespace, _buffer, _workers);
}
