using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vfio.Linux;
using static Interop.Iommufd;

namespace Vfio.Kernel;

/// <summary>
/// An iommufd context (<c>/dev/iommu</c>, Linux 6.2+): owns I/O address spaces (<see cref="IommufdIoas"/>) that
/// devices opened through the VFIO device cdev attach to. The successor of the VFIO container: one iommufd can
/// hold several IOAS, and every object it holds dies with it.
/// </summary>
public sealed class Iommufd : IDisposable
{
    private readonly ILoggerFactory? _loggerFactory;

    private Iommufd(SafeFdHandle handle, string path, ILoggerFactory? loggerFactory)
    {
        Handle = handle;
        Path = path;
        _loggerFactory = loggerFactory;
    }

    /// <summary>The <c>/dev/iommu</c> file descriptor.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>The node it was opened from.</summary>
    public string Path { get; }

    /// <summary>Whether <c>/dev/iommu</c> exists under <paramref name="devRoot"/> (the kernel has CONFIG_IOMMUFD).</summary>
    public static bool IsAvailable(string devRoot = "/dev") => File.Exists(System.IO.Path.Combine(devRoot, "iommu"));

    /// <summary>Opens <c>/dev/iommu</c>.</summary>
    /// <exception cref="VfioUnavailableException">The kernel has no iommufd (CONFIG_IOMMUFD, Linux 6.2+).</exception>
    public static Iommufd Open(string devRoot = "/dev", ILoggerFactory? loggerFactory = null)
    {
        string path = System.IO.Path.Combine(devRoot, "iommu");
        int fd = Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Errno.Last;
            if (errno == Errno.ENOENT)
            {
                throw new VfioUnavailableException($"{path} does not exist: this kernel has no iommufd",
                    "iommufd needs Linux 6.2+ built with CONFIG_IOMMUFD (and the VFIO device cdev, CONFIG_VFIO_DEVICE_CDEV, 6.6+); open through the VFIO group instead (VfioMode.Type1)");
            }
            throw Errno.ToException(errno, $"open {path}");
        }
        return new Iommufd(new SafeFdHandle(fd), path, loggerFactory);
    }

    /// <summary>Allocates a new, empty I/O address space (<c>IOMMU_IOAS_ALLOC</c>).</summary>
    public unsafe IommufdIoas AllocateIoas()
    {
        var alloc = new iommu_ioas_alloc { size = (uint)sizeof(iommu_ioas_alloc) };
        // SAFETY: alloc is a local of the size its size field states.
        VfioIoctl.Call(Handle, IOMMU_IOAS_ALLOC, &alloc, "IOMMU_IOAS_ALLOC");
        return new IommufdIoas(this, alloc.out_ioas_id,
            (ILogger?)_loggerFactory?.CreateLogger<IommufdIoas>() ?? NullLogger.Instance, _loggerFactory);
    }

    /// <summary>Destroys object <paramref name="id"/> (<c>IOMMU_DESTROY</c>); throws when the kernel refuses.</summary>
    internal unsafe void Destroy(uint id, string what)
    {
        var destroy = new iommu_destroy { size = (uint)sizeof(iommu_destroy), id = id };
        // SAFETY: destroy is a local of the size its size field states.
        VfioIoctl.Call(Handle, IOMMU_DESTROY, &destroy, $"IOMMU_DESTROY({what} {id})");
    }

    /// <summary>Closes <c>/dev/iommu</c>; the kernel destroys every object still in it (and its mappings).</summary>
    public void Dispose() => Handle.Dispose();
}
