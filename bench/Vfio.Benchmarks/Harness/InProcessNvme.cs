using Vfio.Devices;
using Vfio.Emulation.Nvme;
using Vfio.Nvme;
using Vfio.Testing;

namespace Vfio.Benchmarks.Harness;

/// <summary>
/// The NVMe model (Vfio.Emulation) behind the in-process device backing, brought up by the real driver: what the
/// NVMe benchmarks run against. In process the model runs each command inside the doorbell write, so a
/// benchmark measures the driver and the model on one CPU, without a hypervisor or TCG in between. Every rule of
/// the specification the driver breaks, and every command the model ran, is kept for <see cref="Ledger"/>.
/// </summary>
internal sealed class InProcessNvme : IDisposable
{
    /// <summary>Bytes per block: 4 KiB, so one block is one benchmark I/O.</summary>
    public const int BlockBytes = 4096;

    /// <summary>Blocks in the namespace: 1 MiB, so the model's copies stay in cache and the driver is what is measured.</summary>
    public const int Blocks = 256;

    private readonly ArenaDmaAllocator _dma = new(64UL << 20);
    private int _violations;

    public InProcessNvme(int queues)
    {
        Model = new NvmeDevice(new NvmeDeviceOptions { BlockSize = BlockBytes, BlockCount = Blocks, MaxIoQueues = Math.Max(queues, 1) });
        Model.ProtocolViolation += _ => Interlocked.Increment(ref _violations);
        Device = new InProcessPciDevice(Model, new PciAddress(0, 0, 6, 0), _dma, _dma.Translate);
        Controller = NvmeController.Open(Device, new NvmeControllerOptions { MaxIoQueues = Math.Max(queues, 1) });
        Namespace = Controller.Namespaces[0];
    }

    public NvmeDevice Model { get; }

    public IPciDevice Device { get; }

    public NvmeController Controller { get; }

    public NvmeNamespace Namespace { get; }

    /// <summary>Creates an I/O queue pair of <paramref name="entries"/> entries, polled.</summary>
    public NvmeIoQueue CreateQueue(int entries) =>
        Controller.CreateIoQueue(new NvmeIoQueueOptions { Entries = entries, CompletionMode = NvmeCompletionMode.Polled });

    /// <summary>Records the <paramref name="work"/> <paramref name="benchmark"/> made the model do and the rules broken, then takes everything down.</summary>
    public void Finish(string benchmark, long work)
    {
        Ledger.Record(benchmark, work, Volatile.Read(ref _violations));
        Dispose();
    }

    public void Dispose()
    {
        Controller.Dispose();
        Device.Dispose();
        Model.Dispose();
        _dma.Dispose();
    }
}
