using System.Runtime.CompilerServices;

internal static partial class Interop
{
    /// <summary>
    /// The ioctl request encoding macros of <c>include/uapi/asm-generic/ioctl.h</c>, shared by the VFIO and iommufd
    /// ioctl families (both use only <c>_IO</c>: their structures carry their own size).
    /// </summary>
    internal static class Ioctl
    {
        // The ioctl request encoding of include/uapi/asm-generic/ioctl.h, which x86_64, arm64 and riscv use
        // (powerpc, mips and sparc widen the direction field to 3 bits; the library does not run there).
        // VFIO and iommufd only use _IO: their structures carry their own size (argsz, size), so the request
        // number embeds none ("We therefore use the _IO() macro", linux/vfio.h). The sized forms are here so
        // that the macros are complete and can be checked against the C ones.

        internal const int _IOC_NRBITS = 8;
        internal const int _IOC_TYPEBITS = 8;
        internal const int _IOC_SIZEBITS = 14;
        internal const int _IOC_DIRBITS = 2;

        internal const int _IOC_NRSHIFT = 0;
        internal const int _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
        internal const int _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
        internal const int _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;

        internal const uint _IOC_NONE = 0;
        internal const uint _IOC_WRITE = 1;
        internal const uint _IOC_READ = 2;

        /// <summary>
        /// <c>_IOC(dir, type, nr, size)</c>. The C macro rejects an oversized argument at compile time
        /// (<c>_IOC_TYPECHECK</c>); here every field is range-checked instead of silently spilling into its
        /// neighbour.
        /// </summary>
        internal static nuint _IOC(uint dir, uint type, uint nr, uint size)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(dir, 1u << _IOC_DIRBITS);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(type, 1u << _IOC_TYPEBITS);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(nr, 1u << _IOC_NRBITS);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(size, 1u << _IOC_SIZEBITS);
            return (nuint)((dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT));
        }

        /// <summary><c>_IO(type, nr)</c>: no argument size encoded.</summary>
        internal static nuint _IO(uint type, uint nr) => _IOC(_IOC_NONE, type, nr, 0);

        /// <summary><c>_IOR(type, nr, T)</c>: the kernel writes a <typeparamref name="T"/>.</summary>
        internal static nuint _IOR<T>(uint type, uint nr) where T : unmanaged =>
            _IOC(_IOC_READ, type, nr, (uint)Unsafe.SizeOf<T>());

        /// <summary><c>_IOW(type, nr, T)</c>: the kernel reads a <typeparamref name="T"/>.</summary>
        internal static nuint _IOW<T>(uint type, uint nr) where T : unmanaged =>
            _IOC(_IOC_WRITE, type, nr, (uint)Unsafe.SizeOf<T>());

        /// <summary><c>_IOWR(type, nr, T)</c>: the kernel reads and writes a <typeparamref name="T"/>.</summary>
        internal static nuint _IOWR<T>(uint type, uint nr) where T : unmanaged =>
            _IOC(_IOC_READ | _IOC_WRITE, type, nr, (uint)Unsafe.SizeOf<T>());
    }
}
