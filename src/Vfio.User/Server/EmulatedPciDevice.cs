using Vfio.Devices;
using Vfio.Dma;
using Vfio.Linux;

namespace Vfio.User.Server;

/// <summary>
/// A BAR of an emulated device: its size, and either callbacks (every access becomes a call: registers with side
/// effects) or shared memory the client may mmap (memory-like BARs: a buffer, a doorbell page polled by the device).
/// </summary>
public sealed class EmulatedBar
{
    /// <summary>A BAR whose accesses call <paramref name="read"/> and <paramref name="write"/> with the offset and the bytes.</summary>
    public EmulatedBar(ulong size, BarRead read, BarWrite write)
    {
        Size = size;
        ReadHandler = read ?? throw new ArgumentNullException(nameof(read));
        WriteHandler = write ?? throw new ArgumentNullException(nameof(write));
    }

    /// <summary>A BAR backed by <paramref name="memory"/>, offered to the client by fd for mmap; the device owns the memory.</summary>
    public EmulatedBar(SharedMemory memory)
    {
        Memory = memory ?? throw new ArgumentNullException(nameof(memory));
        Size = memory.Length;
    }

    /// <summary>
    /// A BAR backed by <paramref name="memory"/> of which only <paramref name="mappableAreas"/> (page-aligned) are
    /// offered for mmap, as a sparse-mmap capability; accesses elsewhere call <paramref name="read"/> and
    /// <paramref name="write"/> (registers with side effects next to memory the client may touch directly, such as
    /// an MSI-X table in a BAR of queues).
    /// </summary>
    public EmulatedBar(SharedMemory memory, IReadOnlyList<SparseArea> mappableAreas, BarRead read, BarWrite write)
    {
        Memory = memory ?? throw new ArgumentNullException(nameof(memory));
        ArgumentNullException.ThrowIfNull(mappableAreas);
        Size = memory.Length;
        ulong page = (ulong)Environment.SystemPageSize;
        foreach (var a in mappableAreas)
        {
            if (a.Size == 0 || a.Offset % page != 0 || a.Size % page != 0 || a.Size > Size || a.Offset > Size - a.Size)
            {
                throw new ArgumentException($"mappable area [0x{a.Offset:x}, +0x{a.Size:x}) must be whole pages inside the 0x{Size:x}-byte BAR", nameof(mappableAreas));
            }
        }
        MappableAreas = [.. mappableAreas];
        ReadHandler = read ?? throw new ArgumentNullException(nameof(read));
        WriteHandler = write ?? throw new ArgumentNullException(nameof(write));
    }

    /// <summary>Size in bytes.</summary>
    public ulong Size { get; }

    /// <summary>The parts offered for mmap when only some are (null: all of <see cref="Memory"/>, or none without memory).</summary>
    public IReadOnlyList<SparseArea>? MappableAreas { get; }

    /// <summary>True when [<paramref name="offset"/>, +<paramref name="count"/>) is plain memory rather than callbacks.</summary>
    internal bool IsMemory(ulong offset, ulong count)
    {
        if (Memory is null) { return false; }
        if (MappableAreas is null) { return true; }
        foreach (var a in MappableAreas)
        {
            if (offset >= a.Offset && offset - a.Offset + count <= a.Size) { return true; }
        }
        return false;
    }

    /// <summary>Callback for reads, or null for a BAR that is all shared memory.</summary>
    public BarRead? ReadHandler { get; }

    /// <summary>Callback for writes, or null for a shared-memory BAR.</summary>
    public BarWrite? WriteHandler { get; }

    /// <summary>Shared memory, or null for a callback BAR.</summary>
    public SharedMemory? Memory { get; }
}

/// <summary>Handles a read of <paramref name="destination"/>.Length bytes at <paramref name="offset"/> of a BAR.</summary>
public delegate void BarRead(ulong offset, Span<byte> destination);

/// <summary>Handles a write of <paramref name="source"/> at <paramref name="offset"/> of a BAR.</summary>
public delegate void BarWrite(ulong offset, ReadOnlySpan<byte> source);

/// <summary>What a device can do to the client's side: DMA into its memory and signal its interrupts.</summary>
public interface IDeviceContext
{
    /// <summary>Reads client memory at the device address <paramref name="address"/> (an IOVA the client mapped).</summary>
    /// <exception cref="VfioException">The range is not (entirely) mapped, or the client failed the access.</exception>
    void ReadDma(DmaAddress address, Span<byte> destination);

    /// <summary>Writes client memory at <paramref name="address"/>.</summary>
    /// <exception cref="VfioException">The range is not (entirely) mapped, or the client failed the access.</exception>
    void WriteDma(DmaAddress address, ReadOnlySpan<byte> source);

    /// <summary>True when the client wired an eventfd to vector <paramref name="vector"/> of <paramref name="index"/>.</summary>
    bool IsInterruptWired(IrqIndex index, int vector);

    /// <summary>
    /// Signals vector <paramref name="vector"/> of <paramref name="index"/> through the client's eventfd. INTx is
    /// auto-masked as vfio-pci does: after it fires, further signals are dropped until the client unmasks it.
    /// </summary>
    /// <returns>True when an eventfd was signalled.</returns>
    bool SignalInterrupt(IrqIndex index, int vector);
}

/// <summary>
/// An emulated PCI function for <see cref="VfioUserServer"/>: config space, up to six BARs, interrupt counts, and
/// a reset. Subclasses set these up in their constructor and use <see cref="Context"/> for DMA and interrupts.
/// </summary>
public abstract class EmulatedPciDevice
{
    private readonly EmulatedBar?[] _bars = new EmulatedBar?[6];
    private readonly int[] _irqCounts = new int[5];
    private readonly Lock _msixGate = new();
    private byte[]? _msixTable;

    /// <summary>Creates a device with the given config space.</summary>
    protected EmulatedPciDevice(EmulatedConfigSpace config) => Config = config ?? throw new ArgumentNullException(nameof(config));

    /// <summary>The config space.</summary>
    public EmulatedConfigSpace Config { get; }

    /// <summary>DMA and interrupts of the connected client; a no-op context while none is connected.</summary>
    public IDeviceContext Context { get; internal set; } = Disconnected.Instance;

    /// <summary>
    /// Connects the device to a host in the same process instead of a vfio-user client (an adapter that exposes
    /// it as an <see cref="IPciDevice"/> without a socket, for tests and embedding): DMA and interrupts go to
    /// <paramref name="context"/> until <see cref="Detach"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">A client or another host is already connected.</exception>
    public void Attach(IDeviceContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Context != Disconnected.Instance) { throw new InvalidOperationException("the device is already connected to a client or host"); }
        Context = context;
    }

    /// <summary>Disconnects the in-process host given to <see cref="Attach"/> and resets the device, as a vfio-user client's disconnect does.</summary>
    public void Detach()
    {
        Context = Disconnected.Instance;
        Reset();
    }

    /// <summary>BAR <paramref name="index"/>, or null when absent.</summary>
    public EmulatedBar? GetBar(int index) => (uint)index < 6 ? _bars[index] : null;

    /// <summary>Vectors declared for <paramref name="index"/>.</summary>
    public int GetIrqCount(IrqIndex index) => (uint)index < 5 ? _irqCounts[(int)index] : 0;

    /// <summary>Declares BAR <paramref name="index"/> (32-bit memory BAR in config space).</summary>
    protected void SetBar(int index, EmulatedBar bar)
    {
        ArgumentNullException.ThrowIfNull(bar);
        Config.SetMemoryBar(index, RoundUpPow2(Math.Max(bar.Size, 16)));
        _bars[index] = bar;
    }

    /// <summary>Declares <paramref name="count"/> vectors of <paramref name="index"/>.</summary>
    protected void SetIrqCount(IrqIndex index, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _irqCounts[(int)index] = count;
    }

    /// <summary>
    /// Declares MSI-X with <paramref name="vectors"/> vectors (PCI Local Bus 3.0 §6.8.2): the capability, a BAR
    /// <paramref name="bar"/> of <paramref name="barSize"/> bytes holding the table at 0 and the pending-bit array at
    /// <paramref name="pbaOffset"/>, and the IRQ count the client sees. vfio-user carries the interrupts on eventfds
    /// (<see cref="IDeviceContext.SignalInterrupt"/>), so the table is plain storage the host can read back; the pending
    /// bits read as zero.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No vectors, more than 2048, or a table that does not fit below the PBA.</exception>
    protected void AddMsix(int vectors, int bar, uint pbaOffset, ulong barSize)
    {
        // 16 bytes a table entry; the table size field holds N-1 in 11 bits (§6.8.2.3).
        if (vectors is < 1 or > 2048) { throw new ArgumentOutOfRangeException(nameof(vectors), vectors, "MSI-X has 1 to 2048 vectors"); }
        if ((ulong)vectors * 16 > pbaOffset || pbaOffset + (ulong)(vectors + 63) / 64 * 8 > barSize)
        {
            throw new ArgumentOutOfRangeException(nameof(pbaOffset), pbaOffset, $"{vectors} table entries and their pending bits do not fit in a {barSize}-byte BAR");
        }
        if (_msixTable is not null) { throw new InvalidOperationException("MSI-X is already declared"); }
        var table = _msixTable = new byte[vectors * 16];
        var gate = _msixGate;
        Config.AddMsixCapability(vectors, bar, 0, bar, pbaOffset);
        SetBar(bar, new EmulatedBar(barSize,
            (offset, data) =>
            {
                lock (gate)
                {
                    if (offset + (ulong)data.Length <= (ulong)table.Length) { table.AsSpan((int)offset, data.Length).CopyTo(data); }
                    else { data.Clear(); }
                }
            },
            (offset, data) =>
            {
                lock (gate)
                {
                    if (offset + (ulong)data.Length <= (ulong)table.Length) { data.CopyTo(table.AsSpan((int)offset)); }
                }
            }));
        SetIrqCount(IrqIndex.Msix, vectors);
    }

    /// <summary>Clears the MSI-X table (a function reset returns it to its power-on state, §6.8.2).</summary>
    protected void ClearMsixTable()
    {
        lock (_msixGate)
        {
            if (_msixTable is not null) { Array.Clear(_msixTable); }
        }
    }

    /// <summary>Called for VFIO_USER_DEVICE_RESET and when a client disconnects: return to the power-on state.</summary>
    public virtual void Reset() { }

    private static ulong RoundUpPow2(ulong v) => v <= 1 ? 1 : 1UL << (64 - System.Numerics.BitOperations.LeadingZeroCount(v - 1));

    /// <summary>The context while no client is connected: DMA fails, interrupts go nowhere.</summary>
    internal sealed class Disconnected : IDeviceContext
    {
        public static readonly Disconnected Instance = new();
        public void ReadDma(DmaAddress address, Span<byte> destination) => throw new VfioException($"DMA read at {address}: no client is connected");
        public void WriteDma(DmaAddress address, ReadOnlySpan<byte> source) => throw new VfioException($"DMA write at {address}: no client is connected");
        public bool IsInterruptWired(IrqIndex index, int vector) => false;
        public bool SignalInterrupt(IrqIndex index, int vector) => false;
    }
}
