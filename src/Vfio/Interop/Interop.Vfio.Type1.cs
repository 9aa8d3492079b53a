using System.Runtime.InteropServices;
using static Interop.Ioctl;

internal static partial class Interop
{
    internal static partial class Vfio
    {
        // -------- type1 IOMMU (container fd after VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)) --------

        /// <summary>Argument: <see cref="vfio_iommu_type1_info"/>*, followed by room for capabilities.</summary>
        internal static readonly nuint VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
        /// <summary>Argument: <see cref="vfio_iommu_type1_dma_map"/>*.</summary>
        internal static readonly nuint VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13);
        /// <summary>Argument: <see cref="vfio_iommu_type1_dma_unmap"/>*; the kernel writes back the size unmapped.</summary>
        internal static readonly nuint VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14);

        internal const uint VFIO_IOMMU_INFO_PGSIZES = 1u << 0;
        internal const uint VFIO_IOMMU_INFO_CAPS = 1u << 1;

        /// <summary>
        /// <c>struct vfio_iommu_type1_info</c>. <c>pad</c> (named in Linux 6.4; tail padding before) makes sizeof 24,
        /// and the kernel places the first capability there, at offset 24.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info
        {
            public uint argsz;
            public uint flags;
            public ulong iova_pgsizes;
            public uint cap_offset;
            public uint pad;
        }

        // Type1 info capability ids.
        internal const ushort VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
        internal const ushort VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
        internal const ushort VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

        /// <summary><c>struct vfio_iova_range</c>: both ends inclusive.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iova_range
        {
            public ulong start;
            public ulong end;
        }

        /// <summary>
        /// <c>struct vfio_iommu_type1_info_cap_iova_range</c> without its flexible array: <c>nr_iovas</c>
        /// <see cref="vfio_iova_range"/> follow at <c>sizeof</c> of this struct.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info_cap_iova_range
        {
            public vfio_info_cap_header header;
            public uint nr_iovas;
            public uint reserved;
        }

        /// <summary><c>struct vfio_iommu_type1_info_dma_avail</c>: how many more DMA mappings the container allows.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_info_dma_avail
        {
            public vfio_info_cap_header header;
            public uint avail;
        }

        internal const uint VFIO_DMA_MAP_FLAG_READ = 1u << 0;
        internal const uint VFIO_DMA_MAP_FLAG_WRITE = 1u << 1;
        internal const uint VFIO_DMA_MAP_FLAG_VADDR = 1u << 2;

        /// <summary><c>struct vfio_iommu_type1_dma_map</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_dma_map
        {
            public uint argsz;
            public uint flags;
            public ulong vaddr;
            public ulong iova;
            public ulong size;
        }

        internal const uint VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1u << 0;
        internal const uint VFIO_DMA_UNMAP_FLAG_ALL = 1u << 1;
        internal const uint VFIO_DMA_UNMAP_FLAG_VADDR = 1u << 2;

        /// <summary>
        /// <c>struct vfio_iommu_type1_dma_unmap</c> without its flexible <c>data[]</c> (used only with
        /// GET_DIRTY_BITMAP, which the library does not use).
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_iommu_type1_dma_unmap
        {
            public uint argsz;
            public uint flags;
            public ulong iova;
            public ulong size;
        }
    }
}
