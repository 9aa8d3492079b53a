using System.Runtime.InteropServices;
using static Interop.Ioctl;

internal static partial class Interop
{
    /// <summary>
    /// The VFIO user API of <c>include/uapi/linux/vfio.h</c>: constants, ioctl request numbers and structures, with
    /// the kernel's names. This file holds the container (<c>/dev/vfio/vfio</c>) and group (<c>/dev/vfio/$GROUP</c>)
    /// parts and the capability-chain header every INFO ioctl shares; the device, device cdev and type1 IOMMU parts
    /// live in Interop.Vfio.Device.cs, Interop.Vfio.Cdev.cs and Interop.Vfio.Type1.cs. Every value here is checked
    /// against the 6.12 uapi header by tests/Vfio.Tests/Interop/HeaderLayoutTests.cs.
    /// </summary>
    internal static partial class Vfio
    {
        internal const int VFIO_API_VERSION = 0;

        // Extensions, for VFIO_CHECK_EXTENSION; the IOMMU models among them also go to VFIO_SET_IOMMU.
        internal const int VFIO_TYPE1_IOMMU = 1;
        internal const int VFIO_SPAPR_TCE_IOMMU = 2;
        internal const int VFIO_TYPE1v2_IOMMU = 3;
        internal const int VFIO_DMA_CC_IOMMU = 4;
        internal const int VFIO_EEH = 5;
        internal const int VFIO_TYPE1_NESTING_IOMMU = 6;
        internal const int VFIO_SPAPR_TCE_v2_IOMMU = 7;
        internal const int VFIO_NOIOMMU_IOMMU = 8;
        internal const int VFIO_UNMAP_ALL = 9;
        internal const int VFIO_UPDATE_VADDR = 10;

        /// <summary>The ioctl type byte: <c>';'</c>.</summary>
        internal const uint VFIO_TYPE = ';';
        internal const uint VFIO_BASE = 100;

        // -------- /dev/vfio/vfio (container) --------

        /// <summary>Returns <see cref="VFIO_API_VERSION"/>.</summary>
        internal static readonly nuint VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0);
        /// <summary>Argument: an extension number, by value. Returns &gt; 0 when supported.</summary>
        internal static readonly nuint VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1);
        /// <summary>Argument: an IOMMU model, by value. Needs a group attached first.</summary>
        internal static readonly nuint VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2);

        // -------- /dev/vfio/$GROUP --------

        /// <summary>Argument: <see cref="vfio_group_status"/>*.</summary>
        internal static readonly nuint VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3);
        /// <summary>Argument: pointer to the container fd (<c>__s32</c>).</summary>
        internal static readonly nuint VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4);
        /// <summary>No argument. All device fds must be closed first.</summary>
        internal static readonly nuint VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5);
        /// <summary>Argument: NUL-terminated device name ("0000:00:04.0"). Returns a new device fd.</summary>
        internal static readonly nuint VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6);

        internal const uint VFIO_GROUP_FLAGS_VIABLE = 1u << 0;
        internal const uint VFIO_GROUP_FLAGS_CONTAINER_SET = 1u << 1;

        /// <summary><c>struct vfio_group_status</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_group_status
        {
            public uint argsz;
            public uint flags;
        }

        /// <summary>
        /// <c>struct vfio_info_cap_header</c>: heads each capability of an INFO ioctl's chain. <c>next</c> is the
        /// offset of the next capability from the start of the INFO buffer (not from this header); 0 ends the chain.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_info_cap_header
        {
            public ushort id;
            public ushort version;
            public uint next;
        }
    }
}
