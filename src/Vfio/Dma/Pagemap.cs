using System.Runtime.InteropServices;
using Vfio.Linux;

namespace Vfio.Dma;

/// <summary>
/// Reads <c>/proc/self/pagemap</c> to find the physical address behind a virtual address, which is the bus
/// address a device needs in No-IOMMU mode. The file holds one 64-bit <see cref="PagemapEntry"/> per virtual
/// page, at byte offset <c>(address / page size) * 8</c>.
/// </summary>
/// <remarks>
/// Since Linux 4.2 the kernel reports PFN 0 to readers that lacked CAP_SYS_ADMIN when they opened the file;
/// this class turns that into <see cref="MissingCapabilityException"/> instead of handing out address 0.
/// The file descriptor stays open for the object's lifetime and always describes the process that opened it.
/// </remarks>
public sealed class Pagemap : IDisposable, IPhysicalAddressResolver
{
    /// <summary>This process's pagemap.</summary>
    public const string SelfPath = "/proc/self/pagemap";

    private readonly SafeFdHandle _fd;

    /// <summary>Opens a pagemap file.</summary>
    /// <param name="path">The file; tests pass a file of recorded entries.</param>
    /// <param name="pageSize">The page size the file is indexed by; 0 means the host's (<see cref="Environment.SystemPageSize"/>).</param>
    /// <exception cref="VfioException">The file cannot be opened.</exception>
    public Pagemap(string path = SelfPath, ulong pageSize = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        PageSize = pageSize == 0 ? (ulong)Environment.SystemPageSize : pageSize;
        if (!ulong.IsPow2(PageSize))
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, "page size must be a power of two");
        }
        Path = path;
        var fd = Interop.Libc.open(path, Interop.Libc.O_RDONLY | Interop.Libc.O_CLOEXEC);
        _fd = new SafeFdHandle(Errno.Check(fd, $"open {path}"));
    }

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>The page size the file is indexed by.</summary>
    public ulong PageSize { get; }

    /// <summary>Reads the entry of the page holding <paramref name="virtualAddress"/>.</summary>
    public PagemapEntry ReadEntry(nint virtualAddress)
    {
        Span<PagemapEntry> one = stackalloc PagemapEntry[1];
        ReadEntries(virtualAddress, one);
        return one[0];
    }

    /// <summary>Reads the entries of <c>entries.Length</c> consecutive pages starting with the one holding <paramref name="virtualAddress"/>.</summary>
    /// <exception cref="VfioException">The read failed or the file ended early.</exception>
    public unsafe void ReadEntries(nint virtualAddress, Span<PagemapEntry> entries)
    {
        ObjectDisposedException.ThrowIf(_fd.IsClosed, this);
        var offset = checked((long)((ulong)(nuint)virtualAddress / PageSize * sizeof(ulong)));
        var bytes = MemoryMarshal.AsBytes(entries);
        var done = 0;
        var added = false;
        _fd.DangerousAddRef(ref added);
        try
        {
            while (done < bytes.Length)
            {
                nint n;
                // SAFETY: the pointer covers bytes[done..], which stays pinned by `fixed` for the call; pread
                // writes at most the count given.
                fixed (byte* p = bytes[done..])
                {
                    n = Interop.Libc.pread(_fd.Fd, p, (nuint)(bytes.Length - done), offset + done);
                }
                if (n < 0)
                {
                    var errno = Errno.Last;
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }
                    throw Errno.ToException(errno, $"reading {Path} for virtual address 0x{virtualAddress:x}");
                }
                if (n == 0)
                {
                    throw new VfioException($"reading {Path} for virtual address 0x{virtualAddress:x}: end of file before byte {offset + done}",
                        null, "the address is outside this process's address space");
                }
                done += (int)n;
            }
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    /// <summary>The physical address of the byte at <paramref name="virtualAddress"/>.</summary>
    /// <exception cref="VfioException">The page is not resident (never touched, or swapped out).</exception>
    /// <exception cref="MissingCapabilityException">The kernel hid the frame number (no CAP_SYS_ADMIN).</exception>
    public PhysicalAddress GetPhysicalAddress(nint virtualAddress) =>
        Translate(ReadEntry(virtualAddress), virtualAddress, PageSize, Path);

    /// <summary>
    /// The physical address of <paramref name="virtualAddress"/> given its page's entry: the frame's address plus
    /// the offset within the page. A pure function, so recorded entries can be checked without the kernel.
    /// </summary>
    /// <exception cref="VfioException">The page is not resident.</exception>
    /// <exception cref="MissingCapabilityException">The entry is present with PFN 0: the kernel hid the frame number.</exception>
    public static PhysicalAddress Translate(PagemapEntry entry, nint virtualAddress, ulong pageSize, string source = SelfPath)
    {
        if (!entry.IsPresent)
        {
            throw new VfioException(
                $"virtual address 0x{virtualAddress:x} has no physical page ({source}: {entry})", null,
                entry.IsSwapped
                    ? "the page was swapped out; DMA memory must be locked (mlock) or hugetlb-backed"
                    : "the page was never touched; populate it (MAP_POPULATE or a write) and lock it before asking for its physical address");
        }
        if (entry.Pfn == 0)
        {
            throw new MissingCapabilityException("CAP_SYS_ADMIN", $"reading physical addresses from {source}", null,
                "since Linux 4.2 pagemap reports page frame number 0 to readers without CAP_SYS_ADMIN, and No-IOMMU DMA " +
                "needs the real physical address of every buffer");
        }
        return new PhysicalAddress(entry.Pfn * pageSize + ((ulong)(nuint)virtualAddress & (pageSize - 1)));
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _fd.Dispose();
}
