using Vfio.Devices;
using Vfio.Dma;
using Vfio.User.Server;

namespace Vfio.Testing;

/// <summary>
/// The host pointer of [<paramref name="address"/>, +<paramref name="length"/>) in a test allocator's memory, or 0
/// when the range is not (contiguously) mapped. Called for ranges that never cross a 4 KiB page.
/// </summary>
internal delegate nint DmaTranslator(ulong address, int length);

/// <summary>
/// An <see cref="EmulatedPciDevice"/> seen as an <see cref="IPciDevice"/> without a socket (OpenVMM's in-process
/// device backing): region accesses call the device's BAR callbacks and config space directly, its DMA goes to a
/// test allocator's memory through a translator, its interrupts to counters with one awaiter each, like eventfds.
/// Nothing on the register, DMA or interrupt path allocates, so the driver's allocations can be measured through it.
/// Shared by the driver and CLI test projects (linked, not copied).
/// </summary>
internal sealed unsafe class InProcessPciDevice : IPciDevice, IDeviceContext
{
    private const ulong Page = 4096;
    private readonly EmulatedPciDevice _device;
    private readonly Lock _irqLock = new();
    private readonly EmulatedInterruptSet?[] _sets = new EmulatedInterruptSet?[5];
    private readonly ConfigRegion _config;

    private readonly DmaTranslator _translate;

    public InProcessPciDevice(EmulatedPciDevice device, PciAddress address, IDmaAllocator dma, DmaTranslator translate)
    {
        _device = device;
        _translate = translate;
        Address = address;
        Dma = dma;
        _config = new ConfigRegion(device);
        Config = new PciConfigSpace(_config);
        device.Attach(this);
    }

    public PciAddress Address { get; }
    public DeviceBackend Backend => DeviceBackend.Emulated;
    public bool IsDmaIsolated => true;
    public DeviceInfo Info => new(DeviceFlags.Pci | DeviceFlags.Reset, 9, 5);
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma { get; }

    public RegionInfo GetRegionInfo(int index)
    {
        if (index == PciRegion.Config) { return _config.Info; }
        var bar = _device.GetBar(index);
        return bar is null
            ? new RegionInfo { Index = index, Flags = RegionFlags.None, Size = 0, Offset = 0 }
            : new RegionInfo { Index = index, Flags = RegionFlags.Read | RegionFlags.Write, Size = bar.Size, Offset = 0 };
    }

    public IDeviceRegion OpenRegion(int index)
    {
        if (index == PciRegion.Config) { return _config; }
        var bar = _device.GetBar(index) ?? throw new ArgumentException($"region {index} does not exist", nameof(index));
        return new BarRegion(GetRegionInfo(index), bar);
    }

    public IrqInfo GetIrqInfo(IrqIndex index) => new(index, IrqFlags.Eventfd | IrqFlags.NoResize, _device.GetIrqCount(index));

    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        if (count < 1 || count > _device.GetIrqCount(index)) { throw new ArgumentOutOfRangeException(nameof(count)); }
        lock (_irqLock)
        {
            if (_sets[(int)index] is not null) { throw new InvalidOperationException($"{index} already enabled"); }
            var set = new EmulatedInterruptSet(index, count, () => { lock (_irqLock) { _sets[(int)index] = null; } });
            _sets[(int)index] = set;
            return set;
        }
    }

    public void Reset() => _device.Reset();

    /// <summary>
    /// Leaves the device attached: like a VFIO device fd closed and opened again, the function stays where it is
    /// (the CLI tests open the same device for several commands).
    /// </summary>
    public void Dispose() { }

    // ------------------------------------------------------------------ IDeviceContext: the device's view of the host

    public void ReadDma(DmaAddress address, Span<byte> destination) => Copy(address.Value, destination, toHost: false);

    public void WriteDma(DmaAddress address, ReadOnlySpan<byte> source)
    {
        fixed (byte* p = source) { Copy(address.Value, new Span<byte>(p, source.Length), toHost: true); }
    }

    private void Copy(ulong address, Span<byte> data, bool toHost)
    {
        int done = 0;
        while (done < data.Length)
        {
            ulong at = address + (ulong)done;
            int chunk = (int)Math.Min((ulong)(data.Length - done), Page - at % Page);
            var p = _translate(at, chunk);
            if (p == 0) { throw new VfioException($"device DMA at 0x{at:x}: nothing is mapped there"); }
            // SAFETY (test): the translator returned the host address of [at, +chunk) in live memory of the test allocator.
            var memory = new Span<byte>((void*)p, chunk);
            if (toHost) { data.Slice(done, chunk).CopyTo(memory); } else { memory.CopyTo(data.Slice(done, chunk)); }
            done += chunk;
        }
    }

    public bool IsInterruptWired(IrqIndex index, int vector)
    {
        lock (_irqLock) { return (uint)index < 5 && _sets[(int)index] is { } s && (uint)vector < (uint)s.Count; }
    }

    public bool SignalInterrupt(IrqIndex index, int vector)
    {
        EmulatedInterruptSet? set;
        lock (_irqLock) { set = (uint)index < 5 ? _sets[(int)index] : null; }
        if (set is null || (uint)vector >= (uint)set.Count) { return false; }
        set.Signal(vector);
        return true;
    }

    // ------------------------------------------------------------------ regions

    /// <summary>A region whose typed accessors are byte-span accesses of their width, bounds-checked.</summary>
    private abstract class SpanRegion(RegionInfo info) : IDeviceRegion
    {
        public RegionInfo Info => info;
        public ulong Size => info.Size;
        public bool IsMapped(ulong offset) => false;
        public byte Read8(ulong o) { Span<byte> b = stackalloc byte[1]; Read(o, b); return b[0]; }
        public ushort Read16(ulong o) { Span<byte> b = stackalloc byte[2]; Read(o, b); return BitConverter.ToUInt16(b); }
        public uint Read32(ulong o) { Span<byte> b = stackalloc byte[4]; Read(o, b); return BitConverter.ToUInt32(b); }
        public ulong Read64(ulong o) { Span<byte> b = stackalloc byte[8]; Read(o, b); return BitConverter.ToUInt64(b); }
        public void Write8(ulong o, byte v) => Write(o, [v]);
        public void Write16(ulong o, ushort v) { Span<byte> b = stackalloc byte[2]; BitConverter.TryWriteBytes(b, v); Write(o, b); }
        public void Write32(ulong o, uint v) { Span<byte> b = stackalloc byte[4]; BitConverter.TryWriteBytes(b, v); Write(o, b); }
        public void Write64(ulong o, ulong v) { Span<byte> b = stackalloc byte[8]; BitConverter.TryWriteBytes(b, v); Write(o, b); }
        public void Read(ulong o, Span<byte> d) { Check(o, d.Length); ReadChecked(o, d); }
        public void Write(ulong o, ReadOnlySpan<byte> s) { Check(o, s.Length); WriteChecked(o, s); }
        public void Dispose() { }
        protected abstract void ReadChecked(ulong offset, Span<byte> destination);
        protected abstract void WriteChecked(ulong offset, ReadOnlySpan<byte> source);

        private void Check(ulong offset, int length)
        {
            if (offset > Size || (ulong)length > Size - offset) { throw new ArgumentOutOfRangeException(nameof(offset), $"region {info.Index} access at 0x{offset:x}+{length} beyond 0x{Size:x}"); }
        }
    }

    private sealed class BarRegion(RegionInfo info, EmulatedBar bar) : SpanRegion(info)
    {
        protected override void ReadChecked(ulong offset, Span<byte> destination) => bar.ReadHandler!(offset, destination);
        protected override void WriteChecked(ulong offset, ReadOnlySpan<byte> source) => bar.WriteHandler!(offset, source);
    }

    private sealed class ConfigRegion(EmulatedPciDevice device)
        : SpanRegion(new RegionInfo { Index = PciRegion.Config, Flags = RegionFlags.Read | RegionFlags.Write, Size = (ulong)device.Config.Size, Offset = 0 })
    {
        protected override void ReadChecked(ulong offset, Span<byte> destination) => device.Config.Read((int)offset, destination);
        protected override void WriteChecked(ulong offset, ReadOnlySpan<byte> source) => device.Config.Write((int)offset, source);
    }
}

/// <summary>Interrupt vectors of the in-process device: counters with one awaiter each, like eventfds.</summary>
internal sealed class EmulatedInterruptSet(IrqIndex index, int count, Action onDispose) : IInterruptSet
{
    private readonly EmulatedVector[] _vectors = [.. Enumerable.Range(0, count).Select(i => new EmulatedVector(i))];
    public IrqIndex Index => index;
    public int Count => _vectors.Length;
    public IInterruptVector this[int vector] => _vectors[vector];
    public void Signal(int vector) => _vectors[vector].Trigger();
    public void Dispose() => onDispose();
}
