using System.Runtime.InteropServices;
using static Interop.Ioctl;

internal static partial class Interop
{
    internal static partial class Vfio
    {
        // -------- device fds (from VFIO_GROUP_GET_DEVICE_FD) --------

        /// <summary>Argument: <see cref="vfio_device_info"/>*.</summary>
        internal static readonly nuint VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7);
        /// <summary>Argument: <see cref="vfio_region_info"/>* with index set, followed by room for capabilities.</summary>
        internal static readonly nuint VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8);
        /// <summary>Argument: <see cref="vfio_irq_info"/>* with index set.</summary>
        internal static readonly nuint VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9);
        /// <summary>Argument: <see cref="vfio_irq_set"/>* followed by its data array.</summary>
        internal static readonly nuint VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10);
        /// <summary>No argument.</summary>
        internal static readonly nuint VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);
        /// <summary>
        /// Argument: <see cref="vfio_pci_hot_reset_info"/>* followed by room for <c>count</c>
        /// <see cref="vfio_pci_dependent_device"/>. Too small a buffer fails with ENOSPC and sets count.
        /// </summary>
        internal static readonly nuint VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
        /// <summary>Argument: <see cref="vfio_pci_hot_reset"/>* followed by <c>count</c> group fds (<c>__s32</c>).</summary>
        internal static readonly nuint VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13);

        internal const uint VFIO_DEVICE_FLAGS_RESET = 1u << 0;
        internal const uint VFIO_DEVICE_FLAGS_PCI = 1u << 1;
        internal const uint VFIO_DEVICE_FLAGS_PLATFORM = 1u << 2;
        internal const uint VFIO_DEVICE_FLAGS_AMBA = 1u << 3;
        internal const uint VFIO_DEVICE_FLAGS_CCW = 1u << 4;
        internal const uint VFIO_DEVICE_FLAGS_AP = 1u << 5;
        internal const uint VFIO_DEVICE_FLAGS_FSL_MC = 1u << 6;
        internal const uint VFIO_DEVICE_FLAGS_CAPS = 1u << 7;
        internal const uint VFIO_DEVICE_FLAGS_CDX = 1u << 8;

        /// <summary>
        /// <c>struct vfio_device_info</c>. Linux 6.4 named the tail padding <c>pad</c> (sizeof 24 either way in the
        /// 6.12 header; 6.1's ended at cap_offset, 20 bytes): both kernels accept the larger argsz.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_device_info
        {
            public uint argsz;
            public uint flags;
            public uint num_regions;
            public uint num_irqs;
            public uint cap_offset;
            public uint pad;
        }

        internal const uint VFIO_REGION_INFO_FLAG_READ = 1u << 0;
        internal const uint VFIO_REGION_INFO_FLAG_WRITE = 1u << 1;
        internal const uint VFIO_REGION_INFO_FLAG_MMAP = 1u << 2;
        internal const uint VFIO_REGION_INFO_FLAG_CAPS = 1u << 3;

        /// <summary><c>struct vfio_region_info</c>; capabilities, if any, follow at <c>cap_offset</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_info
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint cap_offset;
            public ulong size;
            public ulong offset;
        }

        // Region info capability ids (a namespace of their own: ids are per INFO ioctl).
        internal const ushort VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
        internal const ushort VFIO_REGION_INFO_CAP_TYPE = 2;
        internal const ushort VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

        /// <summary><c>struct vfio_region_sparse_mmap_area</c>: relative to the region.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_sparse_mmap_area
        {
            public ulong offset;
            public ulong size;
        }

        /// <summary>
        /// <c>struct vfio_region_info_cap_sparse_mmap</c> without its flexible array: <c>nr_areas</c>
        /// <see cref="vfio_region_sparse_mmap_area"/> follow at <c>sizeof</c> of this struct.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_info_cap_sparse_mmap
        {
            public vfio_info_cap_header header;
            public uint nr_areas;
            public uint reserved;
        }

        /// <summary><c>struct vfio_region_info_cap_type</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_region_info_cap_type
        {
            public vfio_info_cap_header header;
            public uint type;
            public uint subtype;
        }

        /// <summary>Set in a region type when the low 16 bits are a PCI vendor id.</summary>
        internal const uint VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 1u << 31;
        internal const uint VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xffff;

        internal const uint VFIO_IRQ_INFO_EVENTFD = 1u << 0;
        internal const uint VFIO_IRQ_INFO_MASKABLE = 1u << 1;
        internal const uint VFIO_IRQ_INFO_AUTOMASKED = 1u << 2;
        internal const uint VFIO_IRQ_INFO_NORESIZE = 1u << 3;

        /// <summary><c>struct vfio_irq_info</c>.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_irq_info
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint count;
        }

        internal const uint VFIO_IRQ_SET_DATA_NONE = 1u << 0;
        internal const uint VFIO_IRQ_SET_DATA_BOOL = 1u << 1;
        internal const uint VFIO_IRQ_SET_DATA_EVENTFD = 1u << 2;
        internal const uint VFIO_IRQ_SET_ACTION_MASK = 1u << 3;
        internal const uint VFIO_IRQ_SET_ACTION_UNMASK = 1u << 4;
        internal const uint VFIO_IRQ_SET_ACTION_TRIGGER = 1u << 5;
        internal const uint VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
        internal const uint VFIO_IRQ_SET_ACTION_TYPE_MASK = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

        /// <summary>
        /// <c>struct vfio_irq_set</c> without its flexible <c>data[]</c>, which follows at <c>sizeof</c> of this
        /// struct in the caller's buffer: <c>count</c> bytes (DATA_BOOL) or <c>count</c> <c>__s32</c> eventfds
        /// (DATA_EVENTFD), nothing for DATA_NONE. <c>argsz</c> covers both.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_irq_set
        {
            public uint argsz;
            public uint flags;
            public uint index;
            public uint start;
            public uint count;
        }

        // vfio-pci's fixed region indexes ("Fixed user ABI, region indexes >=9 use device specific cap").
        internal const uint VFIO_PCI_BAR0_REGION_INDEX = 0;
        internal const uint VFIO_PCI_BAR1_REGION_INDEX = 1;
        internal const uint VFIO_PCI_BAR2_REGION_INDEX = 2;
        internal const uint VFIO_PCI_BAR3_REGION_INDEX = 3;
        internal const uint VFIO_PCI_BAR4_REGION_INDEX = 4;
        internal const uint VFIO_PCI_BAR5_REGION_INDEX = 5;
        internal const uint VFIO_PCI_ROM_REGION_INDEX = 6;
        internal const uint VFIO_PCI_CONFIG_REGION_INDEX = 7;
        internal const uint VFIO_PCI_VGA_REGION_INDEX = 8;
        internal const uint VFIO_PCI_NUM_REGIONS = 9;

        // vfio-pci's IRQ indexes.
        internal const uint VFIO_PCI_INTX_IRQ_INDEX = 0;
        internal const uint VFIO_PCI_MSI_IRQ_INDEX = 1;
        internal const uint VFIO_PCI_MSIX_IRQ_INDEX = 2;
        internal const uint VFIO_PCI_ERR_IRQ_INDEX = 3;
        internal const uint VFIO_PCI_REQ_IRQ_INDEX = 4;
        internal const uint VFIO_PCI_NUM_IRQS = 5;

        /// <summary>
        /// <c>struct vfio_pci_dependent_device</c>: one function a hot reset would also reset. <c>devfn</c> packs
        /// slot (bits 7:3) and function (bits 2:0), as PCI_SLOT/PCI_FUNC read it.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_pci_dependent_device
        {
            public uint group_id;
            public ushort segment;
            public byte bus;
            public byte devfn;
        }

        /// <summary>
        /// <c>struct vfio_pci_hot_reset_info</c> without its flexible array: <c>count</c>
        /// <see cref="vfio_pci_dependent_device"/> follow at <c>sizeof</c> of this struct.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_pci_hot_reset_info
        {
            public uint argsz;
            public uint flags;
            public uint count;
        }

        /// <summary>
        /// <c>struct vfio_pci_hot_reset</c> without its flexible array: <c>count</c> group fds (<c>__s32</c>)
        /// follow at <c>sizeof</c> of this struct.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct vfio_pci_hot_reset
        {
            public uint argsz;
            public uint flags;
            public uint count;
        }
    }
}
