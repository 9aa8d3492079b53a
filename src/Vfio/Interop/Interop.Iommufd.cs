using System.Runtime.InteropServices;
using static Interop.Ioctl;

internal static partial class Interop
{
    /// <summary>
    /// The iommufd user API of <c>include/uapi/linux/iommufd.h</c> (Linux 6.2+): the ioctls on <c>/dev/iommu</c> that
    /// allocate an I/O address space (IOAS), query its usable IOVA ranges, map and unmap process memory in it and
    /// destroy objects. Kernel names verbatim; every value is checked against the 6.12 header by
    /// tests/Vfio.Tests/Interop/HeaderLayoutTests.cs. Every structure starts with its own <c>size</c>, which the kernel
    /// uses to tell versions apart, so the requests are plain <c>_IO</c> numbers.
    /// </summary>
    internal static partial class Iommufd
    {
        /// <summary>The ioctl type byte: <c>';'</c>, shared with VFIO (iommufd's command numbers start at 0x80).</summary>
        internal const uint IOMMUFD_TYPE = ';';

        internal const uint IOMMUFD_CMD_BASE = 0x80;
        internal const uint IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE;
        internal const uint IOMMUFD_CMD_IOAS_ALLOC = 0x81;
        internal const uint IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
        internal const uint IOMMUFD_CMD_IOAS_MAP = 0x85;
        internal const uint IOMMUFD_CMD_IOAS_UNMAP = 0x86;
        internal const uint IOMMUFD_CMD_OPTION = 0x87;

        /// <summary>Argument: <see cref="iommu_destroy"/>*. Destroys any iommufd object by id.</summary>
        internal static readonly nuint IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY);
        /// <summary>Argument: <see cref="iommu_ioas_alloc"/>*; the kernel writes the new IOAS id.</summary>
        internal static readonly nuint IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC);
        /// <summary>
        /// Argument: <see cref="iommu_ioas_iova_ranges"/>* pointing at an array of <see cref="iommu_iova_range"/>.
        /// Too small an array fails with EMSGSIZE and sets <c>num_iovas</c> to the count needed.
        /// </summary>
        internal static readonly nuint IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES);
        /// <summary>Argument: <see cref="iommu_ioas_map"/>*.</summary>
        internal static readonly nuint IOMMU_IOAS_MAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP);
        /// <summary>Argument: <see cref="iommu_ioas_unmap"/>*; the kernel writes back the length unmapped.</summary>
        internal static readonly nuint IOMMU_IOAS_UNMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP);

        /// <summary>
        /// Argument: <see cref="iommu_option"/>*. Reads or sets a global or per-object option. Answered by any
        /// iommufd file, including <c>/dev/vfio/vfio</c> when iommufd serves it (CONFIG_IOMMUFD_VFIO_CONTAINER);
        /// a VFIO container proper does not know the request.
        /// </summary>
        internal static readonly nuint IOMMU_OPTION = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION);

        // enum iommufd_option
        internal const uint IOMMU_OPTION_RLIMIT_MODE = 0;

        // enum iommufd_option_ops
        internal const ushort IOMMU_OPTION_OP_SET = 0;
        internal const ushort IOMMU_OPTION_OP_GET = 1;

        /// <summary>
        /// <c>struct iommu_option</c>: <c>object_id</c> 0 names a global option; <c>val64</c> is written back by
        /// <see cref="IOMMU_OPTION_OP_GET"/>.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_option
        {
            public uint size;
            public uint option_id;
            public ushort op;
            public ushort __reserved;
            public uint object_id;
            public ulong val64;
        }

        /// <summary><c>struct iommu_destroy</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_destroy
        {
            public uint size;
            public uint id;
        }

        /// <summary><c>struct iommu_ioas_alloc</c>: <c>flags</c> must be 0.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_ioas_alloc
        {
            public uint size;
            public uint flags;
            public uint out_ioas_id;
        }

        /// <summary><c>struct iommu_iova_range</c>: <c>last</c> is inclusive.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_iova_range
        {
            public ulong start;
            public ulong last;
        }

        /// <summary><c>struct iommu_ioas_iova_ranges</c>: <c>allowed_iovas</c> is a user pointer to the output array.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_ioas_iova_ranges
        {
            public uint size;
            public uint ioas_id;
            public uint num_iovas;
            public uint __reserved;
            public ulong allowed_iovas;
            public ulong out_iova_alignment;
        }

        // enum iommufd_ioas_map_flags
        internal const uint IOMMU_IOAS_MAP_FIXED_IOVA = 1u << 0;
        internal const uint IOMMU_IOAS_MAP_WRITEABLE = 1u << 1;
        internal const uint IOMMU_IOAS_MAP_READABLE = 1u << 2;

        /// <summary>
        /// <c>struct iommu_ioas_map</c>: without <see cref="IOMMU_IOAS_MAP_FIXED_IOVA"/> the kernel picks the IOVA and
        /// writes it back; with it, <c>iova</c> is where the mapping goes.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_ioas_map
        {
            public uint size;
            public uint flags;
            public uint ioas_id;
            public uint __reserved;
            public ulong user_va;
            public ulong length;
            public ulong iova;
        }

        /// <summary><c>struct iommu_ioas_unmap</c>: <c>length</c> is written back with the bytes actually unmapped.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct iommu_ioas_unmap
        {
            public uint size;
            public uint ioas_id;
            public ulong iova;
            public ulong length;
        }
    }
}
