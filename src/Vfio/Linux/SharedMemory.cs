namespace Vfio.Linux;

/// <summary>
/// Memory backed by a memfd and mapped shared in this process, so another process that receives the descriptor
/// maps the same pages: BARs a vfio-user server offers for mmap, DMA memory a client registers with VFIO_USER_DMA_MAP.
/// </summary>
public sealed class SharedMemory : IDisposable
{
    private readonly SharedMapping _mapping;
    private int _disposed;

    /// <summary>Creates <paramref name="length"/> bytes (rounded up to whole pages) of zeroed shared memory.</summary>
    /// <param name="length">Bytes; at least 1.</param>
    /// <param name="name">The memfd's name (shows in /proc/PID/maps).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is 0.</exception>
    /// <exception cref="VfioException">memfd_create, ftruncate or mmap failed.</exception>
    public SharedMemory(ulong length, string name)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        ulong page = (ulong)Environment.SystemPageSize;
        Length = (length + page - 1) & ~(page - 1);
        Handle = new SafeFdHandle(Errno.Check(Interop.Libc.memfd_create(name, Interop.Libc.MFD_CLOEXEC), $"memfd_create({name})"));
        try
        {
            Errno.Check(Interop.Libc.ftruncate(Handle.Fd, (long)Length), $"ftruncate of memfd {name} to {Length} bytes");
            _mapping = SharedMapping.Map(Handle, 0, Length, MappingAccess.ReadWrite, $"mmap of memfd {name} ({Length} bytes)");
        }
        catch
        {
            Handle.Dispose();
            throw;
        }
    }

    /// <summary>The memfd, to pass to the peer (send a <see cref="SafeFdHandle.Duplicate"/> to keep this one open).</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>Where the memory is mapped in this process.</summary>
    public nint Pointer => _mapping.Pointer;

    /// <summary>Bytes (whole pages).</summary>
    public ulong Length { get; }

    /// <summary>The memory as bytes.</summary>
    /// <exception cref="ObjectDisposedException">The memory is disposed.</exception>
    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            // Callers allocate shared memory for BARs and DMA buffers well below 2 GiB; SharedMapping checks the length.
            return _mapping.Span;
        }
    }

    /// <summary>Unmaps and closes the memfd (the peer's mapping, if any, stays valid until it unmaps).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        _mapping.Dispose();
        Handle.Dispose();
    }
}
