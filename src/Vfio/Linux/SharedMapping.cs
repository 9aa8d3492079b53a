namespace Vfio.Linux;

/// <summary>What a <see cref="SharedMapping"/> may do with the pages (<c>PROT_READ</c>, <c>PROT_WRITE</c>).</summary>
[Flags]
public enum MappingAccess
{
    /// <summary>The pages can be read.</summary>
    Read = 1,

    /// <summary>The pages can be written.</summary>
    Write = 2,

    /// <summary>Both.</summary>
    ReadWrite = Read | Write,
}

/// <summary>
/// A <c>MAP_SHARED</c> mapping of part of a file descriptor (a memfd of this process, or one a peer passed over a UNIX
/// socket), owned: <see cref="Dispose"/> unmaps it. Stores through one mapping are seen through every other mapping of
/// the same file, in this process or another; closing the descriptor afterwards leaves the mapping valid.
/// </summary>
public sealed unsafe class SharedMapping : IDisposable
{
    private int _disposed;

    private SharedMapping(nint pointer, ulong length)
    {
        Pointer = pointer;
        Length = length;
    }

    /// <summary>Where the pages are mapped in this process; do not use after <see cref="Dispose"/>.</summary>
    public nint Pointer { get; }

    /// <summary>Mapped bytes.</summary>
    public ulong Length { get; }

    /// <summary>Whether <see cref="Dispose"/> has unmapped the pages.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The mapped bytes.</summary>
    /// <exception cref="ObjectDisposedException">The mapping is disposed.</exception>
    /// <exception cref="OverflowException">The mapping is 2 GiB or larger (use <see cref="Pointer"/>).</exception>
    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            // SAFETY: Pointer..Pointer+Length is mapped until Dispose, checked above; the length is checked to fit a span.
            return new Span<byte>((void*)Pointer, checked((int)Length));
        }
    }

    /// <summary>
    /// Maps <paramref name="length"/> bytes of <paramref name="fd"/> from <paramref name="offset"/> with
    /// <paramref name="access"/>. The caller checks that the file is that long (<see cref="TryGetFileLength"/>): a touch
    /// of a page past the end of the file raises SIGBUS.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="fd"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is 0 or does not fit the address space,
    /// <paramref name="offset"/> is beyond a file offset (2^63 - 1), or <paramref name="access"/> is neither
    /// <see cref="MappingAccess.Read"/> nor <see cref="MappingAccess.Write"/> nor both.</exception>
    /// <exception cref="ArgumentException"><paramref name="offset"/> is not a multiple of the page size.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="fd"/> is closed.</exception>
    /// <exception cref="VfioException">mmap failed; <see cref="VfioException.ErrorNumber"/> is its errno.</exception>
    public static SharedMapping Map(SafeFdHandle fd, ulong offset, ulong length, MappingAccess access) =>
        Map(fd, offset, length, access, $"mmap of {length} bytes at offset {offset}");

    internal static SharedMapping Map(SafeFdHandle fd, ulong offset, ulong length, MappingAccess access, string operation)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentOutOfRangeException.ThrowIfZero(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, (ulong)nuint.MaxValue);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, (ulong)long.MaxValue);
        if (access is not (MappingAccess.Read or MappingAccess.Write or MappingAccess.ReadWrite))
        {
            throw new ArgumentOutOfRangeException(nameof(access), access, "Read, Write or both");
        }
        if ((offset & (ulong)(Environment.SystemPageSize - 1)) != 0)
        {
            throw new ArgumentException($"offset {offset} is not a multiple of the {Environment.SystemPageSize}-byte page", nameof(offset));
        }
        int prot = ((access & MappingAccess.Read) != 0 ? Interop.Libc.PROT_READ : 0)
                 | ((access & MappingAccess.Write) != 0 ? Interop.Libc.PROT_WRITE : 0);
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            nint p = Interop.Libc.mmap(0, (nuint)length, prot, Interop.Libc.MAP_SHARED, fd.Fd, (long)offset);
            if (p == Interop.Libc.MAP_FAILED) { throw Errno.ToException(Errno.Last, operation); }
            return new SharedMapping(p, length);
        }
        finally
        {
            if (added) { fd.DangerousRelease(); }
        }
    }

    /// <summary>
    /// The length of the file behind <paramref name="fd"/>, found with <c>lseek(fd, 0, SEEK_END)</c> (which leaves the
    /// file offset at the end); false when the descriptor cannot seek (a pipe, a socket, an eventfd).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="fd"/> is null.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="fd"/> is closed.</exception>
    public static bool TryGetFileLength(SafeFdHandle fd, out long length)
    {
        ArgumentNullException.ThrowIfNull(fd);
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            length = Interop.Libc.lseek(fd.Fd, 0, Interop.Libc.SEEK_END);
            return length >= 0;
        }
        finally
        {
            if (added) { fd.DangerousRelease(); }
        }
    }

    /// <summary>Unmaps the pages; the file and other mappings of it stay.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
        Interop.Libc.munmap(Pointer, (nuint)Length);
    }
}
