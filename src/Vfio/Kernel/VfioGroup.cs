using Vfio.Linux;
using static Interop.Vfio;

namespace Vfio.Kernel;

/// <summary>
/// A VFIO group (<c>/dev/vfio/N</c>, or <c>/dev/vfio/noiommu-N</c> for a device without an IOMMU): the unit of
/// ownership the kernel hands to userspace. A group is attached to one container and yields device fds.
/// </summary>
public sealed class VfioGroup : IDisposable
{
    private VfioContainer? _container;

    private VfioGroup(SafeFdHandle handle, string path, bool isNoIommu)
    {
        Handle = handle;
        Path = path;
        IsNoIommu = isNoIommu;
    }

    /// <summary>The group's file descriptor.</summary>
    public SafeFdHandle Handle { get; }

    /// <summary>The group's device node.</summary>
    public string Path { get; }

    /// <summary>The group's name: its number, or <c>noiommu-N</c>.</summary>
    public string Name => System.IO.Path.GetFileName(Path);

    /// <summary>True for a No-IOMMU group.</summary>
    public bool IsNoIommu { get; }

    /// <summary>The container the group is attached to, if any.</summary>
    public VfioContainer? Container => _container;

    /// <summary>Opens a group node. <paramref name="device"/> is only used in error messages.</summary>
    public static VfioGroup Open(string path, PciAddress? device = null)
    {
        int fd = Interop.Libc.open(path, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Errno.Last;
            bool noiommu = System.IO.Path.GetFileName(path).StartsWith("noiommu-", StringComparison.Ordinal);
            if (noiommu && errno == Errno.EPERM)
            {
                // vfio_group_fops_open: No-IOMMU groups require CAP_SYS_RAWIO.
                throw new MissingCapabilityException("CAP_SYS_RAWIO", $"opening No-IOMMU group {path}", device,
                    "the kernel lets only processes with CAP_SYS_RAWIO use a device without an IOMMU");
            }
            throw Errno.ToException(errno, $"open {path}", device,
                errno == Errno.EBUSY ? "the group is already open in another process or another container" : null);
        }
        return new VfioGroup(new SafeFdHandle(fd), path, System.IO.Path.GetFileName(path).StartsWith("noiommu-", StringComparison.Ordinal));
    }

    /// <summary>Reads <c>VFIO_GROUP_GET_STATUS</c>.</summary>
    public unsafe (bool Viable, bool ContainerSet) GetStatus()
    {
        var status = new vfio_group_status { argsz = (uint)sizeof(vfio_group_status) };
        // SAFETY: status is a local the ioctl fills; argsz states its size.
        VfioIoctl.Call(Handle, VFIO_GROUP_GET_STATUS, &status, "VFIO_GROUP_GET_STATUS");
        return ((status.flags & VFIO_GROUP_FLAGS_VIABLE) != 0, (status.flags & VFIO_GROUP_FLAGS_CONTAINER_SET) != 0);
    }

    /// <summary>Attaches the group to <paramref name="container"/> (<c>VFIO_GROUP_SET_CONTAINER</c>).</summary>
    public unsafe void SetContainer(VfioContainer container)
    {
        ArgumentNullException.ThrowIfNull(container);
        if (_container is not null)
        {
            throw new InvalidOperationException($"group {Name} is already attached to a container");
        }
        bool added = false;
        container.Handle.DangerousAddRef(ref added);
        try
        {
            int containerFd = container.Handle.Fd;
            // SAFETY: the ioctl reads one int (the container fd) from a local.
            VfioIoctl.Call(Handle, VFIO_GROUP_SET_CONTAINER, &containerFd, "VFIO_GROUP_SET_CONTAINER");
        }
        finally
        {
            if (added) { container.Handle.DangerousRelease(); }
        }
        _container = container;
        container.AddGroup(this);
    }

    /// <summary>Gets a device fd (<c>VFIO_GROUP_GET_DEVICE_FD</c>) for the device named by its PCI address.</summary>
    public SafeFdHandle GetDeviceFd(PciAddress device)
    {
        if (_container is null)
        {
            throw new InvalidOperationException($"group {Name} must be attached to a container with an IOMMU set before devices can be opened");
        }
        int fd = VfioIoctl.CallWithString(Handle, VFIO_GROUP_GET_DEVICE_FD, device.ToString());
        if (fd < 0)
        {
            int errno = Errno.Last;
            throw Errno.ToException(errno, "VFIO_GROUP_GET_DEVICE_FD", device,
                errno == Errno.EBUSY ? "the device is already open (VFIO allows one open per device in a group)" : null);
        }
        return new SafeFdHandle(fd);
    }

    /// <summary>Detaches from the container and closes the group.</summary>
    public void Dispose()
    {
        if (Handle.IsClosed) { return; }
        var container = Interlocked.Exchange(ref _container, null);
        if (container is not null)
        {
            // Closing the group fd also unsets the container, but doing it explicitly keeps the order visible:
            // the container's IOMMU context survives as long as another group uses it.
            VfioIoctl.TryCall(Handle, VFIO_GROUP_UNSET_CONTAINER);
            container.RemoveGroup(this);
        }
        Handle.Dispose();
    }
}
