using BenchmarkDotNet.Attributes;
using Vfio.Benchmarks.Harness;
using Vfio.Devices;
using Vfio.Spec.Nvme;

namespace Vfio.Benchmarks;

/// <summary>
/// What a doorbell write costs the CPU: a bare volatile store, the <see cref="Mmio"/> helper, the
/// <see cref="MappedRegion"/> accessor drivers use on a mapped BAR (bounds, alignment and disposal checks, the
/// area lookup, an interface call), over ordinary memory so nothing but the accessor is measured; and the same
/// write to the in-process NVMe model, where the doorbell runs the model. Nanoseconds per 32-bit write.
/// </summary>
[MemoryDiagnoser]
public unsafe class MmioBenchmarks
{
    private const int Writes = 1024;
    private const int Bar0Bytes = 0x4000;

    private static readonly ulong s_doorbell = ControllerRegister.SubmissionTailDoorbell(1, 0);

    private MemoryBar? _bar;
    private IDeviceRegion _region = null!;
    private nint _doorbellPointer;
    private InProcessNvme? _nvme;
    private IDeviceRegion? _modelBar;

    /// <summary>16 KiB of shared memory, mapped twice: once as a bare pointer, once behind the accessor.</summary>
    [GlobalSetup(Targets = [nameof(RawStore), nameof(MmioHelper), nameof(MappedRegionWrite32)])]
    public void SetUpMemory()
    {
        _bar = new MemoryBar(Bar0Bytes);
        _region = _bar.Region;
        _doorbellPointer = _bar.Pointer + (nint)s_doorbell;
    }

    /// <summary>The model with one idle I/O queue, whose SQ tail doorbell is rung with the tail it already has.</summary>
    [GlobalSetup(Target = nameof(InProcessModelDoorbell))]
    public void SetUpModel()
    {
        _nvme = new InProcessNvme(queues: 1);
        _nvme.CreateQueue(entries: 64);
        _modelBar = _nvme.Device.OpenRegion(PciRegion.Bar0);
    }

    /// <summary>Takes down what the setup made; the model must have seen every doorbell and no broken rule.</summary>
    [GlobalCleanup]
    public void CleanUp()
    {
        _bar?.Dispose();
        if (_nvme is not null)
        {
            _modelBar!.Dispose();
            _nvme.Finish(nameof(MmioBenchmarks), _nvme.Model.SubmissionDoorbells(1));
        }
    }

    /// <summary><c>Volatile.Write(ref *(uint*)p, v)</c>: one store instruction.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Writes)]
    public void RawStore()
    {
        // SAFETY: the pointer is 4-byte aligned inside the 16 KiB mapping, which lives until the cleanup.
        uint* p = (uint*)_doorbellPointer;
        for (uint i = 0; i < Writes; i++) { Volatile.Write(ref *p, i); }
    }

    /// <summary><see cref="Mmio.Write32"/>: the helper the accessor ends in.</summary>
    [Benchmark(OperationsPerInvoke = Writes)]
    public void MmioHelper()
    {
        nint p = _doorbellPointer;
        for (uint i = 0; i < Writes; i++) { Mmio.Write32(p, i); }
    }

    /// <summary><see cref="IDeviceRegion.Write32"/> of a <see cref="MappedRegion"/>, as a driver rings a doorbell on a mapped BAR.</summary>
    [Benchmark(OperationsPerInvoke = Writes)]
    public void MappedRegionWrite32()
    {
        var region = _region;
        for (uint i = 0; i < Writes; i++) { region.Write32(s_doorbell, i); }
    }

    /// <summary><see cref="IDeviceRegion.Write32"/> of the in-process model's BAR0: the doorbell runs the model, which finds nothing to fetch.</summary>
    [Benchmark(OperationsPerInvoke = Writes)]
    public void InProcessModelDoorbell()
    {
        var bar = _modelBar!;
        for (int i = 0; i < Writes; i++) { bar.Write32(s_doorbell, 0); }
    }
}
