using System.Runtime.InteropServices;
using static Interop.Ioctl;

internal static partial class Interop
{
    internal static partial class Vfio
    {
        // -------- the device cdev (/dev/vfio/devices/vfioN, Linux 6.6+ with CONFIG_VFIO_DEVICE_CDEV) --------
        // A device fd opened from the cdev does nothing but these ioctls until it is bound to an iommufd; after
        // VFIO_DEVICE_BIND_IOMMUFD and VFIO_DEVICE_ATTACH_IOMMUFD_PT it answers the same device ioctls as a fd from
        // VFIO_GROUP_GET_DEVICE_FD.

        /// <summary>Argument: <see cref="vfio_device_bind_iommufd"/>*; the kernel writes the device's iommufd object id.</summary>
        internal static readonly nuint VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18);
        /// <summary>Argument: <see cref="vfio_device_attach_iommufd_pt"/>* naming an IOAS or HWPT id.</summary>
        internal static readonly nuint VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19);
        /// <summary>Argument: <see cref="vfio_device_detach_iommufd_pt"/>*.</summary>
        internal static readonly nuint VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20);

        /// <summary><c>struct vfio_device_bind_iommufd</c>: <c>iommufd</c> is the /dev/iommu fd.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_device_bind_iommufd
        {
            public uint argsz;
            public uint flags;
            public int iommufd;
            public uint out_devid;
        }

        /// <summary><c>struct vfio_device_attach_iommufd_pt</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_device_attach_iommufd_pt
        {
            public uint argsz;
            public uint flags;
            public uint pt_id;
        }

        /// <summary><c>struct vfio_device_detach_iommufd_pt</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_device_detach_iommufd_pt
        {
            public uint argsz;
            public uint flags;
        }
    }
}
