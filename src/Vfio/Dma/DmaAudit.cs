namespace Vfio.Dma;

/// <summary>
/// The part of a <see cref="DmaBuffer"/> one command (an NVMe command, a virtio descriptor chain) is allowed to
/// point the device at: <paramref name="Length"/> bytes from <paramref name="Offset"/>.
/// </summary>
/// <param name="Buffer">The buffer leased to the command; null when the command holds none.</param>
/// <param name="Offset">First byte of the window within the buffer.</param>
/// <param name="Length">Bytes in the window.</param>
public readonly record struct DmaWindow(DmaBuffer? Buffer, ulong Offset, ulong Length)
{
    /// <summary>The whole of <paramref name="buffer"/>.</summary>
    public static DmaWindow Whole(DmaBuffer buffer) => new(buffer, 0, buffer.Length);
}

/// <summary>
/// The DMA audit, a checked mode for drivers. In No-IOMMU mode nothing stops a driver bug from pointing a device at
/// arbitrary memory; with the audit on, every address a driver writes into a wire structure (an NVMe PRP entry or
/// PRP list entry, a virtio descriptor) is checked, before the doorbell, to lie in a DMA buffer that is alive and
/// leased to that command, with the whole access inside the leased window. Off by default; on when the environment
/// variable <c>VFIO_DMA_AUDIT=1</c> is set or the runtime option <c>Vfio.Dma.Audit</c> is true (an
/// <c>&lt;RuntimeHostConfigurationOption&gt;</c> in the application's project, or <c>runtimeconfig.json</c>); every
/// test suite of this repository turns it on. Read once at start-up: off, each check is a test of a
/// <c>static readonly</c> false that the JIT removes.
/// </summary>
public static class DmaAudit
{
    /// <summary>The runtime option (AppContext switch) that turns the audit on.</summary>
    public const string SwitchName = "Vfio.Dma.Audit";

    /// <summary>The environment variable that turns the audit on when set to 1.</summary>
    public const string EnvironmentVariable = "VFIO_DMA_AUDIT";

    /// <summary>True when the audit runs in this process.</summary>
    public static readonly bool Enabled =
        (AppContext.TryGetSwitch(SwitchName, out bool on) && on) || Environment.GetEnvironmentVariable(EnvironmentVariable) == "1";

    /// <summary>
    /// Checks that the device may access [<paramref name="address"/>, +<paramref name="length"/>) for a command
    /// that leases <paramref name="leased"/>: the range lies in one live buffer, that buffer is the leased one,
    /// its device addresses are contiguous over the range, and the range lies inside the window. Returns null when
    /// it may, otherwise what is wrong; <paramref name="buffer"/> names the live buffer the address lies in (null
    /// when none). Callers throw <see cref="DmaAuditViolationException"/> with the queue and command.
    /// </summary>
    public static string? Verify(DmaAddress address, ulong length, in DmaWindow leased, out string? buffer)
    {
        buffer = null;
        var expected = leased.Buffer;
        if (length == 0) { return "an empty access (length 0)"; }
        if (address.Value + length < address.Value) { return "the range wraps around the end of the address space"; }
        DmaBuffer? hit;
        ulong offset, contiguous;
        if (expected?.Registry is { } registry)
        {
            hit = registry.Find(address, out offset, out contiguous);
            if (hit is null)
            {
                return registry.FindFreed(address) is { } freed
                    ? $"the address lies in '{freed}', which was freed (disposed or returned)"
                    : "the address lies in no live DMA buffer";
            }
        }
        else if (expected is null)
        {
            return "no DMA buffer is leased to this command (freed, or never its own), yet its entry carries an address";
        }
        else
        {
            // An allocator without a registry: only the leased buffer can be searched.
            hit = expected.TryLocate(address, out offset, out contiguous) ? expected : null;
            if (hit is null) { return $"the address lies outside '{Describe(expected)}', the buffer leased to this command"; }
        }
        string? problem = Judge(hit, offset, contiguous, length, leased);
        // Named only on failure, so a passing check allocates nothing.
        if (problem is not null) { buffer = Describe(hit); }
        return problem;
    }

    private static string? Judge(DmaBuffer hit, ulong offset, ulong contiguous, ulong length, in DmaWindow leased)
    {
        var expected = leased.Buffer;
        if (expected is null || !ReferenceEquals(hit, expected))
        {
            return $"the buffer is not the one leased to this command ({(expected is null ? "none" : $"'{Describe(expected)}'")})";
        }
        if (hit.IsDisposed) { return "the leased buffer was freed"; }
        if (offset < leased.Offset || offset - leased.Offset >= leased.Length)
        {
            return $"offset 0x{offset:x} in the buffer lies outside the window [0x{leased.Offset:x}, +0x{leased.Length:x}) leased to this command";
        }
        if (length > leased.Length - (offset - leased.Offset))
        {
            return $"the access runs past the end of the window [0x{leased.Offset:x}, +0x{leased.Length:x}) leased to this command (starts at offset 0x{offset:x})";
        }
        if (length > contiguous)
        {
            return $"the buffer is contiguous in device address space for only 0x{contiguous:x} bytes from there";
        }
        return null;
    }

    /// <summary>How violations name <paramref name="buffer"/>: its name, or its size when it has none.</summary>
    public static string Describe(DmaBuffer buffer) => buffer.Name ?? $"unnamed {buffer.Length}-byte buffer";
}

/// <summary>
/// The live DMA buffers of one device address space (an allocator: the host's physical addresses, one IOMMU
/// container's IOVAs, one vfio-user connection), by device address range, for <see cref="DmaAudit"/>. A buffer
/// joins when the audit is on and its device address is first asked for (nothing can point a device at it before),
/// and leaves when it is disposed; a short history of freed buffers names the buffer a stale address came from.
/// Lookups take O(log n) without a lock (the table is replaced, not changed, on each join or leave). Thread-safe.
/// </summary>
public sealed class DmaBufferRegistry
{
    private const int FreedHistory = 256;
    private readonly Lock _lock = new();
    private Segment[] _segments = [];
    private readonly Segment[] _freed = new Segment[FreedHistory];
    private int _freedNext;

    /// <summary>Creates an empty registry.</summary>
    /// <param name="name">The address space, for diagnostics (e.g. "No-IOMMU physical").</param>
    public DmaBufferRegistry(string name) => Name = name;

    /// <summary>The address space's name.</summary>
    public string Name { get; }

    /// <summary>Contiguous device address ranges currently registered.</summary>
    public int SegmentCount => Volatile.Read(ref _segments).Length;

    private readonly record struct Segment(ulong Start, ulong End, DmaBuffer Buffer, ulong Offset);

    /// <summary>
    /// The live buffer whose device addresses include <paramref name="address"/>, with the offset of that byte in it
    /// and how many bytes from there are contiguous in device address space; null when no live buffer holds it.
    /// </summary>
    public DmaBuffer? Find(DmaAddress address, out ulong offset, out ulong contiguous)
    {
        var segments = Volatile.Read(ref _segments);
        int lo = 0, hi = segments.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = lo + ((hi - lo) >> 1);
            if (segments[mid].Start <= address.Value) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
        }
        if (found >= 0 && address.Value < segments[found].End)
        {
            var s = segments[found];
            offset = s.Offset + (address.Value - s.Start);
            contiguous = s.End - address.Value;
            return s.Buffer;
        }
        offset = contiguous = 0;
        return null;
    }

    /// <summary>The name of a recently freed buffer that held <paramref name="address"/>, or null.</summary>
    public string? FindFreed(DmaAddress address)
    {
        lock (_lock)
        {
            for (int i = 1; i <= FreedHistory; i++)
            {
                var s = _freed[(_freedNext - i + FreedHistory) % FreedHistory];
                if (s.Buffer is not null && address.Value >= s.Start && address.Value < s.End) { return DmaAudit.Describe(s.Buffer); }
            }
        }
        return null;
    }

    /// <summary>Adds every contiguous device range of <paramref name="buffer"/>.</summary>
    /// <exception cref="DmaAuditViolationException">A range overlaps a live buffer's: two buffers claim one device address.</exception>
    internal void Add(DmaBuffer buffer, ReadOnlySpan<(ulong Start, ulong Length, ulong Offset)> ranges)
    {
        lock (_lock)
        {
            var list = new List<Segment>(_segments.Length + ranges.Length);
            list.AddRange(_segments);
            foreach (var (start, length, offset) in ranges)
            {
                int clash = list.FindIndex(s => s.Start < start + length && start < s.End);
                if (clash >= 0)
                {
                    throw new DmaAuditViolationException(null, Name, $"registering '{DmaAudit.Describe(buffer)}'", new DmaAddress(start), length,
                        DmaAudit.Describe(list[clash].Buffer), "another live DMA buffer already has device addresses in this range");
                }
                list.Add(new Segment(start, start + length, buffer, offset));
            }
            list.Sort((a, b) => a.Start.CompareTo(b.Start));
            Volatile.Write(ref _segments, [.. list]);
        }
    }

    /// <summary>Removes <paramref name="buffer"/>'s ranges and remembers them as freed.</summary>
    internal void Remove(DmaBuffer buffer)
    {
        lock (_lock)
        {
            var kept = new List<Segment>(_segments.Length);
            foreach (var s in _segments)
            {
                if (ReferenceEquals(s.Buffer, buffer))
                {
                    _freed[_freedNext] = s;
                    _freedNext = (_freedNext + 1) % FreedHistory;
                }
                else
                {
                    kept.Add(s);
                }
            }
            Volatile.Write(ref _segments, [.. kept]);
        }
    }
}
