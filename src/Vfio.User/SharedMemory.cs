namespace Vfio.User;

/// <summary>
/// Memory backed by a memfd and mapped shared in this process, so another process that receives the descriptor
/// maps the same pages: BARs a server offers for mmap, DMA memory a client registers with VFIO_USER_DMA_MAP.
/// </summary>
public sealed unsafe class SharedMemory : IDisposable
{
    private int _disposed;

    /// <summary>Creates <paramref name="length"/> bytes (rounded up to whole pages) of zeroed shared memory.</summary>
    /// <param name="length">Bytes; at least 1.</param>
    /// <param name="name">The memfd's name (shows in /proc/PID/maps).</param>
    public SharedMemory(ulong length, string name)
    {
        ArgumentOutOfRangeException.ThrowIfZero(length);
        ulong page = (ulong)Environment.SystemPageSize;
        Length = (length + page - 1) & ~(page - 1);
        Handle = new SafeFdHandle(Errno.Check(Interop.Libc.memfd_create(name, Interop.Libc.MFD_CLOEXEC), $"memfd_create({name})"));
        try
        {
            Errno.Check(Interop.Libc.ftruncate(Handle.Fd, (long)Length), $"ftruncate of memfd {name} to {Length} bytes");
            nint p = Interop.Libc.mmap(0, (nuint)Length, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_SHARED, Handle.Fd, 0);
            if (p == Interop.Libc.MAP_FAILED) { throw Errno.ToException(Errno.Last, $"mmap of memfd {name} ({Length} bytes)"); }
            Pointer = p;
        }
        catch
        {
            Handle.Dispose();
            throw;
        }
    }

    /// <summary>The memfd, to pass to the peer.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>Where the memory is mapped in this process.</summary>
    public nint Pointer { get; }

    /// <summary>Bytes (whole pages).</summary>
    public ulong Length { get; }

    /// <summary>The memory as bytes.</summary>
    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            // SAFETY: Pointer..Pointer+Length is mapped until Dispose, checked above. Length fits: callers allocate
            // shared memory for BARs and DMA buffers well below 2 GiB.
            return new Span<byte>((void*)Pointer, checked((int)Length));
        }
    }

    /// <summary>Unmaps and closes the memfd (the peer's mapping, if any, stays valid until it unmaps).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        Interop.Libc.munmap(Pointer, (nuint)Length);
        Handle.Dispose();
    }
}
