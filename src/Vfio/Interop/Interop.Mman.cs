using System.Runtime.InteropServices;

internal static partial class Interop
{
    internal static partial class Libc
    {
        // sys/mman.h (x86_64 values)
        internal const int PROT_NONE = 0x0;
        internal const int PROT_READ = 0x1;
        internal const int PROT_WRITE = 0x2;
        internal const int MAP_SHARED = 0x01;
        internal const int MAP_PRIVATE = 0x02;
        internal const int MAP_FIXED = 0x10;
        internal const int MAP_ANONYMOUS = 0x20;
        internal const int MAP_NORESERVE = 0x4000;
        internal const int MAP_POPULATE = 0x8000;
        internal const int MAP_LOCKED = 0x2000;
        internal const int MAP_HUGETLB = 0x40000;
        internal const int MAP_HUGE_SHIFT = 26;
        internal const int MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
        internal const int MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;
        internal static readonly nint MAP_FAILED = -1;

        internal const int MADV_DONTFORK = 10;
        internal const int MADV_DONTDUMP = 16;

        // linux/memfd.h
        internal const uint MFD_CLOEXEC = 0x0001;
        internal const uint MFD_HUGETLB = 0x0004;
        internal const uint MFD_HUGE_2MB = 21u << 26;
        internal const uint MFD_HUGE_1GB = 30u << 26;

        [LibraryImport(LibraryName, EntryPoint = "mmap64", SetLastError = true)]
        internal static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

        [LibraryImport(LibraryName, EntryPoint = "munmap", SetLastError = true)]
        internal static partial int munmap(nint addr, nuint length);

        [LibraryImport(LibraryName, EntryPoint = "mlock", SetLastError = true)]
        internal static partial int mlock(nint addr, nuint len);

        [LibraryImport(LibraryName, EntryPoint = "munlock", SetLastError = true)]
        internal static partial int munlock(nint addr, nuint len);

        [LibraryImport(LibraryName, EntryPoint = "madvise", SetLastError = true)]
        internal static partial int madvise(nint addr, nuint length, int advice);

        [LibraryImport(LibraryName, EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int memfd_create(string name, uint flags);
    }
}
